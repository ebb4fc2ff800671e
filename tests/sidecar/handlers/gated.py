"""Payload mode: a slow handler the test controls, so no test depends on timing.

It creates payload["started"] (so the test knows the call is in flight), then
waits until the file payload["gate"] exists (at most 60 s), then returns the
payload. A test can stop the sidecar in between, or let its call time out.
"""

import os
import time


def handle(payload):
    with open(payload["started"], "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(payload["gate"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return payload
