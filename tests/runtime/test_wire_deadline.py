"""Black-box, every interpreter: ASYA_HANDLER_TIMEOUT, the per-message deadline.

A handler that overruns is interrupted and answered processing_error with type
HandlerTimeout, and the runtime goes on serving. A handler that cannot be
interrupted (it swallows even HandlerTimeout, or is stuck where no signal
reaches it) is answered by the runtime after the grace period, which then
exits with code 4 so that Kubernetes restarts the container.
"""

import signal
import subprocess
import time

import pytest

from asya_testkit.wire import call, connect, encode_envelope, envelope_for, frame, read_until_eof, reply_error

DEADLINE = {"ASYA_HANDLER_TIMEOUT": "0.5"}
LIST = {"ASYA_REPLY_FORMAT": "list"}
EXIT_HANDLER_STUCK = 4


def error_of(reply):
    """(code, type, message) of an error reply in either dialect."""
    error = reply_error(reply)
    assert error is not None, reply
    code, details = error
    return code, details["type"], details["message"]


@pytest.mark.parametrize(
    "handler, dialect",
    [
        ("hangs.sleeps", {}),
        ("hangs.sleeps", LIST),
        ("hangs.spins", {}),
        ("hangs.swallows_exceptions", LIST),
        ("hangs.sleeps_async", {}),
    ],
)
def test_an_overrun_is_a_handler_timeout_and_serving_goes_on(runtime_factory, dialect, handler):
    runtime = runtime_factory(handler, "hangs", dict(DEADLINE, **dialect))

    code, error_type, message = error_of(call(runtime.socket_path, envelope_for({})))

    assert (code, error_type) == ("processing_error", "HandlerTimeout")
    assert message == "HandlerTimeout: the handler ran longer than ASYA_HANDLER_TIMEOUT=0.5 s"
    assert runtime.alive()
    if handler in ("hangs.sleeps", "hangs.sleeps_async"):
        quick = call(runtime.socket_path, envelope_for({"quick": True}))
        outputs = quick if isinstance(quick, list) else [quick["result"]]
        assert outputs[0]["payload"] == {"quick": True}


def test_the_timeout_traceback_shows_where_the_handler_was(runtime_factory):
    runtime = runtime_factory("hangs.spins", "hangs", DEADLINE)

    reply = call(runtime.socket_path, envelope_for({}))

    assert "hangs.py" in reply["traceback"] and "in spins" in reply["traceback"]


def test_a_quick_handler_under_a_deadline_is_unaffected(runtime_factory):
    runtime = runtime_factory("echo.echo", "echo", DEADLINE)

    for number in range(50):
        assert call(runtime.socket_path, envelope_for(number))["result"]["payload"] == number


# (handler, dialect, what the reply says of it): only a handler the signal never
# reached is said to be stuck outside Python code.
CANNOT_BE_INTERRUPTED = [
    ("hangs.swallows_everything", {}, "HandlerTimeout was raised in it at the deadline, but it went on running Python code"),
    ("hangs.uninterruptible", LIST, "could not be interrupted within 2 s more (stuck outside Python code"),
]


@pytest.mark.parametrize("handler, dialect, why", CANNOT_BE_INTERRUPTED)
def test_a_handler_that_cannot_be_interrupted_is_answered_then_the_runtime_exits(runtime_factory, dialect, handler, why):
    runtime = runtime_factory(handler, "hangs", dict(DEADLINE, **dialect))

    code, error_type, message = error_of(call(runtime.socket_path, envelope_for({}, id="stuck-1")))

    assert (code, error_type) == ("processing_error", "HandlerTimeout")
    assert why in message
    assert ("outside Python code" in message) == (handler == "hangs.uninterruptible")
    assert runtime.wait_exit() == EXIT_HANDLER_STUCK
    assert not runtime.socket_path.exists() and not runtime.ready_file.exists(), "readiness is withdrawn"
    assert "[id=stuck-1] processing_error" in runtime.log_text()


@pytest.mark.parametrize(
    "value, says",
    [
        ("-1", "must be 0 or more: a number of seconds, 0 turns the deadline off"),
        ("soon", "is not a number of seconds"),
        ("nan", "is not a finite number"),
        ("inf", "is not a finite number"),
    ],
)
def test_a_bad_timeout_is_a_startup_error_naming_the_variable(python, socket_dir, value, says):
    from asya_testkit.process import run_to_exit

    code, _, stderr = run_to_exit(
        python, {"ASYA_HANDLER": "echo.echo", "ASYA_SOCKET_DIR": str(socket_dir), "ASYA_HANDLER_TIMEOUT": value}
    )

    assert code == 2
    assert stderr.splitlines()[0].startswith(f"asya-runtime: error: ASYA_HANDLER_TIMEOUT={value!r} {says}")


def _unshare_pid_namespace_works():
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize("as_pid_1", [False, True], ids=["child", "pid-1"])
def test_a_call_stuck_in_c_holding_the_gil_ends_the_process(runtime_factory, python, tmp_path, as_pid_1):
    """No Python thread can run; the monitor process ends the runtime, every thread's stack in the log.

    As PID 1 of its PID namespace (a container's main process) a signal's
    default action would be ignored: the exit must come from a handler.
    """
    if as_pid_1:
        if not _unshare_pid_namespace_works():
            pytest.skip("unshare --pid --fork is not permitted here (needs root or user namespaces)")
        # The interpreter started as PID 1 of a new PID namespace.
        wrapper = tmp_path / "python-as-pid-1"
        wrapper.write_text(f'#!/bin/sh\nexec unshare --pid --fork --kill-child {python.path} "$@"\n')
        wrapper.chmod(0o755)
        python = wrapper
    runtime = runtime_factory("hangs.holds_gil", "hangs", DEADLINE, python=python)

    with connect(runtime.socket_path) as client:
        client.sendall(frame(encode_envelope(envelope_for({}, id="holds-gil"))))
        sent = time.monotonic()
        code = runtime.wait_exit(timeout=90)
        took = time.monotonic() - sent
        stream = read_until_eof(client)

    log = runtime.log_text()
    assert code == int(signal.SIGUSR1), log  # libc's _exit(signal number), from the last resort
    assert took <= 0.5 + 2 + 5, f"exited {took:.1f} s after the message (deadline 0.5 s, grace 2 s)"
    assert "ran no Python code" in log and "a call stuck in C code that holds the GIL" in log
    assert "in holds_gil" in log, "the handler's stack"
    assert log.count("Thread 0x") + log.count("Current thread 0x") >= 2, "every thread's stack"
    assert stream == b"", "no partial reply: the sidecar sees the connection close"
