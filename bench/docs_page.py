"""docs/performance.md, written by `make bench` from the run's own figures.

Only this file holds the page's prose; every number in it comes from the run.
"""

import datetime

import report
from report import MiB, human_size, num


def render(all_results, targets, plan, machine, elapsed, large_chunk, load):
    passed = sum(1 for line in targets if line[3])
    noise = report.noise_of(all_results)
    interpreters = ", ".join(r["interpreter"] for r in all_results)
    parts = [
        HEADER.format(
            date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            elapsed=elapsed,
            passed=passed,
            total=len(targets),
            interpreters=interpreters,
            noise=noise,
        ),
        report.targets_table(targets) if targets else "(no targets checked in this run)",
        "",
        _failed_note(targets),
        METHOD.format(
            small=human_size(all_results[0]["small_payload_bytes"]),
            sizes=", ".join(human_size(size) for size in all_results[0]["sizes"]),
            machine=machine,
            load=load,
            interpreters=interpreters,
            repeats=plan.memory_repeats,
            startup=plan.startup_samples,
            schedules=_schedules(plan),
        ),
        "## Results\n",
        "Each cell is the median over the rounds; *ratio* is runtime / floor (for latency, CPU and memory "
        "lower is better, for rates higher is better). The noise-check row measures a second, identical "
        "floor process exactly like the runtime: its distance from 1.00x is what this machine's noise "
        "alone does to a ratio.\n",
        report.results_table(all_results, large_chunk),
        "",
        "![Throughput and peak memory against payload size](performance.png)\n",
        _chunk_section(all_results, plan, large_chunk),
        _memory_section(all_results, large_chunk),
        _startup_section(all_results),
        _per_message_section(all_results),
        _why_section(all_results, targets),
        _profile_section(all_results[-1]),
        REPRODUCE,
    ]
    return "\n".join(part for part in parts if part is not None)


HEADER = """# Performance: the runtime at the Python floor

<!-- Written by `make bench` (bench/run.py, bench/docs_page.py); edit those, not this file. -->

The runtime sits on the path of every message, so its own cost must vanish next to
the work no Python server can avoid: reading the frame, `json.loads`, `json.dumps`,
writing the frame. `make bench` measures it side by side with a **floor server**
that does only that work, in one run, on {interpreters}.

Run of {date}, {elapsed:.0f} s: **{passed} of {total} targets met**. Two identical floor
processes measured against each other differed by {noise:.1%} in this run: a ratio
closer than that to its target is within the noise.
"""


def _failed_note(targets):
    failed = [line for line in targets if not line[3]]
    if not targets:
        return None
    if not failed:
        return "Every target is met on every interpreter measured.\n"
    return (
        f"{len(failed)} target(s) missed; [Why targets are missed](#why-targets-are-missed) shows where "
        "the time goes, from cProfile runs of both servers.\n"
    )


