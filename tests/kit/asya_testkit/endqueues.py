"""What a test does with a broker's queues, whichever broker: build and send
an envelope to an actor, and wait for messages in happy-end or error-end.

A broker's client (rabbitmq.AmqpQueues, sqs.SqsQueues) subclasses EndQueues
and provides ``publish_raw(actor, body)``, ``take_all(name)`` (every message
of the queue, taken and kept in ``collected``) and ``sleep(seconds)``. Every
message taken from an end queue is kept, so waiting for one id never loses
another test's message.
"""

import json

from . import wait

HAPPY_END = "happy-end"
ERROR_END = "error-end"
# A bound on waits, not an expectation of speed.
WAIT_TIMEOUT = 120.0


def new_envelope(actor, message_id, payload, actors=None, headers=None, current=0):
    """A new message for `actor`, with route `actors` (default: just it)."""
    envelope = {"id": message_id, "route": {"actors": list(actors or [actor]), "current": current},
                "payload": payload}
    if headers is not None:
        envelope["headers"] = headers
    return envelope


class EndQueues:
    def __init__(self):
        self.collected = {}  # queue -> messages taken from it so far

    def send(self, actor, message_id, payload, actors=None, headers=None, current=0):
        """Send a new message to `actor`'s queue, as an upstream sidecar does; returns the envelope."""
        envelope = new_envelope(actor, message_id, payload, actors, headers, current)
        self.publish_raw(actor, json.dumps(envelope).encode("utf-8"))
        return envelope

    def finished(self, name, id_prefix):
        return [m for m in self.take_all(name)
                if m.get("id") == id_prefix or str(m.get("id", "")).startswith(id_prefix + "-")]

    def wait_for(self, name, id_prefix, count=1, timeout=WAIT_TIMEOUT, other=None):
        """Wait until `count` messages of `id_prefix` are in end queue `name`; sorted by id.

        Fails at once if one lands in `other` (the opposite end queue) instead.
        """
        def arrived():
            if other is not None:
                strays = self.finished(other, id_prefix)
                if strays:
                    raise AssertionError(f"{id_prefix} landed in {other} instead of {name}: {strays}")
            found = self.finished(name, id_prefix)
            return sorted(found, key=lambda m: str(m.get("id"))) if len(found) >= count else None

        return wait.wait_for(arrived, f"{count} message(s) {id_prefix} in {name}", timeout, interval=0.05,
                             sleep=self.sleep)

    def happy_end(self, id_prefix, count=1, timeout=WAIT_TIMEOUT):
        return self.wait_for(HAPPY_END, id_prefix, count, timeout, other=ERROR_END)

    def error_end(self, id_prefix, count=1, timeout=WAIT_TIMEOUT):
        return self.wait_for(ERROR_END, id_prefix, count, timeout, other=HAPPY_END)

    def wait_until(self, condition, what, timeout=WAIT_TIMEOUT):
        """Poll `condition()` (keeping the client's connection served) until it is truthy."""
        return wait.wait_for(condition, what, timeout, interval=0.05, sleep=self.sleep)
