"""Wire properties against a real runtime process: whatever bytes a peer
sends, it gets at most one reply, exactly one for every complete frame, and
the same process keeps serving. Each property runs twice: on the default
`status` dialect, and as the runtime runs under the asya Go sidecar (`list`
dialect, with a per-message deadline armed)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_testkit.wire import (
    call,
    canonical,
    encode_envelope,
    exchange,
    frame,
    reply_error,
    reply_outputs,
    simple_route,
)

from . import runtime_process
from .strategies import envelope_like, frame_stream_outcome, framed_streams, is_valid_envelope

MAX_MESSAGE_SIZE = 65536

CONFIGURATIONS = {
    "status": {},
    "list-with-deadline": {"ASYA_REPLY_FORMAT": "list", "ASYA_HANDLER_TIMEOUT": "60"},
}
# The code a message that is not a valid envelope gets, per dialect (docs/protocol.md).
PARSING_ERROR = {"status": "processing_error", "list": "msg_parsing_error"}


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def runtime(request):
    env = {"ASYA_MAX_MESSAGE_SIZE": str(MAX_MESSAGE_SIZE), "ASYA_LOG_LEVEL": "DEBUG"}
    env.update(CONFIGURATIONS[request.param])
    with runtime_process("echo_handler.echo", env=env) as process:
        process.dialect = env.get("ASYA_REPLY_FORMAT", "status")
        first_pid = process.pid
        yield process
        assert process.pid == first_pid and process.alive(), "the runtime died during the fuzz run"
        assert_still_serving(process)
        assert "unexpected failure" not in process.log_text()


def error_code(reply):
    error = reply_error(reply)
    return None if error is None else error[0]


def assert_still_serving(process):
    assert process.alive(), f"runtime exited with {process.process.poll()}:\n{process.log_text()[-3000:]}"
    reply = call(process.socket_path, {"route": simple_route(), "payload": {"alive": True}})
    assert error_code(reply) is None, reply
    assert [out["payload"] for out in reply_outputs(reply)] == [{"alive": True}], reply


@given(body=st.binary(max_size=8192))
def test_arbitrary_bytes_as_a_frame_body_get_exactly_one_reply(runtime, body):
    replies = exchange(runtime.socket_path, frame(body), half_close=False)

    reply = replies.reply()
    assert error_code(reply) == PARSING_ERROR[runtime.dialect], reply
    assert runtime.alive()


@given(stream=framed_streams(max_body=4096, oversize_floor=MAX_MESSAGE_SIZE + 1))
def test_arbitrary_streams_get_the_reply_their_framing_calls_for(runtime, stream):
    replies = exchange(runtime.socket_path, stream, half_close=True)

    expected, _ = frame_stream_outcome(stream, MAX_MESSAGE_SIZE)
    if expected == "nothing":
        assert replies.is_empty
    elif expected == "connection_error":
        assert error_code(replies.reply()) == "connection_error"
    else:
        assert error_code(replies.reply()) in (None, PARSING_ERROR[runtime.dialect])
    assert runtime.alive()


@given(value=envelope_like)
def test_arbitrary_json_gets_one_reply_that_agrees_with_the_contract(runtime, value):
    reply = exchange(runtime.socket_path, frame(encode_envelope(value)), half_close=False).reply()

    if not is_valid_envelope(value):
        assert error_code(reply) == PARSING_ERROR[runtime.dialect], reply
        return
    sent = value["payload"]
    expected_payloads = [] if sent is None else sent if isinstance(sent, list) else [sent]
    assert [canonical(out["payload"]) for out in reply_outputs(reply)] == [canonical(v) for v in expected_payloads]
    if runtime.dialect == "list":
        # The Go sidecar routes to actors[current]: the runtime moves it on.
        assert all(out["route"]["current"] == value["route"]["current"] + 1 for out in reply), reply
    assert runtime.alive()


def test_the_process_survived_every_example(runtime):
    # Runs after the properties above (pytest keeps file order within a configuration).
    assert_still_serving(runtime)
