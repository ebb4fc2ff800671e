"""Payload mode: kills the whole runtime process mid-call (a segfault stand-in)."""

import os


def handle(payload):
    os._exit(17)
