"""Volumes: the API's handlers and the create, extend and delete sagas that follow them.

Each saga step is a command cast to the storage host's agent (persisted by the broker) and an
answer cast back; the actor records each with one conditional UPDATE (`sql.move`) and publishes
`VolumeStatusChanged` after it commits. A create counts its quota in the transaction that
inserts the row, so a failed create leaves neither a row nor usage behind; a delete gives the
usage back in the transaction that removes the row, once the file is gone.
"""

import dataclasses
import logging
from collections.abc import Iterable

import asyncpg
import orjson

from actors.volume import quota_sql, snapshot_sql, sources, sql, states
from actors.volume.hosts import NO_VALID_BACKEND
from actors.volume.listing import check_marker, listed_project
from actors.volume.placement import Placement
from fabric.actor import handles
from fabric.service import require_member
from fabric.store import Connection
from protocol import volume_agent as agent
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.image import QUEUE as IMAGE
from protocol.image import GetImage, ImageView
from protocol.storage import ImageFile
from protocol.system import Done
from protocol.volume import (
    CreateVolume,
    DeleteVolume,
    ExtendVolume,
    GetVolume,
    ListVolumes,
    SetVolumeBootable,
    UpdateVolume,
    VolumeList,
    VolumeStatusChanged,
    VolumeView,
)

log = logging.getLogger("fabric.volume")

#: The spec of a volume type that names the backend its volumes go to (Cinder's).
BACKEND_SPEC = "volume_backend_name"


