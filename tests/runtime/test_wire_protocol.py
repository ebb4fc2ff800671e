"""Black-box: the runtime as a process on every interpreter, spoken to over its Unix socket.

Every test that provokes an error sends a good message afterwards: the
runtime must keep serving whatever a message, a handler or a client does.
"""

import json
import socket
import struct

import pytest

from asya_testkit.paths import PROTOCOL_DOC
from asya_testkit.wait import wait_for
from asya_testkit.wire import (
    call,
    connect,
    encode_envelope,
    envelope_for,
    exchange,
    frame,
    read_reply,
    read_until_eof,
)

ROUTE = {"actors": ["clean", "score", "store"], "current": 1}


def assert_still_serving(socket_path):
    reply = call(socket_path, envelope_for({"still": "serving"}))
    assert reply["status"] == "ok", reply
    assert reply["result"]["payload"] == {"still": "serving"}


def user_frames(traceback_text):
    return [line.strip() for line in traceback_text.splitlines() if line.strip().startswith("File ")]


def test_payload_mode_reply_keeps_route_headers_and_id(shared_runtime):
    runtime = shared_runtime("lowercase.process", "lowercase")

    reply = call(
        runtime.socket_path,
        {"id": "msg-1", "route": ROUTE, "headers": {"trace": "t-1"}, "payload": {"text": "HeLLo"}},
    )

    assert reply == {
        "status": "ok",
        "result": {"payload": {"text": "hello"}, "route": ROUTE, "headers": {"trace": "t-1"}, "id": "msg-1"},
    }


def test_reply_bytes_match_the_documented_example(shared_runtime):
    # The worked example of docs/protocol.md, byte for byte.
    runtime = shared_runtime("lowercase.process", "lowercase")
    request = (
        '{"id":"msg-1","route":{"actors":["clean","score"],"current":0},'
        '"headers":{"trace":"t-9"},"payload":{"text":"Héllo"}}'
    ).encode()
    expected_body = (
        '{"status":"ok","result":{"payload":{"text":"héllo"},"route":{"actors":["clean","score"],"current":0},'
        '"headers":{"trace":"t-9"},"id":"msg-1"}}'
    ).encode()
    assert len(request) == 117 and len(expected_body) == 142

    documented = PROTOCOL_DOC.read_text("utf-8")
    assert request.decode() in documented.splitlines(), "the request example of docs/protocol.md changed"
    assert expected_body.decode() in documented.splitlines(), "the reply example of docs/protocol.md changed"
    assert "`00 00 00 8e`" in documented

    with connect(runtime.socket_path) as client:
        client.sendall(b"\x00\x00\x00\x75" + request)
        raw_reply = read_until_eof(client)

    assert raw_reply == b"\x00\x00\x00\x8e" + expected_body


def test_an_ascii_request_still_gets_non_ascii_text_as_raw_utf8(shared_runtime):
    # The runtime encodes the reply to a plain-ASCII request on the ASCII path
    # first; whatever the handler adds must still go out as raw UTF-8.
    runtime = shared_runtime("greet.process", "greet")
    request = b'{"route":{"actors":["a"],"current":0},"payload":{"name":"Ana"}}'

    with connect(runtime.socket_path) as client:
        client.sendall(len(request).to_bytes(4, "big") + request)
        raw_reply = read_until_eof(client)

    expected_body = (
        '{"status":"ok","result":{"payload":{"greeting":"grüß dich, Ana 👋","tab":"a\\tb","del":"\x7f"},'
        '"route":{"actors":["a"],"current":0},"headers":{}}}'
    ).encode()
    assert raw_reply == len(expected_body).to_bytes(4, "big") + expected_body


