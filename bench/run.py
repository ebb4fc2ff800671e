"""`make bench`: the asya runtime against the floor server, side by side.

    .venv/bin/python bench/run.py            # full run (a few minutes); writes docs/performance.{md,png}
    .venv/bin/python bench/run.py --quick    # a few seconds: proves the bench still works; writes nothing

Every measurement is taken in interleaved rounds (the servers take turns in
blocks, the first of each block rotating) and reported as the median of the
rounds, so a slow moment of the machine hits every server alike. Ratios are
runtime / floor from the same run. The full run exits 1 if a target is missed;
--quick checks no target.
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

import docs_page  # noqa: E402
import report  # noqa: E402
from client import Client, encode_frame, make_envelope  # noqa: E402  (puts the test kit on sys.path)
from servers import FLOOR_SCRIPT, REPO, RUNTIME_SCRIPT, Server  # noqa: E402

from asya_testkit.interpreters import find_interpreters, interpreter_at, oldest_and_newest  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
LARGE_CHUNK = 1 * MiB  # the ASYA_CHUNK_SIZE the throughput target is set for
SWEEP_CHUNKS = (4 * KiB, 64 * KiB, 1 * MiB, 8 * MiB)
# Above this spread between two identical floors, the run says its verdicts are unreliable.
NOISE_WARNING = 0.03
# The runtime's core: every runtime server is started with this environment
# unless it says otherwise. The runtime writes one access line per message by
# default; turned off here, the core's figures and targets stay those of the
# runtime's own work, comparable with runs made before the line existed, and
# the line's cost is measured apart, by LOG_VARIANTS.
CORE_ENV = {"ASYA_ACCESS_LOG": "0"}
# The runtime's settings that change per-message work: each variant is measured
# against the same targets as the default runtime (name suffix -> environment).
VARIANTS = {
    "list": {**CORE_ENV, "ASYA_REPLY_FORMAT": "list"},
    "deadline": {**CORE_ENV, "ASYA_HANDLER_TIMEOUT": "30"},
}
# The deadline's own cost on a small message: 1 - its rate / the default runtime's,
# paired per round.
DEADLINE_SMALL_MESSAGE_COST = 0.03
# The runtime's logging as it ships, each with one target: its small-message rate
# against the floor (name suffix -> (environment, least ratio)). `access` is the
# runtime's defaults: no ASYA_ACCESS_LOG at all (servers.py passes no ASYA_*
# variable of the bench's own environment on), the access line on, text lines.
# They run with small messages only: the access line is one per message, so its
# cost shows where a message is cheap; beside a large message's JSON work it is lost.
LOG_VARIANTS = {
    "access": ({}, 0.95),
    "json": ({"ASYA_LOG_FORMAT": "json"}, 0.90),
}


class Plan:
    """How much to measure. Each schedule is (blocks, block, rounds): a round
    gives every server `blocks` turns of `block` messages.
    The full plan takes about two minutes per interpreter on 2 cores."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


FULL = Plan(
    name="full",
    # The small-message verdicts (the deadline's 3% above all) sit closest to
    # the noise: a round's ratio varies by 4-9% on this VM in a quiet hour,
    # so they get twice the rounds of the rest.
    small=(20, 20, 31),
    sizes={
        1 * KiB: (20, 20, 25),
        64 * KiB: (10, 10, 15),
        1 * MiB: (8, 2, 13),
        10 * MiB: (2, 1, 11),
        50 * MiB: (2, 1, 5),
    },
    sweep_size=10 * MiB,
    memory_sizes=(1 * MiB, 10 * MiB, 50 * MiB),
    memory_target_sizes=(10 * MiB, 50 * MiB),
    memory_repeats=3,
    startup_samples=31,
    profile_messages={"small": 2000, "large": 20},
)

QUICK = Plan(
    name="quick",
    small=(2, 10, 1),
    sizes={1 * KiB: (2, 5, 1), 64 * KiB: (2, 2, 1), 1 * MiB: (2, 1, 1)},
    sweep_size=1 * MiB,
    memory_sizes=(1 * MiB,),
    memory_target_sizes=(),
    memory_repeats=1,
    startup_samples=1,
    profile_messages=None,
)


# ---------------------------------------------------------------- payloads

SMALL_PAYLOAD = {
    "text": "The quick brown fox jumps over the lazy dog near the river at dawn.",
    "lang": "en",
    "user": {"id": 48213, "tier": "free"},
    "scores": [0.12, 0.5, 0.98],
    "flags": {"spam": False, "nsfw": False},
    "ts": 176427001,
}

