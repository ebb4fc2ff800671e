"""Turn the bench's measurements into Markdown tables, the docs page and the plot."""

KiB = 1024
MiB = 1024 * KiB
DEFAULT_CHUNK = 4096


def human_size(size):
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    if size >= KiB and size % KiB == 0:
        return f"{size // KiB} KiB"
    return f"{size} B"


def num(value):
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _pair(first, second):
    return f"{num(first)} / {num(second)}"


def _measure_rows(results, large_chunk):
    """(measure, runtime cell, floor cell, ratio) for one interpreter, in table order."""
    large = f"runtime-{large_chunk}"
    small = results["small"]
    rt, fl = small["runtime"], small["floor"]
    label = f"{human_size(results['small_payload_bytes'])} payload"
    rows = [
        (f"{label}: messages/s", num(rt["msgs_per_s"]), num(fl["msgs_per_s"]), rt["msgs_per_s_ratio"]),
        (f"{label}: p50 latency (µs)", num(rt["p50_us"]), num(fl["p50_us"]), rt["p50_us_ratio"]),
        (f"{label}: p99 latency (µs)", num(rt["p99_us"]), num(fl["p99_us"]), rt["p99_us_ratio"]),
        (
            f"{label}: server CPU per message (µs)",
            num(rt["cpu_us_per_msg"]),
            num(fl["cpu_us_per_msg"]),
            rt["cpu_us_per_msg"] / fl["cpu_us_per_msg"] if fl["cpu_us_per_msg"] else float("nan"),
        ),
        (
            f"{label}: noise check, a 2nd floor (messages/s)",
            num(small["floor-control"]["msgs_per_s"]),
            num(fl["msgs_per_s"]),
            small["floor-control"]["msgs_per_s_ratio"],
        ),
    ]
    variants = variant_names(small)
    for variant in variants:
        figures = small[f"runtime-{variant}"]
        rows.append(
            (f"{label}, {variant}: messages/s", num(figures["msgs_per_s"]), num(fl["msgs_per_s"]),
             figures["msgs_per_s_ratio"])
        )
        rows.append(
            (f"{label}, {variant}: p99 latency (µs)", num(figures["p99_us"]), num(fl["p99_us"]),
             figures["p99_us_ratio"])
        )
    for size, row in results["sizes"].items():
        measured = [(large, large_chunk, ""), ("runtime", DEFAULT_CHUNK, "")]
        # Not every variant runs at every size (the logging ones run with small messages only).
        measured += [(f"{large}-{variant}", large_chunk, f", {variant}") for variant in variants
                     if f"{large}-{variant}" in row]
        for name, chunk, variant in measured:
            rows.append(
                (
                    f"{human_size(size)}: MB/s in / out, chunk {human_size(chunk)}{variant}",
                    _pair(row[name]["mb_in"], row[name]["mb_out"]),
                    _pair(row["floor"]["mb_in"], row["floor"]["mb_out"]),
                    row[name]["mb_in_ratio"],
                )
            )
    for size, row in results["memory"].items():
        floor = row["floor"]
        for name, chunk in (("runtime", DEFAULT_CHUNK), (large, large_chunk)):
            runtime = row[name]
            rows.append(
                (
                    f"{human_size(size)}: peak RSS MiB (x payload), chunk {human_size(chunk)}",
                    f"{num(runtime['peak'] / MiB)} ({runtime['peak'] / runtime['payload']:.2f}x)",
                    f"{num(floor['peak'] / MiB)} ({floor['peak'] / floor['payload']:.2f}x)",
                    runtime["peak"] / floor["peak"],
                )
            )
    startup = results["startup"]
    rows.append(
        (
            "start-up, spawn to accepting (ms): `python asya_runtime.py`, information (no target)",
            num(startup["runtime"] * 1e3),
            num(startup["floor"] * 1e3),
            startup["runtime"] / startup["floor"],
        )
    )
    return rows


def _times(ratio):
    return "-" if ratio != ratio else f"{ratio:.2f}x"  # NaN: too few messages to measure CPU time


def results_table(all_results, large_chunk):
    """One Markdown table: a row per measure; runtime, floor and ratio per interpreter."""
    header = "| measure |" + "".join(
        f" {r['short']} runtime | {r['short']} floor | ratio |" for r in all_results
    )
    lines = [header, "|---|" + "---:|---:|---:|" * len(all_results)]
    per_interpreter = [_measure_rows(r, large_chunk) for r in all_results]
    for index, first in enumerate(per_interpreter[0]):
        cells = "".join(
            f" {rows[index][1]} | {rows[index][2]} | {_times(rows[index][3])} |" for rows in per_interpreter
        )
        lines.append(f"| {first[0]} |{cells}")
    return "\n".join(lines)