METHOD = """## Method

**The floor** (`bench/floor_server.py`) is the smallest honest stdlib server for the
protocol, written the way a person first writes it: `accept()`; read the 4-byte
length with `recv` until 4 bytes are in, then the body with `recv(remaining)` until
complete (chunks joined with `b"".join`); `json.loads(body)`; call the handler on
the payload; `json.dumps({{"status": "ok", "result": envelope}})` with the payload,
route, headers and id; one `sendall(header + body)`; `close()`. No validation, no
timeouts, no error replies, no signals, no logging. Its receive is not capped by a
chunk size, so it makes the fewest receive calls possible.

**The runtime** is `runtime/asya_runtime.py` as shipped: payload mode, validation on
(`ASYA_ENABLE_VALIDATION=true`), 30 s I/O timeouts, log level INFO. It is started
the way a pod starts it (`python3 /opt/asya/asya_runtime.py`): `python asya_runtime.py`.
Every runtime figure on this page except the `access` and `json` rows is the
runtime's core **without the access line**: those servers run with `ASYA_ACCESS_LOG=0`,
so the line's cost is measured apart (see *Logging variants*) and the core's
figures stay comparable with runs from before the line existed.

**Runtime variants.** Two settings change the runtime's own work per message, and
each is measured as a server of its own against the same targets as the default:
`list` (`ASYA_REPLY_FORMAT=list`, the asya Go sidecar's reply array, `route.current`
advanced) and `deadline` (`ASYA_HANDLER_TIMEOUT=30`: two clock reads per call and a
watchdog thread that signals the main thread only when a call passes its deadline;
an earlier design with one `setitimer` system call per message cost 3-6% of the
small-message rate in A/B runs). Both run without the access line, like the default.
One more target bounds the deadline's own cost: its small-message rate may be at most
3% below the default runtime's. That cost is 1 minus the median over the rounds of the
deadline server's rate divided by the default runtime's rate in the same round.

**Logging variants.** By default the runtime writes one INFO access line per message
to stderr (message id, outcome, outputs, milliseconds). Two more servers measure it,
each with one target, on its small-message rate against the floor (in the table
above): `access`, the runtime's defaults (access line on, text lines), and `json`
(`ASYA_LOG_FORMAT=json`: every log line a JSON object). Their stderr goes to a
regular file, as a container's log does. They are measured with {small} messages
only, in the same interleaved run as the other servers: the line is one per message,
so its cost shows on small messages; beside the JSON work of a large message it is
lost.

**Started the same way**: the same interpreter binary, the same environment
(`ASYA_SOCKET_DIR`, `ASYA_HANDLER=bench_identity.identity`, `ASYA_CHUNK_SIZE`,
`PYTHONPATH=bench/handlers`), the socket at `$ASYA_SOCKET_DIR/asya-runtime.sock`,
the same identity handler (`bench/handlers/bench_identity.py`, which imports
nothing). Both replies are checked to carry the payload back unchanged before
any timing.

**The client** (`bench/client.py`, the test kit's `RoundTripClient`) behaves like the sidecar: one connection per
message; connect, send one frame, read the whole reply frame, close. The same code
drives every server, so its own cost is the same for all of them.

**Rounds.** Every measurement is made in interleaved rounds: within a round the
servers take turns in blocks of messages, the first server of each block rotating
(A B C, B C A, C A B, A B C, ... continued from one round to the next), so every
server goes first as often as any other, and a busy moment of the machine falls on
each of them alike. Each figure is the median over the rounds; each ratio is the
median of the per-round ratios (two servers measured within the same fraction of a
second). Schedules (turns x messages per turn x rounds): {schedules}. The client
runs on one CPU and every server on another, so that no server is luckier than
another in where the scheduler puts it.

**Payloads.** Small messages: a {small} JSON object (text, numbers, a list, nested
objects). Sizes {sizes}: the payload is one JSON string of exactly that many
bytes, like a base64-encoded image or audio clip; the envelope (id, route,
headers) adds about 100 bytes. MB/s is 10^6 bytes of request frames (in) or reply
frames (out) per second of round-trip time.

**Peak memory** is `VmHWM` from `/proc/PID/status` of a fresh server process that
has answered one message of the size; the median of {repeats} processes per
server. It includes the interpreter itself (the idle process is about 10 MiB).

**Start-up** is the time from spawning the process to the first successful
`connect()` on its socket; the median of {startup} starts per server, the servers
taking turns in a rotating order. It is information, not a target: see
[Start-up](#start-up) for where the time goes.

**Server CPU** per message is the server process's user + system time
(`/proc/PID/stat`) over all its messages, divided by their number.

**Machine**: {machine}. Load average when the run started: {load:.2f}.
Interpreters: {interpreters} (the oldest and newest CPython 3.7+ found under
`~/.pyenv/versions` or as `python3.X` on `PATH`).
"""


def _schedules(plan):
    parts = ["{} payload: {}x{}x{}".format(human_size(200), *plan.small)]
    parts += ["{}: {}x{}x{}".format(human_size(size), *schedule) for size, schedule in plan.sizes.items()]
    return "; ".join(parts)


