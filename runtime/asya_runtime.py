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
object, and "list", the array the asya Go sidecar decodes; one dialect object,
chosen with the configuration, shapes every reply.

The file reads top to bottom in the order a message flows through it:

    configuration  ->  logging  ->  framing  ->  handler loading  ->  decoding
    ->  envelope validation  ->  dispatch  ->  replies  ->  handler calls
    (and the deadline)  ->  server loop  ->  probe  ->  main  ->  commands
    (--call, --version, the deadline's --monitor process)

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
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback
import types

# Before anything else can fail on an old interpreter with a less helpful
# message; so the whole file must still parse on 3.6 (no 3.7+ syntax).
if sys.version_info < (3, 7):  # noqa: UP036 (the check this file exists for)
    sys.stderr.write("asya runtime needs Python 3.7 or newer (this is {}.{}.{})\n".format(*sys.version_info[:3]))
    sys.exit(2)

# The chart's appVersion; a test keeps the two equal.
__version__ = "0.1.0"

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
        "dialect",
        "log_level",
        "log_format",
        "access_log",
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
LOG_FORMATS = ("text", "json")
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


def _parse_number(environ, name, default, kind, what, zero_means=None, example=None):
    """The one parser for numeric variables: kind is int or float; NaN, infinity
    and negative numbers are refused, and so is 0 unless zero_means says what
    it does. A number out of range is told its range, not that it is no number."""
    raw = environ.get(name)
    if raw is None:
        return default
    example = f"; set it to e.g. {default if example is None else example:g}"
    try:
        value = kind(raw.strip())
    except ValueError:
        raise StartupError(f"{name}={raw!r} is not {what}{example}") from None
    if value != value or value == float("inf"):  # NaN, infinity
        raise StartupError(f"{name}={raw!r} is not a finite number; it must be {what}{example}")
    if zero_means is not None and value < 0:
        raise StartupError(f"{name}={raw!r} must be 0 or more: {what}, 0 {zero_means}{example}")
    if zero_means is None and value <= 0:
        raise StartupError(f"{name}={raw!r} must be more than 0: {what}{example}")
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
        chunk_size=_parse_number(environ, "ASYA_CHUNK_SIZE", DEFAULT_CHUNK_SIZE, int, "a positive integer (bytes)"),
        enable_validation=_parse_bool(environ, "ASYA_ENABLE_VALIDATION", True),
        max_message_size=_parse_number(
            environ, "ASYA_MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE, int, "a positive integer (bytes)"
        ),
        io_timeout=_parse_number(
            environ, "ASYA_IO_TIMEOUT", DEFAULT_IO_TIMEOUT, float, "a number of seconds", zero_means="waits forever"
        ),
        handler_timeout=_parse_number(
            environ,
            "ASYA_HANDLER_TIMEOUT",
            0.0,
            float,
            "a number of seconds",
            zero_means="turns the deadline off",
            example=30,
        ),
        dialect=DIALECTS[_choice(environ, "ASYA_REPLY_FORMAT", "status", REPLY_FORMATS)],
        log_level=_choice(environ, "ASYA_LOG_LEVEL", "INFO", LOG_LEVELS, normalise=str.upper),
        log_format=log_format_from(environ),
        access_log=_parse_bool(environ, "ASYA_ACCESS_LOG", True),
    )


def log_format_from(environ):
    """ASYA_LOG_FORMAT alone, so that even a start-up error is written in it."""
    return _choice(environ, "ASYA_LOG_FORMAT", "text", LOG_FORMATS)


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
# Logging: text or JSON lines on stderr; records made during a call carry its id.
# --------------------------------------------------------------------------

class _NoId:
    """LogLines.message_id while a message without an id is handled: "[id=-]", "id": null.
    Not the string "-", which a message may use as its id."""

    def __str__(self):
        return "-"


NO_ID = _NoId()
STOP_SIGNALS = frozenset((signal.SIGTERM, signal.SIGINT))


def start_helper_thread(target, name, args=()):
    """Start a daemon thread of the runtime that never takes a stop signal.

    The kernel gives a process-directed SIGTERM to any thread that does not
    block it. Python runs the handler in the main thread, but only once that
    thread runs Python code again: a main thread blocked in accept() while a
    helper thread took the signal would wait there until the next client
    (seen: an idle runtime ignoring SIGTERM for 30 s). A new thread inherits
    the signal mask of the thread that creates it, so the stop signals are
    blocked in the main thread for the moment of the creation only; one that
    arrives meanwhile waits, and the main thread takes it right after.
    """
    import threading

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        threading.Thread(target=target, args=args, name=name, daemon=True).start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# How often the access lines of the messages handled meanwhile are written.
ACCESS_LOG_INTERVAL = 0.1
RUNTIME_LOGGER = "asya.runtime"


