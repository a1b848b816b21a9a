"""CPU time and memory of the fabric's processes, sampled through a run.

A throughput figure means little without what it cost: the report carries, for each process
the harness started (and the processes those started), and for the PostgreSQL and RabbitMQ
servers it uses when they run on this machine, CPU seconds used during the run and memory over
time, with its peak. Sampled from /proc every `interval_s` (Linux only; elsewhere the figures
are absent). Memory is the proportional set size (PSS): resident memory with each shared page
divided among the processes sharing it, so that figures of many processes (PostgreSQL's
backends share its buffers) add up to what they really hold together, where plain RSS would
count shared pages once per process.
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
        """(PSS MiB, CPU seconds) of the process and its descendants."""
        total_rss = total_cpu = 0.0
        seen = False
        for each in descendants(pid):
            rss, cpu = pss_mib(each), process_seconds(each)
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
