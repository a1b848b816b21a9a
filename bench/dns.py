"""`python -m bench dns`: recordsets created per second through the DNS API, and how long each
takes, from the API's 202, to answer on the cloud's PowerDNS.

The harness starts a fabric of its own (its PowerDNS on a free loopback port), lifts the
project's DNS quotas, makes Z zones and creates N A recordsets spread over them with C requests
in flight, as `openstack recordset create --type A --record IP ZONE. NAME` does. After each 202
it asks PowerDNS for the name until the answer carries the record: that is `visible`.

With `--query-records M` it then fills one more zone with M records (through the API, in the
same way) and measures the queries per second PowerDNS answers for random names of that zone
with Debian's `dnsperf` (`--query-seconds`, 4 clients): the check that the `pdns` views are
indexed (a scan would fall to a few queries per second at 100,000 records).
"""

import asyncio
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cloud import Credentials, free_port, own_fabric
from bench.stats import Record
from fabric.client import ApiError, Client
from fabric.config import Settings
from fabric.powerdns import resolve

#: How long one record may take to answer before it counts as an error.
VISIBLE_TIMEOUT_S = 10.0


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    port = free_port()
    extra = {
        "FABRIC_DNS_ADDRESS": "127.0.0.1",
        "FABRIC_DNS_PORT": str(port),
        "FABRIC_FAKE_HOSTS": "0",
        "FABRIC_NETWORK_AGENT": "false",
        "FABRIC_VOLUME_AGENT": "false",
    }
    # `split`: PowerDNS, the DNS service and the gateway each in a process of their own (the
    # deployment layout: the gateway and the service no longer share one event loop).
    split = ("identity", "powerdns", "dns") if args.layout == "split" else ()
    async with own_fabric(settings, hash_cost="minimal", extra_env=extra, split=split) as creds:
        return await _measure(args, creds, port) | {"layout": args.layout}


async def _measure(args: Any, creds: Credentials, port: int) -> dict[str, Any]:
    async with creds.client(connections=args.concurrency + 8) as client:
        assert client.token is not None and client.token.project_id is not None
        api = f"{client.endpoint('dns')}/v2"
        unlimited = {"zones": -1, "zone_recordsets": -1, "recordset_records": -1}
        await client.request("PATCH", f"{api}/quotas/{client.token.project_id}", unlimited)
        zones = [await _zone(client, api, f"bench{i}.example.") for i in range(args.zones)]
        accept, visible = Record(), Record()
        began = time.perf_counter()
        await _fill(client, api, port, zones, args.records, args.concurrency, accept, visible)
        seconds = time.perf_counter() - began
        a, v = accept.summary(), visible.summary()
        result: dict[str, Any] = {
            "bench": "dns",
            "zones": args.zones,
            "records": args.records,
            "concurrency": args.concurrency,
            "records_per_s": round(accept.ops / seconds, 1) if seconds else 0.0,
            "accept_p50_ms": a["p50_ms"],
            "accept_p99_ms": a["p99_ms"],
            "visible_p50_ms": v["p50_ms"],
            "visible_p99_ms": v["p99_ms"],
            "visible_max_ms": v["max_ms"],
            "errors": sum(accept.errors.values()) + sum(visible.errors.values()),
            "errors_by_kind": dict(accept.errors) | dict(visible.errors),
            "seconds": round(seconds, 2),
        }
        if args.query_records:
            result |= await _queries(client, api, port, args)
    return result


async def _zone(client: Client, api: str, name: str) -> tuple[str, str]:
    _, _, zone = await client.request(
        "POST", f"{api}/zones", {"name": name, "email": "bench@example.org"}, expect=(202,)
    )
    return zone["id"], zone["name"]


async def _fill(
    client: Client,
    api: str,
    port: int,
    zones: list[tuple[str, str]],
    count: int,
    concurrency: int,
    accept: Record,
    visible: Record | None,
) -> list[str]:
    """`count` A recordsets over `zones`, `concurrency` at a time (each timed into `accept`,
    and into `visible` when given); returns their names."""
    made: list[str] = []
    left = iter(range(count))

    async def worker() -> None:
        for i in left:
            zone_id, zone_name = zones[i % len(zones)]
            name, address = f"h{i}.{zone_name}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            body = {"name": name, "type": "A", "records": [address]}
            started = time.perf_counter()
            try:
                await client.request("POST", f"{api}/zones/{zone_id}/recordsets", body, expect=(202,))
            except ApiError as exc:
                accept.fail(f"HTTP {exc.status}")
                continue
            accepted = time.perf_counter()
            accept.add(accepted - started)
            made.append(name)
            if visible is not None:
                await _until_answered(port, name, address, accepted, visible)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return made


async def _until_answered(port: int, name: str, address: str, accepted: float, visible: Record) -> None:
    while (await resolve("127.0.0.1", port, name, "A")) != ("NOERROR", [address]):
        if time.perf_counter() - accepted > VISIBLE_TIMEOUT_S:
            visible.fail("not answered")
            return
        await asyncio.sleep(0.001)
    visible.add(time.perf_counter() - accepted)


async def _queries(client: Client, api: str, port: int, args: Any) -> dict[str, Any]:
    """Queries per second from dnsperf against a zone of `args.query_records` records."""
    if shutil.which("dnsperf") is None:
        return {"query_error": "dnsperf is not installed (scripts/setup.sh installs it)"}
    zone = await _zone(client, api, "big.example.")
    filled = Record()
    began = time.perf_counter()
    names = await _fill(client, api, port, [zone], args.query_records, args.concurrency, filled, None)
    fill_s = time.perf_counter() - began
    sample = random.Random(1).sample(names, min(len(names), 10_000))
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as work:
        queries = Path(work) / "queries"
        queries.write_text("".join(f"{name} A\n" for name in sample))
        command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
                   "-l", str(args.query_seconds), "-c", "4", "-q", "64"]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=args.query_seconds + 60
        )
    qps = re.search(r"Queries per second:\s+([\d.]+)", done.stdout)
    if qps is None:
        return {"query_error": f"dnsperf: {done.stdout[-500:]} {done.stderr[-500:]}"}
    lost = re.search(r"Queries lost:\s+(\d+)", done.stdout)
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+)", done.stdout)
    return {
        "query_zone_records": len(names),
        "query_fill_s": round(fill_s, 1),
        "queries_per_s": float(qps.group(1)),
        "queries_lost": int(lost.group(1)) if lost else None,
        "query_avg_latency_ms": round(float(latency.group(1)) * 1000, 2) if latency else None,
    }
