"""asya actor runtime: serve one Python function to the asya sidecar.

The sidecar (a process in the same pod) hands this process one message at a
time over a Unix stream socket; this process calls the user's function and
answers exactly once per message::

    sidecar                                 asya_runtime.py
    -------                                 ---------------
    wait for ASYA_SOCKET_DIR/runtime-ready  <-  load handler, listen, write runtime-ready
    connect(ASYA_SOCKET_DIR/asya-runtime.sock)
    send  [u32 length][UTF-8 JSON envelope]  ->  read frame, decode, validate
                                                  call handler (payload|envelope mode)
          [u32 length][UTF-8 JSON reply]     <-  build reply, write frame, close

Replies come in two dialects (ASYA_REPLY_FORMAT): "status", this project's
object, and "list", the array the asya Go sidecar decodes.

The file reads top to bottom in the order a message flows through it:

    configuration  ->  framing  ->  handler loading  ->  decoding
    ->  envelope validation  ->  dispatch  ->  replies  ->  handler calls
    ->  server loop  ->  probe  ->  main

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
import types

SOCKET_NAME = "asya-runtime.sock"

# Error codes carried in the "error" field of a reply. The status dialect has
# no msg_parsing_error: it reports those failures as processing_error.
PROCESSING_ERROR = "processing_error"
MSG_PARSING_ERROR = "msg_parsing_error"
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
        "handler_timeout",
        "reply_format",
        "log_level",
    ],
)

DEFAULT_SOCKET_DIR = "/var/run/asya"
DEFAULT_CHUNK_SIZE = 4096
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024 * 1024
DEFAULT_IO_TIMEOUT = 30.0
HANDLER_MODES = ("payload", "envelope")
# "status": this project's reply object; "list": the array the asya Go sidecar
# decodes (docs/protocol.md, "Running under the asya Go sidecar").
REPLY_FORMATS = ("status", "list")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
HANDLER_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
HANDLER_EXAMPLE = (
    "e.g. ASYA_HANDLER=my_package.handler.process (a function) or my_package.model.Model.predict "
    "(a method of a class created once), or for a script /foo/bar/script.py with a function predict: "
    "ASYA_HANDLER=script.predict and PYTHONPATH=/foo/bar"
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


def _parse_number(environ, name, default, kind, allow_zero, what):
    """The one parser for numeric variables: kind is int or float; NaN, infinity
    and negative numbers are refused, and so is 0 unless allow_zero."""
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        value = None
    if value is None or not 0 <= value < float("inf") or (value == 0 and not allow_zero):
        raise StartupError(f"{name}={raw!r} is not {what}; set it to e.g. {default:g}")
    return value


def _choice(environ, name, default, choices, normalise=str.lower):
    raw = environ.get(name)
    value = default if raw is None else normalise(raw.strip())
    if value not in choices:
        raise StartupError("{}={!r} is not valid; set it to {}".format(name, raw, " or ".join(map(repr, choices))))
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
    socket_dir = socket_dir_from(environ)
    return Config(
        socket_dir=socket_dir,
        handler=handler,
        handler_mode=_choice(environ, "ASYA_HANDLER_MODE", "payload", HANDLER_MODES),
        include_metadata=_parse_bool(environ, "ASYA_INCLUDE_METADATA", False),
        chunk_size=_parse_number(
            environ, "ASYA_CHUNK_SIZE", DEFAULT_CHUNK_SIZE, int, False, "a positive integer (bytes)"
        ),
        enable_validation=_parse_bool(environ, "ASYA_ENABLE_VALIDATION", True),
        max_message_size=_parse_number(
            environ, "ASYA_MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE, int, False, "a positive integer (bytes)"
        ),
        io_timeout=_parse_number(
            environ, "ASYA_IO_TIMEOUT", DEFAULT_IO_TIMEOUT, float, True, "a number of seconds (0 waits forever)"
        ),
        handler_timeout=_parse_number(
            environ, "ASYA_HANDLER_TIMEOUT", 0.0, float, True, "a number of seconds (0: no deadline)"
        ),
        reply_format=_choice(environ, "ASYA_REPLY_FORMAT", "status", REPLY_FORMATS),
        log_level=_choice(environ, "ASYA_LOG_LEVEL", "INFO", LOG_LEVELS, normalise=str.upper),
    )


def socket_dir_from(environ):
    socket_dir = environ.get("ASYA_SOCKET_DIR", "").strip() or DEFAULT_SOCKET_DIR
    # sockaddr_un holds 108 bytes including the terminating NUL.
    socket_path = os.path.join(socket_dir, SOCKET_NAME)
    if len(os.fsencode(socket_path)) > 107:
        raise StartupError(
            f"ASYA_SOCKET_DIR={socket_dir!r} is too long: the socket path {socket_path!r} exceeds the 107 bytes "
            "a Unix socket address allows; choose a shorter directory"
        )
    return socket_dir


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
    adds a poll() before every recv, and a large frame at the default chunk
    size takes thousands of them. 0 seconds leaves conn blocking.
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
    """Return the callable ASYA_HANDLER names, or raise HandlerLoadError."""
    return load_handler_and_instance(spec)[0]


def load_handler_and_instance(spec):
    """Return (callable, instance) for ASYA_HANDLER, or raise HandlerLoadError.

    module.path.function names a function; instance is None. When
    module.path.Class is not a module but module.path defines a class Class,
    module.path.Class.method names a method: the class is created once, with
    no arguments, here (before the socket exists, so readiness means the model
    is loaded), and the bound method is the handler.
    """
    module_name, _, attribute = spec.rpartition(".")
    owner_name, _, class_name = module_name.rpartition(".")
    try:
        module = _import_handler_module(module_name, spec)
    except HandlerLoadError as error:
        if not (getattr(error, "module_missing", False) and owner_name):
            raise
        not_found = error
    else:
        where = "module {!r} ({})".format(module_name, getattr(module, "__file__", None) or module_name)
        return _get_callable(module, attribute, spec, where), None

    # Outside the except block, so a failing __init__'s traceback is not
    # chained to the import error that led here.
    try:
        owner = _import_handler_module(owner_name, spec)
    except HandlerLoadError as owner_error:
        if getattr(owner_error, "module_missing", False):
            raise not_found from None
        raise
    cls = getattr(owner, class_name, None)
    if not isinstance(cls, type):
        classes = sorted(
            name
            for name, value in vars(owner).items()
            if isinstance(value, type) and not name.startswith("_") and value.__module__ == owner_name
        )
        raise HandlerLoadError(
            "{}; nor is {!r} a class of module {!r} (classes it defines: {})".format(
                not_found, class_name, owner_name, ", ".join(classes) or "none"
            )
        )
    instance = _create_instance(cls, spec)
    return _get_callable(instance, attribute, spec, f"class {class_name!r} of module {owner_name!r}"), instance


def _import_handler_module(module_name, spec):
    try:
        return importlib.import_module(module_name)
    except BaseException as exc:  # SyntaxError, SystemExit, anything the module raises
        missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            error = HandlerLoadError(
                "cannot import module {!r} named by ASYA_HANDLER={!r}: {}; "
                "make it importable through PYTHONPATH (now {!r})".format(
                    module_name, spec, exc, os.environ.get("PYTHONPATH", "")
                )
            )
            error.module_missing = True
            raise error from None
        # Found, but importing it failed: the user needs the traceback.
        raise HandlerLoadError(
            f"importing handler module {module_name!r} failed: {type(exc).__name__}: {exc}",
            show_traceback=True,
        )


def _create_instance(cls, spec):
    import inspect  # only class handlers pay for it

    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # some C types have none; calling them will tell
        signature = None
    if signature is not None:
        required = [
            name
            for name, parameter in signature.parameters.items()
            if parameter.default is parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]
        if required:
            raise HandlerLoadError(
                "class {!r} named by ASYA_HANDLER={!r} is created with no arguments, but its __init__ "
                "requires {}; give them defaults (e.g. read them from the environment)".format(
                    cls.__name__, spec, ", ".join(required)
                )
            )
    try:
        return cls()
    except BaseException as exc:
        raise HandlerLoadError(
            f"creating {cls.__name__}() for ASYA_HANDLER={spec!r} failed: {type(exc).__name__}: {exc}",
            show_traceback=True,
        )


def _get_callable(owner, attribute, spec, where):
    if not hasattr(owner, attribute):
        module_name = owner.__name__ if isinstance(owner, types.ModuleType) else type(owner).__module__
        callables = sorted(
            name
            for name in dir(owner)
            if not name.startswith("_")
            and callable(getattr(owner, name, None))
            and getattr(getattr(owner, name), "__module__", module_name) == module_name
        )
        raise HandlerLoadError(
            "{} has no attribute {!r} named by ASYA_HANDLER={!r}; callables it defines: {}".format(
                where, attribute, spec, ", ".join(callables) or "none"
            )
        )
    handler = getattr(owner, attribute)
    if not callable(handler):
        raise HandlerLoadError(
            f"{attribute!r} in {where} is a {type(handler).__name__}, not callable; "
            "point ASYA_HANDLER at a function or method"
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
    """A message the runtime cannot process; the text goes to the sidecar.

    code is MSG_PARSING_ERROR when the input itself is broken (not UTF-8, not
    JSON, not a valid envelope) and PROCESSING_ERROR otherwise.
    """

    def __init__(self, message, code=PROCESSING_ERROR):
        Exception.__init__(self, message)
        self.code = code


def parsing_error(message):
    return ProcessingError(message, MSG_PARSING_ERROR)


def _type_name(value):
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def route_shape_error(route, where):
    """What is wrong with route's shape (object, actors, integer current), or None."""
    if not isinstance(route, dict):
        return f"{where} must be an object, got {_type_name(route)}"
    actors = route.get("actors")
    if not isinstance(actors, list) or not actors:
        return f"{where}.actors must be a non-empty array of strings"
    # No enumerate(): it would double the cost of a valid route's check; a
    # failure looks the index up.
    for actor in actors:
        if not isinstance(actor, str):
            index = next(i for i, item in enumerate(actors) if not isinstance(item, str))
            return f"{where}.actors[{index}] must be a string, got {_type_name(actor)}"
    current = route.get("current")
    if type(current) is not int:
        return f"{where}.current must be an integer, got {_type_name(current)}"
    return None


