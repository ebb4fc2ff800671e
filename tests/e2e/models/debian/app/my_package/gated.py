"""A call as long as the test wants: ASYA_HANDLER=my_package.gated.wait_for_gate.

Logs that it started, then waits until the file /tmp/gate-<label> exists (the
test creates it with `podman exec`), at most ten minutes, and returns.
"""

import os
import sys
import time


def wait_for_gate(payload):
    gate = f"/tmp/gate-{payload['label']}"
    print(f"gated handler: started {payload['label']}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 600
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"label": payload["label"], "gate_opened": os.path.exists(gate)}
