"""`python -m bench place`: the scheduler alone, R replicas placing N servers on H hosts.

The harness plays the rest of the cloud: it publishes one capacity report per host on the real
bus (what H compute agents would send), then sends N `PlaceServer` calls with C in flight, as
the compute service would, and measures placements/s and each call's latency. The schedulers
are real `fabric service scheduler` processes on a private database and vhost; afterwards the
database says whether any host went over its limits (`overcommitted_hosts`, which must be 0).
"""

import asyncio
import logging
import os
import random
import tempfile
import time
import uuid
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import asyncpg

from bench import cpu
from bench.child import child
from bench.cloud import fabric_command, with_database
from bench.invariants import OVERCOMMITTED_HOSTS as OVERCOMMITTED
from bench.rabbit import private_vhost, why_no_vhost
from bench.stats import Record
from fabric.bus import Bus
from fabric.bus.amqp import AmqpTransport
from fabric.config import Settings
from fabric.store import drop_database
from protocol.envelope import Context
from protocol.errors import FabricError
from protocol.scheduler import QUEUE, CapacityReport, PlaceServer, Resources

log = logging.getLogger("bench")

#: Every simulated host's size; flavors are drawn from FLAVORS.
HOST = {"vcpus": 64, "ram_mb": 262144, "disk_gb": 4000}
FLAVORS = (Resources(vcpus=1, ram_mb=512, disk_gb=1), Resources(vcpus=2, ram_mb=4096, disk_gb=20))


def context() -> Context:
    return Context(request_id=f"req-{uuid.uuid4()}", deadline=time.time() + 60)


def reports(hosts: int) -> list[CapacityReport]:
    now = time.time()
    return [
        CapacityReport(
            host=f"place-{i:05d}",
            queue="compute.fleet.bench",
            hypervisor_type="fake",
            availability_zone="nova",
            used_vcpus=0,
            used_ram_mb=0,
            used_disk_gb=0,
            running=0,
            sent_at=now,
            **HOST,
        )
        for i in range(hosts)
    ]


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    why = why_no_vhost(settings.amqp_url)
    if why is not None:
        raise RuntimeError(f"cannot make a private RabbitMQ vhost: {why}")
    database_url = with_database(settings.database_url, f"fabric_place_{os.getpid()}")
    with ExitStack() as stack:
        amqp_url = stack.enter_context(private_vhost(settings.amqp_url))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-place-")))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "OS_"))}
        env |= {
            "FABRIC_CONFIG": "/dev/null",
            "FABRIC_DATABASE_URL": database_url,
            "FABRIC_AMQP_URL": amqp_url,
            "FABRIC_STATE_DIR": str(work / "state"),
            "FABRIC_HOST_TTL_S": "3600",
            "FABRIC_LOG_LEVEL": "WARNING",
        }
        await drop_database(database_url)
        try:
            async with AsyncExitStack() as procs:
                pids = {}
                for i in range(1, args.schedulers + 1):
                    proc = await procs.enter_async_context(
                        child(
                            f"scheduler #{i}",
                            [*fabric_command(), "service", "scheduler"],
                            ready="scheduler serving",
                            env=env,
                            log_path=work / f"scheduler-{i}.log",
                        )
                    )
                    pids[f"scheduler{i}"] = proc.pid
                bus = Bus(AmqpTransport(amqp_url, name="bench-place"))
                await bus.start()
                try:
                    return await _measure(args, bus, database_url, pids)
                finally:
                    await bus.close()
        finally:
            await drop_database(database_url)


async def _wait_for_hosts(database_url: str, hosts: int) -> float:
    began = time.perf_counter()
    db = await asyncpg.connect(database_url)
    try:
        while await db.fetchval("SELECT count(*) FROM scheduler.hosts") < hosts:
            if time.perf_counter() - began > 120:
                raise RuntimeError("the schedulers did not record every host's report")
            await asyncio.sleep(0.1)
    finally:
        await db.close()
    return time.perf_counter() - began


async def _measure(args: Any, bus: Bus, database_url: str, pids: dict[str, int]) -> dict[str, Any]:
    ctx = context()
    began = time.perf_counter()
    await asyncio.gather(*(bus.publish(r, ctx) for r in reports(args.hosts)))
    registered_s = await _wait_for_hosts(database_url, args.hosts)
    await asyncio.sleep(1.0)  # every replica has heard every report, not just the one that wrote it
    log.info("%d hosts registered in %.2f s", args.hosts, time.perf_counter() - began)

    rng = random.Random(1)
    record = Record()
    left = args.placements

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            msg = PlaceServer(server_id=str(uuid.uuid4()), project_id="bench", resources=rng.choice(FLAVORS))
            started = time.perf_counter()
            try:
                await bus.call(QUEUE, msg, context(), timeout_s=30)
            except FabricError as exc:
                record.fail(type(exc).__name__)
                continue
            record.add(time.perf_counter() - started)

    before = cpu.sample(pids)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - began
    after = cpu.sample(pids)

    db = await asyncpg.connect(database_url)
    try:
        overcommitted = await db.fetchval(OVERCOMMITTED)
        allocations = await db.fetchval("SELECT count(*) FROM scheduler.allocations")
    finally:
        await db.close()
    summary = record.summary()
    return {
        "bench": "place",
        "hosts": args.hosts,
        "schedulers": args.schedulers,
        "placements": args.placements,
        "concurrency": args.concurrency,
        "placements_per_s": round(record.ops / elapsed, 1) if elapsed else 0.0,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
        "overcommitted_hosts": int(overcommitted),
        "allocations": int(allocations),
        "errors": sum(record.errors.values()),
        "errors_by_kind": dict(record.errors),
        "hosts_registered_s": round(registered_s, 2),
        "seconds": round(elapsed, 2),
        "cpu_pct": {k: round(100 * (after[k] - before.get(k, 0.0)) / elapsed, 1) for k in after},
    }