def validate_envelope(envelope):
    """Raise a msg_parsing_error naming the first field that breaks the input contract."""
    if not isinstance(envelope, dict):
        raise parsing_error(f"envelope must be a JSON object, got {_type_name(envelope)}")
    if "payload" not in envelope:
        raise parsing_error("envelope has no 'payload' field")
    if "route" not in envelope:
        raise parsing_error("envelope has no 'route' field")
    route = envelope["route"]
    broken = route_shape_error(route, "route")
    if broken:
        raise parsing_error(broken)
    if not 0 <= route["current"] < len(route["actors"]):
        raise parsing_error(f"route.current={route['current']} is out of range for {len(route['actors'])} actors")
    if "headers" in envelope and not isinstance(envelope["headers"], dict):
        raise parsing_error("headers must be an object, got {}".format(_type_name(envelope["headers"])))
    if "id" in envelope and not isinstance(envelope["id"], str):
        raise parsing_error("id must be a string, got {}".format(_type_name(envelope["id"])))


def check_route_rules(before, after, may_advance=False):
    """Enforce what an envelope-mode handler may change in a route.

    The steps up to and including `current` are history: they stay as they
    were. `current` stays where it was (the runtime or the sidecar advances
    it), or, with may_advance (the list dialect), is already advanced by one,
    as handlers written for the reference runtime do. Steps after `current`
    may be added, replaced or removed. Every failure, of shape or of rule, is
    reported in one form: "route rule violated: <what>; input route ...,
    output route ...".
    """
    current = before["current"]
    broken = route_shape_error(after, "output route")
    if broken is None:
        if after["current"] != current and not (may_advance and after["current"] == current + 1):
            if may_advance:
                broken = f"route.current must stay {current} or be advanced to {current + 1}, got {after['current']}"
            else:
                broken = f"route.current must stay {current} (the sidecar advances it), got {after['current']}"
        elif after["actors"][: current + 1] != before["actors"][: current + 1]:
            broken = f"route.actors[0..{current}] (processed steps and the current actor) must stay unchanged"
        else:
            return
    raise ProcessingError(
        f"route rule violated: {broken}; input route {json.dumps(before)}, output route {json.dumps(after, default=repr)}"
    )


