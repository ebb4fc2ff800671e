"""A handler that stays in flight until the test lets it finish.

On entry it creates the file payload["started"]; it then waits until the file
payload["gate"] exists. Tests open the gate when they are ready, so no test
depends on how long anything takes.
"""

import os
import time

_calls_in_flight = 0
_calls_finished = 0


def wait_for_gate(payload):
    global _calls_in_flight, _calls_finished
    in_flight_at_entry = _calls_in_flight
    finished_before_entry = _calls_finished
    _calls_in_flight += 1
    try:
        with open(payload["started"], "w"):
            pass
        # A forgotten gate must not hang the test run forever.
        deadline = time.monotonic() + 60
        while not os.path.exists(payload["gate"]):
            if time.monotonic() > deadline:
                raise TimeoutError("gate file {} never appeared".format(payload["gate"]))
            time.sleep(0.002)
    finally:
        _calls_in_flight -= 1
        _calls_finished += 1
    return {
        "tag": payload.get("tag"),
        "in_flight_at_entry": in_flight_at_entry,
        "finished_before_entry": finished_before_entry,
    }


def log_a_big_record(payload):
    """Log one record of 1 MiB: more than a pipe holds, so a write that can wait."""
    import logging

    logging.getLogger("slow").info("%s", "x" * (1 << 20))
    return {"tag": payload.get("tag")}
