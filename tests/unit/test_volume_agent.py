"""The volume agent on the in-memory bus with the fake backend: each command answered with the
right cast, capacity reported at start and after changes, and the clean-up at start, before
which no command runs."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from actors.volume_agent.agent import VolumeAgent
from actors.volume_agent.fake_backend import FakeBackend
from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from protocol import volume_agent as wire
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.registry import type_name
from protocol.storage import ImageFile
from protocol.system import Done
from protocol.volume import QUEUE as VOLUME

HOST = "store-1"
QUEUE = wire.host_queue(HOST)


def ctx(timeout_s: float = 5.0) -> Context:
    return Context(request_id=f"req-{uuid.uuid4().hex[:8]}", deadline=time.time() + timeout_s)


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Storage:
    """One storage host's agent on an in-memory broker, and the test in the volume service's
    seat: it answers `ListExpectedFiles` (once `expect` is called) and keeps what the agent
    casts back and the reports it publishes."""

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.buses: list[Bus] = []
        self.backend = FakeBackend(capacity_gb=1000)
        self.answers: list[Any] = []
        self.reports: list[wire.VolumeHostReport] = []
        self.expected = wire.ExpectedFiles(volume_ids=(), snapshot_ids=())
        self.asked = 0
        self.agent: VolumeAgent | None = None
        self._task: asyncio.Task[None] | None = None

    async def bus(self) -> Bus:
        bus = Bus(self.broker.transport(), retry_pause_s=0.01)
        await bus.start()
        self.buses.append(bus)
        return bus

    async def start(self, *, report_interval_s: float = 60.0) -> VolumeAgent:
        watcher = await self.bus()
        await watcher.subscribe((type_name(wire.VolumeHostReport),), self._on_report)
        self.client = watcher
        self.agent = VolumeAgent(
            await self.bus(), host=HOST, backend=self.backend, report_interval_s=report_interval_s
        )
        self._task = asyncio.create_task(self.agent.run(drain_s=0.5))
        await eventually(lambda: bool(self.reports))
        return self.agent

    async def expect(self, *, volume_ids: tuple[str, ...] = (), snapshot_ids: tuple[str, ...] = ()) -> None:
        """Start answering as the volume service, with what this host should hold."""
        self.expected = wire.ExpectedFiles(volume_ids=volume_ids, snapshot_ids=snapshot_ids)
        await self.client.serve(VOLUME, self._on_volume_queue)

    async def _on_volume_queue(self, message: Any, ctx: Context) -> object | None:
        if isinstance(message, wire.ListExpectedFiles):
            assert message.host == HOST
            self.asked += 1
            return self.expected
        self.answers.append(message)
        return None

    async def _on_report(self, event: Any, ctx: Context) -> None:
        self.reports.append(event)

    async def cast(self, message: object) -> None:
        await self.client.cast(QUEUE, message, ctx())

    async def answer_to(self, message: object, count: int = 1) -> list[Any]:
        """Cast `message` to the agent and return the answers it casts back (the last `count`)."""
        before = len(self.answers)
        await self.cast(message)
        await eventually(lambda: len(self.answers) >= before + count)
        return self.answers[before:]

    async def close(self) -> None:
        if self.agent is not None and self._task is not None:
            self.agent.request_stop()
            await asyncio.wait_for(self._task, timeout=5)
        for bus in self.buses:
            await bus.close(drain_s=0.2)


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    made = Storage()
    yield made
    await made.close()


async def test_a_host_reports_at_start_and_after_each_change(storage: Storage) -> None:
    await storage.start()
    await storage.expect()
    first = storage.reports[0]
    assert (first.host, first.backend, first.queue) == (HOST, "fake", QUEUE)
    assert (first.total_gb, first.free_gb, first.availability_zone) == (1000, 1000, "nova")

    await storage.answer_to(wire.CreateVolumeFile(host=HOST, volume_id="v1", size_gb=10))
    # The interval is a minute: a report this soon is the one the change asked for.
    await eventually(lambda: storage.reports[-1].free_gb == 990, timeout_s=2)


async def test_each_command_is_answered_with_its_cast(storage: Storage) -> None:
    await storage.start()
    await storage.expect()

    [created] = await storage.answer_to(wire.CreateVolumeFile(host=HOST, volume_id="v1", size_gb=1))
    assert created == wire.VolumeFileCreated(host=HOST, volume_id="v1", allocated_bytes=0)
    [again] = await storage.answer_to(wire.CreateVolumeFile(host=HOST, volume_id="v1", size_gb=1))
    assert again == created  # a redelivered create: done, nothing made twice
    assert storage.backend.volumes == {"v1": 1}

    [resized] = await storage.answer_to(wire.ResizeVolumeFile(host=HOST, volume_id="v1", size_gb=2))
    assert resized == wire.VolumeFileResized(host=HOST, volume_id="v1", size_gb=2)
    [refused] = await storage.answer_to(wire.ResizeVolumeFile(host=HOST, volume_id="v1", size_gb=1))
    assert isinstance(refused, wire.VolumeFileFailed) and refused.operation == "resize"
    assert "only grows" in refused.reason

    [snapped] = await storage.answer_to(wire.CreateSnapshotFile(host=HOST, volume_id="v1", snapshot_id="s1"))
    assert snapped == wire.SnapshotFileCreated(host=HOST, snapshot_id="s1")
    [from_snapshot] = await storage.answer_to(
        wire.CreateVolumeFile(host=HOST, volume_id="v2", size_gb=2, snapshot_id="s1")
    )
    assert isinstance(from_snapshot, wire.VolumeFileCreated)
    [too_small] = await storage.answer_to(
        wire.CreateVolumeFile(host=HOST, volume_id="v3", size_gb=1, source_volume_id="v1")
    )
    assert isinstance(too_small, wire.VolumeFileFailed) and too_small.operation == "create"
    assert too_small.volume_id == "v3" and "2 GiB" in too_small.reason
    [no_source] = await storage.answer_to(
        wire.CreateVolumeFile(host=HOST, volume_id="v4", size_gb=1, snapshot_id="nope")
    )
    assert isinstance(no_source, wire.VolumeFileFailed) and "snapshot nope does not exist" in no_source.reason
    [no_volume] = await storage.answer_to(
        wire.CreateSnapshotFile(host=HOST, volume_id="nope", snapshot_id="s2")
    )
    assert no_volume == wire.SnapshotFileFailed(
        host=HOST, snapshot_id="s2", operation="create", reason="volume nope does not exist on this host"
    )

    [snapshot_gone] = await storage.answer_to(wire.DeleteSnapshotFile(host=HOST, snapshot_id="s1"))
    assert snapshot_gone == wire.SnapshotFileDeleted(host=HOST, snapshot_id="s1")
    [deleted] = await storage.answer_to(wire.DeleteVolumeFile(host=HOST, volume_id="v1"))
    [deleted_again] = await storage.answer_to(wire.DeleteVolumeFile(host=HOST, volume_id="v1"))
    assert deleted == deleted_again == wire.VolumeFileDeleted(host=HOST, volume_id="v1")
    assert storage.backend.volumes == {"v2": 2} and storage.backend.snapshots == {}


async def test_a_volume_from_an_image_too_small_for_it_fails_with_a_reason(storage: Storage) -> None:
    await storage.start()
    await storage.expect()
    image = ImageFile(image_id="img", location="blob", checksum="0" * 32, size=3 * 2**30, disk_format="qcow2")
    [failed] = await storage.answer_to(
        wire.CreateVolumeFile(host=HOST, volume_id="v1", size_gb=2, image=image)
    )
    assert isinstance(failed, wire.VolumeFileFailed) and "3 GiB" in failed.reason
    [made] = await storage.answer_to(wire.CreateVolumeFile(host=HOST, volume_id="v1", size_gb=3, image=image))
    assert isinstance(made, wire.VolumeFileCreated)


async def test_export_and_unexport_are_calls(storage: Storage) -> None:
    await storage.start()
    await storage.expect()
    await storage.answer_to(wire.CreateVolumeFile(host=HOST, volume_id="v1", size_gb=1))
    export = wire.ExportVolume(host=HOST, volume_id="v1", attachment_id="a1", initiator_host="compute-1")
    connection = await storage.client.call(QUEUE, export, ctx())
    assert connection == wire.Connection(driver_volume_type="fake", data={"volume_id": "v1"})
    assert await storage.client.call(QUEUE, export, ctx()) == connection  # idempotent
    assert storage.backend.exports == {("v1", "a1")}
    unexport = wire.UnexportVolume(host=HOST, volume_id="v1", attachment_id="a1")
    assert await storage.client.call(QUEUE, unexport, ctx()) == Done()
    assert await storage.client.call(QUEUE, unexport, ctx()) == Done()
    assert storage.backend.exports == set()

    with pytest.raises(NotFound):
        await storage.client.call(
            QUEUE,
            wire.ExportVolume(host=HOST, volume_id="nope", attachment_id="a2", initiator_host="c"),
            ctx(),
        )
    with pytest.raises(Invalid) as wrong_host:
        await storage.client.call(
            QUEUE,
            wire.ExportVolume(host="store-2", volume_id="v1", attachment_id="a3", initiator_host="c"),
            ctx(),
        )
    assert wrong_host.value.field == "host"


async def test_start_removes_what_the_service_does_not_expect(storage: Storage) -> None:
    # What the backend holds after a crash: some of it the database knows, some it never will.
    backend = storage.backend
    await backend.create_volume("kept", 1)
    await backend.create_volume("orphan", 2)
    await backend.create_snapshot("kept", "kept-snapshot", in_use=False)
    await backend.create_snapshot("orphan", "orphan-snapshot", in_use=False)
    await storage.start()
    await storage.expect(volume_ids=("kept", "not-made-yet"), snapshot_ids=("kept-snapshot",))
    agent = storage.agent
    assert agent is not None
    await asyncio.wait_for(agent.cleaned.wait(), timeout=5)
    assert storage.asked == 1
    assert storage.backend.volumes == {"kept": 1}
    assert storage.backend.snapshots == {"kept-snapshot": 1}
    await eventually(lambda: storage.reports[-1].free_gb == 1000 - 2)


async def test_commands_wait_until_the_clean_up_is_done(storage: Storage) -> None:
    """A volume created while the agent waits for the service must survive the clean-up, though
    the service's list (taken earlier) does not name it."""
    agent = await storage.start()
    await storage.cast(wire.CreateVolumeFile(host=HOST, volume_id="new", size_gb=1))
    await asyncio.sleep(0.1)
    assert not agent.cleaned.is_set()
    assert storage.backend.volumes == {} and storage.answers == []

    await storage.expect()  # the service comes up; its list is empty
    await eventually(lambda: len(storage.answers) == 1)
    assert storage.answers == [wire.VolumeFileCreated(host=HOST, volume_id="new", allocated_bytes=0)]
    assert storage.backend.volumes == {"new": 1}


async def test_a_fake_host_takes_thousands_of_creates_quickly(storage: Storage) -> None:
    await storage.start()
    await storage.expect()
    began = time.monotonic()
    for i in range(2000):
        await storage.cast(wire.CreateVolumeFile(host=HOST, volume_id=f"v{i}", size_gb=1))
    await eventually(lambda: len(storage.answers) == 2000, timeout_s=20)
    took = time.monotonic() - began
    assert all(isinstance(a, wire.VolumeFileCreated) for a in storage.answers)
    assert len(storage.backend.volumes) == 2000
    assert took < 10, f"2000 fake creates took {took:.1f}s"