# --------------------------------------------------------------------------
# Dispatch: call the handler in payload or envelope mode; shape its result.
# --------------------------------------------------------------------------

METADATA_KEY = "_asya"


def call_payload_mode(handler, envelope, include_metadata, advance_route=False):
    """f(payload) -> [] | [envelope, ...] | envelope, keeping route and headers.

    advance_route (the list dialect): the outputs' route.current is the
    input's plus one, as the asya Go sidecar expects of the runtime.
    """
    payload = envelope["payload"]
    headers = envelope.get("headers")
    if headers is None:
        headers = {}
    route = envelope["route"]
    if advance_route:
        route = advanced(route)
    # Every output envelope is this one with the handler's value as payload.
    output = {"payload": None, "route": route, "headers": headers}
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

    copy.deepcopy would do, at a higher cost: it consults a memo and a
    dispatch table for every value, for types JSON cannot produce.
    """
    if type(value) is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if type(value) is list:
        return [copy_json(item) for item in value]
    return value


def advanced(route):
    """A copy of route with current moved on by one (route itself if it has no integer current)."""
    if isinstance(route, dict) and type(route.get("current")) is int:
        route = dict(route)
        route["current"] += 1
    return route


def _without_metadata(value):
    if isinstance(value, dict) and METADATA_KEY in value:
        value = dict(value)
        del value[METADATA_KEY]
    return value


def call_envelope_mode(handler, envelope, validate, advance_route=False):
    """f(envelope) -> [] | [envelope, ...] | envelope, with route rules enforced.

    advance_route (the list dialect): an output whose route.current is the
    input's is advanced by one; one already advanced by the handler is sent
    as it is.
    """
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
            check_route_rules(route_before, out["route"], advance_route)
        if (
            advance_route
            and isinstance(route_before, dict)
            and isinstance(out["route"], dict)
            and out["route"].get("current") == route_before.get("current")
        ):
            out["route"] = advanced(out["route"])
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
    every call, a measurable part of a small message's cost
    (docs/performance.md, "Per message"). This encoder is built once. The C
    accelerator is private to the json package, so without it the public
    encoder is used, with the same output.
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


def ok_reply(result, reply_format="status"):
    """The reply for a handled message; result is an envelope or a list of them."""
    if reply_format == "list":
        return result if isinstance(result, list) else [result]
    return {"status": "ok", "result": result}


def error_reply(code, exc, reply_format="status", traceback_text=None):
    """Build the error reply for exc; the traceback starts at the user's code."""
    try:
        text = str(exc)
    except Exception:  # a user exception whose __str__ is itself broken
        text = "<str() of the exception failed>"
    if isinstance(exc, (ProcessingError, FrameError)):
        message = text
    else:
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if traceback_text is None:
        traceback_text = _format_traceback(exc)
    details = {"message": message, "type": type(exc).__name__, "traceback": traceback_text}
    if reply_format == "list":
        return [{"error": code, "details": details}]
    if code == MSG_PARSING_ERROR:
        code = PROCESSING_ERROR
    reply = {"status": "error", "error": code}
    reply.update(details)
    return reply


