"""Black-box, every interpreter: class, async and generator handlers, both dialects, both modes."""

import pytest

from asya_testkit.process import run_to_exit
from asya_testkit.wire import call, envelope_for, reply_outputs
from conftest import HANDLERS_DIR

LIST = {"ASYA_REPLY_FORMAT": "list"}
ERROR_PREFIX = "asya-runtime: error: "


def payloads(reply):
    """The output payloads of a reply in either dialect."""
    return [output["payload"] for output in reply_outputs(reply)]


# -- class handlers ------------------------------------------------------------


@pytest.mark.parametrize("dialect", [{}, LIST], ids=["status", "list"])
def test_class_is_created_once_and_its_method_serves_every_message(runtime_factory, dialect):
    runtime = runtime_factory("model.Model.predict", "class_handler", dict(dialect, MODEL_LABEL="dog"))

    first = payloads(call(runtime.socket_path, envelope_for({"n": 1})))
    second = payloads(call(runtime.socket_path, envelope_for({"n": 2})))

    assert first == [{"label": "dog", "calls": 1, "instances": 1, "input": {"n": 1}}]
    assert second == [{"label": "dog", "calls": 2, "instances": 1, "input": {"n": 2}}]


def test_class_method_in_envelope_mode(runtime_factory):
    runtime = runtime_factory("model.Model.route", "class_handler", {"ASYA_HANDLER_MODE": "envelope"})

    reply = call(runtime.socket_path, envelope_for({"n": 1}))

    assert reply["result"]["payload"] == {"routed_by": "Model", "input": {"n": 1}}


def test_async_method_of_a_class(runtime_factory):
    runtime = runtime_factory("model.Model.predict_async", "class_handler", LIST)

    assert payloads(call(runtime.socket_path, envelope_for({}))) == [{"label": "cat", "async": True}]


def test_close_is_called_once_after_the_last_reply(runtime_factory, tmp_path):
    marker = tmp_path / "closed"
    runtime = runtime_factory("model.Model.predict", "class_handler", {"MODEL_CLOSE_MARKER": str(marker)})
    call(runtime.socket_path, envelope_for({}))

    code = runtime.stop()

    assert code == 0
    assert marker.read_text() == "closed\n"


def test_a_failing_close_is_logged_and_the_exit_code_stays_0(runtime_factory):
    runtime = runtime_factory("model.FailsToClose.predict", "class_handler")
    call(runtime.socket_path, envelope_for({}))

    assert runtime.stop() == 0
    assert "cannot release the GPU" in runtime.log_text()


def _start_error(python, socket_dir, handler):
    env = {"ASYA_HANDLER": handler, "ASYA_SOCKET_DIR": str(socket_dir), "PYTHONPATH": str(HANDLERS_DIR / "class_handler")}
    code, _, stderr = run_to_exit(python, env)
    return code, stderr


@pytest.mark.parametrize(
    "handler, expected",
    [
        ("model.NeedsArguments.predict", ["'NeedsArguments'", "requires weights_path", "defaults"]),
        ("model.Model.predcit", ["has no attribute 'predcit'", "class 'Model'", "predict"]),
        ("model.NotCallableAttribute.threshold", ["'threshold'", "float, not callable"]),
        ("model.Missing.predict", ["cannot import module 'model.Missing'", "PYTHONPATH"]),
    ],
)
def test_class_mistakes_exit_3_before_the_socket_exists(python, socket_dir, handler, expected):
    code, stderr = _start_error(python, socket_dir, handler)

    first_line = stderr.splitlines()[0]
    assert code == 3
    assert first_line.startswith(ERROR_PREFIX)
    for text in expected:
        assert text in first_line
    assert not (socket_dir / "asya-runtime.sock").exists()
    assert not (socket_dir / "runtime-ready").exists()


def test_a_class_without_a_method_exits_3_naming_its_public_methods(python, socket_dir):
    code, stderr = _start_error(python, socket_dir, "model.Model")

    first_line = stderr.splitlines()[0]
    assert code == 3
    assert first_line.startswith(ERROR_PREFIX + "ASYA_HANDLER='model.Model' names a class, not a function")
    assert "ASYA_HANDLER=model.Model.close" in first_line or "ASYA_HANDLER=model.Model.predict" in first_line
    assert "its public methods: close, predict, predict_async, route" in first_line
    assert not (socket_dir / "asya-runtime.sock").exists()


