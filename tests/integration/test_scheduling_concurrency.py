"""Two schedulers, 50 simulated hosts of mixed sizes, 1,000 concurrent boots until the fleet is
full: no host is ever over-committed, every server ends ACTIVE or ERROR with NoValidHost, and
once they are all deleted no allocation is left.

One scheduler runs in this process with the rest of the cloud, the other as its own process
(`fabric service scheduler`), so placements race across processes as they would across hosts.
"""

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from actors.compute_agent.agent import ComputeAgent
from actors.compute_agent.fake_driver import FakeDriver
from fabric.client import Client
from fabric.compose import Cloud
from fabric.config import Settings
from tests.support import (
    FABRIC,
    Processes,
    can_manage_rabbitmq,
    fabric_env,
    free_port,
    isolated,
    messages_handled,
)

pytestmark = [pytest.mark.postgres, pytest.mark.amqp, pytest.mark.timeout(600)]

HOSTS = 50
SHAPES = "4:8192:100,8:16384:200,16:32768:400"  # vCPU limits 16/32/64 at the default ratio 4
BOOTS = 1000
CONCURRENCY = 64
FLAVORS = ((1, 512, 1), (1, 2048, 10), (2, 4096, 20), (4, 8192, 40))


async def wait_for_hosts(client: Client, count: int) -> None:
    for _ in range(200):
        if len([h for h in await client.compute.hypervisors() if h["state"] == "up"]) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} hosts reported")


async def boot_all(client: Client, image: str, flavors: list[str]) -> list[str]:
    rng = random.Random(7)
    picks = [rng.choice(flavors) for _ in range(BOOTS)]
    assert client.token is not None
    url = f"{client.endpoint('compute')}/servers"
    headers = {"X-Auth-Token": client.token.id, "Content-Type": "application/json"}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for flavor in picks:
        queue.put_nowait(flavor)
    ids: list[str] = []

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            flavor = queue.get_nowait()
            body = {"server": {"name": f"c-{uuid.uuid4().hex[:6]}", "imageRef": image, "flavorRef": flavor}}
            async with http.post(url, data=orjson.dumps(body), headers=headers) as resp:
                answer = await resp.json()
                assert resp.status == 202, answer
                ids.append(answer["server"]["id"])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
    return ids


async def settle(client: Client, ids: list[str], *, timeout_s: float = 240) -> dict[str, Any]:
    """Every server's final body, once none is in BUILD."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        servers = {s.id: s for s in await client.compute.list_servers()}
        building = [i for i in ids if servers[i].status == "BUILD" or servers[i].task_state is not None]
        if not building:
            return {i: servers[i] for i in ids}
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(building)} servers still building, e.g. {servers[building[0]].raw}")
        await asyncio.sleep(0.5)


async def overcommitted(db: asyncpg.Connection) -> list[Any]:
    """Hosts whose allocations exceed their limits, counted two ways: the running totals the
    claims keep, and the sum of the allocation rows themselves."""
    return await db.fetch(
        """SELECT h.host FROM scheduler.hosts h
             LEFT JOIN (SELECT host, sum(vcpus) v, sum(ram_mb) r, sum(disk_gb) d
                          FROM scheduler.allocations GROUP BY host) a USING (host)
            WHERE h.used_vcpus > h.vcpus_limit OR h.used_ram_mb > h.ram_mb_limit
               OR h.used_disk_gb > h.disk_gb_limit
               OR coalesce(a.v, 0) <> h.used_vcpus OR coalesce(a.r, 0) <> h.used_ram_mb
               OR coalesce(a.v, 0) > h.vcpus_limit OR coalesce(a.r, 0) > h.ram_mb_limit"""
    )


def agents_overcommitted(cloud: Cloud, settings: Settings) -> list[str]:
    """Hosts whose guests, as the fake hypervisors hold them, exceed capacity × ratio."""
    bad = []
    for sup in cloud.supervisors:
        if isinstance(sup.actor, ComputeAgent):
            for host in sup.actor.hosts.values():
                driver = host.driver
                assert isinstance(driver, FakeDriver)
                guests = driver._guests.values()
                total = driver.resources()
                if (
                    sum(g.spec.vcpus for g in guests) > total.vcpus * settings.cpu_allocation_ratio
                    or sum(g.spec.ram_mb for g in guests) > total.ram_mb * settings.ram_allocation_ratio
                ):
                    bad.append(host.name)
    return bad


async def test_two_schedulers_never_overcommit_a_full_fleet(settings: Settings, tmp_path: Path) -> None:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    async with isolated(settings, "concurrency", tmp_path / "state") as own:
        own = replace(
            own,
            gateway_port=free_port(),
            compute_driver="none",
            fake_hosts=HOSTS,
            fake_host_shapes=SHAPES,
            capacity_report_interval_s=2.0,
        )
        processes = Processes(tmp_path)
        async with Cloud(own) as cloud:
            metrics_port = free_port()
            second = [str(FABRIC), "service", "scheduler", "--metrics-port", str(metrics_port)]
            processes.start("scheduler-2", second, fabric_env(own))
            try:
                async with Client.for_admin(own) as client:
                    assert client.token is not None
                    await client.compute.set_quotas(client.token.project_id, instances=-1, cores=-1, ram=-1)
                    await wait_for_hosts(client, HOSTS)
                    image = await client.image.create("concurrency", visibility="public")
                    await client.image.upload(image["id"], b"\0" * 1024)
                    flavors = [
                        (await client.compute.create_flavor(f"c{v}-{r}", vcpus=v, ram=r, disk=d))["id"]
                        for v, r, d in FLAVORS
                    ]
                    ids = await boot_all(client, image["id"], flavors)
                    servers = await settle(client, ids)
                    # Both schedulers placed servers (the queue hands requests to each in turn).
                    assert await messages_handled(metrics_port, "scheduler.PlaceServer") > 100
                    outcomes = Counter(s.status for s in servers.values())
                    assert set(outcomes) <= {"ACTIVE", "ERROR"}, outcomes
                    assert outcomes["ERROR"] > 0, "the fleet never filled up: make the test boot more"
                    for s in servers.values():
                        if s.status == "ERROR":
                            assert s.fault and "No valid host was found" in s.fault["message"], s.raw
                    db = await asyncpg.connect(own.database_url)
                    try:
                        assert await overcommitted(db) == []
                        assert agents_overcommitted(cloud, own) == []
                        allocated = await db.fetchval("SELECT count(*) FROM scheduler.allocations")
                        assert allocated == outcomes["ACTIVE"]
                        print(
                            f"\n{outcomes['ACTIVE']} ACTIVE, {outcomes['ERROR']} NoValidHost on {HOSTS} hosts"
                        )

                        sem = asyncio.Semaphore(CONCURRENCY)

                        async def delete(server_id: str) -> None:
                            async with sem:
                                await client.compute.delete_server(server_id)

                        await asyncio.gather(*(delete(i) for i in ids))
                        for _ in range(600):
                            if not await client.compute.list_servers():
                                break
                            await asyncio.sleep(0.2)
                        assert await client.compute.list_servers() == []
                        assert await db.fetchval("SELECT count(*) FROM scheduler.allocations") == 0
                        used = await db.fetchval(
                            """SELECT sum(used_vcpus + used_ram_mb + used_disk_gb + allocations)
                                 FROM scheduler.hosts"""
                        )
                        assert used == 0
                    finally:
                        await db.close()
                    assert "Traceback" not in processes.log_of("scheduler-2")
            finally:
                processes.stop_all()
