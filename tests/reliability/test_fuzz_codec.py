"""The runtime's JSON shortcuts against the json module, on arbitrary values:
decode_message parses exactly what json.loads parses (whatever whitespace
surrounds the document), and encode_reply writes exactly the bytes of a
compact, UTF-8 json.dumps."""

import json

from hypothesis import given
from hypothesis import strategies as st

from asya_testkit.inprocess import runtime_module

from .strategies import json_values

asya_runtime = runtime_module()

json_whitespace = st.text(alphabet=" \t\n\r", max_size=3)


@given(value=json_values, before=json_whitespace, after=json_whitespace)
def test_decode_message_agrees_with_json_loads(value, before, after):
    text = before + json.dumps(value, ensure_ascii=False) + after

    assert asya_runtime.decode_message(text) == json.loads(text)


@given(value=json_values, tail=st.text(min_size=1, max_size=3).filter(lambda t: t.strip(" \t\n\r")))
def test_decode_message_refuses_trailing_data_like_json_loads(value, tail):
    text = json.dumps(value) + tail
    try:
        expected = json.loads(text)
    except ValueError as exc:
        expected = exc
    try:
        got = asya_runtime.decode_message(text)
    except ValueError as exc:
        got = exc

    if isinstance(expected, ValueError):
        assert isinstance(got, ValueError) and str(got) == str(expected)
    else:  # e.g. "1" followed by "2" is the number 12
        assert got == expected


@given(value=json_values)
def test_encode_reply_is_byte_for_byte_compact_utf8_json_dumps(value):
    reply = asya_runtime.STATUS.ok({"payload": value})
    expected = json.dumps(reply, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")

    assert asya_runtime.wire_bytes(asya_runtime.encode_reply(reply)) == expected


@given(value=json_values)
def test_the_ascii_first_path_gives_the_same_bytes(value):
    reply = asya_runtime.STATUS.ok({"payload": value})

    assert asya_runtime.encode_reply(reply, plain_ascii_likely=True) == asya_runtime.encode_reply(reply)
