"""Snapshots: the API's handlers and their create and delete sagas.

A snapshot lives on its volume's host and holds the volume's row lock while it is made, so a
volume never starts being deleted under a snapshot being taken, and never with snapshots unless
the delete cascades (which marks them all `deleting` in its own transaction; the volume's file
goes once the last of them is gone).
"""

import asyncpg

from actors.volume import quota_sql, snapshot_sql, sql, states
from actors.volume.listing import check_marker, listed_project
from actors.volume.volumes import Volumes
from fabric.actor import handles
from fabric.service import require_member
from protocol import volume_agent as agent
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.system import Done
from protocol.volume import (
    CreateSnapshot,
    DeleteSnapshot,
    GetSnapshot,
    ListSnapshots,
    SnapshotList,
    SnapshotView,
    UpdateSnapshot,
)

SS = states.SnapshotStatus


class Snapshots(Volumes):
    """The snapshot handlers of the volume service (mixed into `actor.Volume`)."""

    def _visible_snapshot(self, row: asyncpg.Record | None, ctx: Context, snapshot_id: str) -> asyncpg.Record:
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("snapshot", snapshot_id)
        return row

    @handles(CreateSnapshot, key=lambda m: m.volume_id)
    async def create_snapshot(self, msg: CreateSnapshot, ctx: Context) -> SnapshotView:
        require_member(ctx, "volume:create_snapshot")
        async with self.store.transaction() as tx:
            existing = await snapshot_sql.get(tx, msg.snapshot_id)
            if existing is not None:  # a retried create
                return snapshot_sql.view(self._visible_snapshot(existing, ctx, msg.snapshot_id))
            volume = self._visible(
                await sql.get(tx, msg.volume_id, lock="FOR UPDATE OF v"), ctx, msg.volume_id
            )
            if volume["status"] not in (states.SNAPSHOT_OF_FORCED if msg.force else states.SNAPSHOT_OF):
                if volume["status"] == states.Status.IN_USE:
                    raise Invalid("force", f"volume {msg.volume_id} is in-use: snapshot it with force")
                raise Invalid(
                    "status",
                    f"volume {msg.volume_id} is {volume['status']}; only an available volume (or an in-use "
                    "one, with force) can be snapshotted",
                )
            limits = await quota_sql.limits(tx, volume["project_id"])
            created = await snapshot_sql.insert(
                tx,
                {
                    "id": msg.snapshot_id,
                    "volume_id": msg.volume_id,
                    "project_id": volume["project_id"],
                    "user_id": ctx.user_id or "",
                    "name": msg.name,
                    "description": msg.description,
                    "size_gb": volume["size_gb"],
                    "metadata": msg.metadata,
                    "host": volume["host"],
                    "agent_queue": volume["agent_queue"],
                    "in_use": volume["status"] == states.Status.IN_USE,
                },
            )
            if created is None:  # a retry of this create made it meanwhile
                raced = await snapshot_sql.get(tx, msg.snapshot_id)
                return snapshot_sql.view(self._visible_snapshot(raced, ctx, msg.snapshot_id))
            await quota_sql.take(tx, volume["project_id"], limits, snapshots=1, gigabytes=volume["size_gb"])
        await self._send_snapshot_create(created, ctx)
        return snapshot_sql.view(created)

    async def _send_snapshot_create(self, snap: asyncpg.Record, ctx: Context) -> None:
        command = agent.CreateSnapshotFile(
            host=snap["host"], volume_id=snap["volume_id"], snapshot_id=snap["id"], in_use=snap["in_use"]
        )
        await self.bus.cast(snap["agent_queue"], command, ctx)

    @handles(agent.SnapshotFileCreated, key=lambda m: m.snapshot_id)
    async def on_snapshot_created(self, msg: agent.SnapshotFileCreated, ctx: Context) -> None:
        async with self.store.connection() as conn:
            await snapshot_sql.move(conn, [msg.snapshot_id], "file_created", host=msg.host)

    @handles(agent.SnapshotFileFailed, key=lambda m: m.snapshot_id)
    async def on_snapshot_failed(self, msg: agent.SnapshotFileFailed, ctx: Context) -> None:
        step = states.SNAPSHOT_FAILED_OPERATION.get(msg.operation)
        if step is not None:
            await self._fail_snapshot(msg.snapshot_id, step, msg.reason, msg.host, ctx)

    async def _fail_snapshot(
        self, snapshot_id: str, step: str, reason: str, host: str | None, ctx: Context
    ) -> None:
        """A snapshot that could not be deleted also fails the delete of its volume, if that
        delete waits for it (a cascade)."""
        async with self.store.connection() as conn:
            moved = await snapshot_sql.move(conn, [snapshot_id], step, reason=reason, host=host)
        if moved and step == "delete_failed":
            why = f"snapshot {snapshot_id} could not be deleted: {reason}"
            await self._fail(moved[0]["volume_id"], "delete_failed", why, None, ctx)

    # --- read and update -----------------------------------------------------------------------

    @handles(GetSnapshot)
    async def get_snapshot(self, msg: GetSnapshot, ctx: Context) -> SnapshotView:
        async with self.store.connection() as conn:
            row = await snapshot_sql.get(conn, msg.snapshot_id)
        return snapshot_sql.view(self._visible_snapshot(row, ctx, msg.snapshot_id))

    @handles(ListSnapshots)
    async def list_snapshots(self, msg: ListSnapshots, ctx: Context) -> SnapshotList:
        project = listed_project(ctx, msg.project_id, msg.all_projects)
        async with self.store.connection() as conn:
            if msg.marker is not None:
                check_marker(await snapshot_sql.get(conn, msg.marker), project, msg.marker)
            rows = await snapshot_sql.list_snapshots(
                conn,
                project_id=project,
                name=msg.name,
                status=msg.status,
                volume_id=msg.volume_id,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        items = tuple(snapshot_sql.view(r) for r in rows[: msg.limit])
        return SnapshotList(items=items, more=len(rows) > msg.limit)

    @handles(UpdateSnapshot, key=lambda m: m.snapshot_id)
    async def update_snapshot(self, msg: UpdateSnapshot, ctx: Context) -> SnapshotView:
        require_member(ctx, "volume:update_snapshot")
        given = {"name": msg.name, "description": msg.description, "metadata": msg.metadata}
        fields = {k: v for k, v in given.items() if v is not None}
        async with self.store.transaction() as tx:
            row = await snapshot_sql.get(tx, msg.snapshot_id, lock="FOR UPDATE OF s")
            self._visible_snapshot(row, ctx, msg.snapshot_id)
            await snapshot_sql.update(tx, msg.snapshot_id, fields)
            row = await snapshot_sql.get(tx, msg.snapshot_id)
        assert row is not None
        return snapshot_sql.view(row)

    # --- delete --------------------------------------------------------------------------------

    @handles(DeleteSnapshot, key=lambda m: m.snapshot_id)
    async def delete_snapshot(self, msg: DeleteSnapshot, ctx: Context) -> Done:
        require_member(ctx, "volume:delete_snapshot")
        async with self.store.transaction() as tx:
            row = await snapshot_sql.get(tx, msg.snapshot_id, lock="FOR UPDATE OF s")
            row = self._visible_snapshot(row, ctx, msg.snapshot_id)
            if row["status"] == SS.DELETING:
                return Done()
            if row["status"] not in states.SNAPSHOT_DELETABLE:
                raise Invalid(
                    "status",
                    f"snapshot {msg.snapshot_id} is {row['status']}; it can be deleted when available or in "
                    "an error status",
                )
            if await sql.creating_from(tx, snapshot_id=msg.snapshot_id):
                raise Invalid("status", f"volumes are being created from snapshot {msg.snapshot_id}")
            moved = await snapshot_sql.move(tx, [msg.snapshot_id], "delete")
        for snap in moved:
            await self._send_snapshot_delete(snap, ctx)
        return Done()

    @handles(agent.SnapshotFileDeleted, key=lambda m: m.snapshot_id)
    async def on_snapshot_deleted(self, msg: agent.SnapshotFileDeleted, ctx: Context) -> None:
        async with self.store.transaction() as tx:
            gone = await snapshot_sql.remove(tx, msg.snapshot_id, msg.host)
            if gone is not None:
                await quota_sql.give_back(tx, gone["project_id"], snapshots=1, gigabytes=gone["size_gb"])
        if gone is not None:
            await self._after_snapshot_gone(gone["volume_id"], ctx)

    async def _after_snapshot_gone(self, volume_id: str, ctx: Context) -> None:
        """The last snapshot of a volume deleted with cascade is gone: now the volume's file.
        (Two replicas may both see the last one go; deleting a file twice is harmless.)"""
        async with self.store.connection() as conn:
            volume = await sql.get(conn, volume_id)
            if volume is None or volume["status"] != states.Status.DELETING:
                return
            if await snapshot_sql.of_volume(conn, volume_id):
                return
        await self._send_delete(volume, ctx)