class LogLines:
    """Everything about the lines this process writes, decided once.

    ASYA_LOG_FORMAT=text gives `time LEVEL logger: [id=...] message`, where
    the runtime's own logger is shown as asya-runtime; json gives one object
    per line (time, level, logger, message, id while a call runs). Every
    record made while a message is handled carries its id, whichever logger
    makes it: a record factory adds it, so handler code needs nothing.

    The access line (one per message, ASYA_ACCESS_LOG) is the only line on
    the hot path: add() queues a tuple, and a thread formats and writes the
    queued lines every ACCESS_LOG_INTERVAL with one system call, which costs
    a small message far less than a log record would (docs/performance.md).
    Any other record first writes the queued lines, so lines keep their order.

    A signal handler must not write to stderr itself: Python runs it in the
    main thread, possibly inside that thread's own write to the same stream
    (a full pipe makes the write wait), and the nested write fails with
    "reentrant call" (seen in CI: the stop line lost, a logging error
    printed, and the exception raised inside a handler's log call). notice()
    therefore queues a whole line and wakes the same thread through a pipe.
    """

    def __init__(self, log_format="text", level="INFO", access_log=False):
        self.json = log_format == "json"
        self.level = level
        self.message_id = None  # of the message being handled
        self.levelno = logging.getLevelName(level)
        self.access_on = access_log and self.levelno <= logging.INFO
        self._pending = collections.deque()
        self._stream = sys.stderr
        self._lock = None  # made by install(), with the writer thread's module
        self._second = None  # (whole second, its text): access lines in a second share it
        self._wake = None  # (read end, write end) of the writer thread's wake-up pipe

    # -- set-up --------------------------------------------------------------

    def install(self):
        """Route every record of the process here, before the handler's module is imported."""
        import threading

        self._lock = threading.RLock()  # RLock: a stop signal may log while the main thread writes
        handler = _InOrderHandler(self, self._stream)
        handler.setFormatter(_Formatter(self))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(self.level)
        logging.captureWarnings(True)  # warnings are records too, with the id
        make_record = logging.getLogRecordFactory()

        def record_with_id(*args, **kwargs):
            record = make_record(*args, **kwargs)
            record.asya_id = self.message_id
            return record

        logging.setLogRecordFactory(record_with_id)
        if self.json:
            # print() and stray writes become JSON lines too.
            sys.stdout = _JsonLinesStream(self, "stdout", logging.INFO)
            sys.stderr = _JsonLinesStream(self, "stderr", logging.ERROR)

    def start_writer(self):
        """The thread that writes queued lines: every ACCESS_LOG_INTERVAL while
        access lines are on, and whenever notice() wakes it."""
        self._wake = os.pipe()
        os.set_blocking(self._wake[1], False)  # a signal handler must never wait on it
        start_helper_thread(self._write_queued, "asya-log-writer")

    # -- lines ---------------------------------------------------------------

    def access(self, message_id, outcome, outputs, seconds):
        """Queue the access line of one message (the hot path: no formatting here)."""
        self._pending.append((time.time(), message_id, outcome, outputs, seconds))

    def notice(self, levelno, message):
        """A runtime line from a signal handler: queued whole, written by the writer thread.

        Only a deque append and a non-blocking write to a pipe happen here,
        both safe wherever the signal interrupted the main thread.
        """
        if levelno < self.levelno:  # as a record of this level would be
            return
        self._pending.append(self.line(levelno, RUNTIME_LOGGER, message, self.message_id))
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"\0")
            except OSError:  # the pipe is full: the thread is awake already
                pass

    def flush_queued(self):
        """Write the queued lines (access lines and notices). Always under the
        lock, even when the queue looks empty: the writer thread may hold lines
        it has taken but not yet written, and a record must not overtake them."""
        if self._lock is None:  # never installed: nothing is queued
            return
        with self._lock:
            lines = []
            pending = self._pending
            while pending:
                entry = pending.popleft()
                lines.append(entry if entry.__class__ is str else self._access_line(*entry))
            if lines:
                self._write("".join(lines))

    def _write_queued(self):
        wake = self._wake[0]
        interval = ACCESS_LOG_INTERVAL if self.access_on else None
        while True:
            if select.select([wake], [], [], interval)[0]:
                os.read(wake, 512)
            try:
                self.flush_queued()
            except Exception:  # a closed stderr must not end the thread with a traceback per line
                pass

    def _access_line(self, created, message_id, outcome, outputs, seconds):
        milliseconds = seconds * 1e3
        text = f"{outcome} outputs={outputs} duration_ms={milliseconds:.2f}"
        if not self.json:
            return self.line(logging.INFO, RUNTIME_LOGGER, text, NO_ID if message_id is None else message_id, created)
        # Not line()'s json.dumps: every field but the id is known to need no
        # escaping, and this runs once per message.
        message_id = "null" if message_id is None else _json_string(message_id)
        return (
            f'{{"time":"{self._time_text(created)}","level":"INFO","logger":"{RUNTIME_LOGGER}",'
            f'"message":"{text}","id":{message_id},"outcome":"{outcome}","outputs":{outputs},'
            f'"duration_ms":{milliseconds:.3f}}}\n'
        )

    def line(self, levelno, logger, message, message_id=None, created=None, fields=None):
        """One whole line in this format, newline included; created defaults to now."""
        if created is None:
            created = time.time()
        if self.json:
            entry = {
                "time": self._time_text(created),
                "level": logging.getLevelName(levelno),
                "logger": logger,
                "message": message,
            }
            if message_id is not None:
                entry["id"] = None if message_id is NO_ID else message_id
            if fields:
                entry.update(fields)
            return json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        shown = "asya-runtime" if logger == RUNTIME_LOGGER else logger
        tag = "" if message_id is None else f"[id={_for_log(message_id)}] "
        return f"{self._time_text(created)} {logging.getLevelName(levelno)} {shown}: {tag}{message}\n"

    def write_now(self, levelno, message, **fields):
        """A runtime line written at once, without the logging machinery (start-up errors, the monitor)."""
        self._write(self.line(levelno, RUNTIME_LOGGER, message, fields=fields))

    def _write(self, text):
        data = text.encode("utf-8", "backslashreplace")
        stream = getattr(self._stream, "buffer", None)
        if stream is None:  # a text-only stream (tests): write text
            self._stream.write(text)
            self._stream.flush()
            return
        self._stream.flush()
        stream.write(data)
        stream.flush()

    def _time_text(self, created):
        whole = int(created)
        second = self._second
        if second is None or second[0] != whole:
            if self.json:
                text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            else:
                text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole))
            second = self._second = (whole, text)
        milliseconds = int((created - whole) * 1000)
        if self.json:
            return f"{second[1]}.{milliseconds:03d}Z"
        return f"{second[1]},{milliseconds:03d}"