def error_message(reply):
    """The message of an error reply, in either dialect."""
    return reply[0]["details"]["message"] if isinstance(reply, list) else reply["message"]


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
    UTF-8 one (docs/performance.md, "Per message").
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
# Handler calls: plain results, one event loop, the per-message deadline.
# --------------------------------------------------------------------------

# Results that are not values yet: they are run or drained before replying.
DEFERRED_RESULTS = frozenset((types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType))
# Code flags of `async def` functions and async generators (inspect.CO_COROUTINE,
# inspect.CO_ASYNC_GENERATOR), read without importing inspect for every handler.
ASYNC_CODE_FLAGS = 0x80 | 0x200

# How long a handler may run past its deadline in code that cannot be
# interrupted (C code) before the runtime answers for it and exits.
HANDLER_TIMEOUT_GRACE = 2.0
# The last resort, for C code that also holds the GIL so that no Python thread
# can run: faulthandler's own thread dumps the stacks and exits this much later.
STUCK_DUMP_MARGIN = 2.0
# The longest the deadline watchdog sleeps between looks at the call in flight.
WATCHDOG_POLL = 0.25
EXIT_HANDLER_STUCK = 4


class HandlerTimeout(BaseException):
    """Raised inside a handler that overran ASYA_HANDLER_TIMEOUT.

    A BaseException, like KeyboardInterrupt, so that the handler's own
    `except Exception` cannot swallow it.
    """


def is_async_function(function):
    code = getattr(getattr(function, "__func__", function), "__code__", None)
    return code is not None and bool(code.co_flags & ASYNC_CODE_FLAGS)


async def _collect(async_generator):
    return [item async for item in async_generator]


