"""The RabbitMQ transport, with the asya Go sidecar's topology and rules.

Topology (deliveryhero/asya, ``internal/transport/rabbitmq.go`` and
``internal/router/router.go``; names from topology.py): one durable topic
exchange (``ASYA_RABBITMQ_EXCHANGE``, default ``asya``); every actor and end
queue is a durable queue named ``asya-<name>``, bound to the exchange with the
bare name as the routing key; messages are published persistent,
``application/json``, with that bare name as routing key and
``mandatory=false``: a message no queue is bound for is dropped by the broker.

Who creates the queues depends on the mode:

* ``go``: nobody here. The Go sidecar only declares its own queue passively,
  so the release creates them (the chart's topology Job). A missing queue
  closes the channel; like the Go sidecar this one then retries on the dead
  channel, ASYA_QUEUE_RETRY_MAX_ATTEMPTS times (10) with a doubling
  ASYA_QUEUE_RETRY_BACKOFF (1s), so creating the queue meanwhile does not
  help, and gives up (EXIT_BROKER). Unlike it, a SIGTERM ends that wait;
* ``fake``: this project's convenience. The sidecar declares and binds every
  queue it consumes or publishes to, so a pipeline runs on an empty broker.

Rules:

* prefetch ``ASYA_RABBITMQ_PREFETCH`` (default 1), manual acknowledgement;
* a delivery is acked only once every result is published and confirmed by
  the broker (publisher confirms: a confirmed persistent message on a durable
  queue survives a broker restart);
* a delivery that could not be finished goes back with ``basic.nack
  requeue=true``; one that was never acked because the sidecar died is
  redelivered by the broker when the connection drops.

pika's BlockingConnection serves its heartbeats only while the client calls
it, so a long runtime call runs in a worker thread while this thread keeps
pumping the connection (``while_busy``).
"""

import collections
import logging
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from . import topology
from .queues import encode_message
from .transports import Delivery

CONNECT_ATTEMPTS = 5  # as the Go sidecar: 1, 2, 4, 8 s between them
# The Go sidecar's attempts at its own queue, and the first pause (doubling).
QUEUE_RETRY_ATTEMPTS = 10
QUEUE_RETRY_BACKOFF = 1.0

logging.getLogger("pika").setLevel(logging.WARNING)


class BrokerError(Exception):
    """The broker could not be reached or refused an operation."""


class RabbitMQSettings:
    def __init__(self, url, exchange=topology.DEFAULT_EXCHANGE, prefetch=1,
                 queue_retry_attempts=QUEUE_RETRY_ATTEMPTS, queue_retry_backoff=QUEUE_RETRY_BACKOFF):
        self.url = url
        self.exchange = exchange
        self.prefetch = prefetch
        self.queue_retry_attempts = queue_retry_attempts
        self.queue_retry_backoff = queue_retry_backoff

    @classmethod
    def from_environ(cls, environ, parse_int, parse_duration=None):
        url = environ.get("ASYA_RABBITMQ_URL") or "amqp://{}:{}@{}:{}/".format(
            environ.get("ASYA_RABBITMQ_USERNAME") or "guest",
            environ.get("ASYA_RABBITMQ_PASSWORD") or "guest",
            environ.get("ASYA_RABBITMQ_HOST") or "localhost",
            environ.get("ASYA_RABBITMQ_PORT") or "5672",
        )
        backoff = QUEUE_RETRY_BACKOFF
        if parse_duration is not None:
            backoff = parse_duration(environ, ("ASYA_QUEUE_RETRY_BACKOFF",), QUEUE_RETRY_BACKOFF)
        return cls(url=url,
                   exchange=environ.get("ASYA_RABBITMQ_EXCHANGE") or topology.DEFAULT_EXCHANGE,
                   prefetch=parse_int(environ, "ASYA_RABBITMQ_PREFETCH", 1),
                   queue_retry_attempts=parse_int(environ, "ASYA_QUEUE_RETRY_MAX_ATTEMPTS", QUEUE_RETRY_ATTEMPTS),
                   queue_retry_backoff=backoff)

    @property
    def redacted_url(self):
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


