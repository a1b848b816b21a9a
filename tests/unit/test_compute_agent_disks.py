"""The compute agent's disk commands on the in-memory bus, over the fake driver; and the pure
functions that make and read a libvirt domain's disks.

What the agent casts back to the `compute` queue is what the compute service's attach saga
consumes, so each test reads those answers as compute would: `DiskAttached` with the device,
`DiskAttachFailed` / `DiskDetachFailed` with a reason a user can read, `DiskDetached` also when
nothing was attached. A stand-in on the `compute` queue records them (and answers the agent's
start-up `SyncGuests` with an empty fleet).
"""

import asyncio
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from actors.compute_agent import domain_xml as dx
from actors.compute_agent.agent import ComputeAgent, HostConfig
from actors.compute_agent.fake_driver import FakeDriver
from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from fabric.virt import (
    AttachFailed,
    DetachFailed,
    GuestDisk,
    GuestSpec,
    HostResources,
    ImageFile,
    SpawnFailed,
)
from protocol import compute_agent as wire
from protocol.envelope import Context
from protocol.storage import Connection
from tests.unit.compute_stand_in import Answer, ComputeStandIn

HOST = "host-1"
IMAGE = ImageFile(image_id="img", location="img", checksum="", size=0, disk_format="qcow2")


def ctx() -> Context:
    return Context(request_id=f"req-{uuid.uuid4().hex[:8]}", deadline=time.time() + 5)


def volume(kind: str = "file", device: str | None = None, *, is_root: bool = False) -> GuestDisk:
    volume_id = str(uuid.uuid4())
    return GuestDisk(
        volume_id=volume_id,
        attachment_id=str(uuid.uuid4()),
        connection=Connection(
            driver_volume_type=kind, data={"path": f"/volumes/{volume_id}.qcow2", "format": "qcow2"}
        ),
        device=device,
        is_root=is_root,
    )


def spec(
    server_id: str, *, root_image: ImageFile | None = IMAGE, disks: tuple[GuestDisk, ...] = ()
) -> GuestSpec:
    return GuestSpec(
        server_id=server_id, name="vm", vcpus=1, ram_mb=64, disk_gb=1, root_image=root_image, disks=disks
    )


class StubbornGuests(FakeDriver):
    """A host whose guests never let go of a disk (a guest without ACPI hot-unplug)."""

    async def detach_disk(self, server_id: str, volume_id: str, timeout_s: float) -> None:
        self._guest(server_id)
        raise DetachFailed(f"the guest did not release the disk within {timeout_s:g} s")


@dataclass
class Agent:
    bus: Bus
    driver: FakeDriver
    compute: ComputeStandIn

    async def send(self, message: object) -> Answer:
        await self.bus.cast(wire.host_queue(HOST), message, ctx())
        return await asyncio.wait_for(self.compute.answers.get(), timeout=5)

    async def console(self, server_id: str) -> list[str]:
        return (await self.driver.console_output(server_id, 10_000)).splitlines()


async def running(driver: FakeDriver) -> AsyncIterator[Agent]:
    broker = MemoryBroker()
    buses = [Bus(broker.transport(), retry_pause_s=0.01) for _ in range(2)]
    for bus in buses:
        await bus.start()
    compute = ComputeStandIn(buses[0])
    agent = ComputeAgent(buses[1], [HostConfig(name=HOST, driver=driver)], queue=wire.host_queue(HOST))
    tasks = [asyncio.create_task(compute.run(drain_s=0.2)), asyncio.create_task(agent.run(drain_s=0.2))]
    await asyncio.wait_for(compute.synced.wait(), timeout=5)
    try:
        yield Agent(buses[0], driver, compute)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bus in buses:
            await bus.close(drain_s=0.2)


def fake_host(cls: type[FakeDriver] = FakeDriver) -> FakeDriver:
    return cls(host=HOST, resources=HostResources(vcpus=8, ram_mb=8192, disk_gb=100))


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    async for made in running(fake_host()):
        yield made


async def test_attach_answers_the_device_and_the_guest_sees_the_serial(agent: Agent) -> None:
    server_id = str(uuid.uuid4())
    await agent.driver.spawn(spec(server_id))
    disk = volume()

    answer = await agent.send(wire.AttachDisk(host=HOST, server_id=server_id, disk=disk))
    assert answer == wire.DiskAttached(
        host=HOST,
        server_id=server_id,
        volume_id=disk.volume_id,
        attachment_id=disk.attachment_id,
        device="vdb",
    )
    assert (await agent.console(server_id))[-1] == f"DISK vdb serial={disk.volume_id[:20]}"

    # Redelivered: the same answer, and nothing plugged twice.
    again = await agent.send(wire.AttachDisk(host=HOST, server_id=server_id, disk=disk))
    assert again == answer
    assert sum(line.startswith("DISK ") for line in await agent.console(server_id)) == 1

    second = await agent.send(wire.AttachDisk(host=HOST, server_id=server_id, disk=volume(device="/dev/vdf")))
    assert isinstance(second, wire.DiskAttached) and second.device == "vdf"  # the hint, free