def _chunk_section(all_results, plan, large_chunk):
    size = report.sweep_size_of(all_results[0])
    if size is None:
        return None
    lines = [
        "## Choosing ASYA_CHUNK_SIZE\n",
        f"`ASYA_CHUNK_SIZE` (chart value `chunkSize`) caps the bytes asked of each receive call. "
        f"The body buffer is allocated once at its final size whatever the chunk size, so the "
        f"chunk size changes the number of calls, not the memory. At {human_size(size)}:\n",
        report.chunk_sweep_table(all_results),
        "",
    ]
    calls = size // 4096
    for results in all_results:
        row = results["sizes"][size]
        default = row["runtime"]["mb_in"]
        best_name = max(
            (name for name in row if report.chunk_of(name) is not None), key=lambda n: row[n]["mb_in"]
        )
        lines.append(
            f"- {results['short']}: the default 4 KiB takes about {calls:,} receive calls per message and "
            f"reaches {num(default)} MB/s; the best chunk size here was "
            f"{human_size(report.chunk_of(best_name))} with {num(row[best_name]['mb_in'])} MB/s "
            f"({row[best_name]['mb_in'] / default:.2f}x the default)."
        )
    first = all_results[0]["sizes"]
    smallest = min(first)
    small_effect = first[smallest][f"runtime-{large_chunk}"]["mb_in"] / first[smallest]["runtime"]["mb_in"]
    large_effect = first[size][f"runtime-{large_chunk}"]["mb_in"] / first[size]["runtime"]["mb_in"]
    lines.append(
        f"\n**Advice.** Keep the default 4 KiB for messages of a few KiB: the whole frame comes in the "
        f"first receive call anyway (at {human_size(smallest)}, {human_size(large_chunk)} chunks measured "
        f"{small_effect:.2f}x the default's throughput on {all_results[0]['short']}). Raise it to "
        f"{human_size(large_chunk)} (`ASYA_CHUNK_SIZE=1048576`, chart `chunkSize: 1048576`) when messages "
        f"regularly reach hundreds of KiB or more (at {human_size(size)}: {large_effect:.2f}x the default "
        "here). Larger chunks than that bring little, because one call rarely finds more than a socket "
        "buffer's worth of data (about 200 KiB on Linux) waiting. The chunk size never changes the "
        "memory a message needs.\n"
    )
    return "\n".join(lines)


def _memory_section(all_results, large_chunk):
    lines = ["## Memory\n"]
    for results in all_results:
        for size, row in results["memory"].items():
            runtime, floor = row["runtime"], row["floor"]
            lines.append(
                f"- {results['short']}, {human_size(size)}: runtime peak {num(runtime['peak'] / MiB)} MiB "
                f"({(runtime['peak'] - runtime['idle']) / runtime['payload']:.2f}x the payload above its "
                f"idle {num(runtime['idle'] / MiB)} MiB), floor {num(floor['peak'] / MiB)} MiB "
                f"({(floor['peak'] - floor['idle']) / floor['payload']:.2f}x above idle); resident once the "
                f"reply is sent: runtime {num(runtime['after'] / MiB)} MiB, floor {num(floor['after'] / MiB)} MiB."
            )
    lines.append(
        "\nThe runtime never holds more than three copies of a message: the frame, then its text "
        "(the frame is dropped), then the parsed payload (the text is dropped), then the reply's JSON "
        "text, then its bytes, made only after the payload is dropped so that they reuse its memory. "
        "It receives into one buffer of the frame's final size and sends the header and reply body "
        "with one `sendmsg` without joining them. "
        "The floor keeps the received chunks and their join, the body while it parses, and "
        "concatenates the header and reply before sending.\n",
    )
    lines.append(
        "Between messages the runtime keeps the heap its last messages used, up to about 62 MiB: "
        "buffers of messages up to about 31 MiB come from the heap and are reused by the next "
        "message instead of being mapped afresh and faulted in page by page (see the last point of "
        "[Per message](#per-message-where-the-runtime-saves-and-spends)). That memory never exceeds "
        "the peak those messages needed, which is what a memory limit must cover anyway; larger "
        "messages are mapped and unmapped for each message, as in the floor.\n"
    )
    return "\n".join(lines)


