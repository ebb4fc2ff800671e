"""Scenario 7: a handler that takes a while, to stop its pod mid-message.

ASYA_HANDLER=my_package.slow.sleep_then_echo. It logs a line when it starts,
so the test knows the message is inside the handler before it stops the pod.
"""

import sys
import time


def sleep_then_echo(payload):
    seconds = float(payload["seconds"])
    print(f"slow handler: started {payload['label']}, sleeping {seconds:g}s",
          file=sys.stderr, flush=True)
    time.sleep(seconds)
    print(f"slow handler: finished {payload['label']}", file=sys.stderr, flush=True)
    return {"label": payload["label"], "slept_seconds": seconds}