def _json_string(text):
    return json.encoder.encode_basestring_ascii(text)


class _Formatter(logging.Formatter):
    """A record as LogLines writes it; a traceback goes into the message (one JSON line)."""

    def __init__(self, lines):
        logging.Formatter.__init__(self)
        self.lines = lines

    def format(self, record):
        message = record.getMessage()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        line = self.lines.line(record.levelno, record.name, message, getattr(record, "asya_id", None), record.created)
        return line[:-1]  # the handler adds the newline


class _InOrderHandler(logging.StreamHandler):
    """Writes queued access lines before any other record."""

    def __init__(self, lines, stream):
        logging.StreamHandler.__init__(self, stream)
        self.lines = lines

    def emit(self, record):
        try:
            self.lines.flush_queued()
        except Exception:
            pass
        logging.StreamHandler.emit(self, record)


class _BytesToText:
    def __init__(self, stream):
        self.stream = stream

    def write(self, data):
        self.stream.write(bytes(data).decode("utf-8", "backslashreplace"))
        return len(data)

    def flush(self):
        self.stream.flush()


class _JsonLinesStream:
    """sys.stdout / sys.stderr under ASYA_LOG_FORMAT=json: each line written becomes a JSON line."""

    def __init__(self, lines, name, levelno):
        self.lines = lines
        self.name = name
        self.levelno = levelno
        self.encoding = "utf-8"
        self.errors = "backslashreplace"
        self._partial = ""

    def write(self, text):
        text = self._partial + text
        *whole, self._partial = text.split("\n")
        for line in whole:
            self._emit(line)
        return len(text) - len(self._partial)

    def flush(self):
        if self._partial:
            line, self._partial = self._partial, ""
            self._emit(line)

    def _emit(self, line):
        lines = self.lines
        with lines._lock:
            lines.flush_queued()
            lines._write(lines.line(self.levelno, self.name, line, lines.message_id))

    @property
    def buffer(self):
        """For code that writes bytes (sys.stdout.buffer.write): decoded, then the same lines."""
        return _BytesToText(self)

    def fileno(self):
        return (sys.__stdout__ if self.name == "stdout" else sys.__stderr__).fileno()

    def isatty(self):
        return False

    def writable(self):
        return True


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
    if length > max_size or length >= LETTER_LENGTH:
        oversized = oversized_frame_error(first[:filled], length, max_size)
        if oversized is not None:
            raise oversized
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


# A length whose first byte is an ASCII capital letter (1.09 GB or more) is
# more likely the start of text than a frame: checked for HTTP even when
# ASYA_MAX_MESSAGE_SIZE would allow it.
LETTER_LENGTH = ord("A") << 24
HTTP_REQUEST = re.compile(rb"(?:GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PRI)(?: |$)")


def oversized_frame_error(start, length, max_size):
    """The FrameError for a length header that cannot be taken, or None if it can.

    Someone pointing curl or an HTTP health check at the socket is told what
    the socket speaks instead of only that the "frame" is a gigabyte long.
    """
    head = bytes(start[:8])
    if HTTP_REQUEST.match(head):
        return FrameError(
            f"the client sent an HTTP request ({request_line(start)!r}), but this socket speaks "
            "4-byte big-endian length-prefixed JSON frames, not HTTP; see docs/protocol.md "
            "(to send a test message: python3 asya_runtime.py --call JSON)"
        )
    if length > max_size:
        return FrameError(f"frame of {length} bytes exceeds ASYA_MAX_MESSAGE_SIZE={max_size}")
    return None


def request_line(start):
    return bytes(start[:80]).decode("ascii", "replace").split("\r\n")[0]


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
        handler = _get_callable(module, attribute, spec, where)
        if isinstance(handler, type):
            # Calling it would make a new instance per message: a model loaded per message.
            methods = _public_methods(handler)
            raise HandlerLoadError(
                "ASYA_HANDLER={!r} names a class, not a function; name the method to call, e.g. "
                "ASYA_HANDLER={}.{} (the class is then created once; its public methods: {})".format(
                    spec, spec, (methods or ["__call__"])[0], ", ".join(methods) or "none"
                )
            )
        return handler, None

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
    where = f"class {class_name!r} of module {owner_name!r}"
    # Checked on the class first, before __init__ loads a model for nothing.
    _get_callable(cls, attribute, spec, where)
    instance = _create_instance(cls, spec)
    return _get_callable(instance, attribute, spec, where), instance


