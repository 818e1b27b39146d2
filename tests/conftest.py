import copy

import pytest
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


