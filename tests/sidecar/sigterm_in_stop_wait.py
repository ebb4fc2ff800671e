"""Runs ``python -m asya_sidecar`` with SIGTERM sent at one exact point.

The point: the sidecar's main thread is inside ``stop.wait(...)`` of one of
its poll loops, holding the stop event's internal lock. Under load a real
SIGTERM lands there now and then; a Python signal handler that sets the
event then waits for that lock forever and the sidecar never exits. The
trace hook makes the timing certain: on the first call of
``threading.Condition.wait`` reached from ``Event.wait`` from the sidecar's
own code, the process signals itself and says so on stderr.
"""

import os
import runpy
import signal
import sys
import threading

SIDECAR_CODE = os.sep + "asya_sidecar" + os.sep
sent = []


def _tracer(frame, event, _arg):
    if event != "call" or sent or frame.f_code is not threading.Condition.wait.__code__:
        return None
    event_wait = frame.f_back
    caller = event_wait.f_back if event_wait is not None else None
    if event_wait is None or event_wait.f_code is not threading.Event.wait.__code__ \
            or caller is None or SIDECAR_CODE not in caller.f_code.co_filename:
        return None
    sent.append(caller.f_code.co_name)
    sys.stderr.write(f"test hook: SIGTERM sent inside stop.wait of {caller.f_code.co_name}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGTERM)
    return None


sys.settrace(_tracer)
sys.argv[0] = "asya_sidecar"
runpy.run_module("asya_sidecar", run_name="__main__", alter_sys=True)
