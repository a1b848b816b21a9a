"""`python -m bench ports`: ports created per second through the Network API.

The harness starts a fabric of its own, makes one network with a /16 subnet, and creates N ports
on it with C requests in flight, as `openstack port create` does; every one takes an address
from the pool under the subnet's lock. It reports ports/s and latency, and checks that no address
was handed out twice (`duplicate_ips`, which must be 0).
"""

import asyncio
import time
from typing import Any

from bench.cloud import Credentials, own_fabric
from bench.stats import Record
from fabric.client import ApiError
from fabric.config import Settings


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    async with own_fabric(settings, hash_cost="minimal") as creds:
        return await _measure(args, creds)


async def _measure(args: Any, creds: Credentials) -> dict[str, Any]:
    async with creds.client(connections=args.concurrency + 4) as client:
        url = f"{client.endpoint('network')}/v2.0"
        _, _, net = await client.request("POST", f"{url}/networks", {"network": {"name": "bench"}})
        network_id = net["network"]["id"]
        subnet = {"network_id": network_id, "cidr": "10.200.0.0/16", "enable_dhcp": False}
        await client.request("POST", f"{url}/subnets", {"subnet": subnet})
        assert client.token is not None and client.token.project_id is not None
        quota = {"quota": {"port": -1}}
        await client.request("PUT", f"{url}/quotas/{client.token.project_id}", quota)
        record = Record()
        addresses: list[str] = []
        left = args.ports

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                started = time.perf_counter()
                try:
                    _, _, made = await client.request(
                        "POST", f"{url}/ports", {"port": {"network_id": network_id}}, expect=(201,)
                    )
                except ApiError as exc:
                    record.fail(f"HTTP {exc.status}")
                    continue
                record.add(time.perf_counter() - started)
                addresses.append(made["port"]["fixed_ips"][0]["ip_address"])

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - began
    summary = record.summary()
    return {
        "bench": "ports",
        "ports": args.ports,
        "concurrency": args.concurrency,
        "ports_per_s": round(record.ops / elapsed, 1) if elapsed else 0.0,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
        "duplicate_ips": len(addresses) - len(set(addresses)),
        "errors": sum(record.errors.values()),
        "errors_by_kind": dict(record.errors),
        "seconds": round(elapsed, 2),
    }