@pytest.mark.parametrize("method, starts", [("predcit", False), ("predict", True)])
def test_a_missing_method_is_found_before_init_loads_the_model(
    python, socket_dir, tmp_path, runtime_factory, method, starts
):
    marker = tmp_path / "init-ran"
    handler = f"model.LeavesInitMarker.{method}"
    if starts:  # the control: with the right name, __init__ runs and leaves its marker
        runtime_factory(handler, "class_handler", {"MODEL_INIT_MARKER": str(marker)})
        assert marker.read_text() == "init\n"
        return
    env = {
        "ASYA_HANDLER": handler,
        "ASYA_SOCKET_DIR": str(socket_dir),
        "PYTHONPATH": str(HANDLERS_DIR / "class_handler"),
        "MODEL_INIT_MARKER": str(marker),
    }

    code, _, stderr = run_to_exit(python, env)

    assert code == 3
    assert "has no attribute 'predcit'" in stderr.splitlines()[0] and "predict" in stderr.splitlines()[0]
    assert not marker.exists(), "__init__ did not run"


def test_an_exception_in_init_exits_3_with_the_users_traceback(python, socket_dir):
    code, stderr = _start_error(python, socket_dir, "model.BrokenInit.predict")

    lines = stderr.splitlines()
    assert code == 3
    assert lines[0] == ERROR_PREFIX + "creating BrokenInit() for ASYA_HANDLER='model.BrokenInit.predict' failed: " \
        "FileNotFoundError: weights.bin not found"
    assert any("model.py" in line and "__init__" in line for line in lines[1:])
    assert not any("asya_runtime.py" in line for line in lines[1:]), "the runtime's own frames are left out"


# -- async and generator handlers ------------------------------------------------


def test_async_handler_runs_on_one_event_loop_for_every_message(runtime_factory):
    runtime = runtime_factory("streaming.process", "async_handlers")

    replies = [payloads(call(runtime.socket_path, envelope_for({"n": n}))) for n in (1, 2, 3)]

    assert replies == [[{"doubled": 2, "loops_seen": 1}], [{"doubled": 4, "loops_seen": 1}],
                       [{"doubled": 6, "loops_seen": 1}]]


def test_a_plain_function_returning_a_coroutine_is_awaited(runtime_factory):
    runtime = runtime_factory("streaming.returns_coroutine", "async_handlers", LIST)

    assert payloads(call(runtime.socket_path, envelope_for({"n": 5}))) == [{"doubled": 10, "loops_seen": 1}]


def test_async_exception_is_a_processing_error_and_serving_goes_on(runtime_factory):
    runtime = runtime_factory("streaming.fails", "async_handlers")

    reply = call(runtime.socket_path, envelope_for({"n": 7}))

    assert reply["status"] == "error" and reply["type"] == "ValueError"
    assert reply["message"] == "ValueError: async handler failed: 7"
    assert "streaming.py" in reply["traceback"]
    assert call(runtime.socket_path, envelope_for({"n": 8}))["message"].endswith(": 8")


@pytest.mark.parametrize("dialect", [{}, LIST], ids=["status", "list"])
@pytest.mark.parametrize(
    "handler, payload, expected",
    [
        ("streaming.split", {"text": "a b c"}, [{"word": "a"}, {"word": "b"}, {"word": "c"}]),
        ("streaming.split", {"text": ""}, []),
        ("streaming.stream", {"n": 3}, [{"index": 0}, {"index": 1}, {"index": 2}]),
    ],
)
def test_generators_fan_out_one_message_per_item(runtime_factory, dialect, handler, payload, expected):
    runtime = runtime_factory(handler, "async_handlers", dialect)

    assert payloads(call(runtime.socket_path, envelope_for(payload))) == expected


@pytest.mark.parametrize("handler", ["streaming.split_then_fail", "streaming.stream_then_fail"])
def test_a_generator_failing_half_way_sends_no_partial_output(runtime_factory, handler):
    runtime = runtime_factory(handler, "async_handlers", LIST)

    reply = call(runtime.socket_path, envelope_for({}))

    assert len(reply) == 1 and set(reply[0]) == {"error", "details"}, "an error alone, no item of the stream"
    assert reply[0]["error"] == "processing_error"
    assert reply[0]["details"]["type"] == "RuntimeError"


def test_envelope_mode_generator(runtime_factory):
    runtime = runtime_factory("streaming.envelope_stream", "async_handlers", dict(LIST, ASYA_HANDLER_MODE="envelope"))

    reply = call(runtime.socket_path, envelope_for({}))

    assert [output["payload"] for output in reply] == [{"part": 0}, {"part": 1}]
    assert [output["route"]["current"] for output in reply] == [1, 1]
