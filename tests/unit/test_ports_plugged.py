"""A guest with NICs starts only once its host's network agent has plumbed for its ports
(`PlugPorts`), on the in-memory bus.

The race this closes: a convergence already under way with a state fetched before the port was
bound (when the network had no guest on the host, so its bridge looked unused) removes the bridge
the new guest is joining, and libvirt fails the spawn with "Cannot get interface MTU on brq…".
The network agent here converges through a recording stand-in for the kernel; a stand-in network
service answers `GetHostNetworking` from the ports a test has bound.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from actors.compute_agent import agent as compute_agent
from actors.compute_agent.agent import ComputeAgent, HostConfig
from actors.compute_agent.fake_driver import FakeDriver
from actors.network_agent.agent import NetworkAgent
from actors.network_agent.converge import Report
from fabric.actor import Actor, handles
from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from fabric.service import service_context
from fabric.virt import HostResources, ImageFile
from protocol import compute_agent as wire
from protocol.envelope import Context
from protocol.network import QUEUE as NETWORK
from protocol.network_agent import (
    GetHostNetworking,
    HostNetworking,
    NetworkPlumbing,
    PlugPorts,
    PortPlumbing,
    PortsPlugged,
    network_agent_queue,
)
from tests.unit.compute_stand_in import ComputeStandIn

HOST = "host-1"
NETWORK_ID = "net-1"
IMAGE = ImageFile(image_id="img", location="img", checksum="", size=0, disk_format="qcow2")


class NetworkStandIn(Actor):
    """The network service as agents see it: the host's state holds the ports bound so far."""

    service = "network"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, queue=NETWORK)
        self.bound: list[str] = []

    @handles(GetHostNetworking)
    async def host_networking(self, msg: GetHostNetworking, ctx: Context) -> HostNetworking:
        ports = tuple(
            PortPlumbing(
                port_id=p,
                network_id=NETWORK_ID,
                mac="fa:16:3e:00:00:01",
                ips=(),
                port_security=False,
                rules=(),
            )
            for p in self.bound
        )
        network = NetworkPlumbing(network_id=NETWORK_ID, mtu=1500, external=False, subnets=(), leases=())
        return HostNetworking(
            host=msg.host,
            generation=len(self.bound),
            outside_namespace="fabric-outside",
            networks=(network,) if ports else (),
            routers=(),
            ports=ports,
        )


@dataclass
class Kernel:
    """Records each state converged to; `hold` keeps a convergence running until released."""

    converged: list[HostNetworking] = field(default_factory=list)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    began: asyncio.Event = field(default_factory=asyncio.Event)

    async def converge(self, state: HostNetworking, state_dir: Path) -> Report:
        self.began.set()
        await self.hold.wait()
        self.converged.append(state)
        return Report(generation=state.generation, actions=(), errors=(), duration_s=0.0)


@dataclass
class Host:
    bus: Bus
    network: NetworkStandIn
    kernel: Kernel
    compute: ComputeStandIn
    driver: FakeDriver


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    """A host with a compute agent (fake guests, real networking: not simulated) and a network
    agent, beside stand-ins for the network and compute services."""
    broker = MemoryBroker()
    buses = [Bus(broker.transport(), retry_pause_s=0.01) for _ in range(4)]
    for bus in buses:
        await bus.start()
    network, compute, kernel = NetworkStandIn(buses[0]), ComputeStandIn(buses[0]), Kernel()
    driver = FakeDriver(host=HOST, resources=HostResources(vcpus=8, ram_mb=8192, disk_gb=100))
    actors: list[Actor] = [
        network,
        compute,
        NetworkAgent(buses[1], host=HOST, state_dir=tmp_path, resync_s=3600, converge=kernel.converge),
        ComputeAgent(buses[2], [HostConfig(name=HOST, driver=driver)], queue=wire.host_queue(HOST)),
    ]
    tasks = [asyncio.create_task(a.run(drain_s=0.2)) for a in actors]
    await asyncio.wait_for(compute.synced.wait(), timeout=5)
    await asyncio.wait_for(kernel.began.wait(), timeout=5)  # the agent's first convergence, held
    try:
        yield Host(buses[3], network, kernel, compute, driver)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bus in buses:
            await bus.close(drain_s=0.2)


