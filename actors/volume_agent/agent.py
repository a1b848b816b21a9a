"""The volume agent: the hands of the volume service on one storage host (Cinder's volume
manager), doing through its backend what the service casts to it and answering with casts back.

It keeps nothing durable; the backend's storage is its truth and the volume service's database
says what should exist. When it starts it asks the service which volumes and snapshots this host
should hold (`ListExpectedFiles`, retried until the service answers) and removes everything else
(what a crash mid-create or mid-delete left) and every temporary file; commands wait until that
clean-up is done, so it never removes a file a command has just made. It reports the host's
capacity at start, soon after each change, and every interval.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable

from actors.volume_agent.backend import BackendError, NoSuchVolume, VolumeBackend
from fabric.actor import Actor, handles
from fabric.bus import Bus
from fabric.service import service_context
from protocol import volume_agent as wire
from protocol.envelope import Context
from protocol.errors import Conflict, FabricError, Invalid, NotFound
from protocol.storage import Connection
from protocol.system import Done
from protocol.volume import QUEUE as VOLUME

log = logging.getLogger("fabric.volume_agent")

#: Each try of `ListExpectedFiles` waits this long for the volume service, then again after a pause.
EXPECTED_TIMEOUT_S = 10.0
EXPECTED_RETRY_S = 2.0
#: Reports after changes are at most this frequent: a burst of creates makes a few reports,
#: not one per volume.
CHANGE_REPORT_GAP_S = 0.2


class VolumeAgent(Actor):
    service = "volume-agent"
    #: Copies take long on real hosts, and `bench volumes` wants many fake creates at once.
    prefetch = 256

    def __init__(
        self,
        bus: Bus,
        *,
        host: str,
        backend: VolumeBackend,
        availability_zone: str = "nova",
        report_interval_s: float = 10.0,
    ) -> None:
        super().__init__(bus, queue=wire.host_queue(host))
        self.host = host
        self.backend = backend
        self.availability_zone = availability_zone
        self.report_interval_s = report_interval_s
        #: Set once the clean-up at start is done; commands wait for it.
        self.cleaned = asyncio.Event()
        self._changed = asyncio.Event()

    # --- life cycle ----------------------------------------------------------------------------

    async def setup(self) -> None:
        await self.backend.start()

    async def teardown(self) -> None:
        await self.backend.close()

    async def background(self) -> list[Awaitable[None]]:
        return [self._report_forever(), self._clean_up_at_start()]

    async def _clean_up_at_start(self) -> None:
        """Once: remove what the database does not expect. Then idle, so the job does not end
        (an ended background job would restart the actor)."""
        while True:
            try:
                expected: wire.ExpectedFiles = await self.bus.call(
                    VOLUME,
                    wire.ListExpectedFiles(host=self.host),
                    service_context(),
                    timeout_s=EXPECTED_TIMEOUT_S,
                )
                break
            except FabricError as exc:
                log.warning("cannot clean up yet: %s", exc.message, extra={"host": self.host})
                await asyncio.sleep(EXPECTED_RETRY_S)
        removed = await self.backend.remove_unexpected(
            frozenset(expected.volume_ids), frozenset(expected.snapshot_ids)
        )
        if removed.volume_ids or removed.snapshot_ids or removed.temporary:
            log.warning(
                "removed what no volume or snapshot owns",
                extra={
                    "host": self.host,
                    "volume_ids": list(removed.volume_ids),
                    "snapshot_ids": list(removed.snapshot_ids),
                    "temporary": list(removed.temporary),
                },
            )
        self.cleaned.set()
        self._changed.set()
        await asyncio.Event().wait()

    # --- capacity ------------------------------------------------------------------------------

    async def report(self) -> None:
        capacity = await self.backend.capacity()
        event = wire.VolumeHostReport(
            host=self.host,
            backend=self.backend.name,
            queue=self.queue,
            total_gb=capacity.total_gb,
            free_gb=capacity.free_gb,
            availability_zone=self.availability_zone,
            reported_at=time.time(),
        )
        await self.bus.publish(event, service_context(), ttl_s=self.report_interval_s * 3)

    async def _report_forever(self) -> None:
        while True:
            self._changed.clear()
            await self.report()
            await asyncio.sleep(min(CHANGE_REPORT_GAP_S, self.report_interval_s))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and the agent would then never stop.
            try:
                async with asyncio.timeout(self.report_interval_s):
                    await self._changed.wait()
            except TimeoutError:
                pass

    # --- commands ------------------------------------------------------------------------------

    async def _ready(self, host: str) -> None:
        if host != self.host:
            raise Invalid("host", f"{host} is not served by agent queue {self.queue}")
        await self.cleaned.wait()

    async def _answer(self, reply: object, ctx: Context, *, changed: bool) -> None:
        await self.bus.cast(VOLUME, reply, ctx)
        if changed:
            self._changed.set()

    @handles(wire.CreateVolumeFile, key=lambda m: m.volume_id)
    async def create_volume_file(self, msg: wire.CreateVolumeFile, ctx: Context) -> None:
        await self._ready(msg.host)
        try:
            allocated = await self.backend.create_volume(
                msg.volume_id,
                msg.size_gb,
                image=msg.image,
                snapshot_id=msg.snapshot_id,
                source_volume_id=msg.source_volume_id,
            )
        except (BackendError, OSError) as exc:
            await self._failed(msg.volume_id, "create", failure_reason(exc), ctx)
            return
        created = wire.VolumeFileCreated(host=self.host, volume_id=msg.volume_id, allocated_bytes=allocated)
        await self._answer(created, ctx, changed=True)

    @handles(wire.ResizeVolumeFile, key=lambda m: m.volume_id)
    async def resize_volume_file(self, msg: wire.ResizeVolumeFile, ctx: Context) -> None:
        await self._ready(msg.host)
        try:
            await self.backend.resize_volume(msg.volume_id, msg.size_gb)
        except (BackendError, OSError) as exc:
            await self._failed(msg.volume_id, "resize", failure_reason(exc), ctx)
            return
        resized = wire.VolumeFileResized(host=self.host, volume_id=msg.volume_id, size_gb=msg.size_gb)
        await self._answer(resized, ctx, changed=True)

    @handles(wire.DeleteVolumeFile, key=lambda m: m.volume_id)
    async def delete_volume_file(self, msg: wire.DeleteVolumeFile, ctx: Context) -> None:
        await self._ready(msg.host)
        try:
            await self.backend.delete_volume(msg.volume_id)
        except (BackendError, OSError) as exc:
            await self._failed(msg.volume_id, "delete", failure_reason(exc), ctx)
            return
        await self._answer(wire.VolumeFileDeleted(host=self.host, volume_id=msg.volume_id), ctx, changed=True)

    async def _failed(self, volume_id: str, operation: str, reason: str, ctx: Context) -> None:
        log.warning(
            "volume %s failed", operation, extra={"host": self.host, "volume_id": volume_id, "reason": reason}
        )
        failed = wire.VolumeFileFailed(
            host=self.host, volume_id=volume_id, operation=operation, reason=reason
        )
        await self._answer(failed, ctx, changed=False)

    # The volume's key, not the snapshot's: a snapshot is read from the volume, so it must not
    # run beside a resize or delete of it.
    @handles(wire.CreateSnapshotFile, key=lambda m: m.volume_id)
    async def create_snapshot_file(self, msg: wire.CreateSnapshotFile, ctx: Context) -> None:
        await self._ready(msg.host)
        try:
            await self.backend.create_snapshot(msg.volume_id, msg.snapshot_id, in_use=msg.in_use)
        except (BackendError, OSError) as exc:
            await self._snapshot_failed(msg.snapshot_id, "create", failure_reason(exc), ctx)
            return
        await self._answer(
            wire.SnapshotFileCreated(host=self.host, snapshot_id=msg.snapshot_id), ctx, changed=True
        )

    @handles(wire.DeleteSnapshotFile, key=lambda m: m.snapshot_id)
    async def delete_snapshot_file(self, msg: wire.DeleteSnapshotFile, ctx: Context) -> None:
        await self._ready(msg.host)
        try:
            await self.backend.delete_snapshot(msg.snapshot_id)
        except (BackendError, OSError) as exc:
            await self._snapshot_failed(msg.snapshot_id, "delete", failure_reason(exc), ctx)
            return
        await self._answer(
            wire.SnapshotFileDeleted(host=self.host, snapshot_id=msg.snapshot_id), ctx, changed=True
        )

    async def _snapshot_failed(self, snapshot_id: str, operation: str, reason: str, ctx: Context) -> None:
        log.warning(
            "snapshot %s failed",
            operation,
            extra={"host": self.host, "snapshot_id": snapshot_id, "reason": reason},
        )
        failed = wire.SnapshotFileFailed(
            host=self.host, snapshot_id=snapshot_id, operation=operation, reason=reason
        )
        await self._answer(failed, ctx, changed=False)

    # --- attachments ---------------------------------------------------------------------------

    @handles(wire.ExportVolume, key=lambda m: m.volume_id)
    async def export_volume(self, msg: wire.ExportVolume, ctx: Context) -> Connection:
        await self._ready(msg.host)
        try:
            return await self.backend.export(msg.volume_id, msg.attachment_id, msg.initiator_host)
        except NoSuchVolume:
            raise NotFound("volume file", msg.volume_id) from None
        except BackendError as exc:
            raise Conflict("volume export", exc.reason) from None

    @handles(wire.UnexportVolume, key=lambda m: m.volume_id)
    async def unexport_volume(self, msg: wire.UnexportVolume, ctx: Context) -> Done:
        await self._ready(msg.host)
        try:
            await self.backend.unexport(msg.volume_id, msg.attachment_id)
        except BackendError as exc:
            raise Conflict("volume export", exc.reason) from None
        return Done()


def failure_reason(exc: BackendError | OSError) -> str:
    """The words a user reads in the volume's error: the backend's, or the system's (a full
    disk, a permission) naming the file."""
    if isinstance(exc, BackendError):
        return exc.reason
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason
