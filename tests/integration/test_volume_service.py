"""The volume service on the real bus and database, with volume agents on the fake backend.

Callers speak to the `volume` queue as the gateway and compute do, each with its own project's
context. Every module-level test places its volumes in an availability zone of its own, served
by a volume agent this module runs, so that storage hosts other tests start and stop never
receive them. The reaper's tests run a cloud of their own with short step timeouts.
"""

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.volume.actor import Volume
from actors.volume_agent.agent import VolumeAgent
from actors.volume_agent.fake_backend import FakeBackend
from fabric.bus import Bus
from fabric.bus.amqp import AmqpTransport
from fabric.client import Client
from fabric.compose import Cloud
from fabric.config import Settings
from fabric.store import Store
from protocol.envelope import Context
from protocol.errors import Conflict, Forbidden, Invalid, NotFound, QuotaExceeded
from protocol.system import Done
from protocol.volume import (
    QUEUE,
    AbortDetach,
    AttachmentReserved,
    BeginDetach,
    CompleteAttachment,
    CreateSnapshot,
    CreateVolume,
    CreateVolumeType,
    DeleteSnapshot,
    DeleteVolume,
    DeleteVolumeType,
    ExtendVolume,
    GetSnapshot,
    GetVolume,
    GetVolumeQuotas,
    GetVolumeType,
    ListSnapshots,
    ListVolumes,
    ListVolumeTypes,
    RemoveAttachment,
    ReserveAttachment,
    SetVolumeBootable,
    SetVolumeQuotas,
    SnapshotView,
    UpdateVolume,
    VolumeStatusChanged,
    VolumeView,
)
from protocol.volume_agent import ListExpectedFiles
from tests.support import can_manage_rabbitmq, free_port, isolated

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


def new_id() -> str:
    return str(uuid.uuid4())


@dataclasses.dataclass
class Caller:
    """One user of one project (or an admin), calling the volume service."""

    bus: Bus
    project_id: str = dataclasses.field(default_factory=new_id)
    roles: tuple[str, ...] = ("member",)
    user_id: str = dataclasses.field(default_factory=new_id)
    zone: str | None = None

    def ctx(self) -> Context:
        return Context(
            request_id=f"req-{uuid.uuid4()}",
            user_id=self.user_id,
            project_id=self.project_id,
            roles=self.roles,
            deadline=time.time() + 60,
        )

    async def __call__(self, msg: object) -> Any:
        return await self.bus.call(QUEUE, msg, self.ctx())

    async def create(self, size_gb: int | None = 1, **fields: Any) -> VolumeView:
        fields.setdefault("availability_zone", self.zone)
        created: VolumeView = await self(CreateVolume(volume_id=new_id(), size_gb=size_gb, **fields))
        return created

    async def snapshot(self, volume_id: str, **fields: Any) -> SnapshotView:
        snap: SnapshotView = await self(CreateSnapshot(snapshot_id=new_id(), volume_id=volume_id, **fields))
        return snap

    async def wait(self, volume_id: str, status: str, timeout_s: float = 20.0) -> VolumeView:
        deadline = time.monotonic() + timeout_s
        while True:
            volume: VolumeView = await self(GetVolume(volume_id=volume_id))
            if volume.status == status:
                return volume
            if volume.status.startswith("error") and not status.startswith("error"):
                raise AssertionError(f"volume {volume_id} went to {volume.status}: {volume.error_reason}")
            if time.monotonic() > deadline:
                raise AssertionError(f"volume {volume_id} not {status} in {timeout_s}s: {volume}")
            await asyncio.sleep(0.05)

    async def wait_snapshot(self, snapshot_id: str, status: str, timeout_s: float = 20.0) -> SnapshotView:
        deadline = time.monotonic() + timeout_s
        while True:
            snap: SnapshotView = await self(GetSnapshot(snapshot_id=snapshot_id))
            if snap.status == status:
                return snap
            assert time.monotonic() < deadline, f"snapshot {snapshot_id} not {status}: {snap}"
            await asyncio.sleep(0.05)

    async def wait_gone(self, volume_id: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                await self(GetVolume(volume_id=volume_id))
            except NotFound:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"volume {volume_id} still there after {timeout_s}s")

    async def usage(self) -> dict[str, int]:
        quotas = await self(GetVolumeQuotas(project_id=self.project_id))
        return dict(quotas.in_use)


