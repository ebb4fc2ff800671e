"""Payload mode: the first call for a message kills the runtime process mid-call.

The marker file payload["marker"] remembers that it crashed (it survives the
process, as a container's writable layer survives a container restart); the
next call, on redelivery, returns the payload and counts itself in the
file payload["calls"].
"""

import os


def handle(payload):
    with open(payload["calls"], "a") as calls:
        calls.write("call\n")
    if not os.path.exists(payload["marker"]):
        with open(payload["marker"], "w"):
            pass
        os._exit(17)
    return payload
