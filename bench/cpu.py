"""Who used the CPU during the measured window: the load generator, the process under test, and
the whole machine.

A throughput figure alone does not say what limited it. With these beside it, the report shows
whether the server was saturated (near 100% of one core: its own per-request cost is the
limit), whether the load generator was, or whether the machine was busy with something else
(other processes took the cores). Linux only (/proc); elsewhere the figures are left out.
"""

import os
import resource
from collections.abc import Mapping
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state is the first, utime the 12th.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of all cores since boot; None if unknown."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / TICKS_PER_S, sum(ticks) / TICKS_PER_S


def sample(others: Mapping[str, int]) -> dict[str, float]:
    """Counters for `closed_loop`'s probe: this process, each named PID, the machine."""
    out = {"cpu_s.bench": own_seconds()}
    for name, pid in others.items():
        seconds = process_seconds(pid)
        if seconds is not None:
            out[f"cpu_s.{name}"] = seconds
    machine = machine_seconds()
    if machine is not None:
        out["machine_busy_s"], out["machine_all_s"] = machine
    return out


def percentages(counted: Mapping[str, float], window_s: float) -> dict[str, float]:
    """From the growth of `sample`'s counters: each process in % of one core, and the machine
    in % of all its cores."""
    out = {
        key.removeprefix("cpu_s.") + "_cpu_pct": round(100 * value / window_s, 1)
        for key, value in counted.items()
        if key.startswith("cpu_s.") and window_s > 0
    }
    if counted.get("machine_all_s"):
        out["machine_busy_pct"] = round(100 * counted["machine_busy_s"] / counted["machine_all_s"], 1)
    return out
