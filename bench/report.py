"""A benchmark's outcome as one flat JSON object (for machines) or a short table (for people).

The JSON keys are a stable interface (tests and RESULTS.md read them): `ops`, `ops_per_s`,
`p50_ms` ... `max_ms`, `errors` (a count) and `errors_by_kind`, `concurrency`, `seconds`, plus
the machine's load average before and after and the CPU each side used during the window
(`bench_cpu_pct`, `server_cpu_pct` ... in % of one core, `machine_busy_pct` of all cores),
because a figure taken on a busy machine means little and the reader should be able to tell.
"""

import os
import sys
from typing import Any

import orjson

from bench import cpu
from bench.loop import Measured
from bench.stats import PERCENTILES


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build(bench: str, measured: Measured, load_before: list[float], **extra: Any) -> dict[str, Any]:
    record = measured.record
    window = measured.window_s
    out: dict[str, Any] = {
        "bench": bench,
        "ops": record.ops,
        "ops_per_s": round(record.ops / window, 1) if window > 0 else 0.0,
        **record.summary(),
        "errors": sum(record.errors.values()),
        "errors_by_kind": dict(record.errors),
        "concurrency": measured.concurrency,
        "seconds": round(window, 3),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_average(),
        **cpu.percentages(measured.counted, window),
    }
    out.update(extra)
    return out


def emit(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
        sys.stdout.flush()
    else:
        print(table(result))


def run_table(result: dict[str, Any]) -> str:
    """`bench run`: the run in a line, each operation's latency, then what went wrong."""
    loop = f"rate {result['rate']}/s" if result["mode"] == "open" else f"concurrency {result['concurrency']}"
    lines = [
        f"{result['scenario']} against {result['target']}: {loop}, {result['iterations_done']}"
        f" iterations in {result['seconds']:.1f} s ({result['iterations_per_s']}/s),"
        f" {result['servers_per_s']} servers/s",
        f"  {'operation':<18} {'count':>7} {'errors':>6} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}"
        f" {'p99.9 ms':>9} {'max ms':>9}",
    ]
    for name, op in result["operations"].items():
        lines.append(
            f"  {name:<18} {op['count']:>7} {op['errors']:>6} {op['p50_ms']:>9.1f} {op['p90_ms']:>9.1f}"
            f" {op['p99_ms']:>9.1f} {op['p999_ms']:>9.1f} {op['max_ms']:>9.1f}"
        )
    lines.append(f"  errors {result['errors']} {result['errors_by_kind'] or ''}".rstrip())
    lines.append(f"  invariant violations {result['invariant_violations']} {result['invariants']}")
    lines.append(f"  peak RSS of the control plane {result['peak_rss_mib']} MiB; {result['processes']}")
    if "fleet" in result:
        lines.append(f"  fleet {result['fleet']}")
    return "\n".join(lines)


def table(result: dict[str, Any]) -> str:
    if result.get("bench") == "run":
        return run_table(result)
    if "ops" not in result:  # a scenario with its own figures (boot, place): one per line
        return "\n".join([result["bench"], *(f"  {k:<22} {v}" for k, v in result.items() if k != "bench")])
    lines = [
        f"{result['bench']}: {result['concurrency']} concurrent, {result['seconds']:.1f} s measured",
        f"  throughput  {result['ops_per_s']:>12,.1f} ops/s   ({result['ops']:,} ops)",
        "  latency ms  "
        + "  ".join(f"{name[:-3]} {result[name]:.3f}" for name, _ in PERCENTILES)
        + f"  max {result['max_ms']:.3f}",
        f"  errors      {result['errors']:>12,}"
        + (f"   {result['errors_by_kind']}" if result["errors_by_kind"] else ""),
    ]
    known = {"bench", "ops", "ops_per_s", "errors", "errors_by_kind", "concurrency", "seconds"}
    known |= {name for name, _ in PERCENTILES} | {"min_ms", "max_ms", "mean_ms"}
    for key, value in result.items():
        if key not in known:
            lines.append(f"  {key:<11} {value}")
    return "\n".join(lines)
