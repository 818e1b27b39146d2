import copy

import pytest

from support import TINY


@pytest.fixture
def tiny():
    """A fresh copy of the tiny recipe dict."""
    return copy.deepcopy(TINY)