async def until(what: str, check: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def storage_host(
    bus: Bus, store: Store, host: str, zone: str, backend: FakeBackend | None = None
) -> AsyncIterator[VolumeAgent]:
    """A volume agent on the fake backend, heard by the volume service before it is yielded."""
    agent = VolumeAgent(
        bus, host=host, backend=backend or FakeBackend(), availability_zone=zone, report_interval_s=0.5
    )
    task = asyncio.create_task(agent.run(), name=f"volume-agent:{host}")
    try:

        async def heard() -> bool:
            assert not task.done(), task
            return bool(await store.fetchval("SELECT true FROM volume.hosts WHERE host = $1", host))

        await until(f"the volume service to hear {host}", heard)
        yield agent
    finally:
        agent.request_stop()
        async with asyncio.timeout(10):  # an agent that does not stop is a bug: fail, not hang
            await asyncio.wait({task})
        task.result()  # what the agent raised, if it crashed


@pytest.fixture(scope="module")
async def zone(cloud: Cloud) -> AsyncIterator[str]:
    """This module's availability zone and the one fake storage host in it."""
    assert cloud.bus is not None and cloud.store is not None
    name = f"vs-{uuid.uuid4().hex[:8]}"
    async with storage_host(cloud.bus, cloud.store, name, name):
        yield name


@pytest.fixture
def bus(cloud: Cloud) -> Bus:
    assert cloud.bus is not None
    return cloud.bus


@pytest.fixture
def member(bus: Bus, zone: str) -> Caller:
    return Caller(bus, zone=zone)


@pytest.fixture
def operator(bus: Bus, zone: str) -> Caller:
    """An admin of the volume service (the conftest's `admin` is the admin's HTTP client)."""
    return Caller(bus, roles=("admin", "member"), zone=zone)


# --- volumes -----------------------------------------------------------------------------------


async def test_create_show_list_update_and_delete(member: Caller, zone: str) -> None:
    created = await member.create(2, name="data", description="mine", metadata={"tier": "gold"})
    assert (created.status, created.size_gb, created.availability_zone) == ("creating", 2, zone)
    assert created.volume_type == "__DEFAULT__" and created.host == zone and not created.bootable
    volume = await member.wait(created.id, "available")
    assert volume.error_reason is None and volume.attachments == () and volume.project_id == member.project_id

    # A retried create (the same id) is the same volume, and counts once.
    again = await member(CreateVolume(volume_id=created.id, size_gb=2, availability_zone=zone))
    assert again.id == created.id and again.status == "available"
    assert await member.usage() == {"volumes": 1, "gigabytes": 2, "snapshots": 0, "per_volume_gigabytes": 0}

    other = await member.create(1, name="other")
    listed = await member(ListVolumes())
    assert [v.id for v in listed.items] == [other.id, created.id] and not listed.more  # newest first
    assert [v.id for v in (await member(ListVolumes(name="data"))).items] == [created.id]
    assert [v.id for v in (await member(ListVolumes(metadata={"tier": "gold"}))).items] == [created.id]
    assert (await member(ListVolumes(metadata={"tier": "silver"}))).items == ()
    page = await member(ListVolumes(limit=1))
    assert [v.id for v in page.items] == [other.id] and page.more
    rest = await member(ListVolumes(limit=1, marker=other.id))
    assert [v.id for v in rest.items] == [created.id] and not rest.more
    with pytest.raises(Invalid) as bad_marker:
        await member(ListVolumes(marker=new_id()))
    assert bad_marker.value.field == "marker"

    updated = await member(UpdateVolume(volume_id=created.id, name="renamed", metadata={"a": "b"}))
    assert (updated.name, updated.description, updated.metadata) == ("renamed", "mine", {"a": "b"})
    assert await member(SetVolumeBootable(volume_id=created.id, bootable=True)) == Done()
    assert (await member(ListVolumes(bootable=True))).items[0].id == created.id

    for volume_id in (created.id, other.id):
        await member.wait(volume_id, "available")
        assert await member(DeleteVolume(volume_id=volume_id)) == Done()
    for volume_id in (created.id, other.id):
        await member.wait_gone(volume_id)
    assert (await member(ListVolumes())).items == ()
    assert await member.usage() == {"volumes": 0, "gigabytes": 0, "snapshots": 0, "per_volume_gigabytes": 0}


async def test_every_status_change_is_announced(member: Caller, bus: Bus) -> None:
    heard: list[tuple[str, str]] = []

    async def on_change(event: VolumeStatusChanged, ctx: Context) -> None:
        if event.project_id == member.project_id:
            heard.append((event.volume_id, event.status))

    listener = await bus.subscribe(("volume.VolumeStatusChanged",), on_change)
    try:
        volume = await member.wait((await member.create(1)).id, "available")
        await member(ExtendVolume(volume_id=volume.id, new_size_gb=2))
        await member.wait(volume.id, "available")
        await member(DeleteVolume(volume_id=volume.id))
        await member.wait_gone(volume.id)
        expected = ["creating", "available", "extending", "available", "deleting", "deleted"]

        async def all_heard() -> bool:
            return len(heard) >= len(expected)

        await until("every status change", all_heard)
        assert heard == [(volume.id, status) for status in expected]
    finally:
        await listener.stop()


async def test_a_volume_from_an_image_is_bootable_and_carries_its_metadata(
    member: Caller, admin: Client
) -> None:
    kernel = await admin.image.create(f"k-{uuid.uuid4().hex[:6]}", visibility="public", disk_format="aki")
    image = await admin.image.create(
        f"guest-{uuid.uuid4().hex[:6]}",
        visibility="public",
        disk_format="qcow2",
        min_disk=2,
        min_ram=64,
        kernel_id=kernel["id"],
        os_command_line="console=ttyS0",
    )
    await admin.image.upload(image["id"], b"\x01" * 4096)

    created = await member.create(None, image_id=image["id"])
    assert created.size_gb == 2 and created.bootable  # the least size that holds it: min_disk
    meta = (await member.wait(created.id, "available")).image_metadata
    assert meta["image_id"] == image["id"] and meta["image_name"] == image["name"]
    assert (meta["disk_format"], meta["container_format"], meta["size"]) == ("qcow2", "bare", "4096")
    assert (meta["min_disk"], meta["min_ram"], meta["kernel_id"]) == ("2", "64", kernel["id"])
    assert meta["os_command_line"] == "console=ttyS0" and meta["checksum"]

    # A copy keeps what the original took from its image.
    clone = await member.create(None, source_volume_id=created.id)
    clone = await member.wait(clone.id, "available")
    assert clone.bootable and clone.image_metadata == meta and clone.source_volume_id == created.id

    before = await member.usage()
    with pytest.raises(Invalid) as small:
        await member.create(1, image_id=image["id"])
    assert small.value.field == "size"
    with pytest.raises(Invalid) as unknown:
        await member.create(1, image_id=new_id())
    assert unknown.value.field == "imageRef"
    with pytest.raises(Invalid) as inactive:  # the kernel image has no data: queued
        await member.create(1, image_id=kernel["id"])
    assert inactive.value.field == "imageRef"
    assert await member.usage() == before
    for volume_id in (clone.id, created.id):
        await member(DeleteVolume(volume_id=volume_id))
        await member.wait_gone(volume_id)


async def test_volumes_from_a_snapshot_and_from_a_volume_live_with_their_source(member: Caller) -> None:
    source = await member.wait((await member.create(2)).id, "available")
    snap = await member.snapshot(source.id, name="s1", metadata={"k": "v"})
    assert (snap.status, snap.size_gb, snap.volume_id) == ("creating", 2, source.id)
    await member.wait_snapshot(snap.id, "available")
    assert await member.usage() == {"volumes": 1, "gigabytes": 4, "snapshots": 1, "per_volume_gigabytes": 0}

    from_snapshot = await member.create(None, snapshot_id=snap.id)
    from_volume = await member.create(3, source_volume_id=source.id)
    for made in (from_snapshot, from_volume):
        assert made.host == source.host and made.availability_zone == source.availability_zone
    assert from_snapshot.size_gb == 2 and from_snapshot.snapshot_id == snap.id
    assert from_volume.size_gb == 3 and from_volume.source_volume_id == source.id
    await member.wait(from_snapshot.id, "available")
    await member.wait(from_volume.id, "available")

    with pytest.raises(Invalid) as smaller:
        await member.create(1, snapshot_id=snap.id)
    assert smaller.value.field == "size"
    with pytest.raises(Invalid) as elsewhere:
        await member.create(None, snapshot_id=snap.id, availability_zone="nowhere")
    assert elsewhere.value.field == "availability_zone"
    listed = await member(ListSnapshots(volume_id=source.id))
    assert [s.id for s in listed.items] == [snap.id]

    # A volume cannot be deleted under its snapshots; its snapshot can.
    with pytest.raises(Invalid) as under:
        await member(DeleteVolume(volume_id=source.id))
    assert under.value.field == "cascade"
    assert await member(DeleteSnapshot(snapshot_id=snap.id)) == Done()

    async def snapshot_gone() -> bool:
        return (await member(ListSnapshots(volume_id=source.id))).items == ()

    await until("the snapshot to go", snapshot_gone)
    for volume in (from_snapshot, from_volume, source):
        await member(DeleteVolume(volume_id=volume.id))
    for volume in (from_snapshot, from_volume, source):
        await member.wait_gone(volume.id)
    assert await member.usage() == {"volumes": 0, "gigabytes": 0, "snapshots": 0, "per_volume_gigabytes": 0}


async def test_extend(member: Caller) -> None:
    volume = await member.wait((await member.create(1)).id, "available")
    for size in (1, 0):
        with pytest.raises(Invalid) as not_larger:
            await member(ExtendVolume(volume_id=volume.id, new_size_gb=size))
        assert not_larger.value.field == ("new_size" if size else "body.new_size_gb")  # 0: the codec
    assert await member(ExtendVolume(volume_id=volume.id, new_size_gb=3)) == Done()
    try:
        await member(ExtendVolume(volume_id=volume.id, new_size_gb=4))
    except Invalid as busy:  # still extending: only an available volume extends
        assert busy.field == "status"
    extended = await member.wait(volume.id, "available")
    assert extended.size_gb in (3, 4)
    assert (await member.usage())["gigabytes"] == extended.size_gb

    await member(DeleteVolume(volume_id=volume.id))
    await member.wait_gone(volume.id)


async def test_delete_with_cascade_takes_the_snapshots_first(member: Caller) -> None:
    volume = await member.wait((await member.create(1)).id, "available")
    snaps = [await member.snapshot(volume.id) for _ in range(2)]
    for snap in snaps:
        await member.wait_snapshot(snap.id, "available")
    with pytest.raises(Invalid):
        await member(DeleteVolume(volume_id=volume.id, cascade=False))
    assert await member(DeleteVolume(volume_id=volume.id, cascade=True)) == Done()
    assert await member(DeleteVolume(volume_id=volume.id, cascade=True)) == Done()  # asked again
    await member.wait_gone(volume.id)
    for snap in snaps:
        with pytest.raises(NotFound):
            await member(GetSnapshot(snapshot_id=snap.id))
    assert await member.usage() == {"volumes": 0, "gigabytes": 0, "snapshots": 0, "per_volume_gigabytes": 0}


# --- quotas ------------------------------------------------------------------------------------


async def test_100_concurrent_creates_against_a_quota_of_50_make_exactly_50(
    member: Caller, operator: Caller
) -> None:
    await operator(SetVolumeQuotas(project_id=member.project_id, limits={"volumes": 50, "gigabytes": -1}))
    sizes = [1 + i % 3 for i in range(100)]
    results = await asyncio.gather(*(member.create(size) for size in sizes), return_exceptions=True)
    made = [r for r in results if isinstance(r, VolumeView)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(made) == 50 and len(refused) == 50, [r for r in results if isinstance(r, Exception)][:3]
    assert {r.resource for r in refused} == {"volumes"}
    listed = (await member(ListVolumes())).items
    assert len(listed) == 50
    usage = await member.usage()
    assert usage["volumes"] == 50 and usage["gigabytes"] == sum(v.size_gb for v in listed)

    for volume in made:
        await member.wait(volume.id, "available")
    await asyncio.gather(*(member(DeleteVolume(volume_id=v.id)) for v in made))
    for volume in made:
        await member.wait_gone(volume.id)
    assert await member.usage() == {"volumes": 0, "gigabytes": 0, "snapshots": 0, "per_volume_gigabytes": 0}


async def test_gigabytes_per_volume_and_snapshot_quotas(member: Caller, operator: Caller) -> None:
    limits = {"gigabytes": 10, "per_volume_gigabytes": 3, "snapshots": 1}
    quotas = await operator(SetVolumeQuotas(project_id=member.project_id, limits=limits))
    assert quotas.limits["volumes"] == 10 and quotas.limits["gigabytes"] == 10
    with pytest.raises(QuotaExceeded) as per_volume:
        await member.create(4)
    assert per_volume.value.resource == "per_volume_gigabytes"
    first = await member.wait((await member.create(3)).id, "available")
    second = await member.wait((await member.create(2)).id, "available")
    with pytest.raises(QuotaExceeded) as too_large:  # extending is held to the same limit
        await member(ExtendVolume(volume_id=second.id, new_size_gb=4))
    assert too_large.value.resource == "per_volume_gigabytes"
    await member(ExtendVolume(volume_id=second.id, new_size_gb=3))  # takes 1 more: 6 in all
    await member.wait(second.id, "available")
    snap = await member.snapshot(first.id)  # a snapshot counts its volume's size: 9
    await member.wait_snapshot(snap.id, "available")
    with pytest.raises(QuotaExceeded) as gigabytes:
        await member.create(2)
    assert gigabytes.value.resource == "gigabytes"
    with pytest.raises(QuotaExceeded) as snapshots:
        await member.snapshot(second.id)
    assert snapshots.value.resource == "snapshots"
    assert await member.usage() == {"volumes": 2, "gigabytes": 9, "snapshots": 1, "per_volume_gigabytes": 0}
    with pytest.raises(Invalid):  # below what is in use
        await operator(SetVolumeQuotas(project_id=member.project_id, limits={"volumes": 1}))
    with pytest.raises(Forbidden):
        await member(SetVolumeQuotas(project_id=member.project_id, limits={"volumes": 100}))
    with pytest.raises(NotFound):
        await member(GetVolumeQuotas(project_id=new_id()))
    await member(DeleteVolume(volume_id=first.id, cascade=True))
    await member(DeleteVolume(volume_id=second.id))
    for volume in (first, second):
        await member.wait_gone(volume.id)
    assert await member.usage() == {"volumes": 0, "gigabytes": 0, "snapshots": 0, "per_volume_gigabytes": 0}


async def test_a_create_retried_at_once_on_two_replicas_counts_once(cloud: Cloud, member: Caller) -> None:
    """Replicas of the volume service take the same create at once (a client retrying while the
    first is in flight): one volume, counted once, whichever replica made it. The handlers are
    called directly, as each replica's consumer would: across replicas no in-process lock
    orders them, only the database."""
    assert cloud.bus is not None and cloud.store is not None
    replicas = [Volume(cloud.bus, cloud.store, cloud.settings) for _ in range(2)]
    for replica in replicas:
        await replica.load_hosts()
    made = []
    for _ in range(5):
        msg = CreateVolume(volume_id=new_id(), size_gb=2, availability_zone=member.zone)
        results = await asyncio.gather(*(r.create_volume(msg, member.ctx()) for r in replicas * 2))
        assert {r.id for r in results} == {msg.volume_id}
        made.append(msg.volume_id)
    assert await member.usage() == {"volumes": 5, "gigabytes": 10, "snapshots": 0, "per_volume_gigabytes": 0}
    for volume_id in made:
        await member.wait(volume_id, "available")
        await member(DeleteVolume(volume_id=volume_id))
    for volume_id in made:
        await member.wait_gone(volume_id)


# --- attachments -------------------------------------------------------------------------------


async def test_two_concurrent_attachments_exactly_one_wins_then_detach(member: Caller) -> None:
    volume = await member.wait((await member.create(1)).id, "available")
    first, second = new_id(), new_id()
    results = await asyncio.gather(
        member(ReserveAttachment(attachment_id=first, volume_id=volume.id, server_id=new_id(), host="c1")),
        member(ReserveAttachment(attachment_id=second, volume_id=volume.id, server_id=new_id(), host="c2")),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, AttachmentReserved)]
    lost = [r for r in results if isinstance(r, Invalid)]
    assert len(won) == 1 and len(lost) == 1, results
    reserved = won[0]
    assert reserved.volume.status == "attaching" and reserved.connection.driver_volume_type == "fake"
    server = "c1" if reserved.attachment_id == first else "c2"
    # The same reserve again (compute retrying) is the same attachment.
    again = await member(
        ReserveAttachment(
            attachment_id=reserved.attachment_id, volume_id=volume.id, server_id=new_id(), host=server
        )
    )
    assert again.connection == reserved.connection

    complete = CompleteAttachment(
        attachment_id=reserved.attachment_id, volume_id=volume.id, device="/dev/vdb"
    )
    assert await member(complete) == Done()
    assert await member(complete) == Done()  # compute asking again
    attached = await member(GetVolume(volume_id=volume.id))
    assert attached.status == "in-use"
    [attachment] = attached.attachments
    assert (attachment.attachment_id, attachment.device, attachment.host) == (
        reserved.attachment_id,
        "/dev/vdb",
        server,
    )
    assert attachment.attached_at is not None

    with pytest.raises(Invalid):
        await member(DeleteVolume(volume_id=volume.id))
    with pytest.raises(Invalid) as unforced:
        await member.snapshot(volume.id)
    assert unforced.value.field == "force"
    forced = await member.snapshot(volume.id, force=True)
    await member.wait_snapshot(forced.id, "available")

    assert await member(BeginDetach(attachment_id=reserved.attachment_id, volume_id=volume.id)) == Done()
    assert (await member(GetVolume(volume_id=volume.id))).status == "detaching"
    assert await member(AbortDetach(attachment_id=reserved.attachment_id, volume_id=volume.id)) == Done()
    assert (await member(GetVolume(volume_id=volume.id))).status == "in-use"
    await member(BeginDetach(attachment_id=reserved.attachment_id, volume_id=volume.id))
    assert await member(RemoveAttachment(attachment_id=reserved.attachment_id, volume_id=volume.id)) == Done()
    detached = await member(GetVolume(volume_id=volume.id))
    assert detached.status == "available" and detached.attachments == ()
    # Gone already: Done, as compute may ask again.
    assert await member(RemoveAttachment(attachment_id=reserved.attachment_id, volume_id=volume.id)) == Done()

    await member(DeleteVolume(volume_id=volume.id, cascade=True))
    await member.wait_gone(volume.id)


# --- who sees what -----------------------------------------------------------------------------


async def test_projects_do_not_see_each_others_volumes(member: Caller, operator: Caller, bus: Bus) -> None:
    volume = await member.wait((await member.create(1)).id, "available")
    snap = await member.snapshot(volume.id)
    other = Caller(bus, zone=member.zone)
    for msg in (
        GetVolume(volume_id=volume.id),
        UpdateVolume(volume_id=volume.id, name="mine now"),
        ExtendVolume(volume_id=volume.id, new_size_gb=2),
        DeleteVolume(volume_id=volume.id),
        CreateSnapshot(snapshot_id=new_id(), volume_id=volume.id),
        ReserveAttachment(attachment_id=new_id(), volume_id=volume.id, server_id=new_id(), host="c1"),
        GetSnapshot(snapshot_id=snap.id),
        DeleteSnapshot(snapshot_id=snap.id),
    ):
        with pytest.raises(NotFound):
            await other(msg)
    with pytest.raises(NotFound) as source:
        await other.create(None, source_volume_id=volume.id)
    assert source.value.kind == "source_volid"
    with pytest.raises(NotFound) as snapshot:
        await other.create(None, snapshot_id=snap.id)
    assert snapshot.value.kind == "snapshot_id"
    assert (await other(ListVolumes(all_projects=True))).items == ()  # ignored for non-admins
    assert (await other(ListSnapshots())).items == ()
    everyone = await operator(ListVolumes(all_projects=True))
    assert volume.id in {v.id for v in everyone.items}
    assert [v.id for v in (await operator(ListVolumes(project_id=member.project_id))).items] == [volume.id]
    assert (await member(GetVolume(volume_id=volume.id))).name == volume.name  # unchanged
    await member.wait_snapshot(snap.id, "available")
    await member(DeleteVolume(volume_id=volume.id, cascade=True))
    await member.wait_gone(volume.id)


async def test_a_reader_reads_but_cannot_create(member: Caller, bus: Bus) -> None:
    volume = await member.wait((await member.create(1)).id, "available")
    reader = Caller(bus, project_id=member.project_id, roles=("reader",), zone=member.zone)
    assert (await reader(GetVolume(volume_id=volume.id))).id == volume.id
    for msg in (
        CreateVolume(volume_id=new_id(), size_gb=1),
        DeleteVolume(volume_id=volume.id),
        ExtendVolume(volume_id=volume.id, new_size_gb=2),
        CreateSnapshot(snapshot_id=new_id(), volume_id=volume.id),
        ReserveAttachment(attachment_id=new_id(), volume_id=volume.id, server_id=new_id(), host="c1"),
        CreateVolumeType(type_id=new_id(), name="nope"),
    ):
        with pytest.raises(Forbidden):
            await reader(msg)
    assert await member.usage() == {"volumes": 1, "gigabytes": 1, "snapshots": 0, "per_volume_gigabytes": 0}
    await member(DeleteVolume(volume_id=volume.id))
    await member.wait_gone(volume.id)


# --- bad input ---------------------------------------------------------------------------------


async def test_bad_input_is_refused_naming_the_field_and_leaves_nothing(member: Caller) -> None:
    source = await member.wait((await member.create(1)).id, "available")
    before = await member.usage()
    cases: list[tuple[CreateVolume, type[Exception], str]] = [
        (CreateVolume(volume_id=new_id(), size_gb=0), Invalid, "body.size_gb"),
        (CreateVolume(volume_id=new_id(), size_gb=-1), Invalid, "body.size_gb"),
        (CreateVolume(volume_id=new_id(), size_gb=2**21), Invalid, "body.size_gb"),
        (CreateVolume(volume_id=new_id()), Invalid, "size"),
        (CreateVolume(volume_id="short", size_gb=1), Invalid, "body.volume_id"),
        (CreateVolume(volume_id=new_id(), size_gb=1, volume_type="no-such-type"), NotFound, "volume_type"),
        (CreateVolume(volume_id=new_id(), snapshot_id=new_id()), NotFound, "snapshot_id"),
        (CreateVolume(volume_id=new_id(), source_volume_id=new_id()), NotFound, "source_volid"),
        (
            CreateVolume(volume_id=new_id(), size_gb=1, availability_zone="nowhere"),
            Invalid,
            "availability_zone",
        ),
        (
            CreateVolume(volume_id=new_id(), size_gb=1, snapshot_id=new_id(), source_volume_id=source.id),
            Invalid,
            "source_volid",
        ),
    ]
    for msg, error, field in cases:
        with pytest.raises(error) as refused:
            await member(msg)
        named = getattr(refused.value, "field", None) or getattr(refused.value, "kind", None)
        assert named == field, (msg, refused.value)
        with pytest.raises(NotFound):
            await member(GetVolume(volume_id=msg.volume_id))
    assert await member.usage() == before
    assert [v.id for v in (await member(ListVolumes())).items] == [source.id]
    with pytest.raises(NotFound):
        await member(GetVolume(volume_id=new_id()))
    with pytest.raises(NotFound):
        await member(DeleteVolume(volume_id=new_id()))
    await member(DeleteVolume(volume_id=source.id))
    await member.wait_gone(source.id)


async def test_volume_types_map_volumes_to_backends(member: Caller, operator: Caller) -> None:
    default = await member(GetVolumeType(type_ref="default"))
    assert default.name == "__DEFAULT__" and default.is_default
    with pytest.raises(Forbidden):
        await member(CreateVolumeType(type_id=new_id(), name=f"t-{uuid.uuid4().hex[:6]}"))

    def named(prefix: str, **fields: Any) -> CreateVolumeType:
        return CreateVolumeType(type_id=new_id(), name=f"{prefix}-{uuid.uuid4().hex[:6]}", **fields)

    fake = await operator(named("fake", extra_specs={"volume_backend_name": "fake"}))
    lvm = await operator(named("lvm", extra_specs={"volume_backend_name": "lvm"}))
    hidden = await operator(named("hidden", is_public=False))
    with pytest.raises(Conflict):
        await operator(CreateVolumeType(type_id=new_id(), name=fake.name))
    names = {t.name for t in (await member(ListVolumeTypes())).items}
    assert {fake.name, lvm.name, "__DEFAULT__"} <= names and hidden.name not in names
    assert hidden.name in {t.name for t in (await operator(ListVolumeTypes())).items}
    with pytest.raises(NotFound):
        await member.create(1, volume_type=hidden.name)

    on_fake = await member.wait((await member.create(1, volume_type=fake.name)).id, "available")
    assert on_fake.volume_type == fake.name
    nowhere = await member.create(1, volume_type=lvm.id)
    assert (nowhere.status, nowhere.error_reason) == ("error", "No valid backend was found.")
    assert nowhere.host is None and (await member.usage())["volumes"] == 2  # counted until deleted

    with pytest.raises(Invalid):
        await operator(DeleteVolumeType(type_id=lvm.id))  # in use
    with pytest.raises(Invalid):
        await operator(DeleteVolumeType(type_id=default.id))
    assert await member(DeleteVolume(volume_id=nowhere.id)) == Done()  # an error volume goes
    await member.wait_gone(nowhere.id)
    await member(DeleteVolume(volume_id=on_fake.id))
    await member.wait_gone(on_fake.id)
    for volume_type in (fake, lvm, hidden):
        assert await operator(DeleteVolumeType(type_id=volume_type.id)) == Done()
    with pytest.raises(NotFound):
        await operator(GetVolumeType(type_ref=fake.id))


# --- failures ----------------------------------------------------------------------------------


async def test_a_host_that_lost_its_storage_fails_steps_with_their_reason(cloud: Cloud, bus: Bus) -> None:
    """The agent restarts with an empty fake backend: what the database says it holds is gone.
    Creating from a lost snapshot fails (`error`, the backend's reason), extending a lost volume
    fails (`error_extending`, the gigabytes given back), and both can still be deleted."""
    assert cloud.store is not None
    name = f"lost-{uuid.uuid4().hex[:8]}"
    user = Caller(bus, zone=name)
    async with storage_host(bus, cloud.store, name, name):
        volume = await user.wait((await user.create(1)).id, "available")
        snap = await user.snapshot(volume.id)
        await user.wait_snapshot(snap.id, "available")
    async with storage_host(bus, cloud.store, name, name, backend=FakeBackend()):
        copy = await user.create(None, snapshot_id=snap.id)
        failed = await user.wait(copy.id, "error")
        assert failed.error_reason and f"snapshot {snap.id} does not exist" in failed.error_reason
        await user(ExtendVolume(volume_id=volume.id, new_size_gb=2))
        broken = await user.wait(volume.id, "error_extending")
        assert broken.size_gb == 1 and broken.error_reason and "does not exist" in broken.error_reason
        assert await user.usage() == {"volumes": 2, "gigabytes": 3, "snapshots": 1, "per_volume_gigabytes": 0}
        expected = await bus.call("volume", ListExpectedFiles(host=name), Caller(bus, roles=("admin",)).ctx())
        assert set(expected.volume_ids) == {volume.id, copy.id} and expected.snapshot_ids == (snap.id,)
        await user(DeleteVolume(volume_id=copy.id))
        await user(DeleteVolume(volume_id=volume.id, cascade=True))
        await user.wait_gone(copy.id)
        await user.wait_gone(volume.id)
    assert await user.usage() == {"volumes": 0, "gigabytes": 0, "snapshots": 0, "per_volume_gigabytes": 0}


# --- the reaper, in a cloud of its own with short step timeouts --------------------------------


@pytest.fixture
async def quick(settings: Settings, tmp_path: Path) -> AsyncIterator[Cloud]:
    """A cloud whose volume steps are sent again after 0.3 s, fail after 4 s, and whose attaches
    are undone after 2 s."""
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    async with isolated(settings, "volreap", tmp_path / "state") as own:
        own = dataclasses.replace(
            own,
            gateway_port=free_port(),
            compute_driver="none",
            fake_hosts=0,
            volume_agent=False,
            volume_step_timeout_s=0.3,
            volume_step_deadline_s=4.0,
            volume_attach_deadline_s=2.0,
        )
        async with Cloud(own, services=("identity", "volume")) as running:
            yield running


@asynccontextmanager
async def own_bus(cloud: Cloud, name: str) -> AsyncIterator[Bus]:
    """A connection of its own, as an agent in its own process has."""
    bus = Bus(AmqpTransport(cloud.settings.amqp_url, name=name))
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


async def test_the_reaper_sends_a_lost_step_again_and_fails_one_past_its_deadline(quick: Cloud) -> None:
    assert quick.bus is not None and quick.store is not None
    bus, store = quick.bus, quick.store
    name = f"reap-{uuid.uuid4().hex[:8]}"
    user = Caller(bus, zone=name)
    async with own_bus(quick, "first-agent") as first, storage_host(first, store, name, name):
        pass  # heard: the host is known, and now stopped
    lost = await user.create(1)
    async with own_bus(quick, "broker-trouble") as other:
        await other.transport.delete_queue(f"volume.{name}")  # the broker lost the command
    async with own_bus(quick, "second-agent") as second, storage_host(second, store, name, name) as agent:
        assert lost.id not in agent.backend.volumes  # type: ignore[attr-defined]
        made = await user.wait(lost.id, "available", timeout_s=3.5)  # sent again, within the deadline
        assert made.error_reason is None

        # An attach compute never completes is undone after its deadline.
        reserved = await user(
            ReserveAttachment(attachment_id=new_id(), volume_id=lost.id, server_id=new_id(), host="c1")
        )
        assert reserved.volume.status == "attaching"
        await user.wait(lost.id, "available", timeout_s=6)

        async def unexported() -> bool:
            return agent.backend.exports == set()  # type: ignore[attr-defined]

        await until("the abandoned attachment's export to be undone", unexported, timeout_s=5)

    # No agent at all now: the create is sent again and again, then fails with a reason.
    stuck = await user.create(1)
    failed = await user.wait(stuck.id, "error", timeout_s=10)
    assert failed.error_reason == "Creating the volume did not finish within 4 s."
    await user(DeleteVolume(volume_id=lost.id))
    gone_or_failed = await user.wait(lost.id, "error_deleting", timeout_s=10)
    assert gone_or_failed.error_reason == "Deleting the volume did not finish within 4 s."
    assert (await user.usage())["volumes"] == 2  # still counted: nothing was freed
