"""One call to the actor runtime over its Unix socket.

This client ships inside the fake sidecar's image, which carries no test kit;
the tests speak to the runtime through the kit's own client
(tests/kit/asya_testkit/wire.py).

The wire format (see docs/protocol.md): each frame is a 4-byte big-endian
unsigned length followed by that many bytes of UTF-8 JSON. Like the
production sidecar, this client opens one connection per message, sends one
frame, reads one reply frame and closes; the whole call shares one deadline.

Failures are split by whether the runtime could have seen the message,
because that decides what is safe to do next:

* ``RuntimeUnreachable``: connect failed (socket missing or refusing). The
  runtime never saw the message, so retrying it later is safe.
* ``CallFailed``: the message was (or may have been) delivered and no usable
  reply came back: a timeout, a connection closed or reset mid-call, or a
  reply that is not a frame of JSON. Retrying could run the handler twice.
  Its ``reply_started`` says whether any reply byte arrived (see the class).
"""

import json
import logging
import socket
import struct
import time

SOCKET_NAME = "asya-runtime.sock"
_LENGTH = struct.Struct(">I")
LOG = logging.getLogger("asya-sidecar")

# Error codes the sidecar itself reports (the runtime's own codes,
# processing_error and connection_error, are passed through unchanged).
TIMEOUT = "timeout"
RUNTIME_UNAVAILABLE = "runtime_unavailable"
INVALID_REPLY = "invalid_reply"


class RuntimeUnreachable(Exception):
    """The socket could not be dialled; the message was not sent."""


class CallFailed(Exception):
    """The message may have reached the runtime, but no valid reply came.

    ``reply_started`` tells whether any byte of a reply arrived. Without one,
    the runtime produced nothing; it may still have run the handler (a crash)
    or never accepted the connection (it stopped with the call in its backlog).
    """

    def __init__(self, code, message, reply_started=True):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reply_started = reply_started


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def strict_json_loads(data):
    """Decode UTF-8 JSON, refusing NaN and Infinity so it can be re-encoded."""
    return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)


def encode_frame(value):
    body = json.dumps(value, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


def _remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("deadline passed")
    return left


def _recv_exactly(sock, buffer, deadline):
    """Fill ``buffer`` from ``sock``; return the byte count actually read."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        sock.settimeout(_remaining(deadline))
        count = sock.recv_into(view[filled:])
        if count == 0:
            break
        filled += count
    return filled


def call_runtime(socket_path, envelope, timeout, dialect="status"):
    """Send ``envelope`` to the runtime and return its decoded reply.

    ``dialect`` is the runtime's ASYA_REPLY_FORMAT: ``status`` replies are an
    object ``{"status": "ok"|"error", ...}``, ``list`` replies a JSON array of
    objects (docs/protocol.md).

    Raises RuntimeUnreachable or CallFailed (see the module docstring).
    """
    frame = encode_frame(envelope)
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    header = bytearray(_LENGTH.size)
    received = 0
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except socket.timeout:
            # A full listen backlog: the runtime is alive but busy.
            raise CallFailed(TIMEOUT, f"no connection to the runtime within {timeout:g}s",
                             reply_started=False) from None
        except OSError as exc:
            raise RuntimeUnreachable(f"cannot connect to {socket_path}: {exc.strerror or exc}") from None
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(frame)
            LOG.debug("id=%s sent %d bytes; waiting for the reply", envelope.get("id"), len(frame))
            received = _recv_exactly(sock, header, deadline)
            if received < len(header):
                raise CallFailed(RUNTIME_UNAVAILABLE,
                                 f"runtime closed the connection after {received} of 4 length bytes",
                                 reply_started=received > 0)
            (length,) = _LENGTH.unpack(header)
            body = bytearray(length)
            got = _recv_exactly(sock, body, deadline)
            received += got
            if got < length:
                raise CallFailed(RUNTIME_UNAVAILABLE,
                                 f"runtime closed the connection after {got} of {length} reply bytes")
        except socket.timeout:
            raise CallFailed(TIMEOUT, f"no reply from the runtime within {timeout:g}s",
                             reply_started=received > 0) from None
        except OSError as exc:
            raise CallFailed(RUNTIME_UNAVAILABLE,
                             f"connection to the runtime broke: {exc.strerror or exc}",
                             reply_started=received > 0) from None
    finally:
        sock.close()
    try:
        reply = strict_json_loads(bytes(body))
    except ValueError as exc:
        raise CallFailed(INVALID_REPLY, f"reply is not UTF-8 JSON: {exc}") from None
    if dialect == "list":
        if not isinstance(reply, list) or not all(isinstance(item, dict) for item in reply):
            raise CallFailed(INVALID_REPLY, f"reply is not a JSON array of objects: {reply!r:.200}")
    elif not isinstance(reply, dict) or reply.get("status") not in ("ok", "error"):
        raise CallFailed(INVALID_REPLY, f"reply lacks status ok/error: {reply!r:.200}")
    return reply
