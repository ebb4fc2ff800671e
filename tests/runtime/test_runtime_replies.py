"""encode_reply and error_reply: the bytes of a reply and the shape of an error."""

import json

import pytest

from asya_runtime import (
    LIST,
    PROCESSING_ERROR,
    STATUS,
    ProcessingError,
    encode_error,
    encode_reply,
    error_reply,
    wire_bytes,
)


def test_ok_reply_is_compact_utf8_json():
    reply = STATUS.ok(
        {"payload": {"text": "héllo 你好"}, "route": {"actors": ["a"], "current": 0}, "headers": {}}
    )

    assert (
        wire_bytes(encode_reply(reply))
        == (
            '{"status":"ok","result":{"payload":{"text":"héllo 你好"},'
            '"route":{"actors":["a"],"current":0},"headers":{}}}'
        ).encode()
    )


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf")], ids=["NaN", "Infinity", "-Infinity"]
)
def test_nan_and_infinity_are_not_json(value):
    with pytest.raises(ProcessingError) as raised:
        encode_reply(STATUS.ok({"payload": {"score": value}}))
    assert "not JSON-serialisable" in str(raised.value)


@pytest.mark.parametrize(
    "value", [object(), {1, 2}, b"bytes", {(1, 2): "tuple key"}], ids=["object", "set", "bytes", "tuple-key"]
)
def test_non_serialisable_result_is_a_processing_error(value):
    with pytest.raises(ProcessingError) as raised:
        encode_reply(STATUS.ok({"payload": value}))
    assert "not JSON-serialisable" in str(raised.value)


def test_result_nested_too_deep_is_a_processing_error():
    deep = []
    for _ in range(100000):
        deep = [deep]
    with pytest.raises(ProcessingError):
        encode_reply(STATUS.ok({"payload": deep}))


def test_lone_surrogate_still_gives_valid_json_that_round_trips():
    reply = STATUS.ok({"payload": {"text": "broken \ud800 text é"}})

    data = wire_bytes(encode_reply(reply))

    # Only the surrogate is escaped; the rest stays raw UTF-8.
    assert data == '{"status":"ok","result":{"payload":{"text":"broken \\ud800 text é"}}}'.encode()
    assert json.loads(data.decode("utf-8")) == reply


def test_error_reply_has_exactly_the_documented_fields():
    try:
        raise ValueError("bad input")
    except ValueError as exc:
        reply = error_reply(PROCESSING_ERROR, exc)

    assert sorted(reply) == ["error", "message", "status", "traceback", "type"]
    assert reply["status"] == "error"
    assert reply["error"] == "processing_error"
    assert reply["message"] == "ValueError: bad input"
    assert reply["type"] == "ValueError"
    assert reply["traceback"].endswith("ValueError: bad input\n")


ROUTE = {"actors": ["a", "b"], "current": 0}


def frames_of(traceback_text):
    return [line.strip() for line in traceback_text.splitlines() if line.strip().startswith("File ")]


def test_handler_traceback_starts_at_the_handler_and_has_no_runtime_frames(serve_one):
    reply = serve_one("raises", "raises.score", {"route": ROUTE, "payload": {"score": "high"}})

    traceback_text = reply["traceback"]
    frames = frames_of(traceback_text)
    assert len(frames) == 2, traceback_text
    assert frames[0].endswith(", in score") and "raises.py" in frames[0]
    assert frames[1].endswith(", in _parse_score")
    assert "asya_runtime" not in traceback_text
    assert traceback_text.startswith("Traceback (most recent call last):\n")
    assert traceback_text.endswith("ValueError: could not convert string to float: 'high'\n")
    assert reply["message"] == "ValueError: could not convert string to float: 'high'"
    assert reply["type"] == "ValueError"


def test_system_exit_from_a_handler_becomes_an_error_reply(serve_one):
    reply = serve_one("raises", "raises.exit_process", {"route": ROUTE, "payload": 1})

    assert reply["error"] == "processing_error"
    assert reply["type"] == "SystemExit"
    assert reply["message"] == "SystemExit: 3"
    assert frames_of(reply["traceback"])[0].endswith(", in exit_process")


def test_error_without_text_is_named_by_its_type(serve_one):
    reply = serve_one("raises", "raises.raise_without_message", {"route": ROUTE, "payload": 1})

    assert reply["message"] == "LookupError"
    assert reply["type"] == "LookupError"


@pytest.mark.parametrize(
    "body, message",
    [
        ({"route": ROUTE}, "envelope has no 'payload' field"),
        (b"\xff\xfe{}", "message is not valid UTF-8"),
        (b'{"payload": ', "message is not valid JSON"),
        (b'{"route": {"actors": ["a"], "current": 0}, "payload": NaN}', "message is not valid JSON"),
    ],
    ids=["bad-envelope", "bad-utf8", "bad-json", "nan-in-request"],
)
def test_runtime_detected_error_has_just_its_final_line_as_traceback(serve_one, body, message):
    reply = serve_one("echo", "echo.echo", body)

    assert reply["error"] == "processing_error"
    assert reply["type"] == "ProcessingError"
    assert reply["message"].startswith(message)
    assert frames_of(reply["traceback"]) == [], reply["traceback"]
    assert "asya_runtime.py" not in reply["traceback"]
    assert reply["traceback"].rstrip("\n").endswith("ProcessingError: " + reply["message"])


def test_unserialisable_result_error_has_no_runtime_frames(serve_one):
    reply = serve_one("bad_results", "bad_results.respond", {"route": ROUTE, "payload": {"kind": "object"}})

    assert reply["error"] == "processing_error"
    assert reply["message"].startswith("handler result is not JSON-serialisable")
    assert "asya_runtime.py" not in reply["traceback"], reply["traceback"]


def test_encoded_error_is_ascii_json_even_with_a_lone_surrogate_in_the_message():
    try:
        raise ValueError("bad \ud800 value é")
    except ValueError as exc:
        data = wire_bytes(encode_error(error_reply(PROCESSING_ERROR, exc)))

    data.decode("ascii")
    assert json.loads(data.decode("ascii"))["message"] == "ValueError: bad \ud800 value é"


def test_list_dialect_ok_reply_is_always_an_array():
    envelope = {"payload": 1, "route": {"actors": ["a"], "current": 1}, "headers": {}}
    assert LIST.ok(envelope) == [envelope]
    assert LIST.ok([envelope, envelope]) == [envelope, envelope]
    assert LIST.ok([]) == []


@pytest.mark.parametrize(
    "code, status_code",
    [("msg_parsing_error", "processing_error"), ("processing_error", "processing_error"),
     ("connection_error", "connection_error")],
)
def test_error_reply_in_both_dialects(code, status_code):
    try:
        raise ValueError("bad input")
    except ValueError as exc:
        error = exc

    status = error_reply(code, error)
    listed = error_reply(code, error, LIST)

    assert list(status) == ["status", "error", "message", "type", "traceback"]
    assert status["error"] == status_code, "the status dialect has no msg_parsing_error"
    assert listed == [{"error": code, "details": {key: status[key] for key in ("message", "type", "traceback")}}]
