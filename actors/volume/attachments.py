"""Attachments: the calls compute makes, on the user's context, to attach and detach a volume.

    available ──reserve──► attaching ──complete──► in-use ──begin detach──► detaching
        ▲                      │                     ▲                           │
        └──────remove──────────┴──────remove─────────┴──────abort detach─────────┤
        └────────────────────────────────remove──────────────────────────────────┘

Reserving is one conditional UPDATE from `available`, so of two servers asking for one volume
at once exactly one wins (and `attachments_one_per_volume` would refuse a second row anyway).
The storage host exports the volume to the compute host and answers how to reach it
(`Connection`); a reserve that cannot get that answer is undone before it fails. An attach or
detach that compute never finishes is ended by the reaper after `volume_attach_deadline_s`.
"""

import dataclasses
import logging

import orjson

from actors.volume import sql, states
from actors.volume.volumes import Volumes
from fabric.actor import handles
from fabric.service import require_member
from protocol import volume_agent as agent
from protocol.envelope import Context
from protocol.errors import Conflict, FabricError, Invalid, NotFound
from protocol.storage import Connection
from protocol.system import Done
from protocol.volume import (
    AbortDetach,
    AttachmentReserved,
    BeginDetach,
    CompleteAttachment,
    RemoveAttachment,
    ReserveAttachment,
)

log = logging.getLogger("fabric.volume")

#: How long a storage host may take to export or unexport a volume.
EXPORT_TIMEOUT_S = 30.0

S = states.Status