@pytest.mark.parametrize("size", [100, 300 * 1024])
def test_a_plain_ascii_payload_comes_back_byte_for_byte(shared_runtime, size):
    runtime = shared_runtime("greet.echo", "greet")
    blob = ("QUJDRA+/" * (size // 8 + 1))[:size]
    request = (
        '{"id":"b","route":{"actors":["a"],"current":0},"headers":{},"payload":"' + blob + '"}'
    ).encode()

    with connect(runtime.socket_path) as client:
        client.sendall(len(request).to_bytes(4, "big") + request)
        raw_reply = read_until_eof(client)

    expected_body = (
        '{"status":"ok","result":{"payload":"'
        + blob
        + '","route":{"actors":["a"],"current":0},"headers":{},"id":"b"}}'
    ).encode()
    assert raw_reply == len(expected_body).to_bytes(4, "big") + expected_body


def test_headers_default_to_an_empty_object(shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")

    reply = call(runtime.socket_path, {"route": ROUTE, "payload": {"x": 1}})

    assert reply["result"] == {"payload": {"x": 1}, "route": ROUTE, "headers": {}}


def test_fan_out_returns_one_envelope_per_item(runtime_factory):
    runtime = runtime_factory("fan_out.split_sentences", "fan_out")

    reply = call(runtime.socket_path, {"id": "m", "route": ROUTE, "payload": {"text": "One. Two. Three"}})

    assert reply["status"] == "ok"
    assert [item["payload"] for item in reply["result"]] == [
        {"sentence": "One"},
        {"sentence": "Two"},
        {"sentence": "Three"},
    ]
    assert all(item["route"] == ROUTE and item["id"] == "m" for item in reply["result"])


def test_none_result_forwards_nothing(runtime_factory):
    runtime = runtime_factory("returns_none.discard", "returns_none")

    assert call(runtime.socket_path, envelope_for({"x": 1})) == {"status": "ok", "result": []}


def test_metadata_reaches_the_handler_and_is_stripped_from_its_result(runtime_factory):
    runtime = runtime_factory(
        "metadata_echo.echo_with_metadata", "metadata_echo", env={"ASYA_INCLUDE_METADATA": "YES"}
    )

    reply = call(runtime.socket_path, {"id": "m", "route": ROUTE, "payload": {"text": "hi"}})

    assert reply["result"]["payload"] == {"text": "hi"}


def test_envelope_mode_handler_adds_a_step(runtime_factory):
    runtime = runtime_factory(
        "envelope_router.add_translation_step", "envelope_router", env={"ASYA_HANDLER_MODE": "envelope"}
    )

    reply = call(runtime.socket_path, {"id": "m", "route": ROUTE, "payload": {"language": "es"}})

    assert reply["status"] == "ok"
    assert reply["result"]["route"] == {"actors": ["clean", "score", "translate", "store"], "current": 1}
    assert reply["result"]["headers"] == {}
    assert reply["result"]["payload"] == {"language": "es"}


@pytest.mark.parametrize(
    "function, rule, output_route",
    [
        (
            "advance_current",
            "route.current must stay 1 (the sidecar advances it), got 2",
            {"actors": ["clean", "score", "store"], "current": 2},
        ),
        (
            "rename_current_actor",
            "route.actors[0..1] (processed steps and the current actor) must stay unchanged",
            {"actors": ["clean", "impostor", "store"], "current": 1},
        ),
    ],
)
def test_route_violation_names_the_rule_and_shows_both_routes(runtime_factory, function, rule, output_route):
    runtime = runtime_factory(
        f"envelope_router.{function}", "envelope_router", env={"ASYA_HANDLER_MODE": "envelope"}
    )

    reply = call(runtime.socket_path, {"route": ROUTE, "payload": 1})

    assert reply["status"] == "error" and reply["error"] == "processing_error"
    assert reply["message"] == (
        f"route rule violated: {rule}; input route {json.dumps(ROUTE)}, output route {json.dumps(output_route)}"
    )


def test_handler_exception_is_reported_with_user_frames_and_serving_goes_on(runtime_factory):
    runtime = runtime_factory("raises.score", "raises")

    reply = call(runtime.socket_path, {"id": "m-1", "route": ROUTE, "payload": {"score": "high"}})

    assert reply["status"] == "error"
    assert reply["error"] == "processing_error"
    assert reply["type"] == "ValueError"
    assert reply["message"] == "ValueError: could not convert string to float: 'high'"
    frames = user_frames(reply["traceback"])
    assert len(frames) == 2, reply["traceback"]
    assert "raises.py" in frames[0] and frames[0].endswith("in score")
    assert frames[1].endswith("in _parse_score")
    assert "asya_runtime" not in reply["traceback"]

    reply = call(runtime.socket_path, {"route": ROUTE, "payload": {"score": "0.5"}})
    assert reply["result"]["payload"] == {"score": 0.5}


def test_system_exit_in_the_handler_does_not_stop_the_runtime(runtime_factory):
    runtime = runtime_factory("raises.exit_process", "raises")

    for _ in range(2):
        reply = call(runtime.socket_path, envelope_for(1))
        assert reply["error"] == "processing_error"
        assert reply["type"] == "SystemExit"
        assert reply["message"] == "SystemExit: 3"
    assert runtime.process.poll() is None


@pytest.mark.parametrize("kind", ["object", "set", "nan", "infinity", "negative_infinity"])
def test_result_that_is_not_json_is_a_processing_error(shared_runtime, kind):
    runtime = shared_runtime("bad_results.respond", "bad_results")

    reply = call(runtime.socket_path, envelope_for({"kind": kind}))

    assert reply["error"] == "processing_error"
    assert reply["message"].startswith("handler result is not JSON-serialisable")
    assert "asya_runtime.py" not in reply["traceback"], reply["traceback"]
    assert call(runtime.socket_path, envelope_for({"kind": "fine"}))["result"]["payload"] == {"fine": True}


def test_lone_surrogate_in_a_result_still_arrives_as_valid_json(shared_runtime):
    runtime = shared_runtime("bad_results.respond", "bad_results")

    reply = call(runtime.socket_path, envelope_for({"kind": "lone_surrogate"}))

    assert reply["status"] == "ok"
    assert reply["result"]["payload"] == {"text": "broken \ud800 text"}


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"payload": "caf\xe9"}', "message is not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "message is not valid JSON"),
        (b'{"payload": 1', "message is not valid JSON"),
        (b"", "message is not valid JSON"),
        (b'{"route": {"actors": ["a"], "current": 0}, "payload": NaN}', "message is not valid JSON"),
        (b'{"route": {"actors": ["a"], "current": 0}, "payload": -Infinity}', "message is not valid JSON"),
        (b'["payload"]', "envelope must be a JSON object, got array"),
        (b'"payload"', "envelope must be a JSON object, got string"),
        (b"null", "envelope must be a JSON object, got null"),
        (b'{"route": {"actors": ["a"], "current": true}, "payload": 1}', "route.current must be an integer"),
        (
            b'{"route": {"actors": ["a"], "current": 0}, "headers": [], "payload": 1}',
            "headers must be an object",
        ),
        (b'{"route": {"actors": ["a"], "current": 0}}', "envelope has no 'payload' field"),
    ],
    ids=[
        "invalid-utf8",
        "utf8-bom",
        "truncated-json",
        "empty-body",
        "NaN",
        "-Infinity",
        "array",
        "string",
        "null",
        "bool-current",
        "headers-array",
        "no-payload",
    ],
)
def test_unusable_request_is_a_processing_error(shared_runtime, body, message):
    runtime = shared_runtime("echo.echo", "echo")

    reply = call(runtime.socket_path, body)

    assert reply["status"] == "error"
    assert reply["error"] == "processing_error"
    assert reply["type"] == "ProcessingError"
    assert reply["message"].startswith(message), reply["message"]
    assert user_frames(reply["traceback"]) == [], reply["traceback"]
    assert_still_serving(runtime.socket_path)


