"""Reliability suite for the asya runtime (issue 4).

Property-based tests (`test_fuzz_*.py`), security checks (`test_security.py`)
and a fault-injection soak (`soak.py`, run from tests/ as `python -m reliability.soak`, or `make soak`).
What is promised and how it is tested: docs/reliability.md.
"""
