"""The fake sidecar: moves envelopes between queues through one actor runtime.

It does what the production sidecar does, in this order, for every message
of its actor's queue (``ASYA_ACTOR_NAME``):

1. receive the oldest message of the queue, from the transport
   (``ASYA_TRANSPORT``: ``file``, the directory queue of queues.py,
   ``rabbitmq``, see rabbitmq.py, or ``sqs``, see sqs.py);
2. dial the runtime's socket, send the envelope as one frame, read one reply
   frame within the call timeout, close;
3. on success, route every output envelope: to the actor the route now points
   at, or to ``happy-end`` when the route is finished;
4. on an error reply, a timeout, a broken connection or an unusable reply:
   send an error record to ``error-end``;
5. acknowledge the message, only after step 3 or 4 is durable; log one line.

Two modes (``ASYA_SIDECAR_MODE``; default ``go`` when ASYA_TRANSPORT is set,
as the chart's ``sidecar.flavor: asya`` does, else ``fake``):

* ``fake``, this project's own ways: the runtime speaks the ``status``
  dialect; the sidecar advances ``route.current`` by one in every output,
  names fan-out items ``<id>-<i>`` with ``parent_id``, waits for the socket
  file (``ASYA_READY_TIMEOUT`` s) and bounds a call by ``ASYA_CALL_TIMEOUT`` s;
  error records have the shape of ``error_record``;
* ``go``, the asya Go sidecar's ways (go.py): the ``list`` dialect, the
  ``runtime-ready`` file, the route as the runtime returned it, the Go
  sidecar's variables and error-end record.

When the runtime fails, the two modes part ways:

* ``go`` does what the Go sidecar does. A runtime it cannot reach (socket
  missing, connection refused) or that dies in the call (EOF, reset): the
  message goes to error-end at once and is acknowledged, never retried, so
  every message that arrives while the runtime container restarts is failed.
  A call past ASYA_RUNTIME_TIMEOUT: the error-end record is published, then
  the process exits 1 *before* acknowledging, so the broker delivers the
  message again and a second error-end record follows.
* ``fake``, this project's gentler ways. A runtime whose socket cannot be
  dialled never saw the message, so the sidecar keeps it and waits for the
  runtime to come back (up to the ready timeout), then retries it; if the
  runtime stays down the message goes to error-end as ``runtime_unavailable``
  and the sidecar exits with EXIT_NOT_READY. A runtime that dies in the middle
  of a call sends the message to error-end on the directory queue; on RabbitMQ
  the message is requeued (``basic.nack``) and processed again once the
  runtime is back, up to ``ASYA_MAX_LOST_CALLS`` calls (default 3), after
  which it goes to error-end instead of crash-looping the pod. A call past
  ASYA_CALL_TIMEOUT goes to error-end and the sidecar carries on.

SIGTERM or SIGINT: the message in flight is finished (reply, outputs, ack),
then the sidecar exits 0. In fake mode, a message that the runtime never
answered because it is stopping too (down, or closed with the call unread in
its backlog, as when a whole pod stops) goes back to its queue untouched; in
go mode it goes to error-end like any other runtime connection failure.
"""

import collections
import json
import logging
import os
import signal
import threading
import time

from . import go, queues
from .runtime_client import (
    INVALID_REPLY,
    RUNTIME_UNAVAILABLE,
    TIMEOUT,
    CallFailed,
    RuntimeUnreachable,
    call_runtime,
    strict_json_loads,
)
from .transports import make_transport

HAPPY_END = "happy-end"
ERROR_END = "error-end"

# Error codes of the sidecar's own making, beside runtime_client's.
INVALID_MESSAGE = "invalid_message"
INVALID_ROUTE = "invalid_route"

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_NOT_READY = 3
EXIT_BROKER = 4

DEFAULT_SOCKET_DIR = "/var/run/asya"
DEFAULT_QUEUE_DIR = "/var/asya/queues"

TRANSPORTS = ("file", "rabbitmq", "sqs")
MODES = ("fake", "go")
# The Go sidecar's timeouts when its variables are unset (internal/config, cmd/sidecar).
GO_DEFAULT_CALL_TIMEOUT = 300.0
GO_DEFAULT_READY_TIMEOUT = 300.0

LOG = logging.getLogger("asya-sidecar")


class ConfigError(Exception):
    pass


# Calls of one message the runtime may die in before it goes to error-end.
DEFAULT_MAX_LOST_CALLS = 3