def test_oversized_length_is_refused_without_the_body_being_sent(shared_runtime):
    runtime = shared_runtime("echo.echo", "echo", env={"ASYA_MAX_MESSAGE_SIZE": "1024"})

    with connect(runtime.socket_path) as client:
        client.sendall(struct.pack(">I", 1025))  # the body is never sent
        reply = json.loads(read_reply(client).decode("utf-8"))

    assert reply["status"] == "error"
    assert reply["error"] == "connection_error"
    assert "1025" in reply["message"] and "ASYA_MAX_MESSAGE_SIZE=1024" in reply["message"]
    assert_still_serving(runtime.socket_path)


HTTP_REQUESTS = [
    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b'POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}',
]


@pytest.mark.parametrize("request_bytes", HTTP_REQUESTS, ids=["GET", "POST"])
@pytest.mark.parametrize("max_size", [None, "2147483648"], ids=["default-limit", "2GiB-limit"])
def test_an_http_request_is_told_what_the_socket_speaks(shared_runtime, request_bytes, max_size):
    # Even with a limit above the "length" its first 4 letters make (GET = 1.2 GB).
    runtime = shared_runtime("echo.echo", "echo", env={"ASYA_MAX_MESSAGE_SIZE": max_size} if max_size else None)

    with connect(runtime.socket_path) as client:
        client.sendall(request_bytes)
        reply = json.loads(read_reply(client).decode("utf-8"))

    request_line = request_bytes.split(b"\r\n")[0].decode()
    assert (reply["status"], reply["error"]) == ("error", "connection_error")
    assert f"HTTP request ({request_line!r})" in reply["message"]
    assert "4-byte big-endian length-prefixed JSON frames, not HTTP" in reply["message"]
    assert "docs/protocol.md" in reply["message"]
    wait_for(
        lambda: any("not HTTP" in line and "docs/protocol.md" in line for line in runtime.log_lines()),
        "the hint in the runtime's log",
    )
    assert_still_serving(runtime.socket_path)


