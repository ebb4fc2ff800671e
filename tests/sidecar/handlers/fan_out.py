"""Payload mode: one output per item of payload["items"] (an empty list: none)."""


def handle(payload):
    return [{"item": item} for item in payload["items"]]
