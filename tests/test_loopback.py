"""loopback.py: `torchtrack ui` and `serve` say, in one line, when anyone else can reach them."""

from __future__ import annotations

import pytest

from torchtrack.loopback import is_loopback, no_login_warning


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses_get_no_warning(host):
    assert is_loopback(host) and no_login_warning(host, "ui") is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "myhost.example"])
def test_any_other_address_gets_one_line_saying_no_login_is_asked(host):
    warning = no_login_warning(host, "serve")
    assert warning.startswith(f"torchtrack serve: warning: listening on {host}, not loopback only")
    assert "no login" in warning and "\n" not in warning


def test_serve_prints_the_warning_before_it_starts(monkeypatch, capsys):
    """Before the model server replaces the process (ui prints it before its servers start)."""
    from torchtrack import serve

    def stop(*args):
        raise SystemExit(0)

    monkeypatch.setattr(serve.os, "execve", stop)
    with pytest.raises(SystemExit):
        serve.serve_model("0.0.0.0", 5001, "models:/torchtrack@champion")
    assert "torchtrack serve: warning: listening on 0.0.0.0" in capsys.readouterr().err
