"""Envelope mode: appends payload["then"] to the route after the current step."""


def handle(envelope):
    route = envelope["route"]
    actors = list(route["actors"])
    actors.insert(route["current"] + 1, envelope["payload"]["then"])
    return dict(envelope, route={"actors": actors, "current": route["current"]})