class HandlerCaller:
    """Calls the user's function and hands back a plain value.

    A coroutine runs to its end on one event loop, made at start-up for an
    `async def` handler and reused for every message; a generator or an async
    generator is drained into a list (fan-out), so an exception half way
    leaves no partial output. With a timeout, `call` is interrupted by
    HandlerTimeout once the deadline passes (the server runs in the main
    thread).

    The deadline costs the call two clock reads: the server's watchdog thread
    (ActorServer._watch_deadlines) notices a call past its deadline and sends
    SIGALRM to the main thread, whose handler raises HandlerTimeout there. A
    timer per call (setitimer) would cost a system call per message, a
    measurable share of a small message (docs/performance.md).
    """

    def __init__(self, function, timeout=0.0):
        self.function = function
        self.timeout = timeout
        self.started = None  # monotonic start of the call under a deadline
        self._loop = self._new_loop() if is_async_function(function) else None
        if timeout:
            signal.signal(signal.SIGALRM, self._on_deadline)
            self.call = self._call_with_deadline
        else:
            self.call = self._call

    def _call(self, argument):
        result = self.function(argument)
        if type(result) in DEFERRED_RESULTS:
            result = self._drain(result)
        return result

    def _call_with_deadline(self, argument):
        self.started = time.monotonic()
        try:
            return self._call(argument)
        finally:
            self.started = None

    def _on_deadline(self, signum, frame):
        # A signal that arrives late, after the call it was meant for, finds
        # no call past its deadline and is ignored.
        started = self.started
        if started is not None and time.monotonic() - started >= self.timeout:
            raise HandlerTimeout(f"the handler ran longer than ASYA_HANDLER_TIMEOUT={self.timeout:g} s")

    def _drain(self, result):
        if type(result) is types.GeneratorType:
            return list(result)
        if self._loop is None:  # a plain function returned a coroutine
            self._loop = self._new_loop()
        if type(result) is types.AsyncGeneratorType:
            result = _collect(result)
        task = self._loop.create_task(result)
        try:
            return self._loop.run_until_complete(task)
        except BaseException:
            if not task.done():  # interrupted: the task must not run on into the next message
                task.cancel()
                try:
                    self._loop.run_until_complete(task)
                except BaseException:
                    pass
            raise

    @staticmethod
    def _new_loop():
        import asyncio  # only async handlers pay for it

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop

    def close(self):
        if self._loop is not None:
            self._loop.close()


# --------------------------------------------------------------------------
# Server loop: accept, answer one message, close; one connection at a time.
# --------------------------------------------------------------------------

READY_FILE_NAME = "runtime-ready"


