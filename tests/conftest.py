import copy

import pytest
import torch
from support import TINY


@pytest.fixture
def tiny():
    """A fresh copy of the tiny recipe dict."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session", autouse=True)
def _metrics_cache(tmp_path_factory):
    """One classifier cache per test session (subprocess runs inherit it): each data set's
    metric classifier is trained once, and nothing is written to the user's ~/.cache."""
    import os

    old = os.environ.get("EBM_CACHE_DIR")
    os.environ["EBM_CACHE_DIR"] = str(tmp_path_factory.mktemp("ebm-cache"))
    yield
    if old is None:
        os.environ.pop("EBM_CACHE_DIR", None)
    else:
        os.environ["EBM_CACHE_DIR"] = old


@pytest.fixture
def one_thread():
    """torch on one thread during the test, restored after (a thread count left changed
    would change later in-process results against subprocess runs in the last digit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
