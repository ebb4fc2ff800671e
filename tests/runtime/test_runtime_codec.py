"""decode_message, the reply encoders and copy_json: the runtime's shortcuts
around json.loads, json.dumps and copy.deepcopy must give exactly what those
give, errors included, message after message."""

import copy
import json

import pytest

import asya_runtime
from asya_runtime import (
    STATUS,
    ProcessingError,
    copy_json,
    decode_message,
    encode_reply,
    is_plain_ascii,
    wire_bytes,
)


@pytest.mark.parametrize(
    "text",
    [
        '{"payload":1}',
        '  {"payload": 1}',
        '{"payload": 1}\n',
        '\t\r\n {"payload": [1, 2.5, "x", null, true]} \n\t',
        '"just a string"',
        "[]",
        "0",
    ],
    ids=["compact", "leading-space", "trailing-newline", "both-sides", "string", "array", "number"],
)
def test_decode_message_parses_what_json_loads_parses(text):
    assert decode_message(text) == json.loads(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ("   ", "Expecting value: line 1 column 4 (char 3)"),
        ('{"payload": 1} x', "Extra data: line 1 column 16 (char 15)"),
        ('{"payload": 1}{}', "Extra data: line 1 column 15 (char 14)"),
        ('{"payload": 1}\u00a0', "Extra data: line 1 column 15 (char 14)"),  # not JSON whitespace
        ('{"payload": tru}', "Expecting value: line 1 column 13 (char 12)"),
    ],
    ids=["empty", "only-space", "trailing-word", "two-documents", "nbsp-after", "bad-literal"],
)
def test_decode_message_refuses_what_json_loads_refuses_with_its_words(text, expected):
    with pytest.raises(ValueError) as raised:
        decode_message(text)
    assert str(raised.value) == expected


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_decode_message_refuses_nan_and_infinity(constant):
    with pytest.raises(ValueError) as raised:
        decode_message('{"payload": ' + constant + "}")
    assert f"{constant} is not valid JSON" in str(raised.value)


def test_a_failed_encode_leaves_nothing_behind_for_the_next_message():
    shared = ["kept"]
    looped = {"shared": shared}
    looped["self"] = looped
    with pytest.raises(ProcessingError) as raised:
        encode_reply(STATUS.ok({"payload": looped}))
    assert "Circular reference detected" in str(raised.value)

    # The same objects, no longer circular: a stale mark from the failed
    # attempt would make this look circular too.
    del looped["self"]
    data = wire_bytes(encode_reply(STATUS.ok({"payload": looped, "again": shared})))

    assert json.loads(data) == {
        "status": "ok",
        "result": {"payload": {"shared": ["kept"]}, "again": ["kept"]},
    }


def test_a_value_met_twice_without_a_cycle_is_encoded_twice():
    twice = {"a": 1}
    assert wire_bytes(encode_reply(STATUS.ok({"payload": [twice, twice]}))) == (
        b'{"status":"ok","result":{"payload":[{"a":1},{"a":1}]}}'
    )


def test_encode_reply_matches_json_dumps_byte_for_byte():
    value = {"payload": {"t": 'é\u2028\x7f\x00"\\', "n": [1, -2.5, 1e300, True, None], "k": {}}}
    expected = json.dumps(STATUS.ok(value), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    assert wire_bytes(encode_reply(STATUS.ok(value))) == expected


def test_copy_json_is_deep_and_equal():
    original = {"route": {"actors": ["a", "b"], "current": 0}, "headers": {"h": [{"x": 1}]}}
    copied = copy_json(original)

    assert copied == original == copy.deepcopy(original)
    copied["route"]["actors"].append("c")
    copied["headers"]["h"][0]["x"] = 2
    assert original == {"route": {"actors": ["a", "b"], "current": 0}, "headers": {"h": [{"x": 1}]}}


@pytest.mark.parametrize(
    "payload",
    [
        "QUJDRA+/" * 100,
        {"n": [1, 2.5, -3e-7, None, True], "k": "plain"},
        "line\nbreak",
        'a "quote" and a \\ backslash',
        "héllo 你好 👋",
        "del \x7f and nul \x00",
        "lone \ud800 surrogate",
    ],
    ids=["base64", "numbers", "newline", "quote-backslash", "non-ascii", "del-nul", "lone-surrogate"],
)
def test_the_ascii_first_path_gives_the_same_bytes(payload):
    reply = STATUS.ok({"payload": payload})

    assert encode_reply(reply, plain_ascii_likely=True) == encode_reply(reply, plain_ascii_likely=False)


@pytest.mark.parametrize(
    "text, plain",
    [('{"a":"b"}', True), ('{"a":"b\\n"}', False), ('{"a":"é"}', False), ("", True)],
    ids=["plain", "escape", "non-ascii", "empty"],
)
def test_is_plain_ascii(text, plain):
    assert is_plain_ascii(text) is plain


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf8", "ascii"])
def test_without_the_c_accelerator_the_encoder_writes_the_same_text(monkeypatch, ensure_ascii):
    # An interpreter built without _json has no c_make_encoder: the public
    # encoder takes over, with the same output and the same refusals.
    value = STATUS.ok({"payload": {"t": "é\n\x7f", "n": [1, 2.5, None, True], "k": {}}})
    with_c = asya_runtime._compact_encoder(ensure_ascii)
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    without_c = asya_runtime._compact_encoder(ensure_ascii)

    assert without_c(value) == with_c(value)
    for bad in (float("nan"), object()):
        with pytest.raises((ValueError, TypeError)):
            without_c({"payload": bad})
