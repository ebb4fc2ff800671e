"""Handler for the security checks.

`serve` is the configured handler. It answers with its own name, so a test
can see which function handled a message, and on request reports the modules
loaded in the runtime process. `evil` must never run: messages name it in
every field they can, and it leaves a file behind if it is ever called.
"""

import os
import sys

EVIL_MARKER_ENV = "SECURITY_PROBE_EVIL_MARKER"


def serve(payload):
    if payload == {"probe": "modules"}:
        return {"handled_by": "serve", "modules": sorted(sys.modules)}
    if isinstance(payload, dict) and payload.get("probe") == "raise_with_payload":
        raise ValueError(payload["text"])
    return {"handled_by": "serve", "payload": payload}


def evil(payload):
    with open(os.environ[EVIL_MARKER_ENV], "w") as marker:
        marker.write("evil ran\n")
    return {"handled_by": "evil"}
