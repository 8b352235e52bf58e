"""files.py: atomic writes leave either the old file or the new one, never a half-written one."""

import pytest

from torchtrack.files import read_json, write_atomic, write_json


def test_write_json_read_json_round_trip(tmp_path):
    data = {"mse": 0.25, "rows": 10, "name": "run", "nested": {"list": [1, 2.5, None]}, "ok": True}
    path = tmp_path / "metrics" / "out.json"  # the parent folder is created
    write_json(path, data)
    assert read_json(path) == data
    assert path.read_text().endswith("}\n")


def test_write_atomic_replaces_file_on_success(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new"
    assert list(tmp_path.iterdir()) == [path]


def test_write_atomic_keeps_old_file_and_no_temp_when_writer_raises(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def half_write(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, half_write)
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_write_atomic_creates_nothing_when_writer_raises(tmp_path):
    def fail(tmp):
        tmp.write_text("half")
        raise OSError("boom")

    with pytest.raises(OSError):
        write_atomic(tmp_path / "out.txt", fail)
    assert list(tmp_path.iterdir()) == []
