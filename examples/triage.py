"""Envelope mode: the handler sees the whole envelope and may change the route.

``ASYA_HANDLER=triage.route`` with ``ASYA_HANDLER_MODE=envelope``. An urgent
message gets an extra ``escalate`` step inserted right after this one; the
others keep their route. Steps already taken (``actors[0..current]``) must
stay as they are, and ``current`` must not change: the sidecar, not the
handler, moves the message forward.
"""

URGENT_WORDS = ("urgent", "asap", "outage")


def is_urgent(text):
    lowered = text.lower()
    return any(word in lowered for word in URGENT_WORDS)


def route(envelope):
    actors = list(envelope["route"]["actors"])
    current = envelope["route"]["current"]
    urgent = is_urgent(envelope["payload"].get("text", ""))
    if urgent:
        actors.insert(current + 1, "escalate")
    headers = dict(envelope.get("headers") or {})
    headers["triage"] = "urgent" if urgent else "routine"
    return {
        "payload": envelope["payload"],
        "route": {"actors": actors, "current": current},
        "headers": headers,
    }
