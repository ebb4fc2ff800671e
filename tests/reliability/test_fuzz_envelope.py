"""Envelope properties, in process: arbitrary JSON is either accepted or
refused with ProcessingError (never anything else), acceptance agrees with
the contract of docs/protocol.md, and valid envelopes round-trip through payload mode
byte for byte."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_testkit.inprocess import make_server, runtime_module, serve_one
from asya_testkit.wire import canonical, encode_envelope, frame

from .strategies import (
    envelope_like,
    is_valid_envelope,
    json_values,
    routes,
    single_payloads,
    valid_envelopes,
)

asya_runtime = runtime_module()

ENVELOPE_FIELDS = ("envelope", "payload", "route", "headers", "id")


@given(value=envelope_like)
def test_validation_accepts_exactly_the_envelopes_the_contract_allows(value):
    try:
        asya_runtime.validate_envelope(value)
    except asya_runtime.ProcessingError as exc:
        assert not is_valid_envelope(value), f"a valid envelope was refused: {exc}"
        assert any(field in str(exc) for field in ENVELOPE_FIELDS), f"message names no field: {exc}"
    else:
        assert is_valid_envelope(value), "an envelope breaking the contract was accepted"


def echo(payload):
    return payload


def echo_envelope(envelope):
    return envelope


@pytest.mark.parametrize(
    "handler, overrides",
    [
        (echo, {}),
        (echo, {"ASYA_ENABLE_VALIDATION": "false"}),
        (echo, {"ASYA_INCLUDE_METADATA": "true"}),
        (echo_envelope, {"ASYA_HANDLER_MODE": "envelope"}),
        (echo_envelope, {"ASYA_HANDLER_MODE": "envelope", "ASYA_ENABLE_VALIDATION": "false"}),
    ],
    ids=["payload", "payload-no-validation", "payload-metadata", "envelope", "envelope-no-validation"],
)
@given(value=envelope_like)
def test_any_json_message_gets_one_reply_ok_or_processing_error(handler, overrides, value):
    server = make_server(handler, **overrides)
    reply = serve_one(server, frame(encode_envelope(value)), half_close=False).reply()

    if is_valid_envelope(value):
        assert reply["status"] == "ok", reply
    elif server.config.enable_validation:
        assert (reply["status"], reply["error"]) == ("error", "processing_error")
    else:
        assert reply["status"] == "ok" or reply["error"] == "processing_error"


@given(envelope=valid_envelopes(payloads=single_payloads))
def test_valid_envelopes_round_trip_through_payload_mode_byte_for_byte(envelope):
    request = encode_envelope(envelope)
    replies = serve_one(make_server(echo), frame(request), half_close=False)
    reply = replies.reply()

    assert reply["status"] == "ok"
    result = reply["result"]
    # The payload's own bytes come back untouched (same key order, numbers, text)...
    assert encode_envelope(envelope["payload"]) in replies.frames[0]
    # ...and every part decodes to the same JSON, types included (1 is not 1.0 or true).
    assert canonical(result["payload"]) == canonical(envelope["payload"])
    assert canonical(result["route"]) == canonical(envelope["route"])
    assert canonical(result["headers"]) == canonical(envelope.get("headers", {}))
    assert result.get("id") == envelope.get("id")


@given(
    route=routes(extra_keys=False),
    text=st.text(alphabet=st.characters(categories=["Cs"]) | st.characters(), min_size=1, max_size=20),
)
def test_strings_utf8_cannot_carry_still_come_back_as_valid_json(route, text):
    # A lone surrogate arrives as a \\ud800 escape; the reply must still be JSON the sidecar can parse.
    request = json.dumps({"route": route, "payload": text}).encode("ascii")
    reply = serve_one(make_server(echo), frame(request), half_close=False).reply()

    assert reply["status"] == "ok"
    assert reply["result"]["payload"] == text


@given(envelope=valid_envelopes(), results=st.lists(json_values, max_size=4) | st.none() | json_values)
def test_payload_mode_wraps_whatever_the_handler_returns(envelope, results):
    reply = serve_one(make_server(lambda _payload: results), frame(encode_envelope(envelope)), False).reply()

    assert reply["status"] == "ok"
    if results is None:
        assert reply["result"] == []
    elif isinstance(results, list):
        assert [canonical(out["payload"]) for out in reply["result"]] == [canonical(r) for r in results]
        assert all(canonical(out["route"]) == canonical(envelope["route"]) for out in reply["result"])
    else:
        assert canonical(reply["result"]["payload"]) == canonical(results)


@pytest.mark.parametrize(
    "handler, overrides",
    [(echo, {}), (echo_envelope, {"ASYA_HANDLER_MODE": "envelope"})],
    ids=["payload", "envelope"],
)
@given(value=envelope_like)
def test_the_list_dialect_says_what_the_status_dialect_says_with_current_advanced(handler, overrides, value):
    request = frame(encode_envelope(value))
    status = serve_one(make_server(handler, **overrides), request, half_close=False).reply()
    listed = serve_one(make_server(handler, ASYA_REPLY_FORMAT="list", **overrides), request, half_close=False).reply()

    assert isinstance(listed, list)
    if status["status"] == "ok":
        outputs = status["result"] if isinstance(status["result"], list) else [status["result"]]
        expected = [dict(out, route=dict(out["route"], current=out["route"]["current"] + 1)) for out in outputs]
        assert [canonical(out) for out in listed] == [canonical(out) for out in expected]
    else:
        (error,) = listed
        assert error["error"] == ("msg_parsing_error" if not is_valid_envelope(value) else status["error"])
        assert error["details"] == {key: status[key] for key in ("message", "type", "traceback")}
