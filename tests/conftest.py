import copy
import os

import pytest
import torch
from support import TINY


def pytest_configure(config):
    """Under pytest-xdist every worker, and every process it starts, runs one torch thread:
    two workers then share the two cores without oversubscribing them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture
def tiny():
    """A fresh copy of the tiny recipe dict."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session", autouse=True)
def _metrics_cache(tmp_path_factory):
    """One classifier cache per test session, shared by its xdist workers (subprocess runs
    inherit it): each data set's metric classifier is trained once — by the first worker
    that needs it while the other waits on its lock — and nothing is written to the user's
    ~/.cache."""
    import os

    old = os.environ.get("EBM_CACHE_DIR")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' temporary folders share the session's
        shared = tmp_path_factory.getbasetemp().parent / "ebm-cache"
        shared.mkdir(exist_ok=True)
    else:
        shared = tmp_path_factory.mktemp("ebm-cache")
    os.environ["EBM_CACHE_DIR"] = str(shared)
    yield
    if old is None:
        os.environ.pop("EBM_CACHE_DIR", None)
    else:
        os.environ["EBM_CACHE_DIR"] = old


