"""Run a server script under cProfile and write the profile when it stops.

    python profile_server.py OUT.prof SCRIPT

The runtime stops cleanly on SIGTERM by itself; the floor has no handler, so
SIGTERM is turned into SystemExit here to let the profile be written. Then:

    python profile_server.py --summary OUT.prof MESSAGES

prints, as JSON, every function called at least once per two messages, with
its calls and own time per message, most expensive first. It runs under the
interpreter that wrote the profile, so the file format always matches.
"""

import cProfile
import json
import pstats
import re
import runpy
import signal
import sys

BUILTIN_METHOD = re.compile(r"<method '(\w+)' of '_?(?:\w+\.)?(\w+)' objects>")
ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def profile(out_path, script):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = [script]
    profiler = cProfile.Profile()
    try:
        profiler.runcall(runpy.run_path, script, run_name="__main__")
    except SystemExit:
        pass
    finally:
        profiler.dump_stats(out_path)


def function_name(filename, line, name):
    if filename == "~":
        method = BUILTIN_METHOD.match(name)
        return f"{method.group(2)}.{method.group(1)}" if method else ADDRESS.sub("", name)
    return "{}:{}({})".format(filename.rsplit("/", 1)[-1], line, name)


def summary(path, messages):
    rows = []
    for (filename, line, name), (_, ncalls, tottime, _, _) in pstats.Stats(path).stats.items():
        # Start-up (imports, compiling) happens once; the wait in accept() is idle time.
        if ncalls * 2 < messages or "accept" in name:
            continue
        rows.append(
            {
                "function": function_name(filename, line, name),
                "calls_per_msg": ncalls / messages,
                "own_us_per_msg": tottime / messages * 1e6,
            }
        )
    rows.sort(key=lambda row: -row["own_us_per_msg"])
    print(json.dumps(rows))


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        summary(sys.argv[2], int(sys.argv[3]))
    else:
        profile(sys.argv[1], sys.argv[2])