def test_frame_at_the_size_limit_is_accepted(shared_runtime):
    runtime = shared_runtime("echo.echo", "echo", env={"ASYA_MAX_MESSAGE_SIZE": "1024"})
    body = encode_envelope(envelope_for("x"))
    body = body.replace(b'"x"', b'"' + b"x" * (1024 - len(body) + 1) + b'"')
    assert len(body) == 1024

    reply = call(runtime.socket_path, body)

    assert reply["status"] == "ok"


@pytest.mark.parametrize("sent", [2, 4, 20], ids=["inside-header", "header-only", "inside-body"])
def test_half_close_mid_frame_is_a_connection_error(shared_runtime, sent):
    runtime = shared_runtime("echo.echo", "echo")
    whole = frame(encode_envelope(envelope_for("cut short")))

    reply = exchange(runtime.socket_path, whole[:sent], half_close=True).reply()

    assert reply["status"] == "error"
    assert reply["error"] == "connection_error"
    assert_still_serving(runtime.socket_path)


def test_client_that_connects_and_leaves(shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")

    for _ in range(3):
        with connect(runtime.socket_path):
            pass
    with connect(runtime.socket_path) as client:
        client.shutdown(socket.SHUT_WR)
        assert read_until_eof(client) == b"", "nothing was asked, nothing is answered"

    assert_still_serving(runtime.socket_path)


def test_client_that_sends_and_leaves_before_the_reply(runtime_factory, tmp_path):
    runtime = runtime_factory("slow.wait_for_gate", "slow")
    started, gate = tmp_path / "started", tmp_path / "gate"

    with connect(runtime.socket_path) as client:
        client.sendall(frame(encode_envelope(envelope_for({"started": str(started), "gate": str(gate)}))))
        wait_for(started.exists, "the handler to start")
    gate.touch()  # the reply is written to a connection nobody reads

    reply = call(
        runtime.socket_path, envelope_for({"started": str(tmp_path / "s2"), "gate": str(gate), "tag": 2})
    )
    assert reply["result"]["payload"]["tag"] == 2
    assert runtime.process.poll() is None


def test_errors_are_logged_with_the_message_id(runtime_factory):
    runtime = runtime_factory("raises.score", "raises")

    call(runtime.socket_path, {"id": "msg-42", "route": ROUTE, "payload": {"score": "high"}})
    call(runtime.socket_path, b"\xff")
    assert runtime.stop() == 0

    error_lines = [line for line in runtime.log_text().splitlines() if " ERROR " in line]
    assert any("[id=msg-42]" in line and "could not convert string to float" in line for line in error_lines)
    assert any("[id=-]" in line and "UTF-8" in line for line in error_lines), "no id: logged as '-'"
