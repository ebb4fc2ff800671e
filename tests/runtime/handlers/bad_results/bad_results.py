"""Handlers whose results cannot be sent as JSON, or are not envelopes."""


def respond(payload):
    kind = payload["kind"]
    if kind == "fine":
        return {"fine": True}
    if kind == "object":
        return {"model": object()}
    if kind == "set":
        return {"tags": {"a", "b"}}
    if kind == "nan":
        return {"score": float("nan")}
    if kind == "infinity":
        return {"score": float("inf")}
    if kind == "negative_infinity":
        return [{"score": float("-inf")}]
    if kind == "lone_surrogate":
        return {"text": "broken \ud800 text"}
    raise ValueError("unknown kind " + kind)


def envelope_without_payload(envelope):
    return {"route": envelope["route"]}


def string_instead_of_envelope(envelope):
    return "done"


def list_with_a_number(envelope):
    return [envelope, 42]


def headers_as_list(envelope):
    return {"payload": 1, "headers": ["not", "an", "object"]}