def variant_names(servers):
    """The runtime variants measured (runtime-list, runtime-deadline, ...): their suffixes."""
    return [name.split("-", 1)[1] for name in servers if name.startswith("runtime-") and chunk_of(name) is None]


def sweep_size_of(results):
    for size, row in results["sizes"].items():
        if sum(1 for name in row if chunk_of(name) is not None) > 2:
            return size
    return None


def chunk_of(name):
    """The ASYA_CHUNK_SIZE of a default-settings runtime server, None for any other server."""
    if name == "runtime":
        return DEFAULT_CHUNK
    kind, _, chunk = name.partition("-")
    return int(chunk) if kind == "runtime" and chunk.isdigit() else None


def chunk_sweep_table(all_results):
    """Throughput at the sweep size for every ASYA_CHUNK_SIZE measured."""
    size = sweep_size_of(all_results[0])
    if size is None:
        return ""
    rows = [r["sizes"][size] for r in all_results]
    chunks = sorted(chunk_of(name) for name in rows[0] if chunk_of(name) is not None)
    lines = [
        "| ASYA_CHUNK_SIZE |" + "".join(f" {r['short']} MB/s in | ratio |" for r in all_results),
        "|---|" + "---:|---:|" * len(all_results),
    ]
    for chunk in chunks:
        name = "runtime" if chunk == DEFAULT_CHUNK else f"runtime-{chunk}"
        cells = "".join(f" {num(row[name]['mb_in'])} | {row[name]['mb_in_ratio']:.2f}x |" for row in rows)
        default = " (default)" if chunk == DEFAULT_CHUNK else ""
        lines.append(f"| {human_size(chunk)}{default} |{cells}")
    lines.append("| floor (no cap) |" + "".join(f" {num(row['floor']['mb_in'])} | 1.00x |" for row in rows))
    return "\n".join(lines)


def targets_table(targets):
    lines = ["| interpreter | target | measured | result |", "|---|---|---:|---|"]
    for who, target, measured, ok in targets:
        lines.append(f"| {who} | {target} | {measured} | {'PASS' if ok else 'FAIL'} |")
    return "\n".join(lines)


def noise_of(all_results):
    """How far the second floor landed from the first: the run's own noise."""
    return max(abs(r["small"]["floor-control"]["msgs_per_s_ratio"] - 1.0) for r in all_results)


# ---------------------------------------------------------------- plot


def write_plot(all_results, large_chunk, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["tab:blue", "tab:red", "tab:green", "tab:purple"]
    series = (
        (f"runtime-{large_chunk}", "-", "o", f"runtime, chunk {human_size(large_chunk)}"),
        ("runtime", "--", "s", "runtime, default chunk 4 KiB"),
        ("floor", ":", "^", "floor"),
    )
    figure, (throughput, memory) = plt.subplots(1, 2, figsize=(12, 4.8))
    for colour, results in zip(colours, all_results):
        who = results["short"]
        sizes = sorted(results["sizes"])
        memory_sizes = sorted(results["memory"])
        for name, style, marker, label in series:
            throughput.plot(
                [size / MiB for size in sizes],
                [results["sizes"][size][name]["mb_in"] for size in sizes],
                linestyle=style,
                marker=marker,
                color=colour,
                label=f"{who} {label}",
            )
            memory.plot(
                [size / MiB for size in memory_sizes],
                [results["memory"][size][name]["peak"] / MiB for size in memory_sizes],
                linestyle=style,
                marker=marker,
                color=colour,
                label=f"{who} {label}",
            )
    sizes = sorted(all_results[0]["sizes"])
    throughput.set_xscale("log")
    throughput.set_yscale("log")
    throughput.set_xticks([size / MiB for size in sizes])
    throughput.set_xticklabels([human_size(size) for size in sizes])
    throughput.minorticks_off()
    throughput.set_xlabel("payload size (log scale)")
    throughput.set_ylabel("MB/s in, median of rounds (log scale)")
    throughput.set_title("Throughput, one connection per message")
    memory_sizes = sorted(all_results[0]["memory"])
    memory.set_xticks([size / MiB for size in memory_sizes])
    memory.set_xticklabels([human_size(size) for size in memory_sizes])
    memory.set_xlabel("payload size")
    memory.set_ylabel("peak RSS, VmHWM (MiB)")
    memory.set_title("Peak memory of a fresh server process")
    for axes in (throughput, memory):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
