"""Wire properties against a real runtime process: whatever bytes a peer
sends, it gets at most one reply, exactly one for every complete frame, and
the same process keeps serving."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_testkit.wire import call, canonical, encode_envelope, exchange, frame, simple_route

from . import runtime_process
from .strategies import envelope_like, frame_stream_outcome, framed_streams, is_valid_envelope

MAX_MESSAGE_SIZE = 65536


@pytest.fixture(scope="module")
def runtime():
    with runtime_process(
        "echo_handler.echo",
        env={"ASYA_MAX_MESSAGE_SIZE": str(MAX_MESSAGE_SIZE), "ASYA_LOG_LEVEL": "DEBUG"},
    ) as process:
        first_pid = process.pid
        yield process
        assert process.pid == first_pid and process.alive(), "the runtime died during the fuzz run"
        assert_still_serving(process)
        assert "unexpected failure" not in process.log_text()


def assert_still_serving(process):
    assert process.alive(), f"runtime exited with {process.process.poll()}:\n{process.log_text()[-3000:]}"
    reply = call(process.socket_path, {"route": simple_route(), "payload": {"alive": True}})
    assert reply["status"] == "ok" and reply["result"]["payload"] == {"alive": True}


@given(body=st.binary(max_size=8192))
def test_arbitrary_bytes_as_a_frame_body_get_exactly_one_reply(runtime, body):
    replies = exchange(runtime.socket_path, frame(body), half_close=False)

    reply = replies.reply()
    assert reply["status"] == "error" and reply["error"] == "processing_error", reply
    assert runtime.alive()


@given(stream=framed_streams(max_body=4096, oversize_floor=MAX_MESSAGE_SIZE + 1))
def test_arbitrary_streams_get_the_reply_their_framing_calls_for(runtime, stream):
    replies = exchange(runtime.socket_path, stream, half_close=True)

    expected, _ = frame_stream_outcome(stream, MAX_MESSAGE_SIZE)
    if expected == "nothing":
        assert replies.is_empty
    elif expected == "connection_error":
        assert replies.reply()["error"] == "connection_error"
    else:
        assert replies.reply()["status"] in ("ok", "error")
    assert runtime.alive()


@given(value=envelope_like)
def test_arbitrary_json_gets_one_reply_that_agrees_with_the_contract(runtime, value):
    reply = exchange(runtime.socket_path, frame(encode_envelope(value)), half_close=False).reply()

    if not is_valid_envelope(value):
        assert reply["error"] == "processing_error"
    elif value["payload"] is None:
        assert reply == {"status": "ok", "result": []}
    elif isinstance(value["payload"], list):
        assert [canonical(out["payload"]) for out in reply["result"]] == [
            canonical(v) for v in value["payload"]
        ]
    else:
        assert canonical(reply["result"]["payload"]) == canonical(value["payload"])
    assert runtime.alive()


def test_the_process_survived_every_example(runtime):
    # Runs after the properties above (pytest keeps file order).
    assert_still_serving(runtime)