class Attachments(Volumes):
    """The attachment handlers of the volume service (mixed into `actor.Volume`)."""

    @handles(ReserveAttachment, key=lambda m: m.volume_id)
    async def reserve_attachment(self, msg: ReserveAttachment, ctx: Context) -> AttachmentReserved:
        require_member(ctx, "volume:attachment_create")
        async with self.store.connection() as conn:
            volume = self._visible(await sql.get(conn, msg.volume_id), ctx, msg.volume_id)
            existing = await sql.get_attachment(conn, msg.attachment_id)
        if existing is not None:  # a retried reserve
            if existing["volume_id"] != msg.volume_id:
                raise Conflict("attachment", f"{msg.attachment_id} is an attachment of another volume")
            if existing["connection"] is not None:
                return AttachmentReserved(
                    attachment_id=msg.attachment_id,
                    volume=sql.view(volume),
                    connection=Connection(**orjson.loads(existing["connection"])),
                )
        else:
            async with self.store.transaction() as tx:
                moved = await sql.move(tx, msg.volume_id, "reserve")
                if moved is None:
                    raise Invalid(
                        "status",
                        f"volume {msg.volume_id} is {volume['status']}: only an available one attaches",
                    )
                await sql.insert_attachment(tx, msg.attachment_id, msg.volume_id, msg.server_id, msg.host)
            await self._announce([moved], ctx)
        export = agent.ExportVolume(
            host=volume["host"],
            volume_id=msg.volume_id,
            attachment_id=msg.attachment_id,
            initiator_host=msg.host,
        )
        try:
            connection: Connection = await self.bus.call(
                volume["agent_queue"], export, ctx, timeout_s=EXPORT_TIMEOUT_S
            )
        except Exception:
            await self._drop_attachment(msg.attachment_id, msg.volume_id, ctx)
            raise
        async with self.store.connection() as conn:
            await sql.set_connection(conn, msg.attachment_id, dataclasses.asdict(connection))
            row = await sql.get(conn, msg.volume_id)
        assert row is not None
        return AttachmentReserved(
            attachment_id=msg.attachment_id, volume=sql.view(row), connection=connection
        )

    async def _attachment(self, attachment_id: str, volume_id: str, ctx: Context) -> None:
        """The attachment must be this volume's, and the volume the caller's to see."""
        async with self.store.connection() as conn:
            self._visible(await sql.get(conn, volume_id), ctx, volume_id)
            found = await sql.get_attachment(conn, attachment_id)
        if found is None or found["volume_id"] != volume_id:
            raise NotFound("attachment", attachment_id)

    @handles(CompleteAttachment, key=lambda m: m.volume_id)
    async def complete_attachment(self, msg: CompleteAttachment, ctx: Context) -> Done:
        require_member(ctx, "volume:attachment_complete")
        await self._attachment(msg.attachment_id, msg.volume_id, ctx)
        async with self.store.transaction() as tx:
            moved = await sql.move(tx, msg.volume_id, "complete_attach")
            if moved is not None:
                await sql.attached(tx, msg.attachment_id, msg.device)
            else:
                found = await sql.get_attachment(tx, msg.attachment_id)
                if found is None or found["attached_at"] is None:
                    status = await tx.fetchval(
                        "SELECT status FROM volume.volumes WHERE id = $1", msg.volume_id
                    )
                    raise Invalid("status", f"volume {msg.volume_id} is {status}, not attaching")
        await self._announce([moved], ctx)  # none when the attachment was complete already
        return Done()

    @handles(BeginDetach, key=lambda m: m.volume_id)
    async def begin_detach(self, msg: BeginDetach, ctx: Context) -> Done:
        require_member(ctx, "volume:attachment_delete")
        await self._attachment(msg.attachment_id, msg.volume_id, ctx)
        async with self.store.transaction() as tx:
            found = await sql.get_attachment(tx, msg.attachment_id)
            if found is None or found["attached_at"] is None:
                raise Invalid(
                    "attachment_id", f"volume {msg.volume_id} is not attached by {msg.attachment_id}"
                )
            moved = await sql.move(tx, msg.volume_id, "begin_detach")
            if moved is None:
                status = await tx.fetchval("SELECT status FROM volume.volumes WHERE id = $1", msg.volume_id)
                if status != S.DETACHING:  # detaching already: a replay
                    raise Invalid("status", f"volume {msg.volume_id} is {status}, not in-use")
        await self._announce([moved], ctx)
        return Done()

    @handles(AbortDetach, key=lambda m: m.volume_id)
    async def abort_detach(self, msg: AbortDetach, ctx: Context) -> Done:
        require_member(ctx, "volume:attachment_update")
        await self._attachment(msg.attachment_id, msg.volume_id, ctx)
        async with self.store.transaction() as tx:
            moved = await sql.move(tx, msg.volume_id, "abort_detach")
            if moved is None:
                status = await tx.fetchval("SELECT status FROM volume.volumes WHERE id = $1", msg.volume_id)
                if status != S.IN_USE:  # in-use already: a replay
                    raise Invalid("status", f"volume {msg.volume_id} is {status}, not detaching")
        await self._announce([moved], ctx)
        return Done()

    @handles(RemoveAttachment, key=lambda m: m.volume_id)
    async def remove_attachment(self, msg: RemoveAttachment, ctx: Context) -> Done:
        """Unexport first: a row dropped before the storage host let go would leave an export
        nobody knows about. A failed unexport fails the call, and compute asks again."""
        require_member(ctx, "volume:attachment_delete")
        async with self.store.connection() as conn:
            found = await sql.get_attachment(conn, msg.attachment_id)
            if found is None:
                return Done()  # gone already
            volume = self._visible(await sql.get(conn, msg.volume_id), ctx, msg.volume_id)
        if found["volume_id"] != msg.volume_id:
            raise NotFound("attachment", msg.attachment_id)
        unexport = agent.UnexportVolume(
            host=volume["host"], volume_id=msg.volume_id, attachment_id=msg.attachment_id
        )
        await self.bus.call(volume["agent_queue"], unexport, ctx, timeout_s=EXPORT_TIMEOUT_S)
        await self._drop_attachment(msg.attachment_id, msg.volume_id, ctx)
        return Done()

    async def _drop_attachment(self, attachment_id: str, volume_id: str, ctx: Context) -> None:
        moved = None
        async with self.store.transaction() as tx:
            if await sql.delete_attachment(tx, attachment_id):
                moved = await sql.move(tx, volume_id, "remove_attachment")
        await self._announce([moved], ctx)

    async def abandon_attach(self, volume_id: str, ctx: Context) -> None:
        """An attach compute never completed (past the deadline): back to available, and the
        storage host told to unexport (best effort: the volume is usable either way)."""
        async with self.store.transaction() as tx:
            moved = await sql.move(tx, volume_id, "abandon_attach")
            if moved is None:
                return  # completed or removed meanwhile
            pending = await sql.pending_attachments(tx, volume_id)
        await self._announce([moved], ctx)
        for attachment in pending:
            unexport = agent.UnexportVolume(
                host=moved["host"], volume_id=volume_id, attachment_id=attachment["id"]
            )
            try:
                await self.bus.call(moved["agent_queue"], unexport, ctx, timeout_s=EXPORT_TIMEOUT_S)
            except FabricError as exc:
                log.warning(
                    "could not unexport an abandoned attachment",
                    extra={"volume_id": volume_id, "attachment_id": attachment["id"], "error": exc.message},
                )