async def test_attach_failures_say_why(agent: Agent) -> None:
    missing = str(uuid.uuid4())
    answer = await agent.send(wire.AttachDisk(host=HOST, server_id=missing, disk=volume()))
    assert isinstance(answer, wire.DiskAttachFailed) and answer.server_id == missing
    assert answer.reason == "the hypervisor has no such guest"

    server_id = str(uuid.uuid4())
    await agent.driver.spawn(spec(server_id))
    disk = volume(kind="iscsi")
    answer = await agent.send(wire.AttachDisk(host=HOST, server_id=server_id, disk=disk))
    assert isinstance(answer, wire.DiskAttachFailed) and answer.attachment_id == disk.attachment_id
    assert "'iscsi' is not supported" in answer.reason
    assert await agent.driver.console_output(server_id, 10_000) == "FABRIC-GUEST-BOOTED hostname=vm\n"


async def test_detach_answers_detached_also_when_nothing_was_attached(agent: Agent) -> None:
    server_id = str(uuid.uuid4())
    await agent.driver.spawn(spec(server_id))
    disk = volume()
    await agent.send(wire.AttachDisk(host=HOST, server_id=server_id, disk=disk))

    detach = wire.DetachDisk(
        host=HOST, server_id=server_id, volume_id=disk.volume_id, attachment_id=disk.attachment_id
    )
    expected = wire.DiskDetached(
        host=HOST, server_id=server_id, volume_id=disk.volume_id, attachment_id=disk.attachment_id
    )
    assert await agent.send(detach) == expected
    assert (await agent.console(server_id))[-1] == "DISK vdb removed"
    assert await agent.send(detach) == expected  # redelivered
    # The guest is gone (deleted meanwhile): no guest holds the disk, so it is detached.
    await agent.driver.destroy(server_id)
    assert await agent.send(detach) == expected

    # Detached, the target is free again.
    await agent.driver.spawn(spec(server_id))
    answer = await agent.send(wire.AttachDisk(host=HOST, server_id=server_id, disk=volume()))
    assert isinstance(answer, wire.DiskAttached) and answer.device == "vdb"


async def test_a_guest_that_keeps_the_disk_fails_the_detach_with_the_reason() -> None:
    async for agent in running(fake_host(StubbornGuests)):
        server_id = str(uuid.uuid4())
        await agent.driver.spawn(spec(server_id))
        disk = volume()
        await agent.send(wire.AttachDisk(host=HOST, server_id=server_id, disk=disk))
        answer = await agent.send(
            wire.DetachDisk(
                host=HOST,
                server_id=server_id,
                volume_id=disk.volume_id,
                attachment_id=disk.attachment_id,
                timeout_s=0.5,
            )
        )
        assert answer == wire.DiskDetachFailed(
            host=HOST,
            server_id=server_id,
            volume_id=disk.volume_id,
            attachment_id=disk.attachment_id,
            reason="the guest did not release the disk within 0.5 s",
        )


# -- the fake driver's disks, directly ---------------------------------------------------------


async def test_a_fake_guest_boots_from_a_volume() -> None:
    driver = fake_host()
    root, data = volume(kind="fake", is_root=True), volume(kind="fake", device="vdc")
    server_id = str(uuid.uuid4())
    await driver.spawn(spec(server_id, root_image=None, disks=(data, root)))
    console = (await driver.console_output(server_id, 10_000)).splitlines()
    assert console[1:] == [f"DISK vda serial={root.volume_id[:20]}", f"DISK vdc serial={data.volume_id[:20]}"]
    assert await driver.attach_disk(server_id, root) == "vda"  # already there
    assert await driver.attach_disk(server_id, volume()) == "vdb"


async def test_a_fake_guest_has_exactly_one_root_disk() -> None:
    driver = fake_host()
    for bad, reason in (
        (spec(str(uuid.uuid4()), root_image=None), "neither an image nor a root volume"),
        (spec(str(uuid.uuid4()), disks=(volume(is_root=True),)), "not both"),
        (spec(str(uuid.uuid4()), root_image=None, disks=(volume(is_root=True),) * 2), "not two"),
        (spec(str(uuid.uuid4()), disks=(volume(kind="iscsi"),)), "'iscsi' is not supported"),
    ):
        with pytest.raises(SpawnFailed, match=reason):
            await driver.spawn(bad)
    assert await driver.guests() == {}


async def test_a_fake_guest_runs_out_of_targets() -> None:
    driver = fake_host()
    server_id = str(uuid.uuid4())
    await driver.spawn(spec(server_id))
    targets = [await driver.attach_disk(server_id, volume()) for _ in range(25)]
    assert targets == [f"vd{chr(c)}" for c in range(ord("b"), ord("z") + 1)]
    with pytest.raises(AttachFailed, match="no free disk target"):
        await driver.attach_disk(server_id, volume())


# -- domain XML for volumes (pure) ------------------------------------------------------------


