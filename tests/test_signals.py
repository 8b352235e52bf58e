"""signals.py: SIGINT and SIGTERM raise where the program is (SIGTERM as Terminated, a
KeyboardInterrupt, so Ctrl-C's cleanup runs), except that a first signal inside an
`uninterrupted()` block waits for the block to end."""

import os
import signal
import time

import pytest

from torchtrack.signals import Terminated, stop_signals_raise, uninterrupted


def send(signum: int) -> None:
    """Deliver `signum` to this process and give the handler time to run."""
    os.kill(os.getpid(), signum)
    time.sleep(0.05)


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)]
)
def test_a_stop_signal_raises_where_the_program_is_and_finally_blocks_run(signum, raised):
    cleaned_up = []
    with pytest.raises(raised):
        with stop_signals_raise():
            try:
                send(signum)
                time.sleep(5)  # the handler raises before this ends
            finally:
                cleaned_up.append(True)
    assert cleaned_up == [True]
    assert issubclass(Terminated, KeyboardInterrupt)


def test_inside_an_uninterrupted_block_a_first_signal_waits_for_the_block_to_end():
    finished = []
    with pytest.raises(Terminated):
        with stop_signals_raise():
            with uninterrupted():
                with uninterrupted():  # nested: the outermost block's end counts
                    send(signal.SIGTERM)
                finished.append("inner")
                finished.append("outer")
            finished.append("after")  # never reached: raised as the block ends
    assert finished == ["inner", "outer"]


def test_a_second_signal_inside_an_uninterrupted_block_raises_at_once():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with stop_signals_raise():
            with uninterrupted():
                send(signal.SIGINT)
                finished.append("first waited")
                send(signal.SIGINT)
                finished.append("second waited")
    assert finished == ["first waited"]


def test_the_previous_handlers_are_restored_after_the_block():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with stop_signals_raise():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