# Each profiled function is counted in the first stage one of whose fragments
# its name contains; the rest is glue code (the two handlers' own time, len, ...).
STAGES = (
    ("accept and close the connection", ("close", "(family)", "_intenum_converter", "(__init__)")),
    ("receive the frame", (".recv", "read_frame", "_recv_some", "recv_exactly", "bytes.join", "unpack")),
    (
        "decode JSON",
        (
            "raw_decode",
            "(decode)",
            "decode_message",
            ".decode",
            "(loads)",
            "detect_encoding",
            "Pattern.match",
        ),
    ),
    ("validate the envelope", ("validate_", "_type_name")),
    ("call the handler, wrap the result", ("call_payload_mode", "(wrap)", "(dispatch)", "(identity)")),
    ("encode JSON", ("iterencode", "(encode)", "encode_reply", "ok_reply", "(dumps)", "str.encode")),
    ("kernel I/O timeouts", ("setsockopt", "set_io_timeout")),
    ("send the reply", ("sendmsg", "sendall", "write_frame", "(_send)", "pack")),
    ("shutdown(SHUT_WR) after the reply", ("shutdown",)),
)
GLUE = "glue code (the serving function's own lines, builtins)"


def stage_of(function):
    for stage, fragments in STAGES:
        if any(fragment in function for fragment in fragments):
            return stage
    return GLUE


def stage_times(rows):
    times = {}
    for row in rows:
        stage = stage_of(row["function"])
        times[stage] = times.get(stage, 0.0) + row["own_us_per_msg"]
    return times


def _own_stage(rows, stage):
    return sum(row["own_us_per_msg"] for row in rows if stage_of(row["function"]) == stage)


def _rows_matching(rows, fragment):
    return [row for row in rows if fragment in row["function"]]


def _own(rows, fragment):
    return sum(row["own_us_per_msg"] for row in _rows_matching(rows, fragment))


def _calls(rows, fragment):
    return sum(row["calls_per_msg"] for row in _rows_matching(rows, fragment))


def stage_table(runtime_rows, floor_rows):
    runtime, floor = stage_times(runtime_rows), stage_times(floor_rows)
    lines = ["| stage | runtime µs/msg | floor µs/msg | runtime - floor |", "|---|---:|---:|---:|"]
    for stage in [name for name, _ in STAGES] + [GLUE]:
        rt, fl = runtime.get(stage, 0.0), floor.get(stage, 0.0)
        lines.append(f"| {stage} | {rt:.1f} | {fl:.1f} | {rt - fl:+.1f} |")
    total_rt, total_fl = sum(runtime.values()), sum(floor.values())
    lines.append(f"| **total** | **{total_rt:.1f}** | **{total_fl:.1f}** | **{total_rt - total_fl:+.1f}** |")
    return "\n".join(lines)


def _per_message_section(all_results):
    profiled = [results for results in all_results if results.get("profiles")]
    if not profiled:
        return None
    lines = [
        "## Per message: where the runtime saves and spends\n",
        "Without the profiler, the server processes used this much CPU per 200 B message (user + system; "
        "most of it in the kernel: accepting, waking the client, closing):\n",
    ]
    for results in profiled:
        small = results["small"]
        lines.append(
            f"- {results['interpreter']}: runtime {num(small['runtime']['cpu_us_per_msg'])} µs, "
            f"floor {num(small['floor']['cpu_us_per_msg'])} µs."
        )
    lines.append(
        "\nUnder cProfile the same work splits into stages (µs of own time per message; the profiler "
        "inflates every call, so compare the columns, not the totals with the tables above):\n"
    )
    for results in profiled:
        profiles = results["profiles"]
        lines.append(f"**{results['interpreter']}**\n")
        lines.append(stage_table(profiles[("small", "runtime")], profiles[("small", "floor")]))
        lines.append("")
    lines.append(PER_MESSAGE_NOTES)
    return "\n".join(lines)


