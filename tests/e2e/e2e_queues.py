"""The test's side of the pipeline: put envelopes into actors' queues, find where they ended.

It uses the sidecar's own queue module (fake-sidecar/asya_sidecar/queues.py),
so a message is written exactly as a sidecar writes one: to tmp/, fsynced,
then renamed into the queue, never seen half-written.
"""

import os

from asya_sidecar.queues import QueueStore
from asya_sidecar.sidecar import ERROR_END, HAPPY_END
from backends.base import wait_until

# Generous bounds on how long a message may take to come through, not
# expectations of speed: a pod starts in about a second here.
FINISH_TIMEOUT = 120


class Queues:
    def __init__(self, root):
        self.store = QueueStore(str(root))

    def send(self, actor, message_id, payload, actors=None, headers=None):
        """Enqueue a new message for `actor`, with route `actors` (default: just it)."""
        envelope = {
            "id": message_id,
            "route": {"actors": list(actors or [actor]), "current": 0},
            "payload": payload,
        }
        if headers is not None:
            envelope["headers"] = headers
        self.store.enqueue(actor, envelope)
        return envelope

    def finished(self, queue, id_prefix):
        """Messages in happy-end or error-end whose id is `id_prefix` or starts with `<id_prefix>-`."""
        return [message for message in self.store.read_all(queue)
                if message.get("id") == id_prefix or str(message.get("id", "")).startswith(id_prefix + "-")]

    def where_is(self, id_prefix):
        """Where messages of `id_prefix` wait, and what is claimed anywhere (for failure messages)."""
        places = []
        for queue in sorted(os.listdir(self.store.root)):
            waiting = [name for name in self.store.pending(queue)
                       if _message_id(self.store, queue, name).startswith(id_prefix)]
            if waiting and queue not in (HAPPY_END, ERROR_END):
                places.append(f"{queue}: {len(waiting)} waiting")
            claimed = self.store.in_flight(queue)
            if claimed:
                places.append(f"{queue}: {len(claimed)} claimed by a sidecar (any id)")
        return "; ".join(places) or "no actor's queue"

    def wait_for(self, queue, id_prefix, count, timeout=FINISH_TIMEOUT):
        """Wait until `count` messages of `id_prefix` are in `queue`; return them sorted by id.

        Fails at once, with the record, if one lands in the other end queue instead.
        """
        other = ERROR_END if queue == HAPPY_END else HAPPY_END

        def arrived():
            strays = self.finished(other, id_prefix)
            if strays:
                raise AssertionError(f"{id_prefix} landed in {other} instead of {queue}: {strays}")
            found = self.finished(queue, id_prefix)
            return found if len(found) >= count else None

        try:
            found = wait_until(arrived, timeout, f"{count} message(s) {id_prefix} in {queue}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; found {self.finished(queue, id_prefix)}; "
                                 f"{id_prefix} is in: {self.where_is(id_prefix)}") from None
        return sorted(found, key=lambda message: message["id"])

    def happy_end(self, id_prefix, count=1, timeout=FINISH_TIMEOUT):
        return self.wait_for(HAPPY_END, id_prefix, count, timeout)

    def error_end(self, id_prefix, count=1, timeout=FINISH_TIMEOUT):
        return self.wait_for(ERROR_END, id_prefix, count, timeout)

    def waiting(self, queue):
        return self.store.read_all(queue)

    def claimed(self, queue):
        return self.store.in_flight(queue)


def _message_id(store, queue, name):
    try:
        return str(store.read(queue, name).get("id", ""))
    except (OSError, ValueError):
        return ""  # claimed meanwhile, or not an envelope
