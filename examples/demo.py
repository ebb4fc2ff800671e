"""`make demo`: a small Asya pipeline on this machine, as plain processes.

For every actor it starts what a pod would run: the real runtime
(`python3 runtime/asya_runtime.py`, as a pod runs `python3 /opt/asya/asya_runtime.py`)
with one of the handlers in examples/, and the fake
sidecar (fake-sidecar/) feeding it from a directory queue. Sockets, queues and
logs live in one temporary directory. Then it pushes a few envelopes, waits
until every message has finished, and prints where each one went, hop by hop,
from the sidecars' one-line-per-message logs and the happy-end and error-end
queues. Every process and the temporary directory are removed at the end,
also on Ctrl-C. Needs only Python 3.7+; no virtualenv.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_SCRIPT = os.path.join(REPO, "runtime", "asya_runtime.py")
EXAMPLES = os.path.join(REPO, "examples")
SIDECAR_PACKAGE_DIR = os.path.join(REPO, "fake-sidecar")

sys.path.insert(0, SIDECAR_PACKAGE_DIR)
from asya_sidecar.queues import QueueStore  # noqa: E402  (path set just above)
from asya_sidecar.sidecar import ERROR_END, HAPPY_END  # noqa: E402

# actor name -> (ASYA_HANDLER, ASYA_HANDLER_MODE); the handlers are in examples/.
ACTORS = {
    "validate": ("validate.validate", "payload"),
    "normalise": ("normalise_text.normalise", "payload"),
    "split": ("split_sentences.split", "payload"),
    "triage": ("triage.route", "envelope"),
    "escalate": ("escalate.escalate", "payload"),
}

# (id, route, payload, what it shows)
MESSAGES = [
    ("msg-1", ["validate", "normalise", "split"],
     {"text": "  Hello,   world.  The runtime\tworks!   Bye? "},
     "payload mode, then fan-out into one message per sentence"),
    ("msg-2", ["triage", "normalise"], {"text": "URGENT:  disk   almost full"},
     "envelope mode: triage adds an 'escalate' step to an urgent message"),
    ("msg-3", ["triage", "normalise"], {"text": "weekly   report ready"},
     "envelope mode: a routine message keeps its route"),
    ("msg-4", ["validate", "normalise"], {"body": "no text field"},
     "the handler raises: the message goes to error-end"),
    ("msg-5", ["normalise", "split"], {"text": "   "},
     "fan-out of nothing: an empty result completes the message"),
]

FINISH_TIMEOUT = 30.0  # seconds; the pipeline needs well under one
LOG_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop everything and clean up."""


class InterruptFlag:
    """Signals only set a flag, checked between steps.

    Raising from the handler could land between starting a process and
    recording it, leaving that process behind; a flag cannot.
    """

    requested = False

    @classmethod
    def set(cls, _signum, _frame):
        cls.requested = True

    @classmethod
    def check(cls):
        if cls.requested:
            raise Interrupted()


class Pipeline:
    """The processes of every actor, their logs, and the shared queue store."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.store = QueueStore(os.path.join(workdir, "queues"))
        self.processes = []  # (label, Popen, log path), started in order
        self.sidecar_logs = {}

    def _start(self, label, argv, env):
        log_path = os.path.join(self.workdir, "logs", label + ".log")
        with open(log_path, "wb") as log_file:
            # A new session: Ctrl-C reaches only the demo, which then stops
            # sidecars before runtimes so no message is cut off.
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append((label, process, log_path))
        InterruptFlag.check()
        return log_path

    def start(self):
        os.makedirs(os.path.join(self.workdir, "logs"))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("ASYA_")}
        for actor, (handler, mode) in ACTORS.items():
            socket_dir = os.path.join(self.workdir, "sockets", actor)
            runtime_env = dict(base_env, PYTHONPATH=EXAMPLES, ASYA_SOCKET_DIR=socket_dir,
                               ASYA_HANDLER=handler, ASYA_HANDLER_MODE=mode)
            self._start("runtime-" + actor, [sys.executable, RUNTIME_SCRIPT], runtime_env)
            sidecar_env = dict(base_env, PYTHONPATH=SIDECAR_PACKAGE_DIR,
                               ASYA_SOCKET_DIR=socket_dir, ASYA_ACTOR_NAME=actor,
                               ASYA_QUEUE_DIR=self.store.root, ASYA_READY_TIMEOUT="20",
                               ASYA_CALL_TIMEOUT="20", ASYA_POLL_INTERVAL="0.02")
            self.sidecar_logs[actor] = self._start(
                "sidecar-" + actor, [sys.executable, "-m", "asya_sidecar"], sidecar_env)

    def check_alive(self):
        for label, process, log_path in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{label} exited early with code {process.returncode}; its log:\n{_read(log_path)}")

    def busy(self):
        """True while any message is waiting in or being handled by an actor."""
        return any(self.store.pending(a) or self.store.in_flight(a) for a in ACTORS)

    def finished_count(self):
        return len(self.store.pending(HAPPY_END)) + len(self.store.pending(ERROR_END))

    def wait_until_done(self):
        # A message is always visible somewhere (its outputs are written before
        # it is acked), but one listing of many directories can miss a file
        # that moves while it runs: so ask for two quiet listings in a row
        # with no new finished message in between.
        deadline = time.monotonic() + FINISH_TIMEOUT
        quiet_rounds = 0
        while quiet_rounds < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pipeline did not finish within {FINISH_TIMEOUT:g}s")
            InterruptFlag.check()
            self.check_alive()
            before = self.finished_count()
            quiet = not self.busy() and self.finished_count() == before
            quiet_rounds = quiet_rounds + 1 if quiet else 0
            time.sleep(0.05)

    def stop(self):
        """SIGTERM sidecars first (each finishes its message), then runtimes."""
        for prefix in ("sidecar-", "runtime-"):
            group = [(label, p) for label, p, _ in self.processes if label.startswith(prefix)]
            for _, process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for _, process in group:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def parse_log_line(line):
    fields = {}
    for key, value in LOG_FIELD.findall(line):
        fields[key] = json.loads(value) if value.startswith('"') else value
    return fields


def hops_by_message(pipeline):
    """Every sidecar's per-message log lines, grouped by the pushed message id."""
    hops = {}
    for _actor, log_path in pipeline.sidecar_logs.items():
        for line in _read(log_path).splitlines():
            fields = parse_log_line(line)
            if "outcome" not in fields or "id" not in fields:
                continue
            root = root_id(fields["id"])
            hops.setdefault(root, []).append(fields)
    for lines in hops.values():
        lines.sort(key=lambda f: (int(f.get("step", 0)), f["id"]))
    return hops