def _public_methods(owner):
    """The names of owner's public callables (a module's functions and classes, a class's methods)."""
    return sorted(name for name in dir(owner) if not name.startswith("_") and callable(getattr(owner, name, None)))


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
        if isinstance(owner, types.ModuleType):
            module_name = owner.__name__
        else:  # a class, or an instance of one
            module_name = (owner if isinstance(owner, type) else type(owner)).__module__
        callables = [
            name
            for name in _public_methods(owner)
            if getattr(getattr(owner, name), "__module__", module_name) == module_name
        ]
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
# Frames left out of a user's traceback: the runtime's and importlib.import_module's.
_NOT_USER_FILES = frozenset((_THIS_FILE, os.path.normcase(os.path.abspath(importlib.__file__))))


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


class StatusReplies:
    """This project's reply object: {"status": "ok", "result": ...} or an error object."""

    name = "status"
    advances_route = False  # the sidecar moves route.current on

    def ok(self, result):
        return {"status": "ok", "result": result}

    def error(self, code, details):
        reply = {"status": "error", "error": self.code(code)}
        reply.update(details)
        return reply

    def code(self, code):
        """The error code as this dialect's replies (and so the log) name it."""
        return PROCESSING_ERROR if code == MSG_PARSING_ERROR else code

    def details(self, reply):
        return reply


class ListReplies:
    """The asya Go sidecar's array: the output envelopes, or one {"error", "details"}.

    Outputs leave with route.current already moved on, as that sidecar
    routes them by it (docs/protocol.md, "Running under the asya Go sidecar").
    """

    name = "list"
    advances_route = True

    def ok(self, result):
        return result if isinstance(result, list) else [result]

    def error(self, code, details):
        return [{"error": code, "details": details}]

    def code(self, code):
        return code

    def details(self, reply):
        return reply[0]["details"]


# ASYA_REPLY_FORMAT -> the dialect; load_config picks one, nothing else branches on it.
DIALECTS = {dialect.name: dialect for dialect in (StatusReplies(), ListReplies())}
STATUS = DIALECTS["status"]
LIST = DIALECTS["list"]


def error_reply(code, exc, dialect=STATUS, traceback_text=None):
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
    return dialect.error(code, details)


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
        os.path.normcase(tb.tb_frame.f_code.co_filename) in _NOT_USER_FILES
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


