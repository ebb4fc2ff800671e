"""asya actor runtime: serve one Python function to the asya sidecar.

The sidecar (a Go process in the same pod) hands this process one message at
a time over a Unix stream socket; this process calls the user's function and
answers exactly once per message::

    sidecar                                 asya_runtime.py
    -------                                 ---------------
    connect(ASYA_SOCKET_DIR/asya-runtime.sock)
    send  [u32 length][UTF-8 JSON envelope]  ->  read frame, decode, validate
                                                  call handler (payload|envelope mode)
          [u32 length][UTF-8 JSON reply]     <-  build reply, write frame, close

The file reads top to bottom in the order a message flows through it:

    configuration  ->  framing  ->  handler loading  ->  envelope validation
    ->  dispatch  ->  replies  ->  server loop  ->  main

Only the standard library is used, and only what CPython 3.7 already has, so
the same file runs inside any model image with whatever interpreter it ships.
The wire protocol and the envelope contract are specified in docs/protocol.md.
"""

import collections
import importlib
import json
import logging
import os
import re
import signal
import socket
import stat
import struct
import sys
import time
import traceback

SOCKET_NAME = "asya-runtime.sock"

# Error codes carried in the "error" field of a reply.
PROCESSING_ERROR = "processing_error"
CONNECTION_ERROR = "connection_error"

# The socket's directory is an emptyDir that only this pod's containers mount,
# so the directory is the access boundary; the socket itself must be writable
# by a sidecar running under another UID.
SOCKET_MODE = 0o666

LOG_LINE_LIMIT = 2000  # characters; keeps payload echoes out of the logs

log = logging.getLogger("asya.runtime")


# --------------------------------------------------------------------------
# Configuration: read from the environment once, checked, then immutable.
# --------------------------------------------------------------------------

Config = collections.namedtuple(
    "Config",
    [
        "socket_dir",
        "handler",
        "handler_mode",
        "include_metadata",
        "chunk_size",
        "enable_validation",
        "max_message_size",
        "io_timeout",
        "log_level",
    ],
)

DEFAULT_SOCKET_DIR = "/var/run/asya"
DEFAULT_CHUNK_SIZE = 4096
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024 * 1024
DEFAULT_IO_TIMEOUT = 30.0
HANDLER_MODES = ("payload", "envelope")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
HANDLER_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
HANDLER_EXAMPLE = (
    "e.g. ASYA_HANDLER=my_package.handler.process, or for a script "
    "/foo/bar/script.py with a function predict: ASYA_HANDLER=script.predict "
    "and PYTHONPATH=/foo/bar"
)


class StartupError(Exception):
    """A mistake in the deployment; its message is the one line to print."""

    exit_code = 2


class HandlerLoadError(StartupError):
    exit_code = 3

    def __init__(self, message, show_traceback=False):
        StartupError.__init__(self, message)
        self.show_traceback = show_traceback


def _parse_bool(environ, name, default):
    raw = environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise StartupError(f"{name}={raw!r} is not a boolean; set it to true/1/yes or false/0/no")


def _parse_positive_int(environ, name, default):
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise StartupError(
            f"{name}={raw!r} is not a positive integer; set it to a number of bytes such as {default}"
        )
    return value


def _parse_seconds(environ, name, default):
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise StartupError(
            f"{name}={raw!r} is not a number of seconds; set it to e.g. {default:g} (0 waits forever)"
        )
    return value