def spawn(port_id: str) -> wire.SpawnGuest:
    nic = wire.Nic(port_id=port_id, network_id=NETWORK_ID, mac="fa:16:3e:00:00:01")
    return wire.SpawnGuest(
        host=HOST,
        server_id=str(uuid.uuid4()),
        name="vm",
        vcpus=1,
        ram_mb=64,
        disk_gb=1,
        root_image=IMAGE,
        nics=(nic,),
    )


def ctx() -> Context:
    return Context(request_id=f"req-{uuid.uuid4().hex[:8]}", deadline=time.time() + 5)


async def test_a_plug_waits_for_a_convergence_that_began_after_it(host: Host) -> None:
    # The agent's first convergence fetched the host's state before the port was bound.
    host.network.bound.append("port-1")
    asking = asyncio.create_task(
        host.bus.call(network_agent_queue(HOST), PlugPorts(port_ids=("port-1",)), service_context())
    )
    await asyncio.sleep(0.2)
    assert not asking.done(), "answered while a convergence to an older state was still running"
    host.kernel.hold.set()
    plugged: PortsPlugged = await asyncio.wait_for(asking, timeout=5)
    assert plugged.missing == ()
    assert [len(s.ports) for s in host.kernel.converged] == [0, 1]


async def test_a_plug_names_the_ports_the_host_does_not_have(host: Host) -> None:
    host.kernel.hold.set()
    host.network.bound.append("port-1")
    ask = PlugPorts(port_ids=("port-1", "port-2"))
    plugged: PortsPlugged = await host.bus.call(network_agent_queue(HOST), ask, service_context())
    assert plugged.missing == ("port-2",)


async def test_a_plug_is_for_services_only(host: Host) -> None:
    host.kernel.hold.set()
    member = Context(request_id="req-member", roles=("member",), deadline=time.time() + 5)
    with pytest.raises(Exception, match="plug_ports"):
        await host.bus.call(network_agent_queue(HOST), PlugPorts(port_ids=("port-1",)), member)


async def test_a_guest_with_nics_starts_after_its_ports_are_plugged(host: Host) -> None:
    host.network.bound.append("port-1")
    message = spawn("port-1")
    await host.bus.cast(wire.host_queue(HOST), message, ctx())
    await asyncio.sleep(0.2)
    assert message.server_id not in await host.driver.guests(), "spawned before the ports were plugged"
    host.kernel.hold.set()
    answer = await asyncio.wait_for(host.compute.answers.get(), timeout=5)
    assert isinstance(answer, wire.GuestSpawned), answer
    assert message.server_id in await host.driver.guests()


async def test_a_guest_whose_port_is_not_bound_here_fails_saying_so(host: Host) -> None:
    host.kernel.hold.set()
    message = spawn("port-9")
    await host.bus.cast(wire.host_queue(HOST), message, ctx())
    answer = await asyncio.wait_for(host.compute.answers.get(), timeout=5)
    assert isinstance(answer, wire.GuestSpawnFailed), answer
    assert answer.reason == f"port(s) port-9 are not bound to host {HOST}"
    assert message.server_id not in await host.driver.guests()


async def test_a_guest_fails_saying_so_when_no_network_agent_answers(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compute_agent, "PLUG_TIMEOUT_S", 0.5)  # the held convergence never ends
    message = spawn("port-1")
    await host.bus.cast(wire.host_queue(HOST), message, ctx())
    answer = await asyncio.wait_for(host.compute.answers.get(), timeout=5)
    assert isinstance(answer, wire.GuestSpawnFailed), answer
    assert "the network agent of host host-1 did not plug the ports" in answer.reason
    assert "is it running?" in answer.reason