PER_MESSAGE_NOTES = """What the runtime spends that the floor does not: validating the envelope, wrapping
the handler's result into an envelope, catching every error into a reply, and kernel
I/O timeouts (set only before a call that may wait, so a small message sets none).
What pays for it, each change measured with an A/B run against the previous runtime
when it went in:

- **One receive call** for a small frame, into a buffer allocated once at start; the
  floor makes two `recv` calls (length, then body) and joins the chunks.
- **The decoder's C scanner, called directly**: `json.loads` detects the encoding,
  and `JSONDecoder.decode` runs two whitespace regular expressions and a Python-level
  `raw_decode` around the same scanner. Only a document with surrounding whitespace
  or trailing data takes the full path.
- **C encoders built once**: `json.dumps` builds a new C encoder, with a closure
  around it, on every call.
- **Connections as the C socket type**: `socket.accept()` wraps each descriptor in
  `socket.socket`, whose Python-level `__init__` and `close()` cost 2-4 µs per message;
  the runtime wraps it in `socket.SocketType` with the listener's family, type and
  protocol, which makes no system call. It reads those three once, as integers: the
  listener's `family` and `type` are properties that build an enum member on every
  read, which `socket.accept()` does for each connection (under callgrind, reading
  them once took a 1 KiB message from 190,000 to 172,000 instructions in the runtime
  process on 3.7, and from 146,000 to 136,000 on 3.13; the floor: 186,000 and 153,000).
- **Replies on the C encoder's faster path**: when the request was plain ASCII (no
  escape at all, like a base64 blob), the reply is encoded with `ensure_ascii=True`,
  which CPython encodes 15-80% faster; if the result holds no backslash, nothing was
  escaped and the bytes are exactly those of raw UTF-8 output. Otherwise the reply is
  encoded again the UTF-8 way, so non-ASCII text never grows into `\\u` escapes.
- **Replies without joining**: a small reply goes out with one `sendall`, a large one
  with one `sendmsg` of header and body.
- **No page faults for messages up to about 31 MiB**: at start the runtime allocates
  and frees one 31 MiB block (calloc: no page is touched). glibc then raises its mmap
  threshold to that size and its heap-trim threshold to twice that, so every buffer of
  such a message comes from the heap and is reused by the next message, where the floor
  maps each one afresh: about 10,000 page faults per 10 MiB message.
"""


def _why_section(all_results, targets):
    failed = [line for line in targets if not line[3]]
    if not failed:
        return None
    lines = ["## Why targets are missed\n"]
    for results in all_results:
        who = results["short"]
        missed = [target for name, target, _, ok in targets if name == who and not ok]
        profiles = results.get("profiles")
        if not missed or not profiles:
            continue
        lines.append(f"### {results['interpreter']}\n")
        lines.append("Missed: " + "; ".join(missed) + ".\n")
        lines.append(
            "Per message, stage by stage: see [Per message](#per-message-where-the-runtime-saves-and-spends).\n"
        )
        for size, row in results["sizes"].items():
            large = [name for name in row if name != "runtime" and report.chunk_of(name) is not None]
            if not any(f"{human_size(size)}, chunk" in target for target in missed) or not large:
                continue
            runtime, floor = row[large[0]], row["floor"]
            lines.append(
                f"**{human_size(size)} payloads** (chunk {human_size(report.chunk_of(large[0]))}): server CPU "
                f"{num(runtime['cpu_us_per_msg'])} µs against {num(floor['cpu_us_per_msg'])} µs per message; "
                f"minor page faults {num(runtime['faults_per_msg'])} against {num(floor['faults_per_msg'])} "
                "per message. Every buffer of a megabyte or more that the C allocator maps afresh is "
                "faulted in page by page, and on a virtual machine each fault costs microseconds.\n"
            )
        large_rt, large_fl = profiles[("large", "runtime")], profiles[("large", "floor")]
        encode_rt, encode_fl = _own_stage(large_rt, "encode JSON"), _own_stage(large_fl, "encode JSON")
        encoder_note = (
            ": the runtime's encoder keeps non-ASCII text as UTF-8 (`ensure_ascii=False`, part of the "
            "wire format), a path on which CPython's C encoder is slower than on the ASCII-escaping "
            "path of a plain `json.dumps`"
            if encode_rt > 1.03 * encode_fl
            else ""
        )
        lines.append(
            f"**Per 10 MiB message** (under cProfile): encoding the reply took {encode_rt / 1e3:.1f} ms in "
            f"the runtime against {encode_fl / 1e3:.1f} ms in the floor{encoder_note}. Decoding took "
            f"{_own_stage(large_rt, 'decode JSON') / 1e3:.1f} ms against "
            f"{_own_stage(large_fl, 'decode JSON') / 1e3:.1f} ms. "
            f"At the default chunk size the runtime made {_calls(large_rt, '.recv'):,.0f} receive calls "
            f"({_own(large_rt, '.recv') / 1e3:.1f} ms) where the floor made {_calls(large_fl, '.recv'):,.0f} "
            f"({_own(large_fl, '.recv') / 1e3:.1f} ms) but spent {_own(large_fl, 'bytes.join') / 1e3:.1f} ms "
            "joining its chunks.\n"
        )
    return "\n".join(lines)