def root_id(message_id):
    for pushed, _, _, _ in MESSAGES:
        if message_id == pushed or message_id.startswith(pushed + "-"):
            return pushed
    return message_id


def describe_hop(fields):
    outcome = fields["outcome"]
    destination = fields.get("destination", "-")
    results = int(fields.get("results", 0))
    if outcome == "ok":
        text = f"-> {destination}"
        if results > 1:
            text += f"  (fan-out: {results} messages)"
    elif outcome == "completed":
        text = "-> nothing to forward: done"
    else:
        text = f"-> {destination}  ({fields.get('error')})"
    return f"{fields['actor']:<10} {fields['id']:<8} {text}"


def summary_line(message_id, own_hops, happy, errors):
    """``msg-1  a -> b -> happy-end (3 results)``: the actors the message itself
    (not its fan-out copies) went through, then where it ended."""
    path = [fields["actor"] for fields in own_hops]
    if errors:
        return f"{message_id}  {' -> '.join(path + [ERROR_END])}  ({errors[0]['error']})"
    if not happy:
        return f"{message_id}  {' -> '.join(path + ['done'])}  (0 results)"
    noun = "result" if len(happy) == 1 else "results"
    return f"{message_id}  {' -> '.join(path + [HAPPY_END])}  ({len(happy)} {noun})"


def report(pipeline, elapsed):
    happy = pipeline.store.read_all(HAPPY_END)
    errors = pipeline.store.read_all(ERROR_END)
    hops = hops_by_message(pipeline)
    print("\nStep by step (one line per message an actor handled):")
    for message_id, _, _, what in MESSAGES:
        print(f"\n  {message_id}: {what}")
        for fields in hops.get(message_id, []):
            print("    " + describe_hop(fields))
        for envelope in sorted((e for e in happy if root_id(e["id"]) == message_id),
                               key=lambda e: e["id"]):
            payload = json.dumps(envelope["payload"], ensure_ascii=False)
            print(f"    {HAPPY_END:<10} {envelope['id']:<8} {payload}")
        for record in (r for r in errors if root_id(r["id"]) == message_id):
            print(f"    {ERROR_END:<10} {record['id']:<8} {record['error']}: {record['message']}")
    print("\nWhere each message went:")
    for message_id, _, _, _ in MESSAGES:
        print("  " + summary_line(
            message_id,
            [f for f in hops.get(message_id, []) if f["id"] == message_id],
            [e for e in happy if root_id(e["id"]) == message_id],
            [r for r in errors if root_id(r["id"]) == message_id]))
    print(f"\n{len(MESSAGES)} envelopes pushed; {len(happy)} in happy-end, "
          f"{len(errors)} in error-end; {elapsed:.1f}s in all.")


def main():
    # SIGINT explicitly too: a shell starts background jobs with it ignored.
    signal.signal(signal.SIGINT, InterruptFlag.set)
    signal.signal(signal.SIGTERM, InterruptFlag.set)
    workdir = tempfile.mkdtemp(prefix="asya-demo-")
    pipeline = Pipeline(workdir)
    started = time.monotonic()
    try:
        print(f"Starting one runtime + one sidecar per actor (work dir {workdir}):")
        for actor, (handler, mode) in ACTORS.items():
            print(f"  {actor:<10} ASYA_HANDLER={handler:<26} mode={mode}")
        pipeline.start()
        print(f"\nPushing {len(MESSAGES)} envelopes:")
        for message_id, route, payload, _ in MESSAGES:
            envelope = {"id": message_id, "route": {"actors": route, "current": 0},
                        "headers": {}, "payload": payload}
            pipeline.store.enqueue(route[0], envelope)
            print(f"  {message_id:<6} -> {route[0]:<10} {json.dumps(payload)}")
        pipeline.wait_until_done()
        pipeline.stop()
        InterruptFlag.check()
        report(pipeline, time.monotonic() - started)
        return 0
    except (KeyboardInterrupt, Interrupted):
        print(f"\ninterrupted: stopping every process and removing {workdir}")
        return 130
    except RuntimeError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        for label, _, log_path in pipeline.processes:
            print(f"---- {label} ----\n{_read(log_path)[-2000:]}", file=sys.stderr)
        return 1
    finally:
        pipeline.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
