"""Payload mode: returns the payload unchanged (one output per message)."""


def handle(payload):
    return payload
