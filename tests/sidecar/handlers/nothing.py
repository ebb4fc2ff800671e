"""Payload mode: returns None, which completes the message with no output."""


def handle(payload):
    return None