def _positive(environ, name, default, kind=float):
    """A positive number of `kind` (seconds as float, counts as int), or default when unset."""
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a number of seconds" if kind is float else "an integer"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value


def _positive_int(environ, name, default):
    return _positive(environ, name, default, kind=int)


def _duration(environ, names, default):
    """Seconds from the first of `names` that is set, read as a Go duration ("5m", "90s")."""
    for name in names:
        raw = environ.get(name)
        if raw:
            try:
                value = go.parse_duration(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            if not value > 0:
                raise ConfigError(f"{name}={raw!r} must be greater than 0")
            return value
    return default


def _choice(environ, name, default, choices):
    value = environ.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}"
                          + (" (the fake sidecar has no Pub/Sub transport)"
                             if name == "ASYA_TRANSPORT" else ""))
    return value


class Config:
    """Settings read once from the environment (and command-line overrides)."""

    def __init__(self, actor, socket_dir, queue_dir, ready_timeout, call_timeout,
                 exit_when_idle=None, max_messages=None, poll_interval=0.1,
                 transport="file", mode="fake", rabbitmq=None, sqs=None,
                 happy_end=HAPPY_END, error_end=ERROR_END, socket_path=None,
                 max_lost_calls=DEFAULT_MAX_LOST_CALLS):
        self.actor = actor
        self.socket_dir = socket_dir
        self.queue_dir = queue_dir
        self.ready_timeout = ready_timeout
        self.call_timeout = call_timeout
        self.exit_when_idle = exit_when_idle
        self.max_messages = max_messages
        self.poll_interval = poll_interval
        self.transport = transport
        self.mode = mode
        self.rabbitmq = rabbitmq
        self.sqs = sqs
        self.happy_end = happy_end
        self.error_end = error_end
        self._socket_path = socket_path
        self.max_lost_calls = max_lost_calls

    @property
    def socket_path(self):
        return self._socket_path or os.path.join(self.socket_dir, "asya-runtime.sock")

    @property
    def dialect(self):
        """The runtime's ASYA_REPLY_FORMAT this sidecar expects."""
        return "list" if self.mode == "go" else "status"

    @classmethod
    def from_environ(cls, environ):
        # ASYA_QUEUE_NAME: the Go sidecar's older name for the same thing.
        actor = environ.get("ASYA_ACTOR_NAME") or environ.get("ASYA_QUEUE_NAME") or ""
        if not actor:
            raise ConfigError("ASYA_ACTOR_NAME is not set: set it to this actor's queue name")
        try:
            queues.check_queue_name(actor)
        except queues.QueueError as exc:
            raise ConfigError(f"ASYA_ACTOR_NAME: {exc}") from None
        transport = _choice(environ, "ASYA_TRANSPORT", "file", TRANSPORTS)
        mode = _choice(environ, "ASYA_SIDECAR_MODE", "go" if environ.get("ASYA_TRANSPORT") else "fake", MODES)
        # End queue names: the chart's variables, then the Go sidecar's older ones.
        happy_end = environ.get("ASYA_ACTOR_HAPPY_END") or environ.get("ASYA_STEP_HAPPY_END") or HAPPY_END
        error_end = environ.get("ASYA_ACTOR_ERROR_END") or environ.get("ASYA_STEP_ERROR_END") or ERROR_END
        for name in (happy_end, error_end):
            try:
                queues.check_queue_name(name)
            except queues.QueueError as exc:
                raise ConfigError(f"end queue: {exc}") from None
        if actor in (happy_end, error_end):
            raise ConfigError(f"ASYA_ACTOR_NAME={actor} is reserved for finished messages")
        if mode == "go":
            call_timeout = _duration(environ, ("ASYA_RUNTIME_TIMEOUT", "ASYA_RESILIENCY_ACTOR_TIMEOUT"),
                                     GO_DEFAULT_CALL_TIMEOUT)
            ready_timeout = _duration(environ, ("ASYA_RUNTIME_READY_TIMEOUT",), GO_DEFAULT_READY_TIMEOUT)
        else:
            call_timeout = _positive(environ, "ASYA_CALL_TIMEOUT", 300.0)
            ready_timeout = _positive(environ, "ASYA_READY_TIMEOUT", 60.0)
        rabbitmq = None
        if transport == "rabbitmq":
            from .rabbitmq import RabbitMQSettings
            rabbitmq = RabbitMQSettings.from_environ(environ, _positive_int, _duration)
        sqs = None
        if transport == "sqs":
            from .sqs import SqsSettings
            try:
                sqs = SqsSettings.from_environ(environ, call_timeout)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return cls(
            actor=actor,
            socket_dir=environ.get("ASYA_SOCKET_DIR") or DEFAULT_SOCKET_DIR,
            socket_path=environ.get("ASYA_SOCKET_PATH") or None,
            queue_dir=environ.get("ASYA_QUEUE_DIR") or DEFAULT_QUEUE_DIR,
            ready_timeout=ready_timeout,
            call_timeout=call_timeout,
            exit_when_idle=_positive(environ, "ASYA_EXIT_WHEN_IDLE", None),
            max_messages=_positive_int(environ, "ASYA_MAX_MESSAGES", None),
            poll_interval=_positive(environ, "ASYA_POLL_INTERVAL", 0.1),
            transport=transport,
            mode=mode,
            rabbitmq=rabbitmq,
            sqs=sqs,
            happy_end=happy_end,
            error_end=error_end,
            max_lost_calls=_positive_int(environ, "ASYA_MAX_LOST_CALLS", DEFAULT_MAX_LOST_CALLS),
        )


