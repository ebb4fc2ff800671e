"""The asya Go sidecar's naming rule, written once for the fake sidecar and the tests.

An actor (or an end: happy-end, error-end) named ``resize`` consumes the queue
``asya-resize``. Messages reach it through the exchange (``asya`` by default),
published with the bare actor name as the routing key: the queue is bound with
the key ``resize``, not ``asya-resize`` (a binding keyed by the queue's full
name routes nothing the Go sidecar sends). The chart's ``asya-actor.queueName``
helper produces the same names; tests/chart ties the two together.
"""

QUEUE_PREFIX = "asya-"
DEFAULT_EXCHANGE = "asya"


def queue_name(actor):
    """The queue an actor consumes (the Go sidecar's ``asya-<actor>``)."""
    return QUEUE_PREFIX + actor


def routing_key(actor):
    """The routing key the Go sidecar publishes a message for ``actor`` with."""
    return actor


def bindings(actors):
    """(queue, routing key) for each actor or end queue, in the order given."""
    return [(queue_name(actor), routing_key(actor)) for actor in actors]