def prepare_socket_dir(socket_dir):
    """Before the handler is loaded: create the directory, fail fast if the
    socket path is taken, and remove a `runtime-ready` left by an earlier
    process (after a container restart its PID may even be ours)."""
    try:
        if not os.path.isdir(socket_dir):
            os.makedirs(socket_dir, exist_ok=True)
            # Whatever the umask: a sidecar under another UID must reach
            # the socket (others may connect, not write the directory).
            os.chmod(socket_dir, 0o755)
    except OSError as exc:
        raise StartupError(f"cannot create ASYA_SOCKET_DIR={socket_dir!r}: {exc.strerror}")
    socket_path = os.path.join(socket_dir, SOCKET_NAME)
    try:
        mode = os.lstat(socket_path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISSOCK(mode):
        raise StartupError(f"{socket_path!r} exists and is not a socket; remove it or choose another ASYA_SOCKET_DIR")
    if mode is not None:
        probe_connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe_connection.connect(socket_path)
        except OSError:
            pass  # stale: nobody listens; bind() replaces it
        else:
            raise StartupError(
                f"another process already serves {socket_path!r}; give each runtime its own ASYA_SOCKET_DIR"
            )
        finally:
            probe_connection.close()
    ready_path = os.path.join(socket_dir, READY_FILE_NAME)
    try:
        os.unlink(ready_path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StartupError(f"cannot remove the stale {ready_path!r}: {exc.strerror}")


class ActorServer:
    """Serves a handler on a Unix socket until shutdown() or a stop signal.

    Its files in config.socket_dir: the socket, and `runtime-ready` (holding
    this process's PID), which exists exactly while this process has its
    handler loaded and listens.
    """

    def __init__(self, config, handler):
        self.config = config
        self.caller = HandlerCaller(handler, config.handler_timeout)
        self.socket_path = os.path.join(config.socket_dir, SOCKET_NAME)
        self.ready_path = os.path.join(config.socket_dir, READY_FILE_NAME)
        self._listener = None
        self._socket_inode = None
        self._stopping = False
        self._small_reply = 0
        self._scratch = new_scratch(config.chunk_size)
        self._in_flight = None  # (conn, message id) of the message being handled
        # With a deadline, the watchdog thread may answer a stuck call; the
        # lock keeps its reply and a late one of the main thread apart.
        self._reply_lock = None

    # -- lifecycle -----------------------------------------------------------

    def bind(self):
        """Create the listening socket, then announce readiness.

        The socket is bound under a temporary name and renamed into place, so
        a client never finds a path that is not yet listening, and a stale
        socket left by a killed runtime is replaced atomically; the ready file
        is written the same way, once the socket listens.
        """
        # main() ran this before the handler loaded; a model load can take
        # minutes, so another runtime may have taken the path since.
        prepare_socket_dir(self.config.socket_dir)
        temp_path = f"{self.socket_path}.{os.getpid()}.tmp"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.lexists(temp_path):
                os.unlink(temp_path)
            listener.bind(temp_path)
            os.chmod(temp_path, SOCKET_MODE)
            listener.listen(128)
            os.rename(temp_path, self.socket_path)
            self._socket_inode = os.stat(self.socket_path).st_ino
            self._write_ready_file()
        except OSError as exc:
            listener.close()
            raise StartupError(
                f"cannot listen on {self.socket_path!r}: {exc.strerror or exc}; check that ASYA_SOCKET_DIR is writable"
            )
        self._listener = listener
        # Accepted sockets start with the default send buffer, as this one
        # does; a reply within half of it is sent without a timeout.
        self._small_reply = min(64 * 1024, listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)
        if self.config.handler_timeout:
            self._start_watchdog()

    def _write_ready_file(self):
        temp_path = f"{self.ready_path}.{os.getpid()}.tmp"
        with open(temp_path, "w") as ready:
            ready.write(f"{os.getpid()}\n")
        os.chmod(temp_path, 0o644)
        os.rename(temp_path, self.ready_path)

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
        """Withdraw readiness, then remove our socket file (only if both are still ours)."""
        self._remove_own_files()
        if self._listener is not None:
            self._listener.close()
        self.caller.close()

    def _remove_own_files(self):
        try:
            with open(self.ready_path) as ready:
                ours = ready.read().strip() == str(os.getpid())
            if ours:
                os.unlink(self.ready_path)
        except OSError:
            pass
        try:
            if os.stat(self.socket_path).st_ino == self._socket_inode:
                os.unlink(self.socket_path)
        except OSError:
            pass

    def serve_forever(self):
        while not self._stopping:
            try:
                conn = self._accept_connection()
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
                # Also after a deadline signal that landed in the call's own
                # clean-up: no finished call may look stuck to the watchdog.
                self.caller.started = None
                self._in_flight = None
                conn.close()

    def _accept_connection(self):
        """The next connection, as the C socket type wrapped around the accepted descriptor.

        socket.socket's Python-level __init__ and close() are a measurable
        part of a small message's round trip (docs/performance.md); passing
        family, type and protocol makes the wrap free of system calls. The
        private _accept is CPython's; without it the public accept() serves.
        """
        listener = self._listener
        accept_descriptor = getattr(listener, "_accept", None)
        if accept_descriptor is None:
            return listener.accept()[0]
        descriptor, _ = accept_descriptor()
        return socket.SocketType(listener.family, listener.type, listener.proto, descriptor)

    # -- one message ---------------------------------------------------------

    def handle_connection(self, conn):
        """Read one frame, answer it once.

        The stages run in one function so each large intermediate (frame
        bytes, text, parsed message, reply text) is released as soon as the
        next one exists, which keeps the peak memory per message low
        (docs/performance.md).
        """
        config = self.config
        reply_format = config.reply_format
        try:
            frame = read_frame(
                conn, config.chunk_size, config.max_message_size, config.io_timeout, self._scratch
            )
        except ClientGone:
            log.debug("client closed without sending a frame")
            return
        except FrameError as exc:
            log.error("[id=-] connection_error: %s", exc)
            reply = error_reply(CONNECTION_ERROR, exc, reply_format)
            self._send(conn, wire_bytes(encode_error(reply)), None)
            return
        except OSError as exc:
            log.warning("client vanished while sending: %s", exc)
            return

        message_id = None
        try:
            try:
                text = str(frame, "utf-8")  # frame may be a memoryview, which has no decode()
            except UnicodeDecodeError as exc:
                raise parsing_error(f"message is not valid UTF-8: {exc}") from None
            del frame
            try:
                envelope = decode_message(text)
            except (ValueError, RecursionError) as exc:
                raise parsing_error(f"message is not valid JSON: {exc}") from None
            plain_ascii_request = is_plain_ascii(text)
            del text
            if isinstance(envelope, dict) and isinstance(envelope.get("id"), str):
                message_id = envelope["id"]
            if config.enable_validation:
                validate_envelope(envelope)
            elif not isinstance(envelope, dict) or "payload" not in envelope:
                raise parsing_error("envelope must be a JSON object with a 'payload' field")
            self._in_flight = (conn, message_id)
            result = self.dispatch(envelope)
            del envelope
            reply_text = encode_reply(ok_reply(result, reply_format), plain_ascii_likely=plain_ascii_request)
            # The payload goes before the reply's bytes are made, so the
            # heap can reuse its memory for them.
            del result
        except BaseException as exc:  # a handler may raise anything, SystemExit included
            code = exc.code if isinstance(exc, ProcessingError) else PROCESSING_ERROR
            reply = error_reply(code, exc, reply_format)
            log.error("[id=%s] %s: %s", _id_for_log(message_id), code, _for_log(error_message(reply)))
            reply_text = encode_error(reply)
        data = wire_bytes(reply_text)
        del reply_text
        self._send(conn, data, message_id)

    def dispatch(self, envelope):
        advance_route = self.config.reply_format == "list"
        if self.config.handler_mode == "envelope":
            return call_envelope_mode(self.caller.call, envelope, self.config.enable_validation, advance_route)
        if "route" not in envelope:  # validation off and no route: nothing to keep
            envelope["route"] = None
        return call_payload_mode(self.caller.call, envelope, self.config.include_metadata, advance_route)

    def _send(self, conn, data, message_id):
        # No shutdown(SHUT_WR) after the reply: serve_forever closes the
        # connection right away, which ends the stream for the client too.
        if self._reply_lock is not None:
            with self._reply_lock:
                self._write_reply(conn, data, message_id)
        else:
            self._write_reply(conn, data, message_id)

    def _write_reply(self, conn, data, message_id):
        try:
            write_frame(conn, data, self.config.io_timeout, self._small_reply)
        except OSError as exc:
            log.warning(
                "[id=%s] reply not delivered (client gone or stalled): %s",
                _id_for_log(message_id),
                exc.strerror or exc,
            )

    # -- a handler stuck past its deadline ------------------------------------

    def _start_watchdog(self):
        import threading  # only a runtime with a deadline pays for it

        self._reply_lock = threading.Lock()
        main_thread = threading.main_thread().ident
        threading.Thread(
            target=self._watch_deadlines, args=(main_thread,), name="asya-deadline-watchdog", daemon=True
        ).start()

    def _watch_deadlines(self, main_thread):
        """Thread: interrupt a call at its deadline; give up on it after the grace period.

        At the deadline, SIGALRM goes to the main thread: it interrupts a
        blocking system call there, and its handler raises HandlerTimeout in
        the handler's code. A call still running HANDLER_TIMEOUT_GRACE later is
        stuck where that cannot reach (C code, or a handler that swallowed
        it): its message is answered from here and the process exits, so that
        Kubernetes restarts the container.
        """
        import faulthandler

        caller = self.caller
        poll = max(0.01, min(WATCHDOG_POLL, caller.timeout / 4))
        interrupted = None  # the start time of the last call sent SIGALRM
        last_resort_armed = False
        while True:
            started = caller.started
            if last_resort_armed and started != interrupted:  # that call ended after all
                faulthandler.cancel_dump_traceback_later()
                last_resort_armed = False
            if started is None:
                time.sleep(poll)
                continue
            deadline = started + caller.timeout
            now = time.monotonic()
            if now < deadline:
                time.sleep(min(deadline - now, poll))
                continue
            if interrupted != started:
                interrupted = started
                signal.pthread_kill(main_thread, signal.SIGALRM)
                # Only a call past its deadline arms the last resort.
                last_resort_armed = True
                faulthandler.dump_traceback_later(HANDLER_TIMEOUT_GRACE + STUCK_DUMP_MARGIN, exit=True)
                continue
            if now < deadline + HANDLER_TIMEOUT_GRACE:
                time.sleep(min(deadline + HANDLER_TIMEOUT_GRACE - now, poll))
                continue
            # Under the lock, no reply of the main thread is on its way.
            with self._reply_lock:
                if caller.started == started:
                    self._answer_stuck_call_and_exit(main_thread)

    def _answer_stuck_call_and_exit(self, main_thread):
        in_flight = self._in_flight
        conn, message_id = in_flight if in_flight else (None, None)
        exc = HandlerTimeout(
            f"the handler ran longer than ASYA_HANDLER_TIMEOUT={self.caller.timeout:g} s and could not be "
            f"interrupted within {HANDLER_TIMEOUT_GRACE:g} s more (stuck outside Python code); "
            f"the runtime exits with code {EXIT_HANDLER_STUCK} to be restarted"
        )
        main_frame = sys._current_frames().get(main_thread)
        stack = "".join(traceback.format_stack(main_frame)) if main_frame is not None else ""
        where = f"Handler stack when it was given up (most recent call last):\n{stack}" if stack else ""
        reply = error_reply(PROCESSING_ERROR, exc, self.config.reply_format, traceback_text=where)
        log.error("[id=%s] processing_error: %s", _id_for_log(message_id), _for_log(error_message(reply)))
        if conn is not None:
            self._write_reply(conn, wire_bytes(encode_error(reply)), message_id)
        self._remove_own_files()
        logging.shutdown()
        os._exit(EXIT_HANDLER_STUCK)


# --------------------------------------------------------------------------
# Probe: is the runtime up? Answered from its files, without connecting.
# --------------------------------------------------------------------------


def probe(environ):
    """Exit status 0 if a runtime serves ASYA_SOCKET_DIR, else 1 with one line why.

    Up means: the socket exists, `runtime-ready` exists (so the handler is
    loaded), and the process whose PID it holds is alive. Nothing connects,
    so a handler call of any length cannot make a probe fail or fill the
    socket's listen backlog.
    """
    try:
        socket_dir = socket_dir_from(environ)
    except StartupError as exc:
        return _probe_failed(str(exc))
    socket_path = os.path.join(socket_dir, SOCKET_NAME)
    ready_path = os.path.join(socket_dir, READY_FILE_NAME)
    try:
        if not stat.S_ISSOCK(os.stat(socket_path).st_mode):
            return _probe_failed(f"{socket_path} is not a socket")
    except OSError:
        return _probe_failed(f"no socket at {socket_path}")
    try:
        with open(ready_path) as ready:
            pid = int(ready.read().strip())
    except (OSError, ValueError):
        return _probe_failed(f"no readable {ready_path}: the handler is not loaded yet")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return _probe_failed(f"the runtime process {pid} named by {ready_path} is gone")
    except PermissionError:
        pass  # it exists, under another user
    return 0


def _probe_failed(why):
    sys.stderr.write(f"asya-runtime probe: {why}\n")
    return 1


# --------------------------------------------------------------------------
# main: configure, load the handler, then (and only then) open the socket.
# --------------------------------------------------------------------------


# Just under glibc's 32 MiB ceiling for its dynamic mmap threshold.
HEAP_WARM_UP_BYTES = 31 * 1024 * 1024


def warm_up_glibc_heap():
    """Raise glibc's mmap threshold once, so large message buffers are reused.

    glibc maps each block above its mmap threshold afresh and faults it in
    page by page; freeing a block it mapped raises the threshold to that
    block's size (up to 32 MiB). Freeing one such block at start-up lets the
    buffers of every later message up to this size come from the heap and be
    reused (docs/performance.md has the figures). bytes(n) is calloc: the
    block is mapped as zero pages and never touched, so this costs no memory.
    Other C libraries (musl) do not work this way and are left alone.
    """
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return False
    bytes(HEAP_WARM_UP_BYTES)
    return True


def close_handler(instance):
    """Call a class handler's close() once, after the last reply; never fail the exit."""
    close = getattr(instance, "close", None)
    if instance is None or not callable(close):
        return
    try:
        close()
    except BaseException:
        log.exception("the handler's close() failed (ignored: the runtime is stopping)")


def main(environ=None, argv=()):
    environ = os.environ if environ is None else environ
    if list(argv) == ["--probe"]:
        return probe(environ)
    if argv:
        sys.stderr.write(f"asya-runtime: error: unknown arguments {list(argv)!r}; the only one is --probe\n")
        return 2
    try:
        config = load_config(environ)
        prepare_socket_dir(config.socket_dir)
        handler, instance = load_handler_and_instance(config.handler)
        server = ActorServer(config, handler)
        # Installed before the socket exists, so no stop signal can leave it stale.
        signal.signal(signal.SIGTERM, server.shutdown)
        signal.signal(signal.SIGINT, server.shutdown)
        warm_up_glibc_heap()
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
        "ready: python %s, handler %s, mode %s, replies %s, socket %s, max message %d bytes, chunk %d bytes, "
        "validation %s, deadline %s",
        sys.version.split()[0],
        config.handler,
        config.handler_mode,
        config.reply_format,
        server.socket_path,
        config.max_message_size,
        config.chunk_size,
        "on" if config.enable_validation else "off",
        f"{config.handler_timeout:g} s" if config.handler_timeout else "off",
    )
    try:
        server.serve_forever()
    finally:
        server.close()
        log.info("stopped: socket %s removed", server.socket_path)
        close_handler(instance)
    return 0


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
