"""Where messages come from and go to: the directory queue or RabbitMQ.

The sidecar sees one interface, whichever transport carries the messages:

* ``receive(wait)`` -> a Delivery, or None when nothing came within ``wait`` s;
* ``publish_then_ack(delivery, hops)``: send every ``(actor, envelope)`` of
  ``hops`` durably to that actor's (or end queue's) queue, and only then
  acknowledge the delivery;
* ``publish(hops)``: the same without acknowledging (the Go sidecar's
  runtime timeout: the message is to be delivered again);
* ``requeue(delivery)``: give the message back to its queue, unprocessed;
* ``while_busy(call)``: run a long call (the runtime's) while the transport
  keeps its own connection alive;
* ``queue_name(actor)``: the transport's queue for an actor or an end queue;
* ``close()``.

``requeues_lost_calls`` says what happens in fake mode to a message whose
runtime died in the middle of the call (no reply; go mode always sends it to
error-end): RabbitMQ gives it back to the broker for
redelivery, as a consumer that never acked would; the directory queue sends
it to error-end (its behaviour since the start, and what `make demo` shows).
"""

import time


class Delivery:
    """One received message: its bytes, a name for logs and records, and the
    transport's handle to acknowledge it."""

    def __init__(self, body, name, handle, redelivered=False):
        self.body = body
        self.name = name
        self.handle = handle
        self.redelivered = redelivered


class FileTransport:
    """The directory queue of queues.py (ASYA_QUEUE_DIR)."""

    requeues_lost_calls = False
    RECOVERY_PERIOD = 5.0

    def __init__(self, queue_dir, actor, poll_interval, stop_event, log):
        # Imported here: a RabbitMQ sidecar needs no queue directory.
        from . import queues
        self.store = queues.QueueStore(queue_dir)
        self.actor = actor
        self.poll_interval = poll_interval
        self.stop = stop_event
        self.log = log
        self.consumer = None
        self._interval = 0.005
        self._next_recovery = 0.0

    def describe(self):
        return f"queue_dir={self.store.root}"

    def queue_name(self, actor):
        return actor

    def open(self):
        self.consumer = self.store.consumer(self.actor)
        recovered = self.consumer.recover_orphans()
        if recovered:
            self.log.warning("actor=%s requeued %d message(s) left by dead consumers", self.actor, recovered)
        self._next_recovery = time.monotonic() + self.RECOVERY_PERIOD

    def receive(self, wait):
        deadline = time.monotonic() + wait
        while not self.stop.is_set():
            claim = self.consumer.claim()
            if claim is not None:
                self._interval = 0.005
                return Delivery(claim.body, claim.stem, claim)
            now = time.monotonic()
            if now >= self._next_recovery:
                self.consumer.recover_orphans()
                self._next_recovery = now + self.RECOVERY_PERIOD
            if now >= deadline:
                return None
            self.stop.wait(min(self._interval, max(deadline - now, 0.0)))
            self._interval = min(self._interval * 2, self.poll_interval)
        return None

    def publish(self, hops):
        self.store.enqueue_many(hops)  # fsynced before it returns

    def publish_then_ack(self, delivery, hops):
        self.publish(hops)
        self.consumer.ack(delivery.handle)

    def requeue(self, delivery):
        self.consumer.release(delivery.handle)

    def while_busy(self, call):
        return call()

    def close(self):
        if self.consumer is not None:
            self.consumer.close()


def make_transport(config, stop_event, log):
    if config.transport == "rabbitmq":
        from .rabbitmq import RabbitMQTransport
        return RabbitMQTransport(config.rabbitmq, config.actor, stop_event, log,
                                 declares_queues=config.mode != "go")
    return FileTransport(config.queue_dir, config.actor, config.poll_interval, stop_event, log)