def _startup_section(all_results):
    lines = [
        "## Start-up\n",
        "A pod runs `<python> /opt/asya/asya_runtime.py`, as the bench does: Python compiles the "
        "file at each start (a script run as `__main__` never uses cached bytecode). The floor is "
        "a small script, compiled at each start too. These figures are information, not a "
        "target: a few milliseconds are noise beside scheduling a pod and loading a model.\n",
        "| interpreter | runtime, `python asya_runtime.py` (ms) | floor (ms) | runtime - floor |",
        "|---|---:|---:|---:|",
    ]
    for results in all_results:
        startup = results["startup"]
        runtime, floor = startup["runtime"] * 1e3, startup["floor"] * 1e3
        lines.append(f"| {results['interpreter']} | {runtime:.1f} | {floor:.1f} | {runtime - floor:+.1f} |")
    lines.append(
        "\nWhere the time goes, each part measured apart (median of as many runs as starts; the "
        "imports are timed as `python -c 'import ...'` minus the bare interpreter):\n"
    )
    for results in all_results:
        parts = results.get("startup_parts", {})
        if parts:
            listed = "; ".join(f"{name}: {value:.1f} ms" for name, value in parts.items())
            lines.append(f"- {results['short']}: {listed}.")
    lines.append(
        "\nThe bare interpreter and the imports dominate both servers; `logging` is the heaviest "
        "of the runtime's imports, which the floor does not need.\n"
    )
    return "\n".join(lines)


def _profile_table(rows, limit=12):
    lines = ["| calls/msg | own µs/msg | function |", "|---:|---:|---|"]
    for row in rows[:limit]:
        lines.append(f"| {row['calls_per_msg']:,.1f} | {row['own_us_per_msg']:,.1f} | `{row['function']}` |")
    return "\n".join(lines)


def _profile_section(results):
    profiles = results.get("profiles")
    if not profiles:
        return None
    lines = [
        "## Where the time goes (cProfile)\n",
        f"Both servers under cProfile (`bench/profile_server.py`) on {results['interpreter']}: the "
        "functions with the most own time per message (start-up and the idle wait in `accept()` left "
        "out). cProfile slows every call down, so compare rows with each other, not with the tables "
        "above. JSON decoding and encoding dominate large messages in both servers: that part is the "
        "floor.\n",
    ]
    titles = {"small": "200 B messages", "large": "10 MiB messages (runtime at the default 4 KiB chunk size)"}
    for case in ("small", "large"):
        for kind in ("runtime", "floor"):
            lines += [f"**{kind}, {titles[case]}**\n", _profile_table(profiles[(case, kind)]), ""]
    return "\n".join(lines)


REPRODUCE = """## Reproduce

```sh
make bench        # this page and performance.png; exits 1 if a target is missed (a few minutes)
make bench-smoke  # seconds: the bench still runs and prints its table; checks no target
.venv/bin/python bench/run.py --python ~/.pyenv/versions/3.11.7/bin/python3   # other interpreters
.venv/bin/python bench/run.py --runtime /tmp/old_asya_runtime.py --docs /tmp/old   # before/after a change
```

Run it on a quiet machine: the noise-check row tells how quiet it was. The verdicts
use the same margins everywhere; when a result lands inside the noise of its target,
run again rather than loosen a target.
"""
