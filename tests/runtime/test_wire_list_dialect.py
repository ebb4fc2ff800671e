"""Black-box, every interpreter: ASYA_REPLY_FORMAT=list, the dialect of the asya Go sidecar.

The Go sidecar decodes every reply as a JSON array of
{payload, route, headers, id} or {error, details{message, type, traceback}}
and routes each output to actors[route.current], so the runtime advances
route.current by one; docs/protocol.md has the bytes.
"""

import json

import pytest

from asya_testkit.paths import PROTOCOL_DOC
from asya_testkit.wire import call, connect, envelope_for, exchange, frame, read_until_eof

LIST = {"ASYA_REPLY_FORMAT": "list"}
ROUTE = {"actors": ["clean", "score", "store"], "current": 1}


def advanced(route, by=1):
    return dict(route, current=route["current"] + by)


def assert_still_serving(socket_path):
    reply = call(socket_path, envelope_for({"still": "serving"}))
    assert reply == [{"payload": {"still": "serving"}, "route": {"actors": ["first", "second"], "current": 1},
                      "headers": {}}]


def test_reply_bytes_match_the_documented_example(shared_runtime):
    # The list-dialect example of docs/protocol.md, byte for byte.
    runtime = shared_runtime("lowercase.process", "lowercase", LIST)
    request = (
        '{"id":"msg-1","route":{"actors":["clean","score"],"current":0},'
        '"headers":{"trace":"t-9"},"payload":{"text":"Héllo"}}'
    ).encode()
    expected_body = (
        '[{"payload":{"text":"héllo"},"route":{"actors":["clean","score"],"current":1},'
        '"headers":{"trace":"t-9"},"id":"msg-1"}]'
    ).encode()
    assert len(expected_body) == 119

    documented = PROTOCOL_DOC.read_text("utf-8")
    assert request.decode() in documented.splitlines(), "the request example of docs/protocol.md changed"
    assert expected_body.decode() in documented.splitlines(), "the reply example of docs/protocol.md changed"
    assert "`00 00 00 77`" in documented

    with connect(runtime.socket_path) as client:
        client.sendall(frame(request))
        raw_reply = read_until_eof(client)

    assert raw_reply == b"\x00\x00\x00\x77" + expected_body


def test_payload_mode_advances_current_and_keeps_headers_and_id(shared_runtime):
    runtime = shared_runtime("lowercase.process", "lowercase", LIST)

    reply = call(runtime.socket_path, {"id": "m-2", "route": ROUTE, "headers": {"h": 1}, "payload": {"text": "AB"}})

    assert reply == [{"payload": {"text": "ab"}, "route": advanced(ROUTE), "headers": {"h": 1}, "id": "m-2"}]


def test_last_actor_advances_past_the_end_so_the_sidecar_sends_to_happy_end(shared_runtime):
    runtime = shared_runtime("echo.echo", "echo", LIST)
    last = {"actors": ["a", "b"], "current": 1}

    reply = call(runtime.socket_path, {"route": last, "payload": 1})

    assert reply[0]["route"] == {"actors": ["a", "b"], "current": 2}


def test_fan_out_is_one_element_each_none_is_an_empty_array(runtime_factory):
    fan_out = runtime_factory("fan_out.split_sentences", "fan_out", LIST)
    reply = call(fan_out.socket_path, envelope_for({"text": "One. Two. Three"}, id="m-3"))
    nothing = runtime_factory("returns_none.discard", "returns_none", LIST, directory=fan_out.workdir / "s2")

    assert [item["payload"] for item in reply] == [{"sentence": "One"}, {"sentence": "Two"}, {"sentence": "Three"}]
    assert [item["route"]["current"] for item in reply] == [1, 1, 1]
    assert all(item["id"] == "m-3" and item["headers"] == {} for item in reply)
    assert call(nothing.socket_path, envelope_for("x")) == []


@pytest.mark.parametrize(
    "body, message",
    [
        (b"\xff\xfe", "not valid UTF-8"),
        (b"{", "not valid JSON"),
        (json.dumps({"payload": 1}).encode(), "no 'route' field"),
        (json.dumps({"payload": 1, "route": {"actors": [], "current": 0}}).encode(), "actors must be a non-empty"),
    ],
)
def test_unusable_input_is_a_msg_parsing_error(shared_runtime, body, message):
    runtime = shared_runtime("echo.echo", "echo", LIST)

    reply = call(runtime.socket_path, body)

    assert isinstance(reply, list) and len(reply) == 1
    assert set(reply[0]) == {"error", "details"}
    assert reply[0]["error"] == "msg_parsing_error"
    assert set(reply[0]["details"]) == {"message", "type", "traceback"}
    assert message in reply[0]["details"]["message"]
    assert_still_serving(runtime.socket_path)