def _cut(text, limit=10 * LOG_LINE_LIMIT):
    """A traceback for the log: each line (an exception's message may echo the payload) and the whole cut short."""
    text = "\n".join(_for_log(line) for line in text.split("\n"))
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text) - limit} characters cut)"
    return text


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
# interrupted before the runtime answers for it and exits.
HANDLER_TIMEOUT_GRACE = 2.0
# The longest the deadline watchdog sleeps between looks at the call in flight;
# each look is also a heartbeat to the monitor process.
WATCHDOG_POLL = 0.25
EXIT_HANDLER_STUCK = 4
# Sent by the monitor process when no Python code has run for the deadline
# plus the grace period: faulthandler writes every thread's stack, then libc's
# _exit(signal number) ends the process, as PID 1 too, without the GIL.
LAST_RESORT_SIGNAL = signal.SIGUSR1


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
    leaves no partial output.
    """

    def __init__(self, function):
        self.function = function
        self._loop = self._new_loop() if is_async_function(function) else None

    def call(self, argument):
        result = self.function(argument)
        if type(result) in DEFERRED_RESULTS:
            result = self._drain(result)
        return result

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


class Deadline:
    """ASYA_HANDLER_TIMEOUT: owns the call's start, the watchdog, the reply lock and the exits.

    A guarded call costs two clock reads. A watchdog thread looks at the call
    in flight; past its deadline, it sends SIGALRM to the main thread, which
    interrupts a blocking system call there and raises HandlerTimeout in the
    handler's code. A call still running HANDLER_TIMEOUT_GRACE later cannot be
    interrupted (it caught HandlerTimeout, or it is in C code that does not
    return): the watchdog answers its message through give_up and the process
    exits EXIT_HANDLER_STUCK, so that Kubernetes restarts the container. A
    timer per call (setitimer) would cost a system call per message, a
    measurable share of a small one (docs/performance.md).

    C code that also holds the GIL stops every Python thread, the watchdog
    included. For that a monitor process (a second interpreter running this
    file with --monitor) listens to the watchdog's heartbeat; after the
    deadline plus the grace period of silence it sends LAST_RESORT_SIGNAL.
    """

    def __init__(self, seconds):
        import threading  # only a runtime with a deadline pays for it

        self.seconds = seconds
        self.started = None  # monotonic start of the call in flight
        self._raised_in = None  # the start of the last call HandlerTimeout was raised in
        # The watchdog may answer a stuck call; the lock keeps its reply and
        # a late one of the main thread apart.
        self.reply_lock = threading.Lock()
        signal.signal(signal.SIGALRM, self._on_alarm)

    def guard(self, call):
        def call_with_deadline(argument):
            self.started = time.monotonic()
            try:
                return call(argument)
            finally:
                self.started = None

        return call_with_deadline

    def forget_call(self):
        """After the connection closed, also when a late signal hit the call's own clean-up:
        no finished call may look stuck to the watchdog."""
        self.started = None

    def _on_alarm(self, signum, frame):
        # A signal that arrives late, after the call it was meant for, finds
        # no call past its deadline and is ignored.
        started = self.started
        if started is not None and time.monotonic() - started >= self.seconds:
            self._raised_in = started
            raise HandlerTimeout(f"the handler ran longer than ASYA_HANDLER_TIMEOUT={self.seconds:g} s")

    def start(self, give_up, log_format):
        """Once the socket listens: the monitor process, then the watchdog thread.

        give_up(exception, stacks) answers the stuck call; the process exits
        right after it.
        """
        import threading

        heartbeat = self._start_monitor(log_format)
        start_helper_thread(self._watch, "asya-deadline-watchdog", (threading.main_thread().ident, give_up, heartbeat))

    def _start_monitor(self, log_format):
        import subprocess

        _arm_last_resort()
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # a heartbeat never waits
        budget = self.seconds + HANDLER_TIMEOUT_GRACE
        try:
            # -I -S: the monitor needs no PYTHONPATH, user site or site-packages.
            subprocess.Popen(
                [sys.executable, "-I", "-S", _THIS_FILE, "--monitor", f"{os.getpid()},{read_end},{budget!r},{log_format}"],
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.warning(
                "cannot start the monitor process (%s): a call stuck in C code that holds the GIL will not end "
                "the process",
                exc,
            )
        finally:
            os.close(read_end)
        return write_end

    def _watch(self, main_thread, give_up, heartbeat):
        poll = max(0.01, min(WATCHDOG_POLL, self.seconds / 4))
        interrupted = None  # the start of the last call sent SIGALRM
        while True:
            try:
                os.write(heartbeat, b".")
            except OSError:  # the monitor is gone or behind: nothing to tell it
                pass
            started = self.started
            if started is None:
                time.sleep(poll)
                continue
            deadline = started + self.seconds
            now = time.monotonic()
            if now < deadline:
                time.sleep(min(deadline - now, poll))
                continue
            if interrupted != started:
                interrupted = started
                signal.pthread_kill(main_thread, signal.SIGALRM)
                continue
            if now < deadline + HANDLER_TIMEOUT_GRACE:
                time.sleep(min(deadline + HANDLER_TIMEOUT_GRACE - now, poll))
                continue
            # Under the lock, no reply of the main thread is on its way.
            with self.reply_lock:
                if self.started == started:
                    give_up(self._stuck_error(started), thread_stacks(main_thread))
                    os._exit(EXIT_HANDLER_STUCK)

    def _stuck_error(self, started):
        if self._raised_in == started:
            why = (
                "HandlerTimeout was raised in it at the deadline, but it went on running Python code "
                f"for {HANDLER_TIMEOUT_GRACE:g} s more (does it catch BaseException?)"
            )
        else:
            why = (
                f"it could not be interrupted within {HANDLER_TIMEOUT_GRACE:g} s more "
                "(stuck outside Python code, e.g. in a C extension or a system call)"
            )
        return HandlerTimeout(
            f"the handler ran longer than ASYA_HANDLER_TIMEOUT={self.seconds:g} s and {why}; "
            f"the runtime exits with code {EXIT_HANDLER_STUCK} to be restarted"
        )


def thread_stacks(main_thread):
    """[(thread name, its Python stack)], the handler's (main) thread first."""
    import threading

    names = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = sys._current_frames()
    return [
        (names.get(ident, str(ident)), "".join(traceback.format_stack(frames[ident])))
        for ident in sorted(frames, key=lambda ident: ident != main_thread)
    ]


def _arm_last_resort():
    """LAST_RESORT_SIGNAL: faulthandler writes every thread's stack to stderr,
    then calls the previous handler, libc's _exit, installed here through
    ctypes: neither needs the GIL, and a handler, unlike the signal's default
    action, also ends PID 1. Without ctypes the default action is left, which
    ends the process unless it is PID 1."""
    import faulthandler

    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.signal.restype = ctypes.c_void_p
        libc.signal(LAST_RESORT_SIGNAL, ctypes.cast(libc._exit, ctypes.c_void_p))
    except (ImportError, OSError, AttributeError) as exc:
        log.warning("no ctypes (%s): a call stuck in C code that holds the GIL ends the process by the signal's "
                    "default action, which does not end PID 1", exc)
    faulthandler.register(LAST_RESORT_SIGNAL, file=sys.__stderr__, all_threads=True, chain=True)