class Volumes(Placement):
    """The volume handlers of the volume service (mixed into `actor.Volume`)."""

    def _visible(self, row: asyncpg.Record | None, ctx: Context, volume_id: str) -> asyncpg.Record:
        """Another project's volume is not found, not forbidden: its existence does not leak."""
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("volume", volume_id)
        return row

    async def _announce(self, rows: Iterable[asyncpg.Record | None], ctx: Context) -> None:
        """After commit: a status that could still roll back is never announced."""
        for row in rows:
            if row is not None:
                await self.bus.publish(
                    VolumeStatusChanged(
                        volume_id=row["id"],
                        project_id=row["project_id"],
                        status=row["status"],
                        error_reason=row["error_reason"],
                        bootable=row["bootable"],
                    ),
                    ctx,
                )

    # --- create --------------------------------------------------------------------------------

    async def _image(self, image_id: str, ctx: Context) -> ImageView:
        try:
            image: ImageView = await self.bus.call(IMAGE, GetImage(image_id=image_id), ctx)
        except NotFound:
            raise Invalid("imageRef", f"image {image_id} could not be found") from None
        return image

    @handles(CreateVolume, key=lambda m: m.volume_id)
    async def create_volume(self, msg: CreateVolume, ctx: Context) -> VolumeView:
        require_member(ctx, "volume:create")
        given = [
            name
            for name, value in (
                ("imageRef", msg.image_id),
                ("snapshot_id", msg.snapshot_id),
                ("source_volid", msg.source_volume_id),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise Invalid(given[1], f"a volume has at most one source, not {' and '.join(given)}")
        if not given and msg.size_gb is None:
            raise Invalid("size", "required unless the volume is made from a snapshot, a volume or an image")
        project = ctx.project_id or ""
        async with self.store.connection() as conn:
            pre = await sql.prelude(conn, msg.volume_type, project, msg.volume_id)
            if pre["exists"]:  # a retried create: the volume as it is now
                return sql.view(self._visible(await sql.get(conn, msg.volume_id), ctx, msg.volume_id))
        if msg.volume_type is not None and (pre["type_id"] is None or not (pre["is_public"] or ctx.is_admin)):
            raise NotFound("volume_type", msg.volume_type)
        limits = quota_sql.limits_from(pre["limits"])
        values: dict[str, object] = {
            "id": msg.volume_id,
            "name": msg.name,
            "description": msg.description,
            "project_id": project,
            "user_id": ctx.user_id or "",
            "size_gb": msg.size_gb,
            "status": states.Status.CREATING,
            "error_reason": None,
            "availability_zone": msg.availability_zone,
            "type_id": pre["type_id"],
            "bootable": False,
            "image_metadata": {},
            "image": None,
            "snapshot_id": msg.snapshot_id,
            "source_volume_id": msg.source_volume_id,
            "metadata": msg.metadata,
            "host": None,
            "agent_queue": None,
        }
        type_name: str = pre["type_name"]
        size_gb = msg.size_gb
        placed: tuple[str, int] | None = None
        if msg.image_id is not None:
            image = await self._image(msg.image_id, ctx)
            values["image"] = dataclasses.asdict(sources.image_file(image))
            size_gb = sources.size_for_image(image, msg.size_gb)
            values["image_metadata"] = sources.image_metadata(image)
            values["bootable"] = True
        is_copy = msg.snapshot_id is not None or msg.source_volume_id is not None
        if not is_copy:  # a copy lives where its source does, placed in `_insert_copy`
            assert size_gb is not None  # asked for, or the image's
            quota_sql.check_volume_size(size_gb, limits)
            backend = orjson.loads(pre["extra_specs"]).get(BACKEND_SPEC)
            placed = await self._place(values, size_gb, backend, msg)
            values["size_gb"] = size_gb
        try:
            if is_copy:
                row, created = await self._insert_copy(msg, ctx, values, type_name, limits)
            else:
                row, created = await self._insert_counted(values, type_name, limits)
        except BaseException:
            if placed is not None:
                self.hosts.unplace(*placed)
            raise
        assert row is not None
        if created is not None:
            # After commit: never a command or an event for a row that could still roll back.
            # Announced first, so that `creating` is never heard after `available`; if either
            # send fails, the reaper sends the command after the step timeout.
            await self._announce([created], ctx)
            if created["status"] == states.Status.CREATING:
                await self._send_create(created, ctx)
        elif placed is not None:
            self.hosts.unplace(*placed)
        return sql.view(self._visible(row, ctx, msg.volume_id))

    async def _insert_counted(
        self, values: dict[str, object], type_name: str, limits: dict[str, int]
    ) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
        """The hot path: row and usage in one statement (`sql.insert_counted`). Returns the
        volume's row and, when this call made it, the same row as created."""
        size_gb = values["size_gb"]
        assert isinstance(size_gb, int)
        quota_sql.check("volumes", 0, 1, limits["volumes"])  # over a limit even as the first
        quota_sql.check("gigabytes", 0, size_gb, limits["gigabytes"])
        try:
            async with self.store.connection() as conn:
                created = await sql.insert_counted(conn, values, type_name, limits)
                if created is not None:
                    return created, created
        except asyncpg.UniqueViolationError:  # a retry of this create made it meanwhile
            async with self.store.connection() as conn:
                return await sql.get(conn, str(values["id"])), None
        # Over a limit, or so it seemed: find out which under the usage row's lock (and make
        # the volume after all if another create or delete freed the room meanwhile).
        async with self.store.transaction() as tx:
            row = created = await sql.insert(tx, values, type_name)
            if created is not None:
                await quota_sql.take(tx, str(values["project_id"]), limits, volumes=1, gigabytes=size_gb)
            else:
                row = await sql.get(tx, str(values["id"]))
        return row, created

    async def _insert_copy(
        self,
        msg: CreateVolume,
        ctx: Context,
        values: dict[str, object],
        type_name: str,
        limits: dict[str, int],
    ) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
        """A volume from a snapshot or a volume, made while the source is share-locked."""
        async with self.store.transaction() as tx:
            if msg.snapshot_id is not None:
                size_gb, type_name = await self._from_snapshot(
                    tx, msg.snapshot_id, msg, ctx, values, type_name
                )
            else:
                assert msg.source_volume_id is not None
                size_gb, type_name = await self._from_volume(
                    tx, msg.source_volume_id, msg, ctx, values, type_name
                )
            quota_sql.check_volume_size(size_gb, limits)
            values["size_gb"] = size_gb
            row = created = await sql.insert(tx, values, type_name)
            if created is not None:
                await quota_sql.take(tx, str(values["project_id"]), limits, volumes=1, gigabytes=size_gb)
            else:  # a retry of this create made it meanwhile
                row = await sql.get(tx, msg.volume_id)
        return row, created

    async def _place(
        self, values: dict[str, object], size_gb: int, backend: str | None, msg: CreateVolume
    ) -> tuple[str, int] | None:
        """Put a volume made from nothing or from an image on a host (before any transaction:
        placing may read the hosts table), or mark it failed with Cinder's words."""
        zone = msg.availability_zone
        if zone is not None:
            zones = await self.known_zones()
            if zones and zone not in zones:
                raise Invalid("availability_zone", f"availability zone '{zone}' is invalid")
        # None asked: the cloud's default zone, as Cinder's default_availability_zone (a host of
        # another zone would be a surprise, and one a test's vanished host could be).
        host = await self.pick_host(size_gb, backend=backend, zone=zone or self.settings.availability_zone)
        if host is None:
            values["status"] = states.Status.ERROR
            values["error_reason"] = NO_VALID_BACKEND
            values["availability_zone"] = zone or self.settings.availability_zone
            return None
        values["host"], values["agent_queue"] = host.name, host.queue
        values["availability_zone"] = host.availability_zone
        return host.name, size_gb

    async def _from_snapshot(
        self,
        tx: Connection,
        snapshot_id: str,
        msg: CreateVolume,
        ctx: Context,
        values: dict[str, object],
        type_name: str,
    ) -> tuple[int, str]:
        # A share lock: the snapshot cannot start being deleted until this create commits.
        snap = await snapshot_sql.get(tx, snapshot_id, lock="FOR SHARE OF s")
        if snap is None or (snap["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("snapshot_id", snapshot_id)
        if snap["status"] != states.SnapshotStatus.AVAILABLE:
            raise Invalid("snapshot_id", f"snapshot {snapshot_id} is {snap['status']}, not available")
        source = await sql.get(tx, snap["volume_id"])
        assert source is not None  # a snapshot's volume outlives it
        return self._copy_of(values, msg, source, snap["size_gb"], f"snapshot {snapshot_id}", type_name)

    async def _from_volume(
        self,
        tx: Connection,
        volume_id: str,
        msg: CreateVolume,
        ctx: Context,
        values: dict[str, object],
        type_name: str,
    ) -> tuple[int, str]:
        # A share lock: the source cannot start being deleted until this create commits.
        source = await sql.get(tx, volume_id, lock="FOR SHARE OF v")
        if source is None or (source["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("source_volid", volume_id)
        if source["status"] != states.Status.AVAILABLE:
            raise Invalid("source_volid", f"volume {volume_id} is {source['status']}, not available")
        return self._copy_of(values, msg, source, source["size_gb"], f"volume {volume_id}", type_name)

    def _copy_of(
        self,
        values: dict[str, object],
        msg: CreateVolume,
        source: asyncpg.Record,
        least_gb: int,
        what: str,
        type_name: str,
    ) -> tuple[int, str]:
        """A copy of a snapshot or a volume lives where its source does, is at least as large,
        and has the source volume's type unless another was asked for. Returns its size and its
        type's name."""
        if msg.size_gb is not None and msg.size_gb < least_gb:
            raise Invalid("size", f"{msg.size_gb} GiB is smaller than {what} ({least_gb} GiB)")
        if msg.availability_zone not in (None, source["availability_zone"]):
            raise Invalid(
                "availability_zone",
                f"{what} is in availability zone {source['availability_zone']}, not {msg.availability_zone}",
            )
        values["availability_zone"] = source["availability_zone"]
        values["host"], values["agent_queue"] = source["host"], source["agent_queue"]
        values["bootable"] = source["bootable"]
        values["image_metadata"] = orjson.loads(source["image_metadata"])
        if msg.volume_type is None:
            values["type_id"] = source["type_id"]
            type_name = source["volume_type"]
        return msg.size_gb or least_gb, type_name

    async def _send_create(self, row: asyncpg.Record, ctx: Context) -> None:
        image = orjson.loads(row["image"]) if row["image"] else None
        command = agent.CreateVolumeFile(
            host=row["host"],
            volume_id=row["id"],
            size_gb=row["size_gb"],
            image=ImageFile(**image) if image else None,
            snapshot_id=row["snapshot_id"],
            source_volume_id=row["source_volume_id"],
        )
        await self.bus.cast(row["agent_queue"], command, ctx)

    @handles(agent.VolumeFileCreated, key=lambda m: m.volume_id)
    async def on_file_created(self, msg: agent.VolumeFileCreated, ctx: Context) -> None:
        async with self.store.connection() as conn:
            moved = await sql.move(conn, msg.volume_id, "file_created", host=msg.host)
        await self._announce([moved], ctx)

    @handles(agent.VolumeFileFailed, key=lambda m: m.volume_id)
    async def on_file_failed(self, msg: agent.VolumeFileFailed, ctx: Context) -> None:
        step = states.FAILED_OPERATION.get(msg.operation)
        if step is None:
            log.warning("a volume agent failed an unknown operation", extra={"operation": msg.operation})
            return
        await self._fail(msg.volume_id, step, msg.reason, msg.host, ctx)

    async def _fail(self, volume_id: str, step: str, reason: str, host: str | None, ctx: Context) -> bool:
        """Move a volume to the error status of `step`, recording `reason`; a failed extend
        gives back the gigabytes it took. False: it was not in that step (any more)."""
        async with self.store.transaction() as tx:
            if step == "resize_failed":
                row = await tx.fetchrow("SELECT host FROM volume.volumes WHERE id = $1", volume_id)
                moved = await sql.end_extend(
                    tx, volume_id, host or (row["host"] if row else ""), ok=False, reason=reason
                )
                if moved is not None and moved["taken_gb"] > 0:
                    await quota_sql.give_back(tx, moved["project_id"], gigabytes=moved["taken_gb"])
            else:
                moved = await sql.move(tx, volume_id, step, reason=reason, host=host)
        await self._announce([moved], ctx)
        return moved is not None

    # --- read and update -----------------------------------------------------------------------

    @handles(GetVolume)
    async def get_volume(self, msg: GetVolume, ctx: Context) -> VolumeView:
        async with self.store.connection() as conn:
            return sql.view(self._visible(await sql.get(conn, msg.volume_id), ctx, msg.volume_id))

    @handles(ListVolumes)
    async def list_volumes(self, msg: ListVolumes, ctx: Context) -> VolumeList:
        project = listed_project(ctx, msg.project_id, msg.all_projects)
        async with self.store.connection() as conn:
            if msg.marker is not None:
                check_marker(await sql.get(conn, msg.marker), project, msg.marker)
            rows = await sql.list_volumes(
                conn,
                project_id=project,
                name=msg.name,
                status=msg.status,
                metadata=msg.metadata,
                bootable=msg.bootable,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return VolumeList(items=tuple(sql.view(r) for r in rows[: msg.limit]), more=len(rows) > msg.limit)

    @handles(UpdateVolume, key=lambda m: m.volume_id)
    async def update_volume(self, msg: UpdateVolume, ctx: Context) -> VolumeView:
        require_member(ctx, "volume:update")
        given = {"name": msg.name, "description": msg.description, "metadata": msg.metadata}
        fields = {k: v for k, v in given.items() if v is not None}
        async with self.store.transaction() as tx:
            self._visible(await sql.get(tx, msg.volume_id, lock="FOR UPDATE OF v"), ctx, msg.volume_id)
            await sql.update(tx, msg.volume_id, fields)
            row = await sql.get(tx, msg.volume_id)
        assert row is not None
        return sql.view(row)

    @handles(SetVolumeBootable, key=lambda m: m.volume_id)
    async def set_bootable(self, msg: SetVolumeBootable, ctx: Context) -> Done:
        require_member(ctx, "volume_extension:volume_actions:set_bootable")
        async with self.store.connection() as conn:
            self._visible(await sql.get(conn, msg.volume_id), ctx, msg.volume_id)
            await sql.set_bootable(conn, msg.volume_id, msg.bootable)
        return Done()

    # --- extend --------------------------------------------------------------------------------

    @handles(ExtendVolume, key=lambda m: m.volume_id)
    async def extend_volume(self, msg: ExtendVolume, ctx: Context) -> Done:
        require_member(ctx, "volume:extend")
        async with self.store.transaction() as tx:
            row = self._visible(await sql.get(tx, msg.volume_id, lock="FOR UPDATE OF v"), ctx, msg.volume_id)
            if row["status"] != states.Status.AVAILABLE:
                raise Invalid(
                    "status",
                    f"volume {msg.volume_id} is {row['status']}; only an available volume can be extended",
                )
            if msg.new_size_gb <= row["size_gb"]:
                raise Invalid(
                    "new_size",
                    f"new size for extend must be greater than current size (current: {row['size_gb']}, "
                    f"extended: {msg.new_size_gb})",
                )
            limits = await quota_sql.limits(tx, row["project_id"])
            quota_sql.check_volume_size(msg.new_size_gb, limits)
            await quota_sql.take(tx, row["project_id"], limits, gigabytes=msg.new_size_gb - row["size_gb"])
            moved = await sql.begin_extend(tx, msg.volume_id, msg.new_size_gb)
            assert moved is not None  # the row is locked, and was available
        await self._announce([moved], ctx)
        await self._send_resize(moved["host"], moved["agent_queue"], msg.volume_id, msg.new_size_gb, ctx)
        return Done()

    async def _send_resize(self, host: str, queue: str, volume_id: str, size_gb: int, ctx: Context) -> None:
        await self.bus.cast(
            queue, agent.ResizeVolumeFile(host=host, volume_id=volume_id, size_gb=size_gb), ctx
        )

    @handles(agent.VolumeFileResized, key=lambda m: m.volume_id)
    async def on_file_resized(self, msg: agent.VolumeFileResized, ctx: Context) -> None:
        async with self.store.transaction() as tx:
            moved = await sql.end_extend(tx, msg.volume_id, msg.host, ok=True, reason=None)
        await self._announce([moved], ctx)

    # --- delete --------------------------------------------------------------------------------

    @handles(DeleteVolume, key=lambda m: m.volume_id)
    async def delete_volume(self, msg: DeleteVolume, ctx: Context) -> Done:
        """A delete asked again while deleting is Done (the first one is under way)."""
        require_member(ctx, "volume:delete")
        async with self.store.transaction() as tx:
            row = self._visible(await sql.get(tx, msg.volume_id, lock="FOR UPDATE OF v"), ctx, msg.volume_id)
            if row["status"] == states.Status.DELETING:
                return Done()
            if row["status"] not in states.DELETABLE or orjson.loads(row["attachments"]):
                raise Invalid(
                    "status",
                    f"volume {msg.volume_id} is {row['status']}; it can be deleted when available or in an "
                    "error status, and not attached",
                )
            snapshots = await snapshot_sql.of_volume(tx, msg.volume_id, lock="FOR UPDATE OF s")
            if snapshots and not msg.cascade:
                raise Invalid(
                    "cascade",
                    f"volume {msg.volume_id} has {len(snapshots)} snapshot(s): delete them first, or "
                    "delete the volume with cascade",
                )
            for snap in snapshots:
                if snap["status"] not in states.SNAPSHOT_DELETABLE | {states.SnapshotStatus.DELETING}:
                    raise Invalid("cascade", f"snapshot {snap['id']} of the volume is {snap['status']}")
            if await sql.creating_from(tx, volume_id=msg.volume_id):
                raise Invalid("status", f"volumes are being created from volume {msg.volume_id}")
            moved = await sql.move(tx, msg.volume_id, "delete")
            assert moved is not None  # locked, and in a deletable status
            doomed = await snapshot_sql.move(tx, [s["id"] for s in snapshots], "delete") if snapshots else []
        await self._announce([moved], ctx)
        if snapshots:
            # The volume's file goes once the last of them is gone (`on_snapshot_deleted`).
            for snap in doomed:
                await self._send_snapshot_delete(snap, ctx)
        else:
            await self._send_delete(moved, ctx)
        return Done()

    async def _send_snapshot_delete(self, snap: asyncpg.Record, ctx: Context) -> None:
        command = agent.DeleteSnapshotFile(host=snap["host"], snapshot_id=snap["id"])
        await self.bus.cast(snap["agent_queue"], command, ctx)

    async def _send_delete(self, row: asyncpg.Record, ctx: Context) -> None:
        """A volume that never got a host has no file: it goes at once."""
        if row["host"] is None:
            await self._finish_delete(row["id"], None, ctx)
        else:
            command = agent.DeleteVolumeFile(host=row["host"], volume_id=row["id"])
            await self.bus.cast(row["agent_queue"], command, ctx)

    async def _finish_delete(self, volume_id: str, host: str | None, ctx: Context) -> None:
        async with self.store.transaction() as tx:
            gone = await sql.remove(tx, volume_id, host)
            if gone is not None:
                await quota_sql.give_back(tx, gone["project_id"], volumes=1, gigabytes=gone["size_gb"])
        if gone is not None:
            event = VolumeStatusChanged(volume_id=volume_id, project_id=gone["project_id"], status="deleted")
            await self.bus.publish(event, ctx)

    @handles(agent.VolumeFileDeleted, key=lambda m: m.volume_id)
    async def on_file_deleted(self, msg: agent.VolumeFileDeleted, ctx: Context) -> None:
        await self._finish_delete(msg.volume_id, msg.host, ctx)
