"""Whatever the user's handler does (raise anything, return anything), the
message gets exactly one reply: ok with JSON, or processing_error."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asya_testkit.inprocess import make_server, serve_one
from asya_testkit.wire import encode_envelope, frame

from .strategies import json_values

REQUEST = frame(encode_envelope({"id": "m-1", "route": {"actors": ["a", "b"], "current": 0}, "payload": 1}))


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("str() of this exception fails")


class StrReturnsNotAString(Exception):
    def __str__(self):
        return 42


class CustomBaseException(BaseException):
    pass


def _nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


RAISED = {
    "ValueError": lambda text: ValueError(text),
    "SystemExit": lambda text: SystemExit(text),
    "SystemExit-int": lambda text: SystemExit(3),
    "KeyboardInterrupt": lambda text: KeyboardInterrupt(text),
    "GeneratorExit": lambda text: GeneratorExit(text),
    "BaseException-subclass": lambda text: CustomBaseException(text),
    "no-args": lambda text: RuntimeError(),
    "unprintable": lambda text: UnprintableError(text),
    "str-returns-int": lambda text: StrReturnsNotAString(text),
    "surrogate-text": lambda text: ValueError("\udcff" + text),
}


@pytest.mark.parametrize("kind", sorted(RAISED))
@settings(max_examples=max(10, settings.default.max_examples // 5))  # ten kinds share the budget
@given(text=st.text(max_size=50))
def test_a_handler_raising_anything_gets_one_processing_error(kind, text):
    def handler(_payload):
        raise RAISED[kind](text)

    reply = serve_one(make_server(handler), REQUEST, half_close=False).reply()

    assert (reply["status"], reply["error"]) == ("error", "processing_error")
    assert reply["type"] == type(RAISED[kind](text)).__name__


NOT_JSON = {
    "object": lambda: object(),
    "set": lambda: {1, 2},
    "bytes": lambda: b"\x00\xff",
    "nan": lambda: float("nan"),
    "infinity-in-list": lambda: [1, float("inf")],
    "tuple-key": lambda: {(1, 2): "x"},
    "deep-nesting": lambda: _nested(100000),
    "nested-object": lambda: {"ok": [1, {"model": object()}]},
    # A generator is a fan-out (drained into a list); other iterators are not JSON.
    "iterator": lambda: iter([1, 2, 3]),
}


@pytest.mark.parametrize("kind", sorted(NOT_JSON))
def test_a_handler_returning_something_json_cannot_carry_gets_one_processing_error(kind):
    reply = serve_one(make_server(lambda _payload: NOT_JSON[kind]()), REQUEST, half_close=False).reply()

    assert (reply["status"], reply["error"]) == ("error", "processing_error")


@given(result=json_values | st.lists(json_values, max_size=4) | st.tuples(json_values, json_values))
def test_a_handler_returning_json_gets_one_ok_reply_that_parses(result):
    replies = serve_one(make_server(lambda _payload: result), REQUEST, half_close=False)

    reply = replies.reply()
    assert reply["status"] == "ok"
    json.loads(replies.frames[0].decode("utf-8"))