class RabbitMQTransport:
    requeues_lost_calls = True
    HEARTBEAT_SERVICE_PERIOD = 1.0  # seconds; RabbitMQ's heartbeat timeout is 60 s

    def __init__(self, settings, actor, stop_event, log, declares_queues=True):
        self.settings = settings
        self.actor = actor
        # False in go mode: the queues are the release's, declared passively only.
        self.declares_queues = declares_queues
        self.stop = stop_event
        self.log = log
        self.connection = None
        self.channel = None
        self._declared = set()
        self._deliveries = collections.deque()

    def describe(self):
        return (f"rabbitmq={self.settings.redacted_url} exchange={self.settings.exchange} "
                f"queue={self.queue_name(self.actor)} prefetch={self.settings.prefetch}")

    @staticmethod
    def queue_name(actor):
        return topology.queue_name(actor)

    # -- connection

    def _connect(self):
        import pika  # only RabbitMQ sidecars need it
        parameters = pika.URLParameters(self.settings.url)
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                return pika.BlockingConnection(parameters)
            except pika.exceptions.AMQPError as exc:
                if attempt == CONNECT_ATTEMPTS or self.stop.is_set():
                    raise BrokerError(f"cannot connect to {self.settings.redacted_url} "
                                      f"after {attempt} attempt(s): {exc!r}") from None
                backoff = 2 ** (attempt - 1)
                self.log.warning("cannot connect to %s (%r); retrying in %ds",
                                 self.settings.redacted_url, exc, backoff)
                self.stop.wait(backoff)
        raise AssertionError("unreachable")

    def open(self):
        self.connection = self._connect()
        self.channel = self.connection.channel()
        self.channel.basic_qos(prefetch_count=self.settings.prefetch)
        self.channel.exchange_declare(self.settings.exchange, exchange_type="topic", durable=True)
        self.channel.confirm_delivery()
        own_queue = self.queue_name(self.actor)
        if self.declares_queues:
            self._ensure_queue(self.actor)
        else:
            self._passive_declare(own_queue)
        self.channel.basic_consume(own_queue, self._on_message, auto_ack=False)

    def _ensure_queue(self, actor):
        """Fake mode: declare the queue of an actor (or end queue) and bind it with the bare name."""
        if actor not in self._declared:
            name = self.queue_name(actor)
            self.channel.queue_declare(name, durable=True)
            self.channel.queue_bind(name, self.settings.exchange, routing_key=topology.routing_key(actor))
            self._declared.add(actor)

    def _passive_declare(self, queue):
        """Go mode: the queue must exist. A 404 closes the channel, and the Go sidecar
        retries on that dead channel: every further attempt fails the same way."""
        import pika
        settings = self.settings
        backoff = settings.queue_retry_backoff
        first_error = None
        for attempt in range(1, settings.queue_retry_attempts + 1):
            try:
                # After a 404 this channel is closed for good: the call fails at once.
                self.channel.queue_declare(queue, passive=True)
                return
            except (pika.exceptions.ChannelClosed, pika.exceptions.ChannelWrongStateError) as exc:
                first_error = first_error or exc
                if attempt == settings.queue_retry_attempts:
                    break
                self.log.warning("queue %s is not usable (%r), attempt %d of %d; retrying in %gs "
                                 "(the channel is closed: creating the queue now does not help)",
                                 queue, first_error, attempt, settings.queue_retry_attempts, backoff)
                if self.stop.wait(backoff):
                    break
                backoff *= 2
        raise BrokerError(f"queue {queue} does not exist on the broker ({first_error!r}): the Go sidecar never "
                          "creates it; install the release with topology.provision job, or create it "
                          f"bound to {settings.exchange} with routing key {topology.routing_key(self.actor)}")

    def _on_message(self, _channel, method, properties, body):
        name = properties.message_id or f"{self.queue_name(self.actor)}-{method.delivery_tag}-{int(time.time() * 1000)}"
        self._deliveries.append(Delivery(body, name, method.delivery_tag, method.redelivered))

    # -- the interface of transports.py

    def receive(self, wait):
        deadline = time.monotonic() + wait
        while not self.stop.is_set():
            if self._deliveries:
                return self._deliveries.popleft()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.connection.process_data_events(time_limit=min(left, 0.2))
        return None

    def publish_then_ack(self, delivery, hops):
        self.publish(hops)
        self.channel.basic_ack(delivery.handle)

    def publish(self, hops):
        import pika
        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                          timestamp=int(time.time()))
        for actor, envelope in hops:
            if self.declares_queues:
                self._ensure_queue(actor)
            # With confirms on, this returns once the broker has the message
            # (raises NackError otherwise). mandatory=false, as the Go sidecar:
            # a message no queue is bound for is dropped without a word.
            self.channel.basic_publish(self.settings.exchange, topology.routing_key(actor),
                                       encode_message(envelope), properties=properties)

    def requeue(self, delivery):
        self.channel.basic_nack(delivery.handle, requeue=True)

    def while_busy(self, call):
        outcome = {}
        done = threading.Event()

        def run():
            try:
                outcome["value"] = call()
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=run, name="runtime-call", daemon=True)
        worker.start()
        # Returns the moment the call ends; meanwhile serve heartbeats once a second.
        while not done.wait(self.HEARTBEAT_SERVICE_PERIOD):
            self.connection.process_data_events(time_limit=0)
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def close(self):
        # Closing the channel returns every unacked delivery to the queue.
        for closable in (self.channel, self.connection):
            if closable is None:
                continue
            try:
                if closable.is_open:
                    closable.close()
            except Exception as exc:  # closing is best effort; the broker cleans up
                self.log.debug("closing %r: %r", closable, exc)
