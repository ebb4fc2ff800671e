"""Black-box, every interpreter: ASYA_HANDLER_TIMEOUT, the per-message deadline.

A handler that overruns is interrupted and answered processing_error with type
HandlerTimeout, and the runtime goes on serving. A handler that cannot be
interrupted (it swallows even HandlerTimeout, or is stuck where no signal
reaches it) is answered by the runtime after the grace period, which then
exits with code 4 so that Kubernetes restarts the container.
"""

import pytest

from asya_testkit.wire import call, envelope_for, reply_error

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
