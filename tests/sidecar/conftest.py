import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sidecar_testkit import RUNTIME, Harness  # noqa: E402


@pytest.fixture
def harness():
    if not os.path.exists(RUNTIME):
        pytest.skip("runtime/asya_runtime.py is missing; these tests drive the real runtime")
    h = Harness()
    try:
        yield h
    finally:
        h.close()