def test_a_file_volume_is_a_virtio_disk_with_the_volume_id_as_serial() -> None:
    disk = volume()
    disk = GuestDisk(
        volume_id=disk.volume_id,
        attachment_id=disk.attachment_id,
        connection=Connection(driver_volume_type="file", data={"path": "/v/a.qcow2", "format": "qcow2"}),
    )
    element = ET.fromstring(dx.disk_xml(dx.VolumeDisk(disk=disk, target="vdc", cache="none")))
    assert (element.tag, element.get("type"), element.get("device")) == ("disk", "file", "disk")
    assert element.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "none"}
    assert element.find("source").attrib == {"file": "/v/a.qcow2"}
    assert element.find("target").attrib == {"dev": "vdc", "bus": "virtio"}
    assert element.findtext("serial") == disk.volume_id
    raw = dx.disk_xml(dx.VolumeDisk(disk=_with(disk, {"path": "/v/b", "format": "raw"}), target="vdb"))
    assert '<driver name="qemu" type="raw" />' in raw  # no cache mode: qemu's default


def _with(disk: GuestDisk, data: dict[str, str], kind: str = "file") -> GuestDisk:
    return GuestDisk(
        volume_id=disk.volume_id,
        attachment_id=disk.attachment_id,
        connection=Connection(driver_volume_type=kind, data=data),
    )


@pytest.mark.parametrize(
    ("kind", "data", "target", "reason"),
    [
        ("iscsi", {"path": "/v/a", "format": "raw"}, "vdb", "connection type 'iscsi' is not supported"),
        ("fake", {"path": "/v/a", "format": "raw"}, "vdb", "connection type 'fake' is not supported"),
        ("file", {"format": "raw"}, "vdb", "no absolute path"),
        ("file", {"path": "relative/a", "format": "raw"}, "vdb", "no absolute path"),
        ("file", {"path": "/v/a", "format": "vmdk"}, "vdb", "format 'vmdk' is not one of qcow2, raw"),
        ("file", {"path": "/v/a"}, "vdb", "format '' is not one of"),
        ("file", {"path": "/v/a", "format": "raw"}, "sda", "'sda' is not a virtio disk target"),
    ],
)
def test_a_disk_libvirt_could_not_open_is_refused_by_name(
    kind: str, data: dict[str, str], target: str, reason: str
) -> None:
    with pytest.raises(dx.BadDisk, match=reason):
        dx.disk_element(dx.VolumeDisk(disk=_with(volume(), data, kind), target=target))


def test_a_serial_libvirt_would_refuse_is_refused() -> None:
    disk = GuestDisk(
        volume_id="a/b<c>",
        attachment_id="x",
        connection=Connection(driver_volume_type="file", data={"path": "/v/a", "format": "raw"}),
    )
    with pytest.raises(dx.BadDisk, match="cannot be a disk serial"):
        dx.disk_element(dx.VolumeDisk(disk=disk, target="vdb"))


def test_targets_take_the_hint_when_free_else_the_first_free() -> None:
    assert dx.choose_target(None, {"vda"}) == "vdb"
    assert dx.choose_target("vdd", {"vda"}) == "vdd"
    assert dx.choose_target("/dev/vdd", {"vda"}) == "vdd"
    assert dx.choose_target("vdb", {"vda", "vdb"}) == "vdc"
    assert dx.choose_target("sdb", {"vda"}) == "vdb"
    with pytest.raises(dx.BadDisk, match="no free disk target"):
        dx.choose_target(None, set(dx.DISK_TARGETS))


def test_spawn_volumes_put_the_root_volume_first_as_vda() -> None:
    root, data, hinted = volume(is_root=True), volume(), volume(device="vde")
    placed = dx.spawn_volumes(spec("s", root_image=None, disks=(data, root, hinted)), [None, "none", None])
    assert [(v.disk, v.target, v.cache) for v in placed] == [
        (data, "vdb", None),
        (root, "vda", "none"),
        (hinted, "vde", None),
    ]
    with pytest.raises(dx.BadDisk, match="neither an image nor a root volume"):
        dx.spawn_volumes(spec("s", root_image=None, disks=(data,)), [None])
    with pytest.raises(dx.BadDisk, match="not both"):
        dx.spawn_volumes(spec("s", disks=(root,)), [None])


def test_a_domain_booted_from_a_volume_has_it_as_vda_first() -> None:
    root, data = volume(is_root=True), volume()
    guest = spec("s", root_image=None, disks=(data, root))
    xml = dx.domain_xml(
        guest,
        domain_type="qemu",
        host=HOST,
        disk=None,
        console=dx.Path("/i/console.log"),
        kernel=None,
        ramdisk=None,
        volumes=dx.spawn_volumes(guest, [None, None]),
    )
    domain = ET.fromstring(xml)
    assert domain.find("features/acpi") is not None  # PCI hot-plug needs it
    disks = domain.findall("devices/disk")
    assert [(d.findtext("serial"), d.find("target").get("dev")) for d in disks] == [
        (root.volume_id, "vda"),
        (data.volume_id, "vdb"),
    ]
    assert dx.attached_disks(xml) == {root.volume_id: "vda", data.volume_id: "vdb"}
    assert dx.used_targets(xml) == {"vda", "vdb"}
