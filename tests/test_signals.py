"""signals.py: inside the block SIGTERM raises Terminated, a KeyboardInterrupt, so Ctrl-C's cleanup runs."""

import os
import signal
import time

import pytest

from torchtrack.signals import Terminated, sigterm_raises_terminated


def test_sigterm_raises_terminated_where_the_program_is_and_finally_blocks_run():
    cleaned_up = []
    with pytest.raises(Terminated):
        with sigterm_raises_terminated():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises before this ends
            finally:
                cleaned_up.append(True)
    assert cleaned_up == [True]
    assert issubclass(Terminated, KeyboardInterrupt)


def test_the_previous_sigterm_handler_is_restored_after_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_raises_terminated():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
