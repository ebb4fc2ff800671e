"""A class handler with a slow model load: ASYA_HANDLER=my_package.model.Model.predict.

The runtime creates Model once, before its socket exists; __init__ takes
LOAD_SECONDS (env, default 4) to "load the weights", logging when it starts
and ends, so the test can publish messages while it loads.
"""

import os
import sys
import time


class Model:
    def __init__(self):
        seconds = float(os.environ.get("LOAD_SECONDS", "4"))
        print(f"model: loading for {seconds:g}s", file=sys.stderr, flush=True)
        time.sleep(seconds)
        self.loads = 1
        print("model: loaded", file=sys.stderr, flush=True)

    def predict(self, payload):
        return {"n": payload["n"], "doubled": payload["n"] * 2, "loads": self.loads}
