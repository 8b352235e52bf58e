"""tracking/processes.py: a run's owning process, recorded as tags, and whether it still exists."""

import dataclasses
import subprocess
import sys

from torchtrack.tracking.processes import ProcessIdentity


def test_this_process_is_not_gone_and_round_trips_through_tags():
    me = ProcessIdentity.current()
    assert not me.is_gone()
    assert ProcessIdentity.from_tags(me.as_tags() | {"other": "tag"}) == dataclasses.replace(
        me, started=round(me.started, 3)
    )


def test_a_process_that_exited_is_gone():
    child = subprocess.Popen(
        [sys.executable, "-c", "import psutil; print(psutil.Process().create_time())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    started = float(child.communicate()[0])
    assert ProcessIdentity(ProcessIdentity.current().host, child.pid, started).is_gone()


def test_a_reused_pid_is_told_apart_by_its_start_time():
    me = ProcessIdentity.current()
    assert dataclasses.replace(me, started=me.started - 3600).is_gone()


def test_a_process_of_another_host_is_never_called_gone():
    assert not ProcessIdentity("some-other-host", 999_999_999, 0.0).is_gone()


def test_runs_without_the_tags_have_no_identity():
    assert ProcessIdentity.from_tags({"mlflow.user": "x"}) is None
    assert (
        ProcessIdentity.from_tags(
            {"torchtrack.host": "h", "torchtrack.pid": "x", "torchtrack.process_started": "1"}
        )
        is None
    )
