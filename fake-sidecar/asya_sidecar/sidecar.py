"""The fake sidecar: moves envelopes between queues through one actor runtime.

It does what the production sidecar does, in this order, for every message
of its actor's queue (``ASYA_ACTOR_NAME``):

1. claim the oldest message of the queue (see queues.py);
2. dial the runtime's socket, send the envelope as one frame, read one reply
   frame within ``ASYA_CALL_TIMEOUT``, close;
3. on ``ok``: in every output envelope advance ``route.current`` by one and
   give it an id (one output keeps the input id; fan-out item ``i >= 1`` gets
   ``<id>-<i>`` and ``parent_id: <id>``), then enqueue it for the actor the
   route now points at, or for ``happy-end`` when the route is finished. An
   empty result completes the message with no output;
4. on an error reply, a timeout, a broken connection or an unusable reply:
   enqueue an error record for ``error-end`` (shape in ``error_record``);
5. ack the claimed message, only after step 3 or 4 is durable; log one line.

A runtime whose socket cannot be dialled never saw the message, so the
sidecar keeps it and waits for the runtime to come back (up to
``ASYA_READY_TIMEOUT``), then retries it. If the runtime stays down the
message goes to ``error-end`` as ``runtime_unavailable`` and the sidecar
exits with EXIT_NOT_READY, as it does when the runtime never starts.

SIGTERM or SIGINT: the message in flight is finished (reply, outputs, ack),
then the sidecar exits 0. A message that the runtime never answered because
it is stopping too (down, or closed with the call unread in its backlog, as
when a whole pod stops) goes back to its queue untouched.
"""

import json
import logging
import os
import signal
import threading
import time

from . import queues
from .runtime_client import (
    INVALID_REPLY,
    RUNTIME_UNAVAILABLE,
    CallFailed,
    RuntimeUnreachable,
    call_runtime,
    strict_json_loads,
)

HAPPY_END = "happy-end"
ERROR_END = "error-end"

# Error codes of the sidecar's own making, beside runtime_client's.
INVALID_MESSAGE = "invalid_message"
INVALID_ROUTE = "invalid_route"

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_NOT_READY = 3

DEFAULT_SOCKET_DIR = "/var/run/asya"
DEFAULT_QUEUE_DIR = "/var/asya/queues"

LOG = logging.getLogger("asya-sidecar")


class ConfigError(Exception):
    pass


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


