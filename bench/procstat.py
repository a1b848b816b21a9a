"""CPU time and memory of the fabric's processes, sampled through a run.

A throughput figure means little without what it cost: the report carries, for each process
the harness started (and the processes those started), and for the PostgreSQL and RabbitMQ
servers it uses when they run on this machine, CPU seconds used during the run and memory over
time, with its peak. Sampled from /proc every `interval_s` (Linux only; elsewhere the figures
are absent), in a thread: a sample reads a few hundred /proc files (PostgreSQL's backends'
`smaps_rollup` are slow to make), 20–30 ms that would otherwise stop the load generator's event
loop each time and add themselves to every request in flight.

Memory is the proportional set size (PSS): resident memory with each shared page divided among
the processes sharing it, so that figures of many processes (PostgreSQL's backends share its
buffers) add up to what they really hold together, where plain RSS would count shared pages
once per process.
"""

import asyncio
import os
import threading
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


def pss_mib(pid: int) -> float | None:
    """Proportional set size of `pid` in MiB (its RSS where PSS cannot be read), or None."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return rss_mib(pid)


def shared_services(database_url: str | None = None) -> dict[str, int]:
    """PIDs of the PostgreSQL postmaster (from its data directory's postmaster.pid, asked of
    the server when `database_url` is given and we may) and of RabbitMQ's Erlang VM (by its
    command name), when they run on this machine. Read only: nothing is ever signalled."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    found["rabbitmq"] = int(entry.name)
                    break
            except OSError:
                continue
    if database_url:
        pid = _postmaster(database_url)
        if pid:
            found["postgres"] = pid
    return found


def _postmaster(database_url: str) -> int | None:
    import asyncpg  # only here: procstat is otherwise plain /proc reading

    async def data_directory() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("SHOW data_directory"))
        finally:
            await conn.close()

    try:
        directory = asyncio.run(data_directory())
        return int((Path(directory) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError, asyncpg.PostgresError):
        return None  # not a superuser, or the server is elsewhere


def process_tree() -> dict[int, list[int]]:
    """Each process's children, by parent PID: one walk of /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int, children: Mapping[int, list[int]] | None = None) -> list[int]:
    """`pid` and every process below it (a `fabric up` that forks helpers counts them too)."""
    tree = process_tree() if children is None else children
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


@dataclass
class Sampler:
    """Samples the named processes until stopped; `summary()` gives the report's figures."""

    pids: Mapping[str, int]
    interval_s: float = 1.0
    t: list[float] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=dict)
    cpu_pct: dict[str, list[float]] = field(default_factory=dict)
    #: CPU seconds each process has used in the run so far, by name.
    _cpu_used: dict[str, float] = field(default_factory=dict)
    #: Each process's CPU seconds at the last sample, by PID: a backend that exits takes its
    #: seconds with it, so the run's CPU is the sum of each process's own increases.
    _pid_cpu: dict[int, float] = field(default_factory=dict)
    _began: float = 0.0
    #: The sampling thread and a last sample taken on the loop must not interleave.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _read(self, pid: int, tree: Mapping[int, list[int]], first: bool) -> tuple[float, float] | None:
        """(PSS MiB, CPU seconds used since the last sample) of the process and its descendants.
        A process first seen after the first sample started during the run: all its CPU counts."""
        total_rss = used = 0.0
        seen = False
        for each in descendants(pid, tree):
            rss, cpu = pss_mib(each), process_seconds(each)
            if rss is None or cpu is None:
                continue
            seen = True
            total_rss += rss
            last = self._pid_cpu.get(each)
            if last is not None and cpu >= last:
                used += cpu - last
            elif not first:  # new, or a new process under a recycled PID
                used += cpu
            self._pid_cpu[each] = cpu
        return (total_rss, used) if seen else None

    def sample(self) -> None:
        with self._lock:
            self._sample(process_tree())

    def _sample(self, tree: Mapping[int, list[int]]) -> None:
        now = time.perf_counter()
        first = not self.t
        if first:
            self._began = now
        step = now - self._began - (self.t[-1] if self.t else 0.0)
        self.t.append(round(now - self._began, 2))
        for name, pid in self.pids.items():
            rss, used = self._read(pid, tree, first) or (0.0, 0.0)
            self.rss.setdefault(name, []).append(round(rss, 1))
            self.cpu_pct.setdefault(name, []).append(round(100 * used / step, 1) if step > 0 else 0.0)
            self._cpu_used[name] = self._cpu_used.get(name, 0.0) + used

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval_s)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "cpu_s": round(self._cpu_used.get(name, 0.0), 2),
                "peak_rss_mib": max(self.rss.get(name, [0.0])),
            }
            for name in self.pids
        }

    def series(self) -> dict[str, object]:
        return {"t": self.t, "rss_mib": self.rss, "cpu_pct": self.cpu_pct}
