"""Soak handler: a misbehaving model, chosen per message by payload["op"].

Every op is something a real user's handler can do; the soak checks that the
runtime gives the reply each one must produce and keeps serving.
"""

import sys
import time

MIB = 1024 * 1024


class UnprintableError(Exception):
    """An exception whose str() itself fails, as buggy exception classes do."""

    def __str__(self):
        raise RuntimeError("str() of this exception fails")


def _echo(payload):
    return payload


def _fanout(payload):
    return [payload] * payload["count"]


def _nothing(payload):
    return None


def _raise(payload):
    raise ValueError(payload["text"])


def _exit(payload):
    sys.exit(payload["code"])


def _keyboard_interrupt(payload):
    raise KeyboardInterrupt()


def _unprintable(payload):
    raise UnprintableError()


def _junk_object(payload):
    return {"model": object()}


def _junk_nan(payload):
    return {"score": float("nan")}


def _junk_infinity(payload):
    return [1.0, float("-inf")]


def _junk_bytes(payload):
    return b"\x00\xffraw"


def _junk_deep(payload):
    # Deeper than any encoder recursion limit.
    nested = []
    for _ in range(100000):
        nested = [nested]
    return nested


def _lone_surrogate(payload):
    return {"text": "\ud800" + payload["text"]}


def _mutate(payload):
    payload["seen"] = True
    return payload


def _sleep(payload):
    time.sleep(payload["ms"] / 1000.0)
    return payload


def _allocate(payload):
    block = bytearray(payload["mib"] * MIB)  # zero-filled: every page is touched
    small_objects = [str(i) for i in range(50000)]
    return {"op": "allocate", "nonce": payload["nonce"], "bytes": len(block), "objects": len(small_objects)}


def _mark_then_sleep(payload):
    # Lets the soak know this message is in flight before it sends SIGTERM.
    with open(payload["marker"], "w") as marker:
        marker.write("started\n")
    time.sleep(payload["ms"] / 1000.0)
    return payload


OPS = {
    "echo": _echo,
    "fanout": _fanout,
    "nothing": _nothing,
    "raise": _raise,
    "exit": _exit,
    "keyboard_interrupt": _keyboard_interrupt,
    "unprintable": _unprintable,
    "junk_object": _junk_object,
    "junk_nan": _junk_nan,
    "junk_infinity": _junk_infinity,
    "junk_bytes": _junk_bytes,
    "junk_deep": _junk_deep,
    "lone_surrogate": _lone_surrogate,
    "mutate": _mutate,
    "sleep": _sleep,
    "allocate": _allocate,
    "mark_then_sleep": _mark_then_sleep,
}


def handle(payload):
    if not isinstance(payload, dict) or payload.get("op") not in OPS:
        return payload
    return OPS[payload["op"]](payload)