_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def sized_payload(size):
    """A JSON string of exactly `size` bytes, like a base64-encoded blob (an image, audio)."""
    body = size - 2  # the quotes
    return (_BASE64_ALPHABET * (body // len(_BASE64_ALPHABET) + 1))[:body]


def payload_json_size(payload):
    return len(encode_frame(payload)) - 4


# ---------------------------------------------------------------- measuring


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def process_counters(pid):
    """(CPU seconds, minor page faults) of a process so far, from /proc/PID/stat.

    CPU time ticks at 10 ms, so it is only meaningful summed over many messages.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[7])


def round_figures(client, elapsed_ns, latencies):
    latencies.sort()
    seconds = elapsed_ns / 1e9
    count = len(latencies)
    return {
        "msgs_per_s": count / seconds,
        "p50_us": percentile(latencies, 0.50) / 1e3,
        "p99_us": percentile(latencies, 0.99) / 1e3,
        "mb_in": client.request_bytes * count / seconds / 1e6,
        "mb_out": client.reply_bytes * count / seconds / 1e6,
    }


def interleaved(servers, payload, schedule):
    """Run the rounds of a schedule (blocks, block, rounds); return medians and ratios.

    Within a round the servers take turns in blocks of `block` messages.
    Block k, counted across rounds, starts with server k mod n and goes round
    the list (A B C, B C A, C A B, A B C, ...): every server is first (second,
    ..., last) as often as any other, give or take one block, and with three
    or more servers none has two turns in a row (A B B A ... gave the first
    and last server a warm second turn, a bias measured at 2-4% of the rate).
    A busy moment of the machine falls on each of them alike. A server's
    figures for a round come from its own messages only. The ratio to the
    floor is the median of the per-round ratios, each from two servers
    measured side by side in the same round; each server's rate per round is
    kept as "per_round", to pair any two servers the same way
    (paired_ratio).
    """
    frame = encode_frame(make_envelope(payload))
    clients = {server.name: Client(server.socket_path, frame) for server in servers}
    for server in servers:
        clients[server.name].check(payload)  # a correct reply, and a warm-up
    blocks, block, rounds = schedule
    per_round = {server.name: [] for server in servers}
    before = {server.name: process_counters(server.process.pid) for server in servers}
    for round_index in range(rounds):
        elapsed = dict.fromkeys(clients, 0)
        latencies = {name: [] for name in clients}
        for index in range(blocks):
            first = (round_index * blocks + index) % len(servers)
            for server in servers[first:] + servers[:first]:
                took, times = clients[server.name].run(block)
                elapsed[server.name] += took
                latencies[server.name] += times
        for name, client in clients.items():
            per_round[name].append(round_figures(client, elapsed[name], latencies[name]))
        for server in servers:
            server.trim_log()
    summary = {}
    floor_rounds = per_round["floor"]
    for server in servers:
        name = server.name
        results = per_round[name]
        figures = {key: statistics.median(r[key] for r in results) for key in results[0]}
        for key in results[0]:
            figures[key + "_ratio"] = paired_ratio(results, floor_rounds, key)
        figures["per_round"] = results
        messages = rounds * blocks * block
        cpu, faults = process_counters(server.process.pid)
        figures["cpu_us_per_msg"] = (cpu - before[name][0]) / messages * 1e6
        figures["faults_per_msg"] = (faults - before[name][1]) / messages
        figures["messages"] = messages
        figures["rounds"] = rounds
        figures["request_bytes"] = clients[name].request_bytes
        summary[name] = figures
    return summary


def paired_ratio(rounds, baseline_rounds, key):
    """Median over rounds of a figure / the baseline's figure in the same round."""
    return statistics.median(r[key] / b[key] for r, b in zip(rounds, baseline_rounds))


class Session:
    """Everything one interpreter's measurements share: where, on which CPUs, progress lines.

    The runtime is started as a pod starts it: `python asya_runtime.py`.
    """

    def __init__(self, interpreter, work_dir, server_cpus, progress, runtime_source):
        self.interpreter = interpreter
        self.work_dir = work_dir
        self.server_cpus = server_cpus
        self.progress = progress
        self.runtime_script = runtime_source

    def server(self, kind, where, chunk_size=None, **options):
        if kind == "runtime":
            options.setdefault("script", self.runtime_script)
            options.setdefault("env", CORE_ENV)
        return Server(
            kind,
            self.interpreter,
            os.path.join(self.work_dir, where),
            chunk_size,
            cpus=self.server_cpus,
            **options,
        )


def measure_startup(session, samples):
    """Median seconds from spawning the process to its socket accepting a connection
    (information, no target): `python asya_runtime.py` as a pod runs it, which
    compiles the file at each start, and the floor script. Each sample starts
    both, in an order that alternates from one sample to the next.
    """
    starts = [
        ("runtime", "runtime", {}),
        ("floor", "floor", {}),
    ]
    seconds = {key: [] for key, _, _ in starts}
    for sample in range(samples):
        turn = sample % len(starts)
        for key, kind, options in starts[turn:] + starts[:turn]:
            with session.server(kind, f"start{sample}", **options) as server:
                seconds[key].append(server.start())
    return {key: statistics.median(values) for key, values in seconds.items()}


STARTUP_PROBE = """
import ast, statistics, sys, time
path = sys.argv[1]
source = open(path).read()
tree = ast.parse(source)
modules = sorted({alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names})


def median_ms(work):
    times = []
    for _ in range(5):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


print(median_ms(lambda: compile(source, path, "exec")))
print(",".join(modules))
"""


def measure_startup_parts(session, samples):
    """Where start-up goes: the bare interpreter, importing each server's modules, and
    compiling each server's file."""
    python = session.interpreter.path

    def median_run_ms(command):
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            subprocess.run(command, check=True)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e3

    parts = {"bare interpreter": median_run_ms([python, "-c", "pass"])}
    for kind, script in (("runtime", session.runtime_script), ("floor", FLOOR_SCRIPT)):
        out = subprocess.run([python, "-I", "-c", STARTUP_PROBE, script], capture_output=True, text=True, check=True)
        compile_ms, modules = out.stdout.split("\n")[:2]
        parts[f"{kind}: import {modules.replace(',', ', ')}"] = (
            median_run_ms([python, "-c", f"import {modules}"]) - parts["bare interpreter"]
        )
        parts[f"{kind}: compile the script"] = float(compile_ms)
    return parts


def measure_memory(session, sizes, repeats):
    """VmHWM of a fresh process that has answered one message of the size, its idle
    VmRSS before and its VmRSS after; medians of repeats."""
    configs = [("runtime", None), ("runtime", LARGE_CHUNK), ("floor", None)]
    peaks = {}
    for size in sizes:
        payload = sized_payload(size)
        frame = encode_frame(make_envelope(payload))
        samples = {}
        for repeat in range(repeats):
            for kind, chunk in configs if repeat % 2 == 0 else configs[::-1]:
                with session.server(kind, f"mem{size}-{repeat}", chunk) as server:
                    server.start()
                    idle = server.peak_rss()
                    Client(server.socket_path, frame).check(payload)
                    # The reply is read whole only after the server has sent
                    # it; a moment later the server is back in accept().
                    time.sleep(0.05)
                    samples.setdefault(server.name, []).append(
                        (server.peak_rss(), idle, server.current_rss())
                    )
        peaks[size] = {
            name: {
                "peak": statistics.median(peak for peak, _, _ in values),
                "idle": statistics.median(idle for _, idle, _ in values),
                "after": statistics.median(after for _, _, after in values),
                "payload": payload_json_size(payload),
            }
            for name, values in samples.items()
        }
    return peaks


def measure_profiles(session, messages):
    """cProfile of each server: small messages, and 10 MiB ones at the default chunk size.

    Returns {(case, kind): [{"function", "calls_per_msg", "own_us_per_msg"}, ...]}.
    """
    wrapper_script = os.path.join(BENCH_DIR, "profile_server.py")
    profiles = {}
    cases = [
        ("small", SMALL_PAYLOAD, messages["small"]),
        ("large", sized_payload(10 * MiB), messages["large"]),
    ]
    for case, payload, count in cases:
        for kind in ("runtime", "floor"):
            out = os.path.join(session.work_dir, f"{kind}-{case}-{session.interpreter.short}.prof")
            with session.server(kind, f"prof-{case}", wrapper=(wrapper_script, out)) as server:
                server.start()
                client = Client(server.socket_path, encode_frame(make_envelope(payload)))
                client.check(payload)
                client.run(count)
                server.stop()  # SIGTERM: the wrapper writes the profile on the way out
            summary = subprocess.run(
                [session.interpreter.path, wrapper_script, "--summary", out, str(count + 1)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            profiles[(case, kind)] = json.loads(summary)
    return profiles


def measure_interpreter(session, plan):
    interpreter = session.interpreter
    results = {"interpreter": interpreter.label, "short": interpreter.short}
    session.progress(f"{interpreter.label}: start-up")
    results["startup"] = measure_startup(session, plan.startup_samples)
    results["startup_parts"] = measure_startup_parts(session, plan.startup_samples)

    servers = {
        "runtime": session.server("runtime", "live"),  # default ASYA_CHUNK_SIZE (4096)
        "floor": session.server("floor", "live"),
        "floor-control": session.server("floor", "live", name="floor-control"),
    }
    for chunk in SWEEP_CHUNKS:
        if chunk != 4 * KiB:
            servers[f"runtime-{chunk}"] = session.server("runtime", "live", chunk)
    large = f"runtime-{LARGE_CHUNK}"
    sweep_extras = [f"runtime-{c}" for c in SWEEP_CHUNKS if c not in (4 * KiB, LARGE_CHUNK)]
    for variant, env in VARIANTS.items():
        servers[f"runtime-{variant}"] = session.server("runtime", "live", name=f"runtime-{variant}", env=env)
        servers[f"{large}-{variant}"] = session.server(
            "runtime", "live", LARGE_CHUNK, name=f"{large}-{variant}", env=env
        )
    for variant, (env, _) in LOG_VARIANTS.items():
        servers[f"runtime-{variant}"] = session.server("runtime", "live", name=f"runtime-{variant}", env=env)
    variant_servers = [f"runtime-{variant}" for variant in [*VARIANTS, *LOG_VARIANTS]]
    large_variant_servers = [f"{large}-{variant}" for variant in VARIANTS]
    try:
        for server in servers.values():
            server.start()

        session.progress(
            f"{interpreter.label}: {report.human_size(payload_json_size(SMALL_PAYLOAD))} messages"
        )
        # A second floor, measured like the runtime, shows how much of a ratio is noise.
        results["small"] = interleaved(
            [servers[name] for name in ["runtime", "floor", "floor-control"] + variant_servers],
            SMALL_PAYLOAD,
            plan.small,
        )
        results["small_payload_bytes"] = payload_json_size(SMALL_PAYLOAD)

        results["sizes"] = {}
        for size, schedule in plan.sizes.items():
            names = [large, "runtime", "floor"] + large_variant_servers
            names += sweep_extras if size == plan.sweep_size else []
            session.progress(f"{interpreter.label}: {report.human_size(size)} payloads")
            results["sizes"][size] = interleaved(
                [servers[name] for name in names], sized_payload(size), schedule
            )
    finally:
        for server in servers.values():
            server.stop()

    session.progress(f"{interpreter.label}: peak memory (a fresh process per message)")
    results["memory"] = measure_memory(session, plan.memory_sizes, plan.memory_repeats)
    if plan.profile_messages:
        session.progress(f"{interpreter.label}: cProfile of both servers")
        results["profiles"] = measure_profiles(session, plan.profile_messages)
    return results


def cpu_placement():
    """Client on one CPU, every server on another: the same placement for all of them.

    Left to the scheduler, one server may share the client's CPU while the
    next does not, which moves latency more than the servers differ.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return {allowed[0]}, {allowed[-1]}


# ---------------------------------------------------------------- targets


def check_targets(all_results, plan):
    """One line per target and interpreter: (interpreter, target, measured, ok).

    Throughput and latency ratios, the deadline's cost included, are the
    paired per-round medians (see interleaved); memory compares medians of
    fresh processes; start-up compares medians of spawn-to-accepting times.
    """
    large = f"runtime-{LARGE_CHUNK}"
    lines = []
    for results in all_results:
        who = results["short"]
        # (server name suffix, label): the default runtime, then each variant.
        for suffix, variant in [("", "")] + [(f"-{name}", f", {name}") for name in VARIANTS]:
            small = results["small"]["runtime" + suffix]
            rate, p99 = small["msgs_per_s_ratio"], small["p99_us_ratio"]
            lines.append((who, f"200 B messages{variant}: rate >= 0.95x floor", f"{rate:.3f}x", rate >= 0.95))
            lines.append(
                (who, f"200 B messages{variant}: p99 latency <= 1.10x floor", f"{p99:.3f}x", p99 <= 1.10)
            )
            for size, row in results["sizes"].items():
                ratio = row[large + suffix]["mb_in_ratio"]
                target = f"{report.human_size(size)}, chunk 1 MiB{variant}: throughput >= 1.0x floor"
                lines.append((who, target, f"{ratio:.3f}x", ratio >= 1.0))
        for variant, (_, least) in LOG_VARIANTS.items():
            rate = results["small"][f"runtime-{variant}"]["msgs_per_s_ratio"]
            target = f"200 B messages, {variant}: rate >= {least:.2f}x floor"
            lines.append((who, target, f"{rate:.3f}x", rate >= least))
        small = results["small"]
        cost = 1 - paired_ratio(small["runtime-deadline"]["per_round"], small["runtime"]["per_round"], "msgs_per_s")
        lines.append(
            (
                who,
                f"200 B messages: ASYA_HANDLER_TIMEOUT costs <= {DEADLINE_SMALL_MESSAGE_COST:.0%} of the rate",
                f"{cost:+.1%}",
                cost <= DEADLINE_SMALL_MESSAGE_COST,
            )
        )
        if 10 * MiB in results["sizes"]:
            ratio = results["sizes"][10 * MiB]["runtime"]["mb_in_ratio"]
            target = "10 MiB, default chunk 4096: throughput >= 0.85x floor"
            lines.append((who, target, f"{ratio:.3f}x", ratio >= 0.85))
        for size in plan.memory_target_sizes:
            row = results["memory"][size]
            for name, chunk in (("runtime", "default chunk"), (large, "chunk 1 MiB")):
                ratio = row[name]["peak"] / row["floor"]["peak"]
                target = f"{report.human_size(size)}, {chunk}: peak RSS <= floor"
                lines.append((who, target, f"{ratio:.3f}x", ratio <= 1.0))
    return lines


# ---------------------------------------------------------------- main


def machine_description():
    model = "unknown CPU"
    virtual = False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and " hypervisor" in line:
                    virtual = True
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return "{}, {} cores{}, Linux {}{}".format(
        model, os.cpu_count(), memory, platform.release(), " (virtual machine)" if virtual else ""
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds, tiny counts, no targets, no docs"
    )
    parser.add_argument(
        "--python", action="append", help="interpreter to use (repeatable); default oldest+newest"
    )
    parser.add_argument(
        "--runtime",
        default=RUNTIME_SCRIPT,
        help="runtime file to measure (e.g. an older version, for before/after)",
    )
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place client and servers")
    parser.add_argument("--docs", default=None, help="directory for performance.md/.png (full run: docs/)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    args.runtime = os.path.abspath(args.runtime)
    # docs/ describes the runtime in this tree: only a full run of that runtime rewrites it.
    measures_this_tree = args.runtime == RUNTIME_SCRIPT
    docs_dir = args.docs or (os.path.join(REPO, "docs") if measures_this_tree and not args.quick else None)

    if args.python:
        interpreters = [interpreter_at(path) for path in args.python]
    else:
        interpreters = oldest_and_newest(find_interpreters())
    if not interpreters:
        print("bench: no CPython 3.7+ found under ~/.pyenv/versions or as python3.X on PATH", file=sys.stderr)
        return 2

    started = time.perf_counter()

    def progress(text):
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    client_cpus, server_cpus = cpu_placement() if not args.no_pin else (None, None)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    load = os.getloadavg()[0]
    progress(
        f"{len(interpreters)} interpreter(s): {', '.join(i.label for i in interpreters)}; "
        f"client on CPU {sorted(client_cpus) if client_cpus else 'any'}, servers on "
        f"{sorted(server_cpus) if server_cpus else 'any'}; load average {load:.2f}"
    )
    work_dir = tempfile.mkdtemp(prefix="asya-bench-")
    try:
        all_results = []
        for interpreter in interpreters:
            session = Session(interpreter, work_dir, server_cpus, progress, args.runtime)
            all_results.append(measure_interpreter(session, plan))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    targets = check_targets(all_results, plan) if not args.quick else []
    elapsed = time.perf_counter() - started
    print(report.results_table(all_results, LARGE_CHUNK))
    sweep = report.chunk_sweep_table(all_results)
    if sweep:
        print(
            f"\nASYA_CHUNK_SIZE sweep at {report.human_size(plan.sweep_size)} (MB/s in, ratio to the floor):\n"
        )
        print(sweep)
    print()
    if targets:
        print(report.targets_table(targets))
        noise = report.noise_of(all_results)
        if noise > NOISE_WARNING:
            print(
                f"\nwarning: two identical floor servers differed by {noise:.1%} in this run (load average "
                f"{os.getloadavg()[0]:.2f}); verdicts within that margin of a target are not reliable"
            )
    else:
        print("(quick mode: too few rounds to judge targets; `make bench` checks them)")
    if docs_dir:
        os.makedirs(docs_dir, exist_ok=True)
        report.write_plot(all_results, LARGE_CHUNK, os.path.join(docs_dir, "performance.png"))
        page = docs_page.render(all_results, targets, plan, machine_description(), elapsed, LARGE_CHUNK, load)
        with open(os.path.join(docs_dir, "performance.md"), "w") as out:
            out.write(page)
        progress(f"wrote {os.path.join(docs_dir, 'performance.md')} and performance.png")
    progress(f"done in {elapsed:.0f} s")
    failed = [line for line in targets if not line[3]]
    if failed:
        print(f"bench: {len(failed)} target(s) missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