def monitor(argument):
    """--monitor PID,FD,BUDGET,FORMAT: the deadline's last resort, in its own process.

    Reads the watchdog's heartbeat from FD. End of file means the runtime is
    gone: exit. BUDGET seconds without a beat means no Python thread of the
    runtime could run that long (C code holding the GIL): say so, then send
    LAST_RESORT_SIGNAL, and SIGKILL if that did not end it.
    """
    import select

    pid, fd, budget, log_format = argument.split(",")
    pid, fd, budget = int(pid), int(fd), float(budget)
    # Stopping is the runtime's business; this process ends with its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    last_beat = time.monotonic()
    while True:
        left = last_beat + budget - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            if not poller.poll(0):  # not this process being late itself
                break
        if not os.read(fd, 4096):
            return 0
        last_beat = time.monotonic()
    silence = time.monotonic() - last_beat
    line = (
        f"the runtime (pid {pid}) ran no Python code for {silence:.1f} s, past ASYA_HANDLER_TIMEOUT and the "
        f"{HANDLER_TIMEOUT_GRACE:g} s grace (a call stuck in C code that holds the GIL); every thread's stack "
        f"follows, then the process exits with code {int(LAST_RESORT_SIGNAL)} to be restarted"
    )
    LogLines(log_format, "ERROR").write_now(logging.ERROR, line)
    os.kill(pid, LAST_RESORT_SIGNAL)
    if poller.poll(5000):  # end of file: it is gone
        return 0
    os.kill(pid, signal.SIGKILL)
    return 0


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

    def __init__(self, config, handler, log_lines=None):
        self.config = config
        self.dialect = config.dialect
        self.caller = HandlerCaller(handler)
        self.deadline = Deadline(config.handler_timeout) if config.handler_timeout else None
        self.call = self.deadline.guard(self.caller.call) if self.deadline else self.caller.call
        self._reply_lock = self.deadline.reply_lock if self.deadline else None
        self.log_lines = log_lines if log_lines is not None else LogLines()
        self._access = self.log_lines.access if self.log_lines.access_on else None
        self.socket_path = os.path.join(config.socket_dir, SOCKET_NAME)
        self.ready_path = os.path.join(config.socket_dir, READY_FILE_NAME)
        self._listener = None
        self._accept_descriptor = None
        self._socket_kind = None
        self._socket_inode = None
        self._stopping = False
        self._small_reply = 0
        self._scratch = new_scratch(config.chunk_size)
        self._in_flight = None  # (conn, message id, perf_counter at its start) of the message being handled

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
        except OSError as exc:
            listener.close()
            raise StartupError(
                f"cannot listen on {self.socket_path!r}: {exc.strerror or exc}; check that ASYA_SOCKET_DIR is writable"
            )
        self._listener = listener
        self._accept_descriptor = getattr(listener, "_accept", None)
        self._socket_kind = (int(listener.family), int(listener.type), listener.proto)
        # Accepted sockets start with the default send buffer, as this one
        # does; a reply within half of it is sent without a timeout.
        self._small_reply = min(64 * 1024, listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)
        # Ready means fully up: the helper threads (and the monitor) run first.
        self.log_lines.start_writer()
        if self.deadline:
            self.deadline.start(self._give_up, self.config.log_format)
        try:
            self._write_ready_file()
        except OSError as exc:
            raise StartupError(
                f"cannot write {self.ready_path!r}: {exc.strerror or exc}; check that ASYA_SOCKET_DIR is writable"
            )

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
        if _signal_args:
            self._notice_stop(_signal_args[0])
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _notice_stop(self, signum):
        name = signal.Signals(signum).name
        in_flight = self._in_flight
        if in_flight is None:
            self.log_lines.notice(logging.INFO, f"{name}: stopping; no message in flight")
            return
        _, message_id, started = in_flight
        running = time.perf_counter() - started
        if self.deadline:
            limit = f"its deadline is {max(0.0, self.config.handler_timeout - running):.1f} s away"
        else:
            limit = "it has no deadline (ASYA_HANDLER_TIMEOUT is off)"
        self.log_lines.notice(
            logging.INFO,
            f"{name}: stopping after the message in flight: waiting for the handler's call on message "
            f"{_id_for_log(message_id)} (running for {running:.1f} s; {limit}) to return and its reply to be sent",
        )

    def close(self):
        """Withdraw readiness, then remove our socket file (only if both are still ours)."""
        self._remove_own_files()
        if self._listener is not None:
            self._listener.close()
        self.caller.close()
        self.log_lines.flush_queued()

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
                if self.deadline:
                    self.deadline.forget_call()
                self._in_flight = None
                self.log_lines.message_id = None
                conn.close()

    def _accept_connection(self):
        """The next connection, as the C socket type wrapped around the accepted descriptor.

        socket.socket's Python-level __init__ and close() are a measurable
        part of a small message's round trip (docs/performance.md); passing
        family, type and protocol makes the wrap free of system calls. They
        are read once, as plain integers: on the listener they are properties
        that build an enum member on every read. The private _accept is
        CPython's; without it the public accept() serves.
        """
        accept_descriptor = self._accept_descriptor
        if accept_descriptor is None:
            return self._listener.accept()[0]
        family, kind, protocol = self._socket_kind
        return socket.SocketType(family, kind, protocol, accept_descriptor()[0])

    # -- one message ---------------------------------------------------------

    def handle_connection(self, conn):
        """Read one frame, answer it once.

        The stages run in one function so each large intermediate (frame
        bytes, text, parsed message, reply text) is released as soon as the
        next one exists, which keeps the peak memory per message low
        (docs/performance.md).
        """
        config = self.config
        dialect = self.dialect
        self.log_lines.message_id = NO_ID
        try:
            frame = read_frame(
                conn, config.chunk_size, config.max_message_size, config.io_timeout, self._scratch
            )
        except ClientGone:
            log.debug("client closed without sending a frame")
            return
        except FrameError as exc:
            started = time.perf_counter()  # the frame's reading is the client's time, not counted
            reply = error_reply(CONNECTION_ERROR, exc, dialect)
            self._log_error(CONNECTION_ERROR, reply, with_traceback=False)
            self._send(conn, wire_bytes(encode_error(reply)), None)
            if self._access is not None:
                self._access(None, CONNECTION_ERROR, 0, time.perf_counter() - started)
            return
        except OSError as exc:
            log.warning("client vanished while sending: %s", exc)
            return

        started = time.perf_counter()
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
                message_id = self.log_lines.message_id = envelope["id"]
            if config.enable_validation:
                validate_envelope(envelope)
            elif not isinstance(envelope, dict) or "payload" not in envelope:
                raise parsing_error("envelope must be a JSON object with a 'payload' field")
            self._in_flight = (conn, message_id, started)
            result = self.dispatch(envelope)
            del envelope
            outcome = "ok"
            outputs = len(result) if type(result) is list else 1
            reply_text = encode_reply(dialect.ok(result), plain_ascii_likely=plain_ascii_request)
            # The payload goes before the reply's bytes are made, so the
            # heap can reuse its memory for them.
            del result
        except BaseException as exc:  # a handler may raise anything, SystemExit included
            runtime_error = isinstance(exc, ProcessingError)
            code = exc.code if runtime_error else PROCESSING_ERROR
            reply = error_reply(code, exc, dialect)
            # The runtime's own errors say all in their message; a handler's exception needs its traceback.
            outcome = self._log_error(code, reply, with_traceback=not runtime_error)
            outputs = 0
            reply_text = encode_error(reply)
        data = wire_bytes(reply_text)
        del reply_text
        self._send(conn, data, message_id)
        if self._access is not None:
            self._access(message_id, outcome, outputs, time.perf_counter() - started)

    def _log_error(self, code, reply, with_traceback):
        """Log a failed message once, naming its error code as the reply does; return that code."""
        code = self.dialect.code(code)
        details = self.dialect.details(reply)
        if with_traceback:  # trimmed as in the reply
            log.error("%s: %s\n%s", code, _for_log(details["message"]), _cut(details["traceback"].rstrip("\n")))
        else:
            log.error("%s: %s", code, _for_log(details["message"]))
        return code

    def dispatch(self, envelope):
        advance_route = self.dialect.advances_route
        if self.config.handler_mode == "envelope":
            return call_envelope_mode(self.call, envelope, self.config.enable_validation, advance_route)
        if "route" not in envelope:  # validation off and no route: nothing to keep
            envelope["route"] = None
        return call_payload_mode(self.call, envelope, self.config.include_metadata, advance_route)

    def _send(self, conn, data, message_id):
        # No shutdown(SHUT_WR) after the reply: serve_forever closes the
        # connection right away, which ends the stream for the client too.
        reply_lock = self._reply_lock  # the Deadline's: its watchdog may answer a stuck call
        if reply_lock is None:
            self._write_reply(conn, data, message_id)
        else:
            with reply_lock:
                self._write_reply(conn, data, message_id)

    def _write_reply(self, conn, data, message_id):
        try:
            write_frame(conn, data, self.config.io_timeout, self._small_reply)
        except OSError as exc:
            log.warning("reply not delivered (client gone or stalled): %s", exc.strerror or exc)

    # -- a handler stuck past its deadline ------------------------------------

    def _give_up(self, exc, stacks):
        """Deadline's watchdog thread: answer the stuck call, log every stack, leave no files."""
        in_flight = self._in_flight
        conn, message_id = in_flight[:2] if in_flight else (None, None)
        where = f"Handler stack when it was given up (most recent call last):\n{stacks[0][1]}"
        reply = error_reply(PROCESSING_ERROR, exc, self.dialect, traceback_text=where)
        code = self._log_error(PROCESSING_ERROR, reply, with_traceback=False)  # every stack follows
        log.error(
            "every thread's stack when the call was given up:\n%s",
            "".join(f"Thread {name} (most recent call last):\n{stack}" for name, stack in stacks).rstrip("\n"),
        )
        if conn is not None:
            self._write_reply(conn, wire_bytes(encode_error(reply)), message_id)
        if self._access is not None:
            self._access(message_id, code, 0, time.perf_counter() - in_flight[2] if in_flight else 0.0)
        self._remove_own_files()
        self.log_lines.flush_queued()
        logging.shutdown()


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
    if argv:
        return command(environ, list(argv))
    try:
        log_format = log_format_from(environ)
    except StartupError as exc:
        return startup_failed(exc, LogLines())
    log_lines = LogLines(log_format)
    try:
        config = load_config(environ)
        log_lines = LogLines(config.log_format, config.log_level, config.access_log)
        # Before the handler's module is imported: its import-time records are formatted too.
        log_lines.install()
        prepare_socket_dir(config.socket_dir)
        handler, instance = load_handler_and_instance(config.handler)
        server = ActorServer(config, handler, log_lines)
        # Installed before the socket exists, so no stop signal can leave it stale.
        signal.signal(signal.SIGTERM, server.shutdown)
        signal.signal(signal.SIGINT, server.shutdown)
        warm_up_glibc_heap()
        server.bind()
    except StartupError as exc:
        return startup_failed(exc, log_lines)

    log.info(
        "ready: python %s, handler %s, mode %s, replies %s, socket %s, max message %d bytes, "
        "chunk %d bytes, validation %s, deadline %s, access log %s, log format %s, asya runtime %s",
        sys.version.split()[0],
        config.handler,
        config.handler_mode,
        config.dialect.name,
        server.socket_path,
        config.max_message_size,
        config.chunk_size,
        "on" if config.enable_validation else "off",
        f"{config.handler_timeout:g} s" if config.handler_timeout else "off",
        "on" if log_lines.access_on else "off",
        config.log_format,
        __version__,
    )
    try:
        server.serve_forever()
    finally:
        server.close()
        log.info("stopped: socket %s removed", server.socket_path)
        close_handler(instance)
    return 0


