"""Logins: a tracking server that answers 401 ends a stage's probe in one line that names the
user and the variables to check, never the password; any other answer passes. The real
basic-auth server is tests/test_team_server.py."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from torchtrack.errors import TrackingLoginError, TrackingStoreError
from torchtrack.tracking.backend.login import check_login
from torchtrack.tracking.backend.store import check_reachable

PASSWORD = "correct-horse-battery"


class BasicAuth(BaseHTTPRequestHandler):
    """401 unless the request carries user alice with PASSWORD, as MLflow's basic-auth app does."""

    def do_GET(self):
        import base64

        expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        self.send_response(200 if self.headers.get("Authorization") == expected else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), BasicAuth)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def login(monkeypatch, username, password):
    for name, value in (("MLFLOW_TRACKING_USERNAME", username), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)


def test_a_wrong_password_is_one_line_naming_the_user_not_the_password(server, monkeypatch):
    login(monkeypatch, "alice", "wrong-password-123")
    with pytest.raises(TrackingLoginError) as excinfo:
        check_reachable(server)
    assert str(excinfo.value) == (
        f"the MLflow tracking server at {server} refused the login of user 'alice' (HTTP 401): "
        "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )
    assert "wrong-password-123" not in str(excinfo.value)
    assert isinstance(excinfo.value, TrackingStoreError) and excinfo.value.exit_code == 1


def test_no_login_at_all_says_which_variables_to_set(server, monkeypatch):
    login(monkeypatch, None, None)
    with pytest.raises(TrackingLoginError, match="asks for a login: set MLFLOW_TRACKING_USERNAME and"):
        check_login(server)


def test_the_right_password_passes(server, monkeypatch):
    login(monkeypatch, "alice", PASSWORD)
    check_reachable(server)
