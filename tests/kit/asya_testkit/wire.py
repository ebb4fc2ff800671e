"""The wire protocol seen from the sidecar's side, written from docs/protocol.md.

One connection per message: connect, send one frame (a 4-byte big-endian
length, then the JSON body), read to the end of the stream, close. Nothing
here imports the runtime, so a runtime bug cannot hide behind shared code.
Replies are returned decoded, whatever their JSON shape (an object today, or
a list in another reply dialect): the tests judge them, not the client.
"""

import json
import socket
import struct

from .wait import HANG_GUARD_SECONDS

HEADER = struct.Struct(">I")


def frame(body):
    """One frame: 4-byte big-endian length, then the body."""
    return HEADER.pack(len(body)) + body


def encode_envelope(value):
    """Encode like the runtime encodes replies: compact, raw UTF-8, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def canonical(value):
    """Text that differs whenever two JSON values differ, types included (1, 1.0, true)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def envelope_for(payload, actors=("first", "second"), current=0, **extra):
    envelope = {"route": {"actors": list(actors), "current": current}, "payload": payload}
    envelope.update(extra)
    return envelope


def simple_route(actors=("soak",), current=0):
    return {"actors": list(actors), "current": current}


def split_frames(stream):
    """Split a byte stream into whole frames; return (frames, trailing bytes)."""
    frames = []
    offset = 0
    while len(stream) - offset >= HEADER.size:
        (length,) = HEADER.unpack_from(stream, offset)
        end = offset + HEADER.size + length
        if end > len(stream):
            break
        frames.append(bytes(stream[offset + HEADER.size : end]))
        offset = end
    return frames, bytes(stream[offset:])


class ReplyStream:
    """Everything the runtime sent on one connection, and how it ended."""

    def __init__(self, data, reset=False):
        self.data = data
        self.reset = reset  # the connection ended with ECONNRESET, not a clean EOF
        self.frames, self.trailing = split_frames(data)

    @property
    def is_empty(self):
        return not self.data

    @property
    def is_one_whole_reply(self):
        return len(self.frames) == 1 and not self.trailing

    def body(self):
        """The single reply's body bytes; AssertionError unless the stream is exactly one frame."""
        assert len(self.data) >= HEADER.size, f"reply shorter than its 4-byte header: {self.data!r}"
        assert self.is_one_whole_reply, f"expected exactly one whole reply frame, got {self.describe()}"
        return self.frames[0]

    def reply(self):
        """The single reply, decoded JSON of any shape."""
        return json.loads(self.body().decode("utf-8"))

    def describe(self):
        (declared,) = HEADER.unpack_from(self.data) if len(self.data) >= HEADER.size else (None,)
        return "{} bytes (header declares {}): {} whole frame(s), {} trailing byte(s){}".format(
            len(self.data), declared, len(self.frames), len(self.trailing), ", ended by reset" if self.reset else ""
        )


def read_until_eof(sock):
    """Every byte until the peer closes (a reset is an error here)."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def receive_until_closed(sock):
    """Read until the peer closes; a reset after data counts as the end of the stream."""
    chunks = []
    reset = False
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            reset = True
            break
        if not chunk:
            break
        chunks.append(chunk)
    return ReplyStream(b"".join(chunks), reset)


def read_reply(sock):
    """The whole reply on a connection (the runtime closes after it), framing checked; its body."""
    return ReplyStream(read_until_eof(sock)).body()


def connect(socket_path, timeout=HANG_GUARD_SECONDS):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path))
    except BaseException:
        sock.close()
        raise
    return sock


def send_ignoring_early_close(sock, data):
    """Send data; the runtime may answer and close before taking it all (oversized frames)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def exchange(socket_path, data, half_close=False, timeout=HANG_GUARD_SECONDS):
    """Act as a sidecar on a fresh connection: send raw bytes, optionally half-close, read to the end."""
    with connect(socket_path, timeout) as sock:
        send_ignoring_early_close(sock, data)
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return receive_until_closed(sock)


def call(socket_path, envelope, timeout=HANG_GUARD_SECONDS):
    """Send one envelope (a JSON value, or bytes sent as the body) as a frame; return the decoded reply."""
    body = envelope if isinstance(envelope, bytes) else encode_envelope(envelope)
    return exchange(socket_path, frame(body), timeout=timeout).reply()


def reply_outputs(reply):
    """The output envelopes of a successful reply in either dialect: `list`
    sends an array; `status` one envelope as an object, a fan-out as a list."""
    if isinstance(reply, list):
        return reply
    result = reply["result"]
    return result if isinstance(result, list) else [result]


def reply_error(reply):
    """(code, details) of an error reply in either dialect, where details holds
    message, type and traceback; None for a success."""
    if isinstance(reply, list):
        if len(reply) == 1 and "error" in reply[0]:
            return reply[0]["error"], reply[0]["details"]
        return None
    if reply.get("status") == "error":
        return reply["error"], {key: reply[key] for key in reply if key not in ("status", "error")}
    return None


class ShortReply(ConnectionError):
    """The server closed before sending the whole reply frame."""


class RoundTripClient:
    """Sends one prepared request frame per connection to one socket path, for timing.

    Replies are read into one reusable buffer with recv_into, so the client adds
    no allocation that scales with the payload; a kernel timeout
    (SO_RCVTIMEO/SO_SNDTIMEO) bounds a hung server without the poll() that
    socket.settimeout() adds to every call.
    """

    def __init__(self, socket_path, request_frame, timeout_seconds=120):
        self.socket_path = str(socket_path)
        self.frame = request_frame
        self.request_bytes = len(request_frame)
        self._timeval = struct.pack("ll", int(timeout_seconds), 0)
        self._header = bytearray(HEADER.size)
        self._reply = bytearray(len(request_frame) + 4096)
        self.reply_bytes = 0

    def round_trip(self):
        """One message; returns the reply body's length (the body stays in the buffer)."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._timeval)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._timeval)
            conn.connect(self.socket_path)
            conn.sendall(self.frame)
            self._recv_into(conn, memoryview(self._header), HEADER.size)
            (length,) = HEADER.unpack(self._header)
            if length > len(self._reply):
                self._reply = bytearray(length)
            self._recv_into(conn, memoryview(self._reply), length)
        finally:
            conn.close()
        self.reply_bytes = HEADER.size + length
        return length

    @staticmethod
    def _recv_into(conn, view, count):
        received = 0
        while received < count:
            got = conn.recv_into(view[received:count])
            if not got:
                raise ShortReply(f"server closed after {received} of {count} bytes")
            received += got

    def reply(self, length):
        """The reply body of the last round trip, decoded."""
        return json.loads(bytes(self._reply[:length]))
