"""`python -m bench boot`: N servers on H simulated hosts, booted through the gateway at
concurrency C, as users would boot them, end to end.

The harness starts a fabric of its own (`fabric up` with H fake hosts in one process), lifts the
admin project's quotas, and runs C workers; each one boots a server and polls it until ACTIVE,
then takes the next. It reports how long the API took to accept each create (`accept_*`), how
long each server took from the request to ACTIVE (`active_*`), servers/s over the whole run,
and placements/s from the allocations' own timestamps. Then it deletes every server and checks
the invariants in the database: no host over its limits (`overcommitted_hosts`) and no
allocation left behind (`leaked_allocations`).
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench import cpu
from bench.cloud import Credentials, own_fabric
from bench.invariants import OVERCOMMITTED_HOSTS
from bench.stats import Record, nearest_rank
from bench.steps import Watcher
from fabric.client import ApiError, Client, ServerFailed
from fabric.config import Settings

log = logging.getLogger("bench")

#: How often the watcher polls for changed servers (the resolution of the active_* figures).
POLL_S = 0.05


@dataclass
class Run:
    accept: Record = field(default_factory=Record)
    active: Record = field(default_factory=Record)
    ids: list[str] = field(default_factory=list)


def percentiles(record: Record, prefix: str) -> dict[str, float]:
    ordered = sorted(record.latencies_us)
    return {
        f"{prefix}_p{name}_ms": round(nearest_rank(ordered, q) / 1000, 3)
        for name, q in (("50", 50.0), ("95", 95.0), ("99", 99.0))
    }


async def wait_for_fleet(client: Client, hosts: int, *, prefix: str = "", timeout_s: float = 300) -> float:
    """Seconds until `hosts` hosts (named `prefix`...) are up in os-hypervisors. The short list,
    not the detail one: at 10,000 hosts each poll would otherwise carry every host's figures."""
    began = time.perf_counter()
    while True:
        _, _, body = await client.request("GET", f"{client.compute.url}/os-hypervisors")
        listed = body["hypervisors"]
        up = sum(1 for h in listed if h["state"] == "up" and h["hypervisor_hostname"].startswith(prefix))
        if up >= hosts:
            return time.perf_counter() - began
        if time.perf_counter() - began > timeout_s:
            raise RuntimeError(f"only {up} of {hosts} hosts reported within {timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def boot_one(client: Client, watcher: Watcher, run: Run, image: str, flavor: str) -> None:
    began = time.perf_counter()
    try:
        server = await client.compute.create_server(
            f"bench-{uuid.uuid4().hex[:8]}", image=image, flavor=flavor
        )
    except ApiError as exc:
        run.accept.fail(f"HTTP {exc.status}")
        return
    run.accept.add(time.perf_counter() - began)
    run.ids.append(server.id)
    try:
        await asyncio.wait_for(watcher.until(server.id, "ACTIVE"), timeout=120)
    except ServerFailed as exc:
        run.active.fail((exc.server.fault or {}).get("message", "ERROR")[:60])
        return
    except TimeoutError:
        run.active.fail("not ACTIVE in 120 s")
        return
    run.active.add(time.perf_counter() - began)


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    extra = {
        "FABRIC_FAKE_HOSTS": str(args.hosts),
        "FABRIC_CAPACITY_REPORT_INTERVAL_S": "30",
        "FABRIC_HOST_TTL_S": "120",
    }
    async with own_fabric(settings, hash_cost="minimal", extra_env=extra) as creds:
        return await _measure(args, creds)


async def _measure(args: Any, creds: Credentials) -> dict[str, Any]:
    async with creds.client(connections=args.concurrency + 8) as client:
        assert client.token is not None
        assert client.token.project_id is not None
        await client.compute.set_quotas(client.token.project_id, instances=-1, cores=-1, ram=-1)
        register_s = await wait_for_fleet(client, args.hosts)
        log.info("%d hosts up after %.1f s", args.hosts, register_s)
        image = await client.image.create("bench-boot", visibility="public")
        await client.image.upload(image["id"], b"\0" * 4096)
        flavor = next(f for f in await client.compute.list_flavors() if f["name"] == "m1.tiny")["id"]

        result = Run()
        left = args.servers
        watcher = Watcher(client, POLL_S)
        watching = asyncio.create_task(watcher.run())
        before = cpu.sample(creds.pids)

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await boot_one(client, watcher, result, image["id"], flavor)

        began = time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        finally:
            watching.cancel()
        elapsed = time.perf_counter() - began
        after = cpu.sample(creds.pids)
        log.info("%d servers in %.1f s; deleting them", result.active.ops, elapsed)

        db = await asyncpg.connect(creds.database_url)
        try:
            span = await db.fetchrow(
                """SELECT count(*) AS n, extract(epoch FROM max(created_at) - min(created_at)) AS s
                     FROM scheduler.allocations"""
            )
            overcommitted = await db.fetchval(OVERCOMMITTED_HOSTS)
            await _delete_all(client, result.ids, args.concurrency)
            leaked = await db.fetchval("SELECT count(*) FROM scheduler.allocations")
        finally:
            await db.close()

    placements = int(span["n"]) if span else 0
    window = float(span["s"] or 0.0) if span else 0.0
    busy = {k: round(100 * (after[k] - before.get(k, 0.0)) / elapsed, 1) for k in after}
    return {
        "bench": "boot",
        "hosts": args.hosts,
        "servers": args.servers,
        "concurrency": args.concurrency,
        "servers_per_s": round(result.active.ops / elapsed, 1) if elapsed else 0.0,
        **percentiles(result.accept, "accept"),
        **percentiles(result.active, "active"),
        "placements_per_s": round(placements / window, 1) if window > 0 else 0.0,
        "overcommitted_hosts": int(overcommitted),
        "leaked_allocations": int(leaked),
        "errors": sum(result.accept.errors.values()) + sum(result.active.errors.values()),
        "errors_by_kind": dict(result.accept.errors + result.active.errors),
        "fleet_register_s": round(register_s, 2),
        "seconds": round(elapsed, 2),
        "poll_ms": POLL_S * 1000,
        "cpu_pct": busy,
    }


async def _delete_all(client: Client, ids: list[str], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def delete(server_id: str) -> None:
        async with gate:
            await client.compute.delete_server(server_id)
            await client.compute.wait(server_id, "DELETED", timeout_s=120)

    await asyncio.gather(*(delete(i) for i in ids))