def load_config(environ):
    """Build the immutable Config from an environment mapping, or raise StartupError."""
    handler = environ.get("ASYA_HANDLER", "").strip()
    if not handler:
        raise StartupError("ASYA_HANDLER is not set; set it to module.function, " + HANDLER_EXAMPLE)
    if not HANDLER_PATTERN.match(handler):
        raise StartupError(
            f"ASYA_HANDLER={handler!r} is malformed; it must be a dotted module.function, {HANDLER_EXAMPLE}"
        )

    mode = environ.get("ASYA_HANDLER_MODE", "payload").strip().lower()
    if mode not in HANDLER_MODES:
        raise StartupError(
            "ASYA_HANDLER_MODE={!r} is not a mode; set it to 'payload' or 'envelope'".format(
                environ.get("ASYA_HANDLER_MODE")
            )
        )

    log_level = environ.get("ASYA_LOG_LEVEL", "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        raise StartupError(
            "ASYA_LOG_LEVEL={!r} is not a level; set it to one of {}".format(
                environ.get("ASYA_LOG_LEVEL"), ", ".join(LOG_LEVELS)
            )
        )

    socket_dir = environ.get("ASYA_SOCKET_DIR", "").strip() or DEFAULT_SOCKET_DIR
    # sockaddr_un holds 108 bytes including the terminating NUL.
    socket_path = os.path.join(socket_dir, SOCKET_NAME)
    if len(os.fsencode(socket_path)) > 107:
        raise StartupError(
            f"ASYA_SOCKET_DIR={socket_dir!r} is too long: the socket path {socket_path!r} exceeds the 107 bytes "
            "a Unix socket address allows; choose a shorter directory"
        )

    return Config(
        socket_dir=socket_dir,
        handler=handler,
        handler_mode=mode,
        include_metadata=_parse_bool(environ, "ASYA_INCLUDE_METADATA", False),
        chunk_size=_parse_positive_int(environ, "ASYA_CHUNK_SIZE", DEFAULT_CHUNK_SIZE),
        enable_validation=_parse_bool(environ, "ASYA_ENABLE_VALIDATION", True),
        max_message_size=_parse_positive_int(environ, "ASYA_MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE),
        io_timeout=_parse_seconds(environ, "ASYA_IO_TIMEOUT", DEFAULT_IO_TIMEOUT),
        log_level=log_level,
    )


# --------------------------------------------------------------------------
# Framing: [4-byte big-endian unsigned length][that many bytes], both ways.
# --------------------------------------------------------------------------

HEADER = struct.Struct(">I")
TIMEVAL = struct.Struct("ll")
RECEIVE_TIMEOUT = (socket.SO_RCVTIMEO,)
SEND_TIMEOUT = (socket.SO_SNDTIMEO,)


class ClientGone(Exception):
    """The peer closed before sending a single byte: nothing to answer."""


class FrameError(Exception):
    """The frame could not be taken whole; answered with connection_error."""


def set_io_timeout(conn, seconds, options=RECEIVE_TIMEOUT + SEND_TIMEOUT):
    """Bound blocking reads (SO_RCVTIMEO) and/or writes (SO_SNDTIMEO) on conn.

    Kernel timeouts cost nothing per call, unlike socket.settimeout(), which
    adds a poll() before every recv: at the default 4 KiB chunk size a 10 MiB
    frame takes about 2,560 receive calls. 0 seconds leaves conn blocking.
    """
    if not seconds:
        return
    whole = int(seconds)
    timeval = TIMEVAL.pack(whole, int((seconds - whole) * 1e6))
    for option in options:
        conn.setsockopt(socket.SOL_SOCKET, option, timeval)


# The scratch buffer for the start of each frame: a frame up to this size is
# read without allocating anything. The server allocates it once, so its size
# costs nothing per message.
FIRST_RECEIVE_LIMIT = 256 * 1024


def new_scratch(chunk_size):
    return bytearray(max(HEADER.size, min(chunk_size, FIRST_RECEIVE_LIMIT)))


def read_frame(conn, chunk_size, max_size, io_timeout=0, scratch=None):
    """Return the frame's body as a memoryview or bytearray, without extra copies.

    Each receive call asks for at most chunk_size bytes. The first ones go
    into scratch, a buffer the server reuses for every message, and the very
    first does not wait: the sidecar sends its frame right after connecting,
    so it is usually there already. A frame that fits in scratch is returned
    as a view of it (valid until the next read_frame with the same scratch):
    a small message then costs no allocation and a single receive call.
    io_timeout (seconds) becomes the receive timeout only before a call that
    may wait. A longer frame goes into one buffer of its final size.
    """
    if scratch is None:
        scratch = new_scratch(chunk_size)
    first = memoryview(scratch)
    must_set_timeout = bool(io_timeout)
    try:
        filled = conn.recv_into(first[:chunk_size], 0, socket.MSG_DONTWAIT)
        if not filled:
            raise ClientGone()
    except BlockingIOError:  # connected, but nothing sent yet
        filled = 0
    except socket.timeout:  # socket.settimeout() sockets poll first, even with MSG_DONTWAIT
        raise FrameError("peer sent no complete length header in time") from None
    except ConnectionResetError:
        raise ClientGone() from None
    while filled < HEADER.size:
        if must_set_timeout:
            set_io_timeout(conn, io_timeout, RECEIVE_TIMEOUT)
            must_set_timeout = False
        more = _recv_some(conn, first[filled : filled + chunk_size])
        if not more:
            if not filled:
                raise ClientGone()
            raise FrameError(f"connection closed after {filled} of the 4 length bytes")
        filled += more
    (length,) = HEADER.unpack_from(first)
    if length > max_size:
        raise FrameError(f"frame of {length} bytes exceeds ASYA_MAX_MESSAGE_SIZE={max_size}")
    end = HEADER.size + length
    if filled >= end:
        return first[HEADER.size : end]

    if must_set_timeout:
        set_io_timeout(conn, io_timeout, RECEIVE_TIMEOUT)
    body = bytearray(length)
    view = memoryview(body)
    received = filled - HEADER.size
    view[:received] = first[HEADER.size : filled]
    first.release()
    try:
        recv_into = conn.recv_into
        while received < length:
            try:
                # A slice past the end of the body is cut short: no call reads beyond the frame.
                count = recv_into(view[received : received + chunk_size])
            except (socket.timeout, BlockingIOError):
                raise FrameError(f"peer sent nothing for too long after {received} of {length} bytes")
            if not count:
                raise FrameError(f"connection closed after {received} of {length} body bytes")
            received += count
    finally:
        view.release()
    return body


def _recv_some(conn, buffer):
    """Blocking receive into buffer; 0 when the peer has closed or reset."""
    try:
        return conn.recv_into(buffer)
    except (socket.timeout, BlockingIOError):
        raise FrameError("peer sent no complete length header in time") from None
    except ConnectionResetError:
        return 0


def write_frame(conn, data, io_timeout=0, small_reply=64 * 1024):
    """Send header and body together as one frame.

    A reply up to small_reply bytes fits in the socket's send buffer, so
    sending it cannot block: it needs no timeout and one copy into a single
    buffer is cheaper than a gathered send. A larger one is sent without
    copying the body, under the send timeout.
    """
    header = HEADER.pack(len(data))
    if len(data) <= small_reply:
        conn.sendall(header + data)
        return
    set_io_timeout(conn, io_timeout, SEND_TIMEOUT)
    sent = conn.sendmsg([header, data])
    if sent < len(header):
        conn.sendall(header[sent:])
        sent = len(header)
    if sent - len(header) < len(data):
        conn.sendall(memoryview(data)[sent - len(header) :])


# --------------------------------------------------------------------------
# Handler loading: ASYA_HANDLER=module.path.function through sys.path.
# --------------------------------------------------------------------------


def load_handler(spec):
    """Import the module named by spec and return its callable, or raise HandlerLoadError."""
    module_name, _, function_name = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # SyntaxError, SystemExit, anything the module raises
        missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise HandlerLoadError(
                "cannot import module {!r} named by ASYA_HANDLER={!r}: {}; "
                "make it importable through PYTHONPATH (now {!r})".format(
                    module_name, spec, exc, os.environ.get("PYTHONPATH", "")
                )
            )
        # Found, but importing it failed: the user needs the traceback.
        raise HandlerLoadError(
            f"importing handler module {module_name!r} failed: {type(exc).__name__}: {exc}",
            show_traceback=True,
        )

    where = getattr(module, "__file__", None) or module_name
    if not hasattr(module, function_name):
        callables = sorted(
            name
            for name, value in vars(module).items()
            if callable(value)
            and not name.startswith("_")
            and getattr(value, "__module__", module_name) == module_name
        )
        raise HandlerLoadError(
            "module {!r} ({}) has no attribute {!r} named by ASYA_HANDLER; callables it defines: {}".format(
                module_name, where, function_name, ", ".join(callables) or "none"
            )
        )
    handler = getattr(module, function_name)
    if not callable(handler):
        raise HandlerLoadError(
            f"{function_name!r} in module {module_name!r} ({where}) is a {type(handler).__name__}, not callable; point ASYA_HANDLER at a function"
        )
    return handler


# --------------------------------------------------------------------------
# Decoding: the frame's UTF-8 JSON text to Python values.
# --------------------------------------------------------------------------

JSON_WHITESPACE = " \t\n\r"


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_scan_json_value = _DECODER.scan_once


def decode_message(text):
    """Parse one JSON document; raise ValueError or RecursionError as json.loads does.

    JSONDecoder.decode() wraps its C scanner in two regular-expression
    whitespace scans and a Python-level raw_decode(). A sidecar sends a
    compact document, so it is scanned directly; only an unusual one (leading
    whitespace, no value, data after the value) goes to the full decoder,
    which then also words the error.
    """
    try:
        value, end = _scan_json_value(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    if end != len(text) and text[end:].strip(JSON_WHITESPACE):
        return _DECODER.decode(text)
    return value


# --------------------------------------------------------------------------
# Envelope validation: the input envelope and envelope-mode route rules.
# --------------------------------------------------------------------------


class ProcessingError(Exception):
    """A message the runtime cannot process; the text goes to the sidecar."""


def _type_name(value):
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def validate_route(route, where="route"):
    if not isinstance(route, dict):
        raise ProcessingError(f"{where} must be an object, got {_type_name(route)}")
    actors = route.get("actors")
    if not isinstance(actors, list) or not actors:
        raise ProcessingError(f"{where}.actors must be a non-empty array of strings")
    # No enumerate(): it would double the cost of a valid route's check; a
    # failure looks the index up.
    for actor in actors:
        if not isinstance(actor, str):
            index = next(i for i, item in enumerate(actors) if not isinstance(item, str))
            raise ProcessingError(f"{where}.actors[{index}] must be a string, got {_type_name(actor)}")
    current = route.get("current")
    if type(current) is not int:
        raise ProcessingError(f"{where}.current must be an integer, got {_type_name(current)}")
    if not 0 <= current < len(actors):
        raise ProcessingError(f"{where}.current={current} is out of range for {len(actors)} actors")


def validate_envelope(envelope):
    """Raise ProcessingError naming the first field that breaks the input contract."""
    if not isinstance(envelope, dict):
        raise ProcessingError(f"envelope must be a JSON object, got {_type_name(envelope)}")
    if "payload" not in envelope:
        raise ProcessingError("envelope has no 'payload' field")
    if "route" not in envelope:
        raise ProcessingError("envelope has no 'route' field")
    validate_route(envelope["route"])
    if "headers" in envelope and not isinstance(envelope["headers"], dict):
        raise ProcessingError("headers must be an object, got {}".format(_type_name(envelope["headers"])))
    if "id" in envelope and not isinstance(envelope["id"], str):
        raise ProcessingError("id must be a string, got {}".format(_type_name(envelope["id"])))


def check_route_rules(before, after):
    """Enforce what an envelope-mode handler may change in a route.

    The steps up to and including `current` are history: they stay as they
    were, and `current` itself does not move (the sidecar advances it). Steps
    after `current` may be added, replaced or removed.
    """
    current = before["current"]
    if (
        not isinstance(after, dict)
        or not isinstance(after.get("actors"), list)
        or not after["actors"]
        or type(after.get("current")) is not int
    ):
        # validate_route raises for each of these; its text names the field.
        try:
            validate_route(after, "output route")
        except ProcessingError as exc:
            broken = str(exc)
    elif after["current"] != current:
        broken = f"route.current must stay {current} (the sidecar advances it), got {after['current']}"
    elif after["actors"][: current + 1] != before["actors"][: current + 1]:
        broken = f"route.actors[0..{current}] (processed steps and the current actor) must stay unchanged"
    else:
        # The history is intact; what remains is the shape of the new steps.
        validate_route(after, "output route")
        return
    raise ProcessingError(
        f"route rule violated: {broken}; input route {json.dumps(before)}, output route {json.dumps(after, default=repr)}"
    )


# --------------------------------------------------------------------------
# Dispatch: call the handler in payload or envelope mode; shape its result.
# --------------------------------------------------------------------------

METADATA_KEY = "_asya"


def call_payload_mode(handler, envelope, include_metadata):
    """f(payload) -> [] | [envelope, ...] | envelope, keeping route and headers."""
    payload = envelope["payload"]
    headers = envelope.get("headers")
    if headers is None:
        headers = {}
    # Every output envelope is this one with the handler's value as payload.
    output = {"payload": None, "route": envelope["route"], "headers": headers}
    if "id" in envelope:
        output["id"] = envelope["id"]
    strip_metadata = include_metadata and isinstance(payload, dict)
    if strip_metadata:
        payload = dict(payload)
        payload[METADATA_KEY] = {
            "id": envelope.get("id"),
            "route": copy_json(envelope["route"]),
            "headers": copy_json(headers),
        }

    result = handler(payload)

    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        outputs = []
        for item in result:
            out = dict(output)
            out["payload"] = _without_metadata(item) if strip_metadata else item
            outputs.append(out)
        return outputs
    output["payload"] = _without_metadata(result) if strip_metadata else result
    return output


def copy_json(value):
    """A deep copy of decoded JSON (dicts, lists and immutable scalars only).

    copy.deepcopy would do, at several times the cost: it consults a memo and
    a dispatch table for every value, for types JSON cannot produce.
    """
    if type(value) is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if type(value) is list:
        return [copy_json(item) for item in value]
    return value


def _without_metadata(value):
    if isinstance(value, dict) and METADATA_KEY in value:
        value = dict(value)
        del value[METADATA_KEY]
    return value


def call_envelope_mode(handler, envelope, validate):
    """f(envelope) -> [] | [envelope, ...] | envelope, with route rules enforced."""
    if envelope.get("headers") is None:
        envelope["headers"] = {}
    # The handler may mutate what it is given; keep the input's route and
    # headers for the defaults and the rule check.
    route_before = copy_json(envelope.get("route"))  # absent only with validation off
    headers_before = copy_json(envelope["headers"])
    message_id = envelope.get("id")

    result = handler(envelope)

    if result is None:
        return []
    many = isinstance(result, (list, tuple))
    outputs = list(result) if many else [result]
    for index, out in enumerate(outputs):
        label = f"result[{index}]" if many else "result"
        if not isinstance(out, dict) or "payload" not in out:
            raise ProcessingError(
                "envelope-mode handler must return an envelope (an object with 'payload'), "
                "a list of envelopes, or None; {} is {}".format(
                    label, "an object without 'payload'" if isinstance(out, dict) else _type_name(out)
                )
            )
        if "route" not in out and route_before is not None:
            out["route"] = copy_json(route_before) if many else route_before
        if "headers" not in out:
            out["headers"] = copy_json(headers_before) if many else headers_before
        if "id" not in out and message_id is not None:
            out["id"] = message_id
        if validate:
            if not isinstance(out["headers"], dict):
                raise ProcessingError(
                    "{}.headers must be an object, got {}".format(label, _type_name(out["headers"]))
                )
            check_route_rules(route_before, out["route"])
    return outputs if many else outputs[0]


# --------------------------------------------------------------------------
# Replies: the only place reply objects are built and serialised.
# --------------------------------------------------------------------------

_THIS_FILE = os.path.normcase(os.path.abspath(__file__))


def _compact_encoder(ensure_ascii):
    """Return encode(value) -> str: compact JSON, with NaN and Infinity refused.

    Compact separators and raw UTF-8 keep frames small; NaN and Infinity are
    not JSON, and the sidecar could not parse them. json.dumps() and
    JSONEncoder.encode() build a new C encoder, and a closure around it, on
    every call: about 2 us, a fifth of the runtime's own work on a small
    message. This encoder is built once. The C accelerator is private to the
    json package, so without it the public encoder is used, with the same output.
    """
    encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, allow_nan=False, separators=(",", ":"))
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return encoder.encode
    markers = {}  # the containers being encoded: how a circular reference is caught
    iterencode = make_encoder(
        markers,
        encoder.default,
        json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring,
        None,  # indent
        encoder.key_separator,
        encoder.item_separator,
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )

    def encode(value):
        try:
            return "".join(iterencode(value, 0))
        except BaseException:
            markers.clear()  # a failed encode leaves the containers it was inside marked
            raise

    return encode


_encode_utf8 = _compact_encoder(ensure_ascii=False)
_encode_ascii = _compact_encoder(ensure_ascii=True)


def ok_reply(result):
    return {"status": "ok", "result": result}


def error_reply(code, exc):
    """Build the error reply for exc; the traceback starts at the user's code."""
    try:
        text = str(exc)
    except Exception:  # a user exception whose __str__ is itself broken
        text = "<str() of the exception failed>"
    if isinstance(exc, (ProcessingError, FrameError)):
        message = text
    else:
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return {
        "status": "error",
        "error": code,
        "message": message,
        "type": type(exc).__name__,
        "traceback": _format_traceback(exc),
    }


def _format_traceback(exc):
    try:
        if isinstance(exc, (ProcessingError, FrameError)):
            # The runtime's own errors carry only their final line: their
            # causes are runtime internals, already summarised in the message.
            return "".join(traceback.format_exception_only(type(exc), exc))
        return "".join(traceback.format_exception(type(exc), exc, _user_traceback(exc)))
    except Exception:  # a broken user exception must not cost the reply
        return ""


def _user_traceback(exc):
    """exc's traceback from the first frame of user code: the runtime's own
    frames, and importlib's when a handler module is imported, are left out."""
    tb = exc.__traceback__
    while tb is not None and (
        os.path.normcase(tb.tb_frame.f_code.co_filename) == _THIS_FILE
        or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
    ):
        tb = tb.tb_next
    return tb


def is_plain_ascii(text):
    """True if text is ASCII with no backslash, i.e. JSON with no escape in it."""
    return text.isascii() and "\\" not in text


def encode_reply(reply, plain_ascii_likely=False):
    """Serialise a reply to JSON text; raise ProcessingError if it is not JSON.

    CPython's C encoder is faster on its ASCII-escaping path than on the raw
    UTF-8 one (for a 10 MiB base64 string, by 15% on 3.7 and 80% on 3.11).
    When the request was plain ASCII (no escape at all: base64 blobs,
    numbers, identifiers), so usually is the reply: it is then encoded on the
    fast path, and if the result holds no backslash, nothing was escaped, so
    it is exactly the text the UTF-8 path gives. Otherwise the UTF-8 path
    encodes it again, and non-ASCII text stays raw UTF-8 on the wire.
    """
    try:
        if plain_ascii_likely:
            text = _encode_ascii(reply)
            if "\\" not in text:
                return text
            del text  # not kept alive while the reply is encoded again
        return _encode_utf8(reply)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProcessingError(f"handler result is not JSON-serialisable: {exc}") from None


def encode_error(reply):
    """Error replies hold only strings, so ASCII JSON of them cannot fail."""
    return _encode_ascii(reply)


def wire_bytes(text):
    """The UTF-8 bytes of a reply's JSON text.

    A lone surrogate (legal in a Python str, not in UTF-8) can only sit in a
    JSON string, where its escape (the 6 characters \\udXXX that
    backslashreplace writes) is valid JSON for the same value.
    """
    return text.encode("utf-8", "backslashreplace")


def _id_for_log(message_id):
    return "-" if message_id is None else _for_log(message_id)


def _for_log(text):
    text = str(text).replace("\n", "\\n")
    if len(text) > LOG_LINE_LIMIT:
        return f"{text[:LOG_LINE_LIMIT]}... ({len(text) - LOG_LINE_LIMIT} characters cut)"
    return text


# --------------------------------------------------------------------------
# Server loop: accept, answer one message, close; one connection at a time.
# --------------------------------------------------------------------------


# Just under glibc's 32 MiB ceiling for its dynamic mmap threshold: a freed
# block at or above the ceiling leaves the threshold where it was.
HEAP_WARM_UP_BYTES = 31 * 1024 * 1024


class ActorServer:
    """Serves config.handler on a Unix socket until shutdown() or a stop signal."""

    def __init__(self, config, handler):
        self.config = config
        self.handler = handler
        self.socket_path = os.path.join(config.socket_dir, SOCKET_NAME)
        self._listener = None
        self._socket_inode = None
        self._stopping = False
        self._small_reply = 0
        self._scratch = new_scratch(config.chunk_size)
        # Freeing a block that glibc mapped on its own raises its mmap
        # threshold to that block's size (32 MiB at most) and its heap-trim
        # threshold to twice that. Without this, the frame, text and reply
        # buffers of every message above 128 KiB are mapped afresh and faulted
        # in page by page, which costs a 10 MiB message a quarter of its time.
        # After it, buffers up to about 31 MiB come from the heap and are
        # reused by the next message; the price is that the heap keeps up to
        # twice that freed between messages, never above the peak the
        # messages themselves needed. bytes(n) is calloc: a block this size is
        # mapped as fresh zero pages and never touched, so this costs no
        # memory and no time (bytearray(n) would write every page).
        bytes(HEAP_WARM_UP_BYTES)

    # -- lifecycle -----------------------------------------------------------

    def bind(self):
        """Create the listening socket; its appearance at socket_path means ready.

        The socket is bound under a temporary name and renamed into place, so
        a client never finds a path that is not yet listening, and a stale
        socket left by a killed runtime is replaced atomically.
        """
        try:
            if not os.path.isdir(self.config.socket_dir):
                os.makedirs(self.config.socket_dir, exist_ok=True)
                # Whatever the umask: a sidecar under another UID must reach
                # the socket (others may connect, not write the directory).
                os.chmod(self.config.socket_dir, 0o755)
        except OSError as exc:
            raise StartupError(f"cannot create ASYA_SOCKET_DIR={self.config.socket_dir!r}: {exc.strerror}")
        self._refuse_foreign_file()
        temp_path = f"{self.socket_path}.{os.getpid()}.tmp"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.lexists(temp_path):
                os.unlink(temp_path)
            listener.bind(temp_path)
            os.chmod(temp_path, SOCKET_MODE)
            listener.listen(128)
            os.rename(temp_path, self.socket_path)
        except OSError as exc:
            listener.close()
            raise StartupError(
                f"cannot listen on {self.socket_path!r}: {exc.strerror or exc}; check that ASYA_SOCKET_DIR is writable"
            )
        self._socket_inode = os.stat(self.socket_path).st_ino
        self._listener = listener
        # Accepted sockets start with the default send buffer, as this one
        # does; a reply within half of it is sent without a timeout.
        self._small_reply = min(64 * 1024, listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)

    def _refuse_foreign_file(self):
        try:
            mode = os.lstat(self.socket_path).st_mode
        except OSError:
            return
        if not stat.S_ISSOCK(mode):
            raise StartupError(
                f"{self.socket_path!r} exists and is not a socket; remove it or choose another ASYA_SOCKET_DIR"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket_path)
        except OSError:
            return  # stale: nobody listens; bind() replaces it
        finally:
            probe.close()
        raise StartupError(
            f"another process already serves {self.socket_path!r}; give each runtime its own ASYA_SOCKET_DIR"
        )

    def shutdown(self, *_signal_args):
        """Stop accepting; the message in flight, if any, is still answered.

        Safe to call from a signal handler: shutting down the listener wakes
        a blocked accept() with an error instead of waiting for a client.
        """
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        """Remove our socket file (only if it is still ours) and the listener."""
        try:
            if os.stat(self.socket_path).st_ino == self._socket_inode:
                os.unlink(self.socket_path)
        except OSError:
            pass
        if self._listener is not None:
            self._listener.close()

    def serve_forever(self):
        # Connections are the C socket type (socket.SocketType) made from the
        # accepted descriptor, not socket.socket: that class's Python-level
        # __init__ and close() cost 2-4 us per message, 2% of a small
        # message's round trip, and nothing here needs what they add
        # (makefile()). Family, type and protocol are passed, so wrapping the
        # descriptor makes no system call and cannot fail.
        accept_descriptor = self._listener._accept
        kind = (self._listener.family, self._listener.type, self._listener.proto)
        while not self._stopping:
            try:
                descriptor, _ = accept_descriptor()
                conn = socket.SocketType(*kind, descriptor)
            except OSError as exc:
                if self._stopping:
                    break
                # EMFILE and friends: back off instead of dying or spinning.
                log.error("accept failed: %s", exc)
                time.sleep(0.1)
                continue
            try:
                self.handle_connection(conn)
            except Exception:  # never let one connection end the server
                log.exception("unexpected failure while handling a connection")
            finally:
                conn.close()

    # -- one message ---------------------------------------------------------

    def handle_connection(self, conn):
        """Read one frame, answer it once.

        The stages run in one function so each large intermediate (frame
        bytes, text, parsed message, reply text) is released as soon as the
        next one exists: `make bench` measures a peak of about three times the
        message size above idle, against four for a naive server.
        """
        config = self.config
        try:
            frame = read_frame(
                conn, config.chunk_size, config.max_message_size, config.io_timeout, self._scratch
            )
        except ClientGone:
            log.debug("client closed without sending a frame")
            return
        except FrameError as exc:
            log.error("[id=-] connection_error: %s", exc)
            self._send(conn, wire_bytes(encode_error(error_reply(CONNECTION_ERROR, exc))), None)
            return
        except OSError as exc:
            log.warning("client vanished while sending: %s", exc)
            return

        message_id = None
        try:
            try:
                text = str(frame, "utf-8")  # frame may be a memoryview, which has no decode()
            except UnicodeDecodeError as exc:
                raise ProcessingError(f"message is not valid UTF-8: {exc}") from None
            del frame
            try:
                envelope = decode_message(text)
            except (ValueError, RecursionError) as exc:
                raise ProcessingError(f"message is not valid JSON: {exc}") from None
            plain_ascii_request = is_plain_ascii(text)
            del text
            if isinstance(envelope, dict) and isinstance(envelope.get("id"), str):
                message_id = envelope["id"]
            if config.enable_validation:
                validate_envelope(envelope)
            elif not isinstance(envelope, dict) or "payload" not in envelope:
                raise ProcessingError("envelope must be a JSON object with a 'payload' field")
            result = self.dispatch(envelope)
            del envelope
            reply_text = encode_reply(ok_reply(result), plain_ascii_likely=plain_ascii_request)
            # The payload goes before the reply's bytes are made, so the
            # heap can reuse its memory for them.
            del result
        except BaseException as exc:  # a handler may raise anything, SystemExit included
            reply = error_reply(PROCESSING_ERROR, exc)
            log.error(
                "[id=%s] processing_error: %s",
                _id_for_log(message_id),
                _for_log(reply["message"]),
            )
            reply_text = encode_error(reply)
        data = wire_bytes(reply_text)
        del reply_text
        self._send(conn, data, message_id)

    def dispatch(self, envelope):
        if self.config.handler_mode == "envelope":
            return call_envelope_mode(self.handler, envelope, self.config.enable_validation)
        if "route" not in envelope:  # validation off and no route: nothing to keep
            envelope["route"] = None
        return call_payload_mode(self.handler, envelope, self.config.include_metadata)

    def _send(self, conn, data, message_id):
        # No shutdown(SHUT_WR) after the reply: serve_forever closes the
        # connection right away, which ends the stream for the client too.
        try:
            write_frame(conn, data, self.config.io_timeout, self._small_reply)
        except OSError as exc:
            log.warning(
                "[id=%s] reply not delivered (client gone or stalled): %s",
                _id_for_log(message_id),
                exc.strerror or exc,
            )


# --------------------------------------------------------------------------
# main: configure, load the handler, then (and only then) open the socket.
# --------------------------------------------------------------------------


def main(environ=None):
    environ = os.environ if environ is None else environ
    try:
        config = load_config(environ)
        handler = load_handler(config.handler)
        server = ActorServer(config, handler)
        # Installed before the socket exists, so no stop signal can leave it stale.
        signal.signal(signal.SIGTERM, server.shutdown)
        signal.signal(signal.SIGINT, server.shutdown)
        server.bind()
    except StartupError as exc:
        sys.stderr.write(f"asya-runtime: error: {exc}\n")
        if getattr(exc, "show_traceback", False):
            cause = exc.__context__
            traceback.print_exception(type(cause), cause, _user_traceback(cause), file=sys.stderr)
        sys.stderr.flush()
        return exc.exit_code

    logging.basicConfig(
        level=config.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s asya-runtime: %(message)s",
    )
    log.info(
        "ready: python %s, handler %s, mode %s, socket %s, max message %d bytes, chunk %d bytes, "
        "validation %s",
        sys.version.split()[0],
        config.handler,
        config.handler_mode,
        server.socket_path,
        config.max_message_size,
        config.chunk_size,
        "on" if config.enable_validation else "off",
    )
    try:
        server.serve_forever()
    finally:
        server.close()
    log.info("stopped: socket %s removed", server.socket_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