class Config:
    """Settings read once from the environment (and command-line overrides)."""

    def __init__(self, actor, socket_dir, queue_dir, ready_timeout, call_timeout,
                 exit_when_idle=None, max_messages=None, poll_interval=0.1):
        self.actor = actor
        self.socket_dir = socket_dir
        self.queue_dir = queue_dir
        self.ready_timeout = ready_timeout
        self.call_timeout = call_timeout
        self.exit_when_idle = exit_when_idle
        self.max_messages = max_messages
        self.poll_interval = poll_interval

    @property
    def socket_path(self):
        return os.path.join(self.socket_dir, "asya-runtime.sock")

    @classmethod
    def from_environ(cls, environ):
        actor = environ.get("ASYA_ACTOR_NAME", "")
        if not actor:
            raise ConfigError("ASYA_ACTOR_NAME is not set: set it to this actor's queue name")
        try:
            queues.check_queue_name(actor)
        except queues.QueueError as exc:
            raise ConfigError(f"ASYA_ACTOR_NAME: {exc}") from None
        if actor in (HAPPY_END, ERROR_END):
            raise ConfigError(f"ASYA_ACTOR_NAME={actor} is reserved for finished messages")
        return cls(
            actor=actor,
            socket_dir=environ.get("ASYA_SOCKET_DIR") or DEFAULT_SOCKET_DIR,
            queue_dir=environ.get("ASYA_QUEUE_DIR") or DEFAULT_QUEUE_DIR,
            ready_timeout=_positive(environ, "ASYA_READY_TIMEOUT", 60.0),
            call_timeout=_positive(environ, "ASYA_CALL_TIMEOUT", 300.0),
            exit_when_idle=_positive(environ, "ASYA_EXIT_WHEN_IDLE", None),
            max_messages=_positive(environ, "ASYA_MAX_MESSAGES", None, kind=int),
            poll_interval=_positive(environ, "ASYA_POLL_INTERVAL", 0.1),
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


def next_hops(input_envelope, result):
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
            destination = HAPPY_END
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


class Sidecar:
    def __init__(self, config, stop_event=None):
        self.config = config
        self.stop = stop_event or threading.Event()
        self.store = queues.QueueStore(config.queue_dir)

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

    def not_ready_line(self, state):
        return f"runtime not ready after {self.config.ready_timeout:g}s: socket {self.config.socket_path} {state}"

    # -- one message

    def _call_until_reachable(self, envelope):
        """Call the runtime; while it cannot be dialled, wait and retry."""
        deadline = time.monotonic() + self.config.ready_timeout
        interval = 0.02
        announced = False
        while True:
            try:
                return call_runtime(self.config.socket_path, envelope, self.config.call_timeout)
            except RuntimeUnreachable as exc:
                if not announced:
                    LOG.warning("id=%s runtime unreachable (%s); waiting up to %gs",
                                envelope["id"], exc, self.config.ready_timeout)
                    announced = True
                if self.stop.is_set():
                    raise StopRequested() from None
                if time.monotonic() >= deadline:
                    raise RuntimeGone(str(exc)) from None
                self.stop.wait(interval)
                interval = min(interval * 2, 0.2)

    def process(self, consumer, claim):
        """Handle one claimed message to the end (outputs durable, then ack)."""
        actor = self.config.actor
        try:
            envelope = strict_json_loads(claim.body)
            if not isinstance(envelope, dict):
                raise ValueError(f"a JSON {type(envelope).__name__}, not an envelope object")
        except ValueError as exc:
            record = error_record(actor, claim.stem, INVALID_MESSAGE,
                                  f"queued message is not a JSON envelope: {exc}",
                                  None, raw=claim.body.decode("utf-8", "replace"))
            return self._finish(consumer, claim, [(ERROR_END, record)],
                                Outcome(claim.stem, "error", [ERROR_END], INVALID_MESSAGE, str(exc)))
        if not isinstance(envelope.get("id"), str) or not envelope["id"]:
            envelope["id"] = claim.stem  # unique: the queue file's name
        message_id = envelope["id"]
        route = envelope.get("route")
        step = route.get("current") if isinstance(route, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            step = None

        def fail(code, message, reply=None):
            record = error_record(actor, message_id, code, message, envelope, reply=reply)
            return self._finish(consumer, claim, [(ERROR_END, record)],
                                Outcome(message_id, "error", [ERROR_END], code, message, step))

        try:
            reply = self._call_until_reachable(envelope)
        except StopRequested:
            self._release(consumer, claim, message_id, "stopping while the runtime is down")
            raise
        except RuntimeGone as exc:
            fail(RUNTIME_UNAVAILABLE, self.not_ready_line("unreachable") + f": {exc}")
            raise
        except CallFailed as exc:
            if exc.code == RUNTIME_UNAVAILABLE and not exc.reply_started and self.stop.is_set():
                # The pod is stopping: the runtime closed with this call still
                # in its backlog, unread. It produced nothing, so the message
                # goes back rather than into error-end.
                self._release(consumer, claim, message_id, "stopping; the runtime closed unanswered")
                raise StopRequested() from None
            return fail(exc.code, exc.message)

        if reply["status"] == "error":
            code = reply.get("error") or "error"
            return fail(str(code), str(reply.get("message", "")), reply=reply)
        if "result" not in reply:
            return fail(INVALID_REPLY, "ok reply without a result")
        try:
            hops = next_hops(envelope, reply["result"])
        except RoutingError as exc:
            return fail(exc.code, exc.message)
        outcome = Outcome(message_id, "ok" if hops else "completed", [q for q, _ in hops], step=step)
        return self._finish(consumer, claim, hops, outcome)

    def _release(self, consumer, claim, message_id, reason):
        consumer.release(claim)
        LOG.info("actor=%s id=%s outcome=released results=0 destination=%s message=%s",
                 self.config.actor, _log_value(message_id), self.config.actor, _log_value(reason))

    def _finish(self, consumer, claim, hops, outcome):
        self.store.enqueue_many(hops)
        consumer.ack(claim)
        LOG.info("%s", outcome.log_line(self.config.actor))
        return outcome

    # -- main loop

    def run(self):
        """Serve until stopped, idle or done; return the process exit code."""
        config = self.config
        LOG.info("actor=%s starting: socket=%s queue_dir=%s ready_timeout=%gs call_timeout=%gs",
                 config.actor, config.socket_path, config.queue_dir,
                 config.ready_timeout, config.call_timeout)
        try:
            ready = self.wait_for_socket()
        except StopRequested:
            return EXIT_OK
        if not ready:
            LOG.error("%s", self.not_ready_line("missing"))
            return EXIT_NOT_READY
        LOG.info("actor=%s runtime ready", config.actor)
        consumer = self.store.consumer(config.actor)
        try:
            return self._serve(consumer)
        finally:
            consumer.close()

    def _serve(self, consumer):
        config = self.config
        recovered = consumer.recover_orphans()
        if recovered:
            LOG.warning("actor=%s requeued %d message(s) left by dead consumers", config.actor, recovered)
        handled = 0
        idle_since = time.monotonic()
        interval = 0.005
        next_recovery = time.monotonic() + 5.0
        while not self.stop.is_set():
            if config.max_messages is not None and handled >= config.max_messages:
                LOG.info("actor=%s handled %d message(s); exiting", config.actor, handled)
                return EXIT_OK
            claim = consumer.claim()
            if claim is None:
                now = time.monotonic()
                if config.exit_when_idle is not None and now - idle_since >= config.exit_when_idle:
                    LOG.info("actor=%s idle for %gs; exiting", config.actor, config.exit_when_idle)
                    return EXIT_OK
                if now >= next_recovery:
                    consumer.recover_orphans()
                    next_recovery = now + 5.0
                self.stop.wait(interval)
                interval = min(interval * 2, config.poll_interval)
                continue
            interval = 0.005
            try:
                self.process(consumer, claim)
            except StopRequested:
                break
            except RuntimeGone:
                LOG.error("%s", self.not_ready_line("unreachable"))
                return EXIT_NOT_READY
            handled += 1
            idle_since = time.monotonic()
        LOG.info("actor=%s stopping after %d message(s)", config.actor, handled)
        return EXIT_OK


def install_stop_handlers(stop_event):
    """SIGTERM/SIGINT only set a flag: the message in flight runs to its end."""

    def request_stop(signum, _frame):
        if not stop_event.is_set():
            LOG.info("received %s: finishing the message in flight, then exiting",
                     signal.Signals(signum).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
