"""CPU time and memory of the fabric's processes, sampled through a run.

A throughput figure means little without what it cost: the report carries, for each process
the harness started (and the processes those started), CPU seconds used during the run and
the resident set size over time, with its peak. Sampled from /proc every `interval_s` (Linux
only; elsewhere the figures are absent). RSS is what the process holds in RAM now, shared
libraries included, so figures of several processes add up to a little more than they use.
"""

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import process_seconds

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def rss_mib(pid: int) -> float | None:
    """Resident set size of `pid` in MiB, or None when it is gone."""
    try:
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * PAGE_KIB / 1024


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a `fabric up` that forks helpers counts them too)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


@dataclass
class Sampler:
    """Samples the named processes until stopped; `summary()` gives the report's figures."""

    pids: Mapping[str, int]
    interval_s: float = 0.5
    t: list[float] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=dict)
    cpu_pct: dict[str, list[float]] = field(default_factory=dict)
    _cpu_first: dict[str, float] = field(default_factory=dict)
    _cpu_last: dict[str, float] = field(default_factory=dict)
    _began: float = 0.0

    def _read(self, name: str, pid: int) -> tuple[float, float] | None:
        """(RSS MiB, CPU seconds) of the process and its descendants."""
        total_rss = total_cpu = 0.0
        seen = False
        for each in descendants(pid):
            rss, cpu = rss_mib(each), process_seconds(each)
            if rss is None or cpu is None:
                continue
            seen = True
            total_rss += rss
            total_cpu += cpu
        return (total_rss, total_cpu) if seen else None

    def sample(self) -> None:
        now = time.perf_counter()
        if not self.t:
            self._began = now
        step = now - self._began - (self.t[-1] if self.t else 0.0)
        self.t.append(round(now - self._began, 2))
        for name, pid in self.pids.items():
            read = self._read(name, pid)
            rss, cpu = read if read is not None else (0.0, self._cpu_last.get(name, 0.0))
            self.rss.setdefault(name, []).append(round(rss, 1))
            previous = self._cpu_last.get(name)
            pct = 100 * (cpu - previous) / step if previous is not None and step > 0 else 0.0
            self.cpu_pct.setdefault(name, []).append(round(pct, 1))
            self._cpu_first.setdefault(name, cpu)
            self._cpu_last[name] = cpu

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "cpu_s": round(self._cpu_last.get(name, 0.0) - self._cpu_first.get(name, 0.0), 2),
                "peak_rss_mib": max(self.rss.get(name, [0.0])),
            }
            for name in self.pids
        }

    def series(self) -> dict[str, object]:
        return {"t": self.t, "rss_mib": self.rss, "cpu_pct": self.cpu_pct}
