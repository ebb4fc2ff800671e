"""Handler for the probe test: one call that outlasts many probe runs."""

import time


def sleep(payload):
    time.sleep(payload["seconds"])
    return payload
