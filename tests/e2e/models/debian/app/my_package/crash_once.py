"""Runtime crash mid-message: ASYA_HANDLER=my_package.crash_once.handle.

The first call for a payload kills the runtime process (a segfault or OOM
kill stand-in); the marker file /tmp/crashed-<label> remembers it. /tmp is the
pod's asya-tmp volume, which outlives a restart of the container, so the call
after the restart (the broker's redelivery) returns normally.
"""

import os
import sys


def handle(payload):
    marker = f"/tmp/crashed-{payload['label']}"
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        print(f"crash_once: killing the runtime on {payload['label']}", file=sys.stderr, flush=True)
        os._exit(17)
    print(f"crash_once: completed {payload['label']}", file=sys.stderr, flush=True)
    return {"label": payload["label"], "survived": True}
