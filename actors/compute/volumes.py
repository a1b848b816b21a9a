"""Volumes on servers (Nova's os-volume_attachments), mixed into `actor.Compute`.

An attachment is a short saga shared by three parties: the volume service (which owns the
volume's status and says how the host reaches it), compute (which owns the attachment row) and
the host's agent (which plugs the disk into the guest).

    attach: reserve with the volume service (available → attaching) → row `attaching` →
            AttachDisk → DiskAttached: CompleteAttachment (→ in-use), row `attached`
                       → DiskAttachFailed: RemoveAttachment (→ available), row dropped
    detach: row `detaching` → BeginDetach (in-use → detaching) → DetachDisk
            → DiskDetached: RemoveAttachment (→ available), row dropped
            → DiskDetachFailed: AbortDetach (→ in-use), row `attached` again

Compute tells the volume service first and moves its own row after, so a call that fails leaves
the row where the reaper drives the step again (the agent's disk operations are idempotent, and
so are the volume service's attachment calls).
"""

import logging
import string
import uuid
from typing import Any

import asyncpg
import orjson

from actors.compute import attachment_sql, boot, server_sql
from fabric.actor import handles
from fabric.service import ServiceActor, require_member, service_context
from protocol import compute_agent as agent
from protocol.compute import (
    AttachVolume,
    DetachVolume,
    GetVolumeAttachment,
    ListVolumeAttachments,
    VolumeAttachmentList,
    VolumeAttachmentView,
)
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound
from protocol.storage import Connection
from protocol.system import Done
from protocol.volume import QUEUE as VOLUME
from protocol.volume import (
    AbortDetach,
    AttachmentReserved,
    BeginDetach,
    CompleteAttachment,
    DeleteVolume,
    RemoveAttachment,
    ReserveAttachment,
)

log = logging.getLogger("fabric.compute")

#: How long a host may take to unplug a disk before the detach is reported failed.
DETACH_TIMEOUT_S = 30.0

ATTACHABLE = frozenset({boot.VmState.ACTIVE, boot.VmState.STOPPED})


def _device(asked: str | None, taken: list[asyncpg.Record]) -> str:
    """Nova's device name: the one asked for if free, else the next free `/dev/vdX` (vda is the
    root disk). Only a hint: the guest names its disks in its own order."""
    used = {r["device"] for r in taken if r["device"]} | {"/dev/vda"}
    if asked is not None:
        if not asked.startswith("/dev/") or not asked[5:].isalnum():
            raise Invalid("volumeAttachment.device", "a device path such as /dev/vdb")
        if asked in used:
            raise Invalid("volumeAttachment.device", f"{asked} is in use on this server")
        return asked
    for letter in string.ascii_lowercase[1:]:
        if f"/dev/vd{letter}" not in used:
            return f"/dev/vd{letter}"
    raise Invalid("volumeAttachment.volumeId", "the server has no free disk slot left")


def guest_disk(row: asyncpg.Record) -> agent.GuestDisk:
    device = row["device"]
    return agent.GuestDisk(
        volume_id=row["volume_id"],
        attachment_id=row["attachment_id"],
        connection=Connection(**orjson.loads(row["connection"])),
        device=device.removeprefix("/dev/") if device else None,
        is_root=row["is_root"],
    )


