"""The store daemon's messages: JSON of bounded size, tables exact, errors by a whitelist of
kinds, and only the calls of calls.CALLS with their arguments' types."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest

from torchtrack.errors import DataError, TrackingStoreError
from torchtrack.tracking.calls import CALLS, bind
from torchtrack.tracking.wire import HEADER, MAX_FRAME, FrameTooLarge, error_from, error_value, receive, send


def test_a_frame_over_the_limit_is_refused_before_its_body_is_read():
    ours, theirs = socket.socketpair()
    theirs.sendall(HEADER.pack(MAX_FRAME + 1) + b"x" * 100)
    with pytest.raises(FrameTooLarge, match="over the"):
        receive(ours)
    assert ours.recv(200) == b"x" * 100  # the body is left unread


def test_a_message_over_the_limit_is_not_sent():
    ours, theirs = socket.socketpair()
    with pytest.raises(FrameTooLarge):
        send(ours, "x" * (MAX_FRAME + 1))
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(1)


def test_a_table_crosses_with_its_dtypes_and_exact_values():
    frame = pd.DataFrame(
        {"a": np.array([0.1, np.nan], np.float64), "b": np.array([1.5, 2.25], np.float32), "c": ["x", None]}
    )
    ours, theirs = socket.socketpair()
    send(ours, {"example": frame, "rows": (1, 2)})
    got = receive(theirs)
    pd.testing.assert_frame_equal(got["example"], frame)
    assert got["rows"] == [1, 2]


def test_errors_cross_as_themselves_only_from_the_whitelist():
    assert isinstance(error_from(error_value(DataError("bad"))), DataError)
    assert isinstance(error_from(error_value(KeyError("k"))), KeyError)
    foreign = error_from(error_value(type("MlflowException", (Exception,), {})("no such run")))
    assert type(foreign) is TrackingStoreError
    assert str(foreign) == "the MLflow store refused a call: MlflowException: no such run"
    assert type(error_from({"kind": "SystemExit", "message": "0"})) is TrackingStoreError
    assert type(error_from({"kind": "os.system", "message": "x"})) is TrackingStoreError


def test_only_the_listed_calls_with_their_types_are_bound():
    assert bind("set_tag", ("r", "k", "v")) == {"run_id": "r", "key": "k", "value": "v"}
    with pytest.raises(TrackingStoreError, match="no call '__init__'"):
        bind("__init__")
    with pytest.raises(TrackingStoreError, match="no argument 'env'"):
        bind("set_tag", kwargs={"run_id": "r", "env": {}})
    with pytest.raises(TrackingStoreError, match="run_id is a int, not str"):
        bind("set_tag", (1, "k", "v"))
    assert "start_system_metrics" in CALLS and "close" not in CALLS


def test_the_daemon_handles_exactly_the_listed_calls():
    """calls.CALLS (what a stage may send) and the daemon's handler table name the same calls."""
    import ast
    from pathlib import Path

    import torchtrack.tracking.backend.daemon as daemon

    tree = ast.parse(Path(daemon.__file__).read_text())
    (handlers,) = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Attribute) and t.attr == "handlers" for t in node.targets)
    ]
    assert {key.value for key in handlers.keys} == set(CALLS)
