"""Fixtures for every test of the repository (tests/ and each plugin's tests/)."""

import signal

import pytest
import torch


@pytest.fixture
def within_seconds():
    """Fail the test, rather than hang the suite, if it blocks for 10 s (as opening a FIFO
    for reading does until a writer comes)."""
    def expire(_signum, _frame):
        raise TimeoutError("blocked for 10 s: a FIFO was opened for reading")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def one_thread():
    """torch on one thread during the test, restored after (a thread count left changed
    would change later in-process results against subprocess runs in the last digit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
