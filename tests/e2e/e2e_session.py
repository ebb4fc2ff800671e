"""Which backend this pytest session uses, and whether it can run here.

conftest.py records the --backend option at configure time, before the test
modules are imported, so that test_scenarios.py can skip as a whole, with one
line, when the backend's tools are missing.
"""

import contextlib
import os
import sys

from backends.base import BackendUnavailable

_state = {"backend": "podman", "checked": False, "reason": None}


def set_backend(name):
    _state.update(backend=name, checked=False, reason=None)


def backend_name():
    return _state["backend"]


def backend_class(name=None):
    from backends.podman import PodmanBackend
    return PodmanBackend


def failing_instead_of_skipping():
    """Under CI a missing podman must fail the run: CI exists to run the podman e2e."""
    return backend_name() == "podman" and bool(os.environ.get("CI"))


def unavailable_reason():
    """One line saying what the backend lacks here, or None (checked once)."""
    if not _state["checked"]:
        try:
            backend_class().check_available()
        except BackendUnavailable as exc:
            _state["reason"] = f"{backend_name()} e2e cannot run: {exc}"
        _state["checked"] = True
    return _state["reason"]


@contextlib.contextmanager
def deployed(instance, releases):
    """instance with releases deployed; removed at the end, and when deploying
    fails, the pods' report is written before the error propagates."""
    try:
        instance.deploy(releases)
    except BaseException:
        report = instance.failure_report()
        instance.cleanup()
        if report:
            sys.stderr.write(f"\n{report}\n")
        raise
    try:
        yield instance
    finally:
        instance.cleanup()