def startup_failed(exc, log_lines):
    """One line that says what to fix (then, for a failing user module, only the user's traceback)."""
    details = ""
    if getattr(exc, "show_traceback", False):
        cause = exc.__context__
        details = "".join(traceback.format_exception(type(cause), cause, _user_traceback(cause)))
    if log_lines.json:
        fields = {"exit_code": exc.exit_code}
        if details:
            fields["traceback"] = details
        log_lines.write_now(logging.CRITICAL, f"error: {exc}", **fields)
    else:
        sys.stderr.write(f"asya-runtime: error: {exc}\n{details}")
        sys.stderr.flush()
    return exc.exit_code


# --------------------------------------------------------------------------
# Commands: a test message, the version (--probe and --monitor live with what they serve).
# --------------------------------------------------------------------------

EXIT_CALL_ERROR_REPLY = 1
EXIT_NO_RUNTIME = 2


def command(environ, argv):
    """Everything but serving: asya_runtime.py --call JSON | --probe | --version."""
    import argparse  # only commands pay for it

    parser = argparse.ArgumentParser(
        prog="asya_runtime.py",
        allow_abbrev=False,  # --prob is a typo, not --probe
        description="The asya actor runtime. Without arguments it serves ASYA_HANDLER on "
        "ASYA_SOCKET_DIR/asya-runtime.sock (docs/protocol.md); these options talk to a runtime that does.",
        epilog="--call exits 0 on an ok reply, 1 on an error reply, 2 when no runtime answers.",
    )
    parser.add_argument(
        "--call",
        metavar="JSON",
        help="send one test message to the runtime serving ASYA_SOCKET_DIR and print its reply; "
        "JSON is the payload ('-' reads it from stdin), wrapped in an envelope with a new id and a one-actor route",
    )
    parser.add_argument("--envelope", action="store_true", help="with --call: send JSON as the whole envelope")
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --call: give up after this long (default: wait)"
    )
    parser.add_argument(
        "--probe", action="store_true", help="exit 0 if a runtime serves ASYA_SOCKET_DIR (a Kubernetes probe)"
    )
    parser.add_argument("--version", action="version", version=f"asya runtime {__version__}")
    parser.add_argument("--monitor", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.monitor:
        return monitor(options.monitor)
    if options.probe and options.call is None:
        return probe(environ)
    if options.call is None or options.probe:
        parser.error("give one of --call JSON, --probe or --version")
    if options.timeout is not None and not 0 < options.timeout < float("inf"):
        parser.error("--timeout must be a number of seconds more than 0")
    return call_runtime(environ, options.call, options.envelope, options.timeout, parser)


def call_runtime(environ, text, as_envelope, timeout, parser):
    """--call: one message through the socket, as a sidecar sends it; the reply on stdout."""
    if text == "-":
        text = sys.stdin.read()
    try:
        value = decode_message(text)  # as the runtime will: NaN and Infinity are not JSON
    except (ValueError, RecursionError) as exc:
        parser.error(f"--call: not JSON: {exc}")
    if as_envelope:
        envelope = value
    else:
        actor = environ.get("ASYA_ACTOR_NAME", "").strip() or "asya-call"
        envelope = {
            "id": f"call-{os.urandom(8).hex()}",
            "route": {"actors": [actor], "current": 0},
            "headers": {},
            "payload": value,
        }
    try:
        socket_path = os.path.join(socket_dir_from(environ), SOCKET_NAME)
    except StartupError as exc:
        return _call_failed(str(exc))
    # ASCII escapes: a lone surrogate (valid in JSON text) stays valid on the wire.
    body = json.dumps(envelope, separators=(",", ":")).encode("ascii")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        try:
            conn.connect(socket_path)
        except OSError as exc:
            return _call_failed(f"no runtime answers on {socket_path}: {exc.strerror or exc}")
        write_frame(conn, body)
        received = bytearray()
        while True:
            chunk = conn.recv(1024 * 1024)
            if not chunk:
                break
            received += chunk
    except socket.timeout:
        return _call_failed(f"no reply from {socket_path} within {timeout:g} s")
    except OSError as exc:
        return _call_failed(f"the connection to {socket_path} failed: {exc.strerror or exc}")
    finally:
        conn.close()
    if len(received) < HEADER.size or HEADER.unpack_from(received)[0] != len(received) - HEADER.size:
        return _call_failed(f"the runtime closed the connection without a whole reply ({len(received)} bytes)")
    reply = json.loads(received[HEADER.size :].decode("utf-8"))
    # UTF-8 whatever the locale; a lone surrogate is written as its JSON escape, as on the wire.
    sys.stdout.flush()
    sys.stdout.buffer.write(wire_bytes(json.dumps(reply, ensure_ascii=False, indent=2) + "\n"))
    sys.stdout.flush()
    is_error = (
        reply.get("status") != "ok"
        if isinstance(reply, dict)
        else any(isinstance(item, dict) and "error" in item and "payload" not in item for item in reply)
    )
    return EXIT_CALL_ERROR_REPLY if is_error else 0


def _call_failed(why):
    sys.stderr.write(f"asya-runtime --call: {why}\n")
    return EXIT_NO_RUNTIME


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
