"""What upstream's processes cost during a `bench run` against it, added to that run's result.

`bench run` samples CPU and memory only for a fabric it started itself: against another cloud
its result has no `processes` and a `peak_rss_mib` of 0. This fills them in for upstream, the
same way (`bench.procstat`: CPU seconds and PSS of each process and its descendants, and of the
PostgreSQL and RabbitMQ servers), so that `bench compare` lines them up with ours:

    python bench/upstream/cost.py wrap --pids .cache/upstream/pids --result R.json -- \\
        python -m bench run boot-and-delete --target upstream --save R.json ...
    python bench/upstream/cost.py totals R.json        # ours and upstream's alike

`wrap` runs the command while it samples, every 0.5 s, the process of each pid file, PostgreSQL's
postmaster and RabbitMQ's VM. It keeps the samples inside the run's measured window: from
`started_at`, which has whole seconds, taken as its middle, for `seconds`, so within about 0.5 s.
It exits with the command's status. The figures it adds are those `bench run` records for ours:
`processes.NAME.cpu_s` and `peak_rss_mib`, and `samples`. nova-compute is left out of the peak,
as ours' simulated fleet is: both stand for the hosts, not the control plane.

`totals` adds `control_plane_cpu_s`, the CPU seconds of every process but the hosts' (`fleet`,
`nova-compute`), and `control_plane_cpu_per_iteration_ms`, that divided by the iterations done.
Run with the project's venv (it uses `bench.procstat`).
"""

import argparse
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.cpu import process_seconds
from bench.procstat import pss_mib, shared_services

#: What stands for the hosts rather than the control plane, on either side.
HOSTS = ("fleet", "nova-compute")
INTERVAL_S = 0.5
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def children() -> dict[int, list[int]]:
    """Every process's children, from one pass over /proc."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            found.setdefault(ppid, []).append(int(entry.name))
    return found


def read(pid: int, tree: dict[int, list[int]]) -> tuple[float, float] | None:
    """(PSS MiB, CPU seconds) of `pid` and its descendants, or None when it is gone."""
    pss = cpu = 0.0
    seen = False
    todo = [pid]
    while todo:
        each = todo.pop()
        todo.extend(tree.get(each, ()))
        m, c = pss_mib(each), process_seconds(each)
        if m is None or c is None:
            continue
        seen, pss, cpu = True, pss + m, cpu + c
    return (pss, cpu) if seen else None


def sample(pids: dict[str, int], done: threading.Event, into: list[tuple[float, dict[str, Any]]]) -> None:
    while not done.is_set():
        tree = children()
        into.append((time.time(), {name: read(pid, tree) for name, pid in pids.items()}))
        done.wait(INTERVAL_S)


def wrap(pids_dir: Path, result_path: Path, command: list[str]) -> int:
    pids = {p.stem: int(p.read_text().split()[0]) for p in sorted(pids_dir.glob("*.pid"))}
    pids |= shared_services(DATABASE_URL)
    samples: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()
    sampler = threading.Thread(target=sample, args=(pids, done, samples), daemon=True)
    sampler.start()
    try:
        status = subprocess.call(command)
    finally:
        done.set()
        sampler.join()
    if not result_path.is_file():
        return status
    result = orjson.loads(result_path.read_bytes())
    start = datetime.strptime(result["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    start += 0.5  # started_at is truncated to the second
    window = [(t, s) for t, s in samples if start <= t <= start + float(result["seconds"])]
    if len(window) < 2:
        window = samples  # a run shorter than two samples: all there is
    processes: dict[str, dict[str, float]] = {}
    rss: dict[str, list[float]] = {name: [] for name in pids}
    for name in pids:
        seen = [s[name] for _, s in window if s.get(name) is not None]
        for _, s in window:
            rss[name].append(round(s[name][0], 1) if s.get(name) else 0.0)
        if seen:
            processes[name] = {
                "cpu_s": round(seen[-1][1] - seen[0][1], 2),
                "peak_rss_mib": round(max(m for m, _ in seen), 1),
            }
    series = [values for name, values in rss.items() if name not in HOSTS]
    result["processes"] = processes
    result["peak_rss_mib"] = round(max((sum(at) for at in zip(*series, strict=True)), default=0.0), 1)
    t0 = window[0][0] if window else 0.0
    result["samples"] = {"t": [round(t - t0, 2) for t, _ in window], "rss_mib": rss, "cpu_pct": {}}
    result_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return status


def totals(result_path: Path) -> None:
    result = orjson.loads(result_path.read_bytes())
    cpu = sum(p.get("cpu_s", 0.0) for name, p in result.get("processes", {}).items() if name not in HOSTS)
    result["control_plane_cpu_s"] = round(cpu, 2)
    done = result.get("iterations_done") or 0
    if done:
        result["control_plane_cpu_per_iteration_ms"] = round(cpu * 1000 / done, 2)
    result_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("wrap", help="run a `bench run` and add upstream's processes to its result")
    w.add_argument("--pids", type=Path, required=True, help="up.sh's pid directory")
    w.add_argument("--result", type=Path, required=True, help="the file the run saves (--save)")
    w.add_argument("command", nargs=argparse.REMAINDER, help="-- the command")
    t = sub.add_parser("totals", help="add the control plane's CPU totals to a result")
    t.add_argument("result", type=Path)
    args = parser.parse_args(argv)
    if args.what == "wrap":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("wrap needs a command after --")
        return wrap(args.pids, args.result, command)
    totals(args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