def test_handler_exception_is_a_processing_error_with_details(shared_runtime):
    runtime = shared_runtime("raises.score", "raises", LIST)

    reply = call(runtime.socket_path, envelope_for({"score": "high"}))

    (error,) = reply
    assert error["error"] == "processing_error"
    assert error["details"]["type"] == "ValueError"
    assert error["details"]["message"].startswith("ValueError: ")
    assert "raises.py" in error["details"]["traceback"]


def test_unserialisable_result_is_a_processing_error(shared_runtime):
    runtime = shared_runtime("bad_results.respond", "bad_results", LIST)

    (error,) = call(runtime.socket_path, envelope_for({"kind": "set"}))

    assert error["error"] == "processing_error" and "JSON" in error["details"]["message"]


def test_truncated_frame_is_a_connection_error(shared_runtime):
    runtime = shared_runtime("echo.echo", "echo", LIST)

    stream = exchange(runtime.socket_path, b"\x00\x00\x00\x10abc", half_close=True)

    (error,) = stream.reply()
    assert error["error"] == "connection_error"
    assert set(error["details"]) == {"message", "type", "traceback"}


def test_envelope_mode_output_with_current_unchanged_is_advanced(runtime_factory):
    runtime = runtime_factory("envelope_router.add_translation_step", "envelope_router", dict(LIST, ASYA_HANDLER_MODE="envelope"))

    (output,) = call(runtime.socket_path, {"route": ROUTE, "payload": {"score": 0.2}})

    assert output["route"]["current"] == 2
    assert output["route"]["actors"][:2] == ROUTE["actors"][:2]


@pytest.mark.parametrize(
    "function, expected_current",
    [("add_step_and_advance", 2), ("stay_in_place", 2)],
)
def test_envelope_mode_reference_handlers_run_unchanged(runtime_factory, function, expected_current):
    runtime = runtime_factory(
        f"reference_handlers.{function}", "reference_runtime", dict(LIST, ASYA_HANDLER_MODE="envelope")
    )

    (output,) = call(runtime.socket_path, {"route": ROUTE, "payload": {"x": 1}})

    assert output["route"]["current"] == expected_current
    assert output["route"]["actors"][: ROUTE["current"] + 1] == ROUTE["actors"][: ROUTE["current"] + 1]


def test_envelope_mode_current_moved_further_is_a_route_violation(runtime_factory):
    runtime = runtime_factory("reference_handlers.jump_ahead", "reference_runtime", dict(LIST, ASYA_HANDLER_MODE="envelope"))

    (error,) = call(runtime.socket_path, {"route": ROUTE, "payload": {"x": 1}})

    assert error["error"] == "processing_error"
    assert error["details"]["message"].startswith("route rule violated: route.current must stay 1 or be advanced to 2, got 3")


def test_reference_payload_handler_and_class_handler_run_unchanged(runtime_factory, tmp_path):
    function = runtime_factory("reference_handlers.process", "reference_runtime", LIST)
    method = runtime_factory(
        "reference_handlers.Scorer.score", "reference_runtime", LIST, directory=function.workdir / "s2"
    )

    assert call(function.socket_path, {"route": ROUTE, "payload": {"value": 1}}) == [
        {"payload": {"value": 2}, "route": advanced(ROUTE), "headers": {}}
    ]
    assert call(method.socket_path, {"route": ROUTE, "payload": {"score": 0.9}})[0]["payload"] == {"high": True}


def test_reference_class_envelope_handler_runs_unchanged(runtime_factory):
    runtime = runtime_factory(
        "reference_handlers.Scorer.score_envelope", "reference_runtime", dict(LIST, ASYA_HANDLER_MODE="envelope")
    )

    (output,) = call(runtime.socket_path, {"route": ROUTE, "payload": {"score": 0.1}})

    assert output == {"payload": {"high": False}, "route": advanced(ROUTE), "headers": {}}


def test_status_dialect_is_unchanged_by_default(shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")

    assert call(runtime.socket_path, {"route": ROUTE, "payload": 1}) == {
        "status": "ok",
        "result": {"payload": 1, "route": ROUTE, "headers": {}},
    }