class Volumes(ServiceActor):
    """The attachment handlers of the compute service."""

    def _visible(self, row: asyncpg.Record | None, ctx: Context, server_id: str) -> asyncpg.Record:
        """The server's row if the caller may see it; NotFound otherwise (as Nova hides others')."""
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("server", server_id)
        return row

    def _attachable(self, row: asyncpg.Record | None, ctx: Context, server_id: str) -> asyncpg.Record:
        row = self._visible(row, ctx, server_id)
        if row["vm_state"] not in ATTACHABLE or row["task_state"] is not None or row["host"] is None:
            state = row["task_state"] or row["vm_state"]
            raise Conflict("server", f"cannot change the volumes of server {server_id} while it is {state}")
        return row

    @handles(AttachVolume, key=lambda m: m.server_id)
    async def attach_volume(self, msg: AttachVolume, ctx: Context) -> VolumeAttachmentView:
        require_member(ctx, "os_compute_api:os-volumes-attachments:create")
        async with self.store.connection() as conn:
            server = self._attachable(await server_sql.get(conn, msg.server_id), ctx, msg.server_id)
            taken = await attachment_sql.of_server(conn, msg.server_id)
        if any(r["volume_id"] == msg.volume_id for r in taken):
            raise Invalid("volumeAttachment.volumeId", f"volume {msg.volume_id} is attached to this server")
        device = _device(msg.device, taken)
        attachment_id = str(uuid.uuid4())
        reserve = ReserveAttachment(
            attachment_id=attachment_id, volume_id=msg.volume_id, server_id=msg.server_id, host=server["host"]
        )
        reserved: AttachmentReserved = await self.bus.call(VOLUME, reserve, ctx)
        values: dict[str, Any] = {
            "server_id": msg.server_id,
            "volume_id": msg.volume_id,
            "attachment_id": attachment_id,
            "device": device,
            "status": "attaching",
            "connection": {
                "driver_volume_type": reserved.connection.driver_volume_type,
                "data": reserved.connection.data,
            },
            "is_root": False,
            "delete_on_termination": False,
        }
        try:
            async with self.store.transaction() as tx:
                row = await attachment_sql.insert(tx, values)
        except BaseException:
            await self._give_back(attachment_id, msg.volume_id, ctx)
            raise
        if row is None:
            await self._give_back(attachment_id, msg.volume_id, ctx)
            raise Invalid("volumeAttachment.volumeId", f"volume {msg.volume_id} is attached to a server")
        plug = agent.AttachDisk(host=server["host"], server_id=msg.server_id, disk=guest_disk(row))
        await self.bus.cast(server["agent_queue"], plug, ctx)
        return attachment_sql.view(row)

    async def _give_back(self, attachment_id: str, volume_id: str, ctx: Context) -> None:
        remove = RemoveAttachment(attachment_id=attachment_id, volume_id=volume_id)
        await self.bus.call(VOLUME, remove, service_context(ctx.request_id))

    @handles(ListVolumeAttachments)
    async def list_attachments(self, msg: ListVolumeAttachments, ctx: Context) -> VolumeAttachmentList:
        async with self.store.connection() as conn:
            self._visible(await server_sql.get(conn, msg.server_id), ctx, msg.server_id)
            rows = await attachment_sql.of_server(conn, msg.server_id)
        return VolumeAttachmentList(items=tuple(attachment_sql.view(r) for r in rows))

    @handles(GetVolumeAttachment)
    async def get_attachment(self, msg: GetVolumeAttachment, ctx: Context) -> VolumeAttachmentView:
        async with self.store.connection() as conn:
            self._visible(await server_sql.get(conn, msg.server_id), ctx, msg.server_id)
            row = await attachment_sql.get(conn, msg.server_id, msg.volume_id)
        if row is None:
            raise NotFound("volume attachment", msg.volume_id)
        return attachment_sql.view(row)

    @handles(DetachVolume, key=lambda m: m.server_id)
    async def detach_volume(self, msg: DetachVolume, ctx: Context) -> Done:
        require_member(ctx, "os_compute_api:os-volumes-attachments:delete")
        async with self.store.connection() as conn:
            server = self._visible(await server_sql.get(conn, msg.server_id), ctx, msg.server_id)
            row = await attachment_sql.get(conn, msg.server_id, msg.volume_id)
        if row is None:
            raise NotFound("volume attachment", msg.volume_id)
        if row["is_root"]:
            raise Invalid("volumeId", f"volume {msg.volume_id} is the server's root disk")
        self._attachable(server, ctx, msg.server_id)
        async with self.store.transaction() as tx:
            moved = await attachment_sql.move(tx, row["attachment_id"], "attached", "detaching")
        if not moved:
            raise Conflict("volume attachment", f"volume {msg.volume_id} is {row['status']}")
        try:
            await self.bus.call(
                VOLUME, BeginDetach(attachment_id=row["attachment_id"], volume_id=msg.volume_id), ctx
            )
        except BaseException:
            async with self.store.transaction() as tx:
                await attachment_sql.move(tx, row["attachment_id"], "detaching", "attached")
            raise
        await self._send_detach(server, row, ctx)
        return Done()

    async def _send_detach(self, server: asyncpg.Record, row: asyncpg.Record, ctx: Context) -> None:
        unplug = agent.DetachDisk(
            host=server["host"],
            server_id=row["server_id"],
            volume_id=row["volume_id"],
            attachment_id=row["attachment_id"],
            timeout_s=DETACH_TIMEOUT_S,
        )
        await self.bus.cast(server["agent_queue"], unplug, ctx)

    # --- the host's answers --------------------------------------------------------------------

    @handles(agent.DiskAttached, key=lambda m: m.server_id)
    async def on_disk_attached(self, msg: agent.DiskAttached, ctx: Context) -> None:
        async with self.store.connection() as conn:
            row = await attachment_sql.by_attachment(conn, msg.attachment_id)
        if row is None or row["status"] != "attaching":
            return  # a redelivery, or detached/deleted meanwhile
        await self.attachment_done(msg.attachment_id, msg.volume_id, msg.server_id, msg.device, ctx)

    async def attachment_done(
        self, attachment_id: str, volume_id: str, server_id: str, device: str, ctx: Context
    ) -> None:
        """The guest has the disk: the volume service first (`in-use`), then our row."""
        path = device if device.startswith("/") else f"/dev/{device}"
        complete = CompleteAttachment(attachment_id=attachment_id, volume_id=volume_id, device=path)
        await self.bus.call(VOLUME, complete, service_context(ctx.request_id))
        async with self.store.transaction() as tx:
            await attachment_sql.move(tx, attachment_id, "attaching", "attached", path)

    @handles(agent.DiskAttachFailed, key=lambda m: m.server_id)
    async def on_disk_attach_failed(self, msg: agent.DiskAttachFailed, ctx: Context) -> None:
        log.warning(
            "attaching a volume failed",
            extra={"server_id": msg.server_id, "volume_id": msg.volume_id, "reason": msg.reason},
        )
        await self.drop_attachment(msg.attachment_id, msg.volume_id, ("attaching",), ctx)

    @handles(agent.DiskDetached, key=lambda m: m.server_id)
    async def on_disk_detached(self, msg: agent.DiskDetached, ctx: Context) -> None:
        await self.drop_attachment(msg.attachment_id, msg.volume_id, ("detaching",), ctx)

    @handles(agent.DiskDetachFailed, key=lambda m: m.server_id)
    async def on_disk_detach_failed(self, msg: agent.DiskDetachFailed, ctx: Context) -> None:
        log.warning(
            "detaching a volume failed; it stays attached",
            extra={"server_id": msg.server_id, "volume_id": msg.volume_id, "reason": msg.reason},
        )
        async with self.store.connection() as conn:
            row = await attachment_sql.by_attachment(conn, msg.attachment_id)
        if row is None or row["status"] != "detaching":
            return
        abort = AbortDetach(attachment_id=msg.attachment_id, volume_id=msg.volume_id)
        await self.bus.call(VOLUME, abort, service_context(ctx.request_id))
        async with self.store.transaction() as tx:
            await attachment_sql.move(tx, msg.attachment_id, "detaching", "attached")

    async def drop_attachment(
        self, attachment_id: str, volume_id: str, statuses: tuple[str, ...], ctx: Context
    ) -> None:
        async with self.store.connection() as conn:
            row = await attachment_sql.by_attachment(conn, attachment_id)
        if row is None or row["status"] not in statuses:
            return
        await self._give_back(attachment_id, volume_id, ctx)
        async with self.store.transaction() as tx:
            await attachment_sql.remove(tx, attachment_id, statuses=statuses)

    # --- a server going away, and the reaper ---------------------------------------------------

    async def release_volumes(self, server_id: str, root: dict[str, Any] | None, ctx: Context) -> None:
        """The server's guest is gone, and with it its disks: end every attachment, deleting the
        volumes marked delete_on_termination (and a root volume made for the server that never
        got attached). Each is dropped only after the volume service heard, so a failure here
        leaves the rest for the delete's next drive."""
        async with self.store.connection() as conn:
            rows = await attachment_sql.of_server(conn, server_id)
        doomed = [r["volume_id"] for r in rows if r["delete_on_termination"]]
        if root and root["delete_on_termination"] and root["volume_id"] not in {r["volume_id"] for r in rows}:
            doomed.append(root["volume_id"])
        for row in rows:
            await self._give_back(row["attachment_id"], row["volume_id"], ctx)
            async with self.store.transaction() as tx:
                await attachment_sql.remove(tx, row["attachment_id"], statuses=(row["status"],))
        service = service_context(ctx.request_id)
        for volume_id in doomed:
            try:
                await self.bus.call(VOLUME, DeleteVolume(volume_id=volume_id), service)
            except NotFound:
                pass
            except Invalid as exc:  # still being made, say: it stays, and says why in the log
                why = {"volume_id": volume_id, "error": str(exc)}
                log.warning("could not delete a volume with its server", extra=why)

    async def reap_attachments(self, older_than_s: float, limit: int) -> int:
        """Drive again the attach and detach steps whose answer never came."""
        async with self.store.transaction() as tx:
            rows = await attachment_sql.stale(tx, older_than_s, limit)
            for row in rows:
                await attachment_sql.touch(tx, row["attachment_id"])
        ctx = service_context()
        for row in rows:
            async with self.store.connection() as conn:
                server = await server_sql.get(conn, row["server_id"])
            if server is None or server["host"] is None:
                await self.drop_attachment(row["attachment_id"], row["volume_id"], (row["status"],), ctx)
            elif row["status"] == "attaching":
                plug = agent.AttachDisk(host=server["host"], server_id=row["server_id"], disk=guest_disk(row))
                await self.bus.cast(server["agent_queue"], plug, ctx)
            elif server["task_state"] != boot.Task.DELETING:
                await self._send_detach(server, row, ctx)
        return len(rows)