# ------------------------------------------------------------ routing

class RoutingError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _check_route(route, where):
    if not isinstance(route, dict):
        raise RoutingError(INVALID_REPLY, f"{where}: route is not an object")
    actors = route.get("actors")
    current = route.get("current")
    if not isinstance(actors, list) or not actors or not all(isinstance(a, str) for a in actors):
        raise RoutingError(INVALID_REPLY, f"{where}: route.actors is not a non-empty list of strings")
    if isinstance(current, bool) or not isinstance(current, int) or not 0 <= current < len(actors):
        raise RoutingError(INVALID_REPLY, f"{where}: route.current {current!r} is not an index of route.actors")


def next_hops(input_envelope, result, happy_end=HAPPY_END):
    """Turn a runtime result into ``[(queue, envelope), ...]`` to enqueue.

    Raises RoutingError when an output cannot be routed; then nothing of this
    result may be sent (the caller sends the input to error-end instead).
    """
    outputs = result if isinstance(result, list) else [result]
    message_id = input_envelope["id"]
    hops = []
    for index, output in enumerate(outputs):
        where = f"result[{index}]" if isinstance(result, list) else "result"
        if not isinstance(output, dict):
            raise RoutingError(INVALID_REPLY, f"{where} is not an envelope object")
        route = output.get("route")
        _check_route(route, where)
        envelope = dict(output)
        envelope["route"] = dict(route, current=route["current"] + 1)
        if index == 0:
            envelope["id"] = message_id
            if "parent_id" in input_envelope:
                envelope["parent_id"] = input_envelope["parent_id"]
            else:
                envelope.pop("parent_id", None)
        else:
            envelope["id"] = f"{message_id}-{index}"
            envelope["parent_id"] = message_id
        actors = envelope["route"]["actors"]
        current = envelope["route"]["current"]
        if current >= len(actors):
            destination = happy_end
        else:
            destination = actors[current]
            try:
                queues.check_queue_name(destination)
            except queues.QueueError as exc:
                raise RoutingError(INVALID_ROUTE, f"{where}: next actor: {exc}") from None
        hops.append((destination, envelope))
    return hops


def error_record(actor, message_id, code, message, envelope, reply=None, raw=None):
    """The one shape of everything sent to error-end.

    ``{"id", "actor", "error", "message", "envelope"}`` plus ``"type"`` and
    ``"traceback"`` when the runtime gave them, and ``"raw"`` (the file's text)
    when the queued message was not a JSON envelope (then ``envelope`` is null).
    """
    record = {
        "id": message_id,
        "actor": actor,
        "error": code,
        "message": message,
        "envelope": envelope,
    }
    for key in ("type", "traceback"):
        if reply is not None and key in reply:
            record[key] = reply[key]
    if raw is not None:
        record["raw"] = raw
    return record


# ------------------------------------------------------------ the loop

class Outcome:
    """What happened to one message; becomes its log line."""

    def __init__(self, message_id, outcome, destinations, error=None, detail=None, step=None):
        self.message_id = message_id
        self.step = step
        self.outcome = outcome
        self.destinations = destinations
        self.error = error
        self.detail = detail

    def log_line(self, actor):
        parts = [f"actor={actor}", f"id={_log_value(self.message_id)}"]
        if self.step is not None:
            parts.append(f"step={self.step}")
        parts += [f"outcome={self.outcome}", f"results={len(self.destinations)}"]
        unique = []
        for name in self.destinations:
            if name not in unique:
                unique.append(name)
        parts.append(f"destination={','.join(unique) or '-'}")
        if self.error:
            parts.append(f"error={self.error}")
        if self.detail:
            parts.append(f"message={_log_value(_one_line(self.detail))}")
        return " ".join(parts)


def _log_value(value):
    """A bare token when safe, else a JSON string: lines stay key=value parseable."""
    text = str(value)
    if text and all(c.isalnum() or c in "._-:/@" for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StopRequested(Exception):
    """SIGTERM arrived while waiting for the runtime; the message goes back."""


class RuntimeGone(Exception):
    """The runtime stayed unreachable for the whole ready timeout."""


class CallTimedOut(Exception):
    """Go mode: a call outlived ASYA_RUNTIME_TIMEOUT; the sidecar exits 1 so the pod restarts."""


class LostCalls:
    """How many calls of each recent message the runtime died in.

    Kept in memory (a sidecar restart starts again from zero) for the last
    REMEMBERED messages, so that messages taken by another pod after their
    requeue cost nothing forever.
    """

    REMEMBERED = 1024

    def __init__(self):
        self._counts = collections.OrderedDict()

    def add(self, message_id):
        """Count one more lost call of message_id; return how many there have been."""
        count = self._counts.pop(message_id, 0) + 1
        self._counts[message_id] = count
        while len(self._counts) > self.REMEMBERED:
            self._counts.popitem(last=False)
        return count

    def forget(self, message_id):
        self._counts.pop(message_id, None)


class Sidecar:
    RECEIVE_WAIT = 0.2  # seconds per receive: how often stop and idle are checked

    def __init__(self, config, stop_event=None, transport=None):
        self.config = config
        self.stop = stop_event or threading.Event()
        self.transport = transport or make_transport(config, self.stop, LOG)
        self.lost_calls = LostCalls()

    # -- readiness

    def wait_for_socket(self):
        """Poll until the socket file exists; False after the ready timeout."""
        deadline = time.monotonic() + self.config.ready_timeout
        interval = 0.01
        while not os.path.exists(self.config.socket_path):
            if self.stop.is_set():
                raise StopRequested()
            if time.monotonic() >= deadline:
                return False
            self.stop.wait(interval)
            interval = min(interval * 2, 0.2)
        return True

    def wait_until_ready(self):
        """Fake mode: the socket file exists. Go mode: runtime-ready exists and the socket accepts."""
        if self.config.mode != "go":
            return self.wait_for_socket()
        ready = go.wait_for_runtime_ready(self.config.socket_path, self.config.ready_timeout, self.stop)
        if ready is None:
            raise StopRequested()
        return ready

    def not_ready_line(self, state):
        line = f"runtime not ready after {self.config.ready_timeout:g}s: socket {self.config.socket_path} {state}"
        if self.config.mode == "go" and state == "missing":
            line += f" or no {go.READY_FILE} file beside it"
        return line

    @property
    def not_ready_exit(self):
        return go.EXIT_GO_FAILURE if self.config.mode == "go" else EXIT_NOT_READY

    # -- one message

    def _call_until_reachable(self, envelope):
        """Call the runtime; while it cannot be dialled, wait and retry (fake mode)."""
        if self.config.mode == "go":
            return call_runtime(self.config.socket_path, envelope, self.config.call_timeout, self.config.dialect)
        deadline = time.monotonic() + self.config.ready_timeout
        interval = 0.02
        announced = False
        while True:
            try:
                return call_runtime(self.config.socket_path, envelope, self.config.call_timeout,
                                    self.config.dialect)
            except RuntimeUnreachable as exc:
                if not announced:
                    LOG.warning("id=%s runtime unreachable (%s); waiting up to %gs",
                                envelope.get("id"), exc, self.config.ready_timeout)
                    announced = True
                if self.stop.is_set():
                    raise StopRequested() from None
                if time.monotonic() >= deadline:
                    raise RuntimeGone(str(exc)) from None
                self.stop.wait(interval)
                interval = min(interval * 2, 0.2)

    def _unreadable(self, delivery, exc):
        """The queued bytes are not a JSON envelope: error-end, in the mode's record."""
        config = self.config
        if config.mode == "go":
            record = go.error_record(delivery.body, f"Failed to parse message: {exc}")
        else:
            record = error_record(config.actor, delivery.name, INVALID_MESSAGE,
                                  f"queued message is not a JSON envelope: {exc}",
                                  None, raw=delivery.body.decode("utf-8", "replace"))
        return self._finish(delivery, [(config.error_end, record)],
                            Outcome(delivery.name, "error", [config.error_end], INVALID_MESSAGE, str(exc)))

    def process(self, delivery):
        """Handle one received message to the end (outputs durable, then ack)."""
        config = self.config
        actor = config.actor
        go_mode = config.mode == "go"
        try:
            envelope = strict_json_loads(delivery.body)
            if not isinstance(envelope, dict):
                raise ValueError(f"a JSON {type(envelope).__name__}, not an envelope object")
        except ValueError as exc:
            return self._unreadable(delivery, exc)
        has_id = isinstance(envelope.get("id"), str) and envelope["id"]
        if not has_id and not go_mode:
            envelope["id"] = delivery.name  # unique: the queue file's name
        message_id = envelope.get("id") or delivery.name
        route = envelope.get("route")
        step = route.get("current") if isinstance(route, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            step = None

        def fail(code, message, reply=None, details=None, go_error=None, ack=True):
            if go_mode:
                # The Go sidecar's payload.error: the runtime's code, or its own message.
                record = go.error_record(delivery.body, go_error or message, details)
            else:
                record = error_record(actor, message_id, code, message, envelope, reply=reply)
            return self._finish(delivery, [(config.error_end, record)],
                                Outcome(message_id, "error", [config.error_end], code, message, step), ack=ack)

        if go_mode:
            if not has_id:
                return fail(INVALID_MESSAGE, "Envelope missing required 'id' field")
            actors = route.get("actors") if isinstance(route, dict) else None
            current_actor = actors[step] if isinstance(actors, list) and step is not None \
                and 0 <= step < len(actors) else ""
            if current_actor != actor:
                return fail(INVALID_ROUTE, "Route mismatch: message routed to wrong actor "
                                           f"(expected: {actor}, actual: {current_actor})")

        try:
            reply = self.transport.while_busy(lambda: self._call_until_reachable(envelope))
        except RuntimeUnreachable as exc:  # go mode only: no waiting for the runtime
            return fail(RUNTIME_UNAVAILABLE, f"runtime unreachable: {exc}", go_error=f"Runtime error: {exc}")
        except StopRequested:
            self._release(delivery, message_id, "stopping while the runtime is down")
            raise
        except RuntimeGone as exc:
            fail(RUNTIME_UNAVAILABLE, self.not_ready_line("unreachable") + f": {exc}")
            raise
        except CallFailed as exc:
            if exc.code == TIMEOUT and go_mode:
                # Published, not acknowledged: the process exits (CallTimedOut) and
                # the broker redelivers the message, as with the Go sidecar.
                fail(exc.code, exc.message, ack=False,
                     go_error=f"Runtime timeout exceeded after {config.call_timeout:g}s")
                raise CallTimedOut(exc.message) from None
            if go_mode:
                return fail(exc.code, exc.message, go_error=f"Runtime error: {exc.message}")
            if exc.code == RUNTIME_UNAVAILABLE and not exc.reply_started:
                if self.stop.is_set():
                    # The pod is stopping: the runtime closed with this call still
                    # in its backlog, unread. It produced nothing, so the message
                    # goes back rather than into error-end.
                    self._release(delivery, message_id, "stopping; the runtime closed unanswered")
                    raise StopRequested() from None
                if self.transport.requeues_lost_calls:
                    # The runtime died in the call: an unacked message, as far as
                    # the broker is concerned. Redelivered, it waits for the
                    # runtime to come back (_call_until_reachable).
                    lost = self.lost_calls.add(message_id)
                    if lost < config.max_lost_calls:
                        return self._release(delivery, message_id, f"requeued: {exc.message}",
                                             outcome="requeued")
                    return fail(exc.code, f"{exc.message}; the runtime was lost in {lost} calls of this "
                                          f"message (ASYA_MAX_LOST_CALLS={config.max_lost_calls})")
            return fail(exc.code, exc.message)

        if go_mode:
            error = go.reply_error(reply)
            if error is not None:
                code, details = error
                return fail(code, str(details.get("message", "")), reply=details, details=details,
                            go_error=code)
            try:
                hops = go.next_hops(envelope, reply, config.happy_end)
            except go.ReplyError as exc:
                return fail(INVALID_REPLY, str(exc))
            outcome = Outcome(message_id, "ok", [q for q, _ in hops], step=step)
            return self._finish(delivery, hops, outcome)

        if reply["status"] == "error":
            code = reply.get("error") or "error"
            return fail(str(code), str(reply.get("message", "")), reply=reply)
        if "result" not in reply:
            return fail(INVALID_REPLY, "ok reply without a result")
        try:
            hops = next_hops(envelope, reply["result"], config.happy_end)
        except RoutingError as exc:
            return fail(exc.code, exc.message)
        outcome = Outcome(message_id, "ok" if hops else "completed", [q for q, _ in hops], step=step)
        return self._finish(delivery, hops, outcome)

    def _release(self, delivery, message_id, reason, outcome="released"):
        self.transport.requeue(delivery)
        LOG.info("actor=%s id=%s outcome=%s results=0 destination=%s message=%s",
                 self.config.actor, _log_value(message_id), outcome, self.config.actor, _log_value(reason))
        return Outcome(message_id, outcome, [])

    def _finish(self, delivery, hops, outcome, ack=True):
        if ack:
            self.transport.publish_then_ack(delivery, hops)
        else:
            self.transport.publish(hops)
        self.lost_calls.forget(outcome.message_id)
        LOG.info("%s", outcome.log_line(self.config.actor))
        return outcome

    # -- main loop

    def run(self):
        """Serve until stopped, idle or done; return the process exit code."""
        config = self.config
        LOG.info("actor=%s starting: mode=%s socket=%s %s ready_timeout=%gs call_timeout=%gs",
                 config.actor, config.mode, config.socket_path, self.transport.describe(),
                 config.ready_timeout, config.call_timeout)
        try:
            ready = self.wait_until_ready()
        except StopRequested:
            return EXIT_OK
        if not ready:
            LOG.error("%s", self.not_ready_line("missing"))
            return self.not_ready_exit
        LOG.info("actor=%s runtime ready", config.actor)
        broker_errors = _broker_errors(config)
        try:
            self.transport.open()
            return self._serve()
        except broker_errors as exc:
            # Unacked messages go back to the queue when the connection closes.
            LOG.error("actor=%s broker failure: %r; exiting", config.actor, exc)
            return EXIT_BROKER
        finally:
            self.transport.close()

    def _serve(self):
        config = self.config
        handled = 0
        idle_since = time.monotonic()
        while not self.stop.is_set():
            if config.max_messages is not None and handled >= config.max_messages:
                LOG.info("actor=%s handled %d message(s); exiting", config.actor, handled)
                return EXIT_OK
            delivery = self.transport.receive(self.RECEIVE_WAIT)
            if delivery is None:
                if config.exit_when_idle is not None and time.monotonic() - idle_since >= config.exit_when_idle:
                    LOG.info("actor=%s idle for %gs; exiting", config.actor, config.exit_when_idle)
                    return EXIT_OK
                continue
            try:
                outcome = self.process(delivery)
            except StopRequested:
                break
            except RuntimeGone:
                LOG.error("%s", self.not_ready_line("unreachable"))
                return self.not_ready_exit
            except CallTimedOut:
                LOG.error("actor=%s runtime timeout exceeded; exiting so that the pod restarts", config.actor)
                return go.EXIT_GO_FAILURE
            if outcome.outcome != "requeued":
                handled += 1
            idle_since = time.monotonic()
        LOG.info("actor=%s stopping after %d message(s)", config.actor, handled)
        return EXIT_OK


def _broker_errors(config):
    """Exceptions that mean the broker connection is unusable (none for the directory queue)."""
    if config.transport == "sqs":
        from .sqs import SqsError
        return (SqsError,)
    if config.transport != "rabbitmq":
        return ()
    import pika

    from .rabbitmq import BrokerError
    return (BrokerError, pika.exceptions.AMQPError)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_stop_handlers(stop_event):
    """SIGTERM/SIGINT only set `stop_event`: the message in flight runs to its end.

    Call it before any other thread starts (threads inherit the signal mask).
    The signals are blocked in every thread and taken by one thread of their
    own (sigwait), never by a Python signal handler: such a handler runs in the
    main thread between any two bytecodes, including those where the main
    thread holds the stop event's internal lock (inside ``stop.wait``, which
    every poll loop calls), and ``Event.set()`` in it then waits for that
    non-reentrant lock forever: a sidecar that ignores SIGTERM until SIGKILL.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def take_stop_signals():
        while True:
            signum = signal.sigwait(STOP_SIGNALS)
            if not stop_event.is_set():
                LOG.info("received %s: finishing the message in flight, then exiting",
                         signal.Signals(signum).name)
            stop_event.set()

    threading.Thread(target=take_stop_signals, name="stop-signals", daemon=True).start()
