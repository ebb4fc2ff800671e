import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sidecar_testkit import RUNTIME, Harness  # noqa: E402

from asya_testkit.interpreters import OLDEST_MINOR, find_interpreter  # noqa: E402


@pytest.fixture
def harness():
    if not os.path.exists(RUNTIME):
        pytest.skip("runtime/asya_runtime.py is missing; these tests drive the real runtime")
    h = Harness()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="session")
def python37():
    """The oldest supported CPython (the fake sidecar must run on it); missing: a skip, or a failure in CI."""
    interpreter, why_missing = find_interpreter(OLDEST_MINOR)
    if interpreter is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why_missing}")
        pytest.skip(why_missing)
    return interpreter.path
