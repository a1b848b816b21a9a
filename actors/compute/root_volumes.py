"""Boot from volume (Nova's block_device_mapping_v2 with boot_index 0 on a volume), mixed into
`actor.Compute` through `servers.Servers`.

The root volume is made (from an image) or checked (an existing one) when the server is
created, so that a bad request fails before anything exists and the volume is copied-on-write
while the scheduler places the server. The spawn step then waits for it: it goes on only when
the volume is `available` (the volume service's `VolumeStatusChanged` event, or the reaper,
drives it again), reserves an attachment for the chosen host, and hands the agent the volume as
the guest's root disk. The image's facts a spawn needs (kernel, ramdisk, command line) come from
the volume's `volume_image_metadata`, just as they come from the image otherwise.
"""

import logging
import uuid
from typing import Any

import asyncpg

from actors.compute import attachment_sql, boot_images
from actors.compute.volumes import Volumes, guest_disk
from fabric.actor import subscribes
from fabric.bus import Bus
from fabric.config import Settings
from fabric.service import service_context
from fabric.store import Store
from protocol import compute_agent as agent
from protocol.compute import CreateServer, FlavorView
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.image import ImageChanged
from protocol.volume import QUEUE as VOLUME
from protocol.volume import (
    AttachmentReserved,
    CreateVolume,
    DeleteVolume,
    GetVolume,
    ReserveAttachment,
    VolumeView,
)

log = logging.getLogger("fabric.compute")

FIELD = "block_device_mapping_v2[0]"

#: Where a root volume's attachment ids come from: one per server, volume and host, so that a
#: step driven again after a crash reserves the same attachment instead of a second one.
ATTACHMENTS = uuid.UUID("5d0c3a52-6f49-4c0e-9a57-1c6a3f2b7e10")


def root_volume_id(server_id: str) -> str:
    """The id of the volume made for a server's root disk: fixed by the server id, so a
    retried create finds the volume it made."""
    return str(uuid.uuid5(ATTACHMENTS, f"root:{server_id}"))


class RootVolumeFailed(Exception):
    """The root volume will never be ready: the build fails with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RootVolumes(Volumes):
    def __init__(self, bus: Bus, store: Store, settings: Settings) -> None:
        super().__init__(bus, store, settings)
        #: What boots take from images, whether from an image or from a volume made of one.
        self.images = boot_images.Images(bus)

    @subscribes(ImageChanged)
    async def on_image_changed(self, event: ImageChanged, ctx: Context) -> None:
        self.images.forget(event.image_id)

    async def root_volume_spec(
        self, msg: CreateServer, flavor: FlavorView, ctx: Context
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The spawn facts of a server booting from a volume, and its root volume record
        (`volume_id`, `delete_on_termination`, `made`). Makes the volume from the image when
        asked; the caller deletes it (`give_back_root_volume`) if the server is not created."""
        root = msg.root_volume
        assert root is not None
        if root.volume_id is not None:
            try:
                volume: VolumeView = await self.bus.call(VOLUME, GetVolume(volume_id=root.volume_id), ctx)
            except NotFound:
                raise Invalid(f"{FIELD}.uuid", f"volume {root.volume_id} could not be found") from None
            if volume.status != "available":
                raise Invalid(f"{FIELD}.uuid", f"volume {volume.id} is {volume.status}, not available")
            properties = volume.image_metadata
            volume_id, made = volume.id, False
        else:
            if root.image_id is None:
                raise Invalid(f"{FIELD}.uuid", "a volume or an image to boot from is required")
            image = await self.images.get(root.image_id, f"{FIELD}.uuid", ctx)
            size = root.size_gb or flavor.disk
            if not size:
                raise Invalid(f"{FIELD}.volume_size", "required when the flavor has no disk")
            properties = dict(image.properties)
            volume_id, made = root_volume_id(msg.server_id), True
        # Every check before the volume is made: a request refused leaves no volume behind.
        parts = await self.images.kernel_boot(properties, FIELD, ctx)
        if made:
            make = CreateVolume(
                volume_id=volume_id, size_gb=size, image_id=root.image_id, name=f"{msg.name}-root"
            )
            await self.bus.call(VOLUME, make, ctx)
        record = {"volume_id": volume_id, "delete_on_termination": root.delete_on_termination, "made": made}
        return {"root": None, "root_volume": record} | parts, record

    async def give_back_root_volume(self, record: dict[str, Any], ctx: Context) -> None:
        """The server was not created: delete the volume made for it."""
        if record["made"]:
            try:
                gone = DeleteVolume(volume_id=record["volume_id"])
                await self.bus.call(VOLUME, gone, service_context(ctx.request_id))
            except NotFound:
                pass

    async def root_disk(
        self, row: asyncpg.Record, record: dict[str, Any], ctx: Context
    ) -> agent.GuestDisk | None:
        """The root volume as a disk for the spawn on `row["host"]`, reserving its attachment;
        None while the volume is still being made (this step is driven again when it is ready).
        RootVolumeFailed when it never will be."""
        volume_id = record["volume_id"]
        async with self.store.connection() as conn:
            existing = await attachment_sql.get(conn, row["id"], volume_id)
        if existing is not None:
            return guest_disk(existing)
        service = service_context(ctx.request_id)
        try:
            volume: VolumeView = await self.bus.call(VOLUME, GetVolume(volume_id=volume_id), service)
        except NotFound:
            raise RootVolumeFailed(f"root volume {volume_id} no longer exists") from None
        if volume.status == "creating":
            return None
        if volume.status != "available":
            why = f": {volume.error_reason}" if volume.error_reason else ""
            raise RootVolumeFailed(f"root volume {volume_id} is {volume.status}{why}")
        attachment_id = str(uuid.uuid5(ATTACHMENTS, f"{row['id']}/{volume_id}/{row['host']}"))
        reserve = ReserveAttachment(
            attachment_id=attachment_id, volume_id=volume_id, server_id=row["id"], host=row["host"]
        )
        reserved: AttachmentReserved = await self.bus.call(VOLUME, reserve, service)
        values = {
            "server_id": row["id"],
            "volume_id": volume_id,
            "attachment_id": attachment_id,
            "device": "/dev/vda",
            "status": "attaching",
            "connection": {
                "driver_volume_type": reserved.connection.driver_volume_type,
                "data": reserved.connection.data,
            },
            "is_root": True,
            "delete_on_termination": record["delete_on_termination"],
        }
        async with self.store.transaction() as tx:
            made = await attachment_sql.insert(tx, values)  # a row of this server's: returned above
        if made is None:  # the volume went to another server meanwhile
            raise RootVolumeFailed(f"root volume {volume_id} is attached elsewhere")
        return guest_disk(made)

    async def end_root_attachments(self, server_id: str, ctx: Context) -> None:
        """A spawn failed: give the root volume back before the server is placed again (its
        next host reserves it anew)."""
        async with self.store.connection() as conn:
            rows = await attachment_sql.of_server(conn, server_id)
        for r in rows:
            if r["is_root"]:
                await self.drop_attachment(r["attachment_id"], r["volume_id"], (r["status"],), ctx)

    async def complete_root_attachments(self, server_id: str, ctx: Context) -> None:
        """The guest runs on its root volume: the volume is `in-use`."""
        async with self.store.connection() as conn:
            rows = await attachment_sql.of_server(conn, server_id)
        for r in rows:
            if r["status"] == "attaching" and r["is_root"]:
                await self.attachment_done(r["attachment_id"], r["volume_id"], server_id, "vda", ctx)
