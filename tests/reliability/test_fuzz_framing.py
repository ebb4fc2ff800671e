"""Framing properties, in process: arbitrary bytes cut at arbitrary points
never crash read_frame, and every complete frame gets exactly one reply."""

import json
import socket

from hypothesis import given
from hypothesis import strategies as st

from asya_testkit.inprocess import make_server, runtime_module, serve_one
from asya_testkit.wire import HEADER, frame

from .strategies import frame_stream_outcome, framed_streams, is_valid_envelope, split_points

asya_runtime = runtime_module()


class ScriptedConnection:
    """Stands in for a socket: each receive call gets at most the next piece,
    so the runtime sees exactly the cuts hypothesis chose. After the last
    piece the peer either closes (EOF) or goes silent (a blocking call hits
    the IO timeout, a non-blocking one finds nothing). With arrives_late, the
    first non-blocking call finds nothing yet, as when the runtime accepts
    before the sidecar has written."""

    def __init__(self, pieces, ending, arrives_late=False):
        self.pieces = [bytearray(piece) for piece in pieces]
        self.ending = ending
        self.arrives_late = arrives_late
        self.delivered_after_call = []

    def _take(self, size, flags):
        nonblocking = bool(flags & socket.MSG_DONTWAIT)
        if nonblocking and self.arrives_late:
            self.arrives_late = False
            raise BlockingIOError("nothing to read yet")
        if not self.pieces:
            if self.ending == "silent":
                if nonblocking:
                    raise BlockingIOError("nothing to read yet")
                raise socket.timeout("timed out")
            self.delivered_after_call.append(self.delivered)
            return b""
        piece = self.pieces[0]
        taken = bytes(piece[:size])
        del piece[:size]
        if not piece:
            self.pieces.pop(0)
        self.delivered_after_call.append(self.delivered + len(taken))
        return taken

    @property
    def delivered(self):
        return self.delivered_after_call[-1] if self.delivered_after_call else 0

    def recv(self, size, flags=0):
        return self._take(size, flags)

    def recv_into(self, buffer, nbytes=0, flags=0):
        data = self._take(min(nbytes or len(buffer), len(buffer)), flags)
        buffer[: len(data)] = data
        return len(data)

    def setsockopt(self, *option):
        pass  # timeouts are scripted by `ending`


def read_with_cuts(stream, pieces, chunk_size, max_size, ending, arrives_late=False):
    conn = ScriptedConnection(pieces, ending, arrives_late)
    try:
        return conn, "frame", bytes(asya_runtime.read_frame(conn, chunk_size, max_size))
    except asya_runtime.ClientGone:
        return conn, "client_gone", None
    except asya_runtime.FrameError:
        return conn, "frame_error", None


@given(
    data=st.data(),
    stream=framed_streams(max_body=3000, oversize_floor=0) | st.binary(max_size=64),
    chunk_size=st.integers(min_value=1, max_value=9000),
    # Kept small: the runtime allocates a declared length up to max_size at once.
    max_size=st.integers(min_value=0, max_value=4000),
    ending=st.sampled_from(["eof", "silent"]),
    arrives_late=st.booleans(),
)
def test_read_frame_takes_exactly_the_frame_or_refuses_it(
    data, stream, chunk_size, max_size, ending, arrives_late
):
    pieces = data.draw(split_points(stream))
    conn, outcome, body = read_with_cuts(stream, pieces, chunk_size, max_size, ending, arrives_late)

    expected, expected_body = frame_stream_outcome(stream, max_size)
    if expected == "nothing":
        # A peer that closes without a byte is simply gone; one that stays silent gets an error.
        assert outcome == ("client_gone" if ending == "eof" else "frame_error")
    elif expected == "connection_error":
        assert outcome == "frame_error"
    else:
        assert outcome == "frame"
        assert body == expected_body


@given(
    data=st.data(),
    length=st.integers(min_value=1, max_value=2**32 - 1),
    tail=st.binary(max_size=200),
    chunk_size=st.integers(min_value=1, max_value=64),
)
def test_an_oversized_length_is_refused_before_any_body_byte_is_asked_for(data, length, tail, chunk_size):
    max_size = data.draw(st.integers(min_value=0, max_value=length - 1))
    stream = HEADER.pack(length) + tail
    pieces = data.draw(split_points(stream))
    conn, outcome, _ = read_with_cuts(stream, pieces, chunk_size, max_size, "eof")

    assert outcome == "frame_error"
    header_complete_at = next(i for i, total in enumerate(conn.delivered_after_call) if total >= HEADER.size)
    assert len(conn.delivered_after_call) == header_complete_at + 1, "the runtime read past the length header"


def echo(payload):
    return payload


@given(stream=framed_streams(max_body=2048, oversize_floor=4096))
def test_a_half_closed_stream_gets_at_most_one_reply_and_the_right_one(stream):
    replies = serve_one(make_server(echo, ASYA_MAX_MESSAGE_SIZE="4096"), stream, half_close=True)

    expected, body = frame_stream_outcome(stream, 4096)
    if expected == "nothing":
        assert replies.is_empty
        return
    reply = replies.reply()
    if expected == "connection_error":
        assert (reply["status"], reply["error"]) == ("error", "connection_error")
    elif is_valid_json_envelope(body):
        assert reply["status"] == "ok"
    else:
        assert (reply["status"], reply["error"]) == ("error", "processing_error")


def is_valid_json_envelope(body):
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject)
    except ValueError:
        return False
    return is_valid_envelope(value)


def _reject(name):
    raise ValueError(name)


@given(body=st.binary(max_size=4096), trailing=st.binary(max_size=64), half_close=st.booleans())
def test_a_complete_frame_gets_exactly_one_reply_whatever_follows_it(body, trailing, half_close):
    replies = serve_one(make_server(echo), frame(body) + trailing, half_close=half_close)

    reply = replies.reply()
    assert reply["status"] in ("ok", "error")
    if reply["status"] == "error":
        assert reply["error"] == "processing_error"
        assert set(reply) == {"status", "error", "message", "type", "traceback"}
