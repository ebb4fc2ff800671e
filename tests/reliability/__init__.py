"""Reliability suite for the asya runtime.

Property-based tests (`test_fuzz_*.py`), security checks (`test_security.py`)
and a fault-injection soak (`soak.py`, run from tests/ as `python -m reliability.soak`, or `make soak`).
What is promised and how it is tested: docs/reliability.md.
"""

import sys
from pathlib import Path

# pytest finds the kit through pytest.ini; `python -m reliability.soak` does not.
KIT_DIR = str(Path(__file__).resolve().parents[1] / "kit")
if KIT_DIR not in sys.path:
    sys.path.insert(0, KIT_DIR)

from asya_testkit.process import RuntimeProcess  # noqa: E402

HANDLERS_DIR = Path(__file__).resolve().parent / "handlers"


def runtime_process(handler, **options):
    """A RuntimeProcess serving one of handlers/, in payload mode, with PATH as its only inherited variable."""
    options.setdefault("mode", "payload")
    options.setdefault("inherit_environment", False)
    return RuntimeProcess(handler, pythonpath=HANDLERS_DIR, **options)
