"""Processes die mid-saga: a compute agent while it spawns, a scheduler while it claims. Servers
must still end ACTIVE or ERROR with a fault, never stay in BUILD, and no allocation may leak.

The victims run as their own processes (`fabric service ...`) and are killed with SIGKILL, so
nothing they held in memory survives; the rest of the cloud runs in this process.
"""

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fabric.client import Client
from fabric.compose import ACTORS, Cloud
from fabric.config import Settings
from tests.support import FABRIC, Processes, can_manage_rabbitmq, fabric_env, free_port, isolated

pytestmark = [pytest.mark.postgres, pytest.mark.amqp, pytest.mark.timeout(300)]


@dataclass
class Rig:
    cloud: Cloud
    client: Client
    settings: Settings
    processes: Processes
    db: asyncpg.Connection
    image: str
    flavor: str

    async def allocations(self) -> dict[str, str]:
        rows = await self.db.fetch("SELECT server_id, host FROM scheduler.allocations")
        return {r["server_id"]: r["host"] for r in rows}

    async def boot(self, name: str) -> str:
        return (await self.client.compute.create_server(name, image=self.image, flavor=self.flavor)).id

    async def task_of(self, server_id: str) -> str | None:
        server = await self.client.compute.get_server(server_id)
        assert server is not None
        return server.task_state


@pytest.fixture
async def rig(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> AsyncIterator[Rig]:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    overrides: dict[str, Any] = dict(request.param)
    # The actor the test kills runs as its own process; the rest of the cloud runs here.
    separate = overrides.pop("separate")
    in_process = [name for name in ACTORS if name != separate]
    async with isolated(settings, "faults", tmp_path / "state") as own:
        own = replace(own, gateway_port=free_port(), saga_step_timeout_s=2.0, **overrides)
        processes = Processes(tmp_path)
        async with Cloud(own, services=in_process) as cloud:
            try:
                async with Client.for_admin(own) as client:
                    assert client.token is not None
                    await client.compute.set_quotas(client.token.project_id, instances=-1, cores=-1, ram=-1)
                    image = await client.image.create("faults", visibility="public")
                    await client.image.upload(image["id"], b"\0" * 1024)
                    flavor = await client.compute.create_flavor("faults", vcpus=1, ram=256, disk=1)
                    db = await asyncpg.connect(own.database_url)
                    try:
                        yield Rig(cloud, client, own, processes, db, image["id"], flavor["id"])
                    finally:
                        await db.close()
            finally:
                processes.stop_all()


def start_agent(rig: Rig, name: str) -> Any:
    env = fabric_env(rig.settings, FABRIC_FAKE_SPAWN_LATENCY_S="3", FABRIC_CAPACITY_REPORT_INTERVAL_S="0.5")
    args = [str(FABRIC), "service", "compute-agent", "--host", "fault-host", "--driver", "fake"]
    return rig.processes.start(name, args, env)


async def until(what: str, check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    "rig", [{"compute_driver": "none", "fake_hosts": 0, "separate": "compute-agent"}], indirect=True
)
async def test_an_agent_killed_mid_spawn_spawns_again_when_back(rig: Rig) -> None:
    agent = start_agent(rig, "agent-1")

    async def host_up() -> bool:
        return any(h["state"] == "up" for h in await rig.client.compute.hypervisors())

    await until("the agent's first report", host_up)
    server_id = await rig.boot("spawn-killed")

    async def spawning() -> bool:
        return await rig.task_of(server_id) == "spawning"

    await until("the spawn to start", spawning)
    await asyncio.sleep(0.5)  # inside the 3 s the fake spawn takes
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    start_agent(rig, "agent-2")
    server = await rig.client.compute.wait(server_id, "ACTIVE", timeout_s=60)
    assert server is not None and server.host == "fault-host"
    assert await rig.allocations() == {server_id: "fault-host"}

    # The fake hypervisor forgets its guests when it dies: on its return the agent reports the
    # guest missing, and the server goes to ERROR with a fault rather than pretending to run.
    for proc in rig.processes.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    start_agent(rig, "agent-3")
    failed = await rig.client.compute.wait(server_id, "ERROR", timeout_s=60)
    assert failed is not None and failed.fault and "missing" in failed.fault["message"]
    await rig.client.compute.delete_server(server_id)
    await rig.client.compute.wait(server_id, "DELETED", timeout_s=60)
    assert await rig.allocations() == {}


@pytest.mark.parametrize(
    "rig", [{"compute_driver": "none", "fake_hosts": 5, "separate": "scheduler"}], indirect=True
)
async def test_a_scheduler_killed_mid_claim_leaks_nothing(rig: Rig) -> None:
    scheduler = rig.processes.start(
        "scheduler-1", [str(FABRIC), "service", "scheduler"], fabric_env(rig.settings)
    )

    async def hosts_up() -> bool:
        return len([h for h in await rig.client.compute.hypervisors() if h["state"] == "up"]) == 5

    await until("the fleet's reports", hosts_up)
    ids = await asyncio.gather(*(rig.boot(f"claim-{i}") for i in range(40)))
    scheduler.send_signal(signal.SIGKILL)
    scheduler.wait()
    await asyncio.sleep(1)
    rig.processes.start("scheduler-2", [str(FABRIC), "service", "scheduler"], fabric_env(rig.settings))
    outcomes = {}
    for server_id in ids:
        deadline = time.monotonic() + 90
        while True:
            server = await rig.client.compute.get_server(server_id)
            assert server is not None
            if server.status in ("ACTIVE", "ERROR") and server.task_state is None:
                outcomes[server_id] = server
                break
            assert time.monotonic() < deadline, f"{server_id} stuck: {server.raw}"
            await asyncio.sleep(0.2)
    active = {i for i, s in outcomes.items() if s.status == "ACTIVE"}
    for server in outcomes.values():
        if server.status == "ERROR":
            assert server.fault, server.raw
    allocations = await rig.allocations()
    assert set(allocations) == active  # an allocation for each running server, and no other
    assert all(allocations[i] == outcomes[i].host for i in active)
    await asyncio.gather(*(rig.client.compute.delete_server(i) for i in ids))
    for server_id in ids:
        await rig.client.compute.wait(server_id, "DELETED", timeout_s=60)
    assert await rig.allocations() == {}
