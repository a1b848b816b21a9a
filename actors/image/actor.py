"""The image service: Glance's image records and their lifecycle behind the `image` queue.

It owns the records; the bytes are streamed by the gateway into the blob store. An upload is
a short saga kept in the record: `BeginUpload` takes a `queued` image into `saving` (only one
upload at a time), `FinishUpload` makes it `active` after checking the owner's quota again
under a per-project lock (so concurrent uploads cannot together exceed it), `AbortUpload`
puts it back to `queued`. Visibility: admins see everything, others their project's images,
public ones, and community ones.
"""

import logging
import uuid
from pathlib import Path

from actors.image import sql
from fabric.actor import handles
from fabric.service import ServiceActor
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Conflict, FabricError, Forbidden, Invalid, NotFound, QuotaExceeded
from protocol.image import (
    QUEUE,
    AbortUpload,
    AddMember,
    BeginUpload,
    CreateImage,
    DeleteImage,
    FinishUpload,
    GetImage,
    GetMember,
    ImageChanged,
    ImageDeleted,
    ImageList,
    ImageView,
    ListImages,
    ListMembers,
    MemberList,
    MemberView,
    RemoveMember,
    SetMemberStatus,
    UpdateImage,
    UploadGranted,
)

MIGRATIONS = Path(__file__).parent / "migrations"
#: How long an `ImageChanged` may wait for the broker: after this the caches have aged it out.
CHANGED_TTL_S = 30.0

log = logging.getLogger("fabric.image")


def owner_of(ctx: Context) -> str:
    if ctx.project_id is None:
        raise Forbidden("image: a project-scoped token is needed")
    return ctx.project_id


def may_see(ctx: Context, image: ImageView) -> bool:
    return ctx.is_admin or image.owner == ctx.project_id or image.visibility in ("public", "community")


def may_change(ctx: Context, image: ImageView) -> bool:
    return ctx.is_admin or image.owner == ctx.project_id


class Image(ServiceActor):
    service = QUEUE

    async def setup(self) -> None:
        await self.register_endpoint("image", "glance", "/image")

    async def _visible(self, tx: Connection, ctx: Context, image_id: str, *, lock: bool = False) -> ImageView:
        image = await sql.get(tx, image_id, lock=lock)
        if image is None:
            raise NotFound("image", image_id)
        if may_see(ctx, image):
            return image
        # A shared image is seen by its members, whatever they answered (as Glance does).
        if image.visibility == "shared" and ctx.project_id is not None:
            if await sql.member(tx, image_id, ctx.project_id) is not None:
                return image
        raise NotFound("image", image_id)

    async def _changeable(self, tx: Connection, ctx: Context, image_id: str) -> ImageView:
        image = await self._visible(tx, ctx, image_id, lock=True)
        if not may_change(ctx, image):
            raise Forbidden(f"image: {image_id} belongs to another project")
        return image

    async def _changed(self, image_id: str, ctx: Context) -> None:
        """Tell those who keep this image that it changed, after the commit. Best effort: they
        also forget it after a while, so a broker that cannot take the event fails nothing."""
        try:
            await self.bus.publish(ImageChanged(image_id=image_id), ctx, ttl_s=CHANGED_TTL_S)
        except FabricError as exc:
            log.warning("image change not announced", extra={"image_id": image_id, "error": exc.message})

    @handles(CreateImage, key=lambda m: m.image_id)
    async def create_image(self, msg: CreateImage, ctx: Context) -> ImageView:
        owner = owner_of(ctx)
        if msg.fields.visibility == "public" and not ctx.is_admin:
            raise Forbidden("image: only admins publicize images")
        if "reader" in ctx.roles and "member" not in ctx.roles and not ctx.is_admin:
            raise Forbidden("image: readers cannot create images")
        async with self.store.transaction() as tx:
            created = await sql.insert(tx, msg.image_id, owner, msg.fields)
        if created is None:
            raise Conflict("image", f"an image with id {msg.image_id} exists")
        return created

    @handles(GetImage)
    async def get_image(self, msg: GetImage, ctx: Context) -> ImageView:
        async with self.store.connection() as tx:
            return await self._visible(tx, ctx, msg.image_id)

    @handles(ListImages)
    async def list_images(self, msg: ListImages, ctx: Context) -> ImageList:
        async with self.store.connection() as tx:
            if msg.marker is not None:
                await self._visible(tx, ctx, msg.marker)  # a marker one may not see is not found
            filters = {
                "name": msg.name,
                "status": msg.status,
                "visibility": msg.visibility,
                "owner": msg.owner,
                "id": list(msg.ids) if msg.ids is not None else None,
                "os_hidden": msg.os_hidden,
            }
            items = await sql.listing(
                tx,
                admin=ctx.is_admin,
                project=ctx.project_id,
                # Community images are listed when asked for by visibility (as Glance does).
                community=msg.visibility == "community" or msg.ids is not None,
                member_status=msg.member_status,
                filters=filters,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return ImageList(items=tuple(items[: msg.limit]), more=len(items) > msg.limit)

    @handles(UpdateImage, key=lambda m: m.image_id)
    async def update_image(self, msg: UpdateImage, ctx: Context) -> ImageView:
        async with self.store.transaction() as tx:
            image = await self._changeable(tx, ctx, msg.image_id)
            if msg.expected_updated_at is not None and image.updated_at != msg.expected_updated_at:
                raise Conflict("image", f"{msg.image_id} changed while the patch was applied")
            if msg.fields.visibility == "public" and image.visibility != "public" and not ctx.is_admin:
                raise Forbidden("image: only admins publicize images")
            if image.status != "queued" and (
                msg.fields.disk_format != image.disk_format
                or msg.fields.container_format != image.container_format
            ):
                raise Forbidden("image: disk and container formats are fixed once data is uploaded")
            updated = await sql.update(tx, msg.image_id, msg.fields)
        await self._changed(msg.image_id, ctx)
        return updated

    @handles(DeleteImage, key=lambda m: m.image_id)
    async def delete_image(self, msg: DeleteImage, ctx: Context) -> ImageDeleted:
        async with self.store.transaction() as tx:
            image = await self._changeable(tx, ctx, msg.image_id)
            if image.protected:
                raise Forbidden(f"image: {msg.image_id} is protected")
            if image.status == "saving":
                raise Conflict("image", f"{msg.image_id} is being uploaded")
            await sql.delete(tx, msg.image_id)
        await self._changed(msg.image_id, ctx)
        return ImageDeleted(location=image.location)

    @handles(BeginUpload, key=lambda m: m.image_id)
    async def begin_upload(self, msg: BeginUpload, ctx: Context) -> UploadGranted:
        async with self.store.transaction() as tx:
            image = await self._changeable(tx, ctx, msg.image_id)
            if image.status != "queued":
                raise Conflict("image", f"{msg.image_id} is {image.status}; data can be uploaded once")
            if image.disk_format is None or image.container_format is None:
                raise Conflict("image", "set disk_format and container_format before uploading data")
            used = await sql.bytes_used(tx, image.owner, excluding=msg.image_id)
            left = self.settings.image_quota_bytes - used
            if left <= 0:
                raise QuotaExceeded("image storage (bytes)", str(self.settings.image_quota_bytes))
            location = f"{msg.image_id}-{uuid.uuid4().hex[:8]}"
            await sql.set_status(tx, msg.image_id, "saving", location=location)
        expected = image.properties.get("owner_specified.openstack.md5") or None
        return UploadGranted(location=location, max_bytes=left, expected_md5=expected)

    @handles(FinishUpload, key=lambda m: m.image_id)
    async def finish_upload(self, msg: FinishUpload, ctx: Context) -> ImageView:
        async with self.store.transaction() as tx:
            image = await self._changeable(tx, ctx, msg.image_id)
            if image.status == "active" and image.checksum == msg.checksum:
                return image  # a repeated finish: already done
            if image.status != "saving":
                raise Conflict("image", f"{msg.image_id} is {image.status}, not being uploaded")
            await sql.lock_owner(tx, image.owner)
            used = await sql.bytes_used(tx, image.owner, excluding=msg.image_id)
            fits = used + msg.size <= self.settings.image_quota_bytes
            if fits:
                return await sql.activate(tx, msg.image_id, msg.size, msg.checksum, msg.os_hash_value)
            await sql.set_status(tx, msg.image_id, "queued")
        # Raised after the commit, so the image is queued again for a smaller upload.
        raise QuotaExceeded("image storage (bytes)", str(self.settings.image_quota_bytes))

    @handles(AbortUpload, key=lambda m: m.image_id)
    async def abort_upload(self, msg: AbortUpload, ctx: Context) -> ImageView:
        async with self.store.transaction() as tx:
            image = await self._changeable(tx, ctx, msg.image_id)
            if image.status != "saving":
                return image
            return await sql.set_status(tx, msg.image_id, "queued")

    # --- members: the owner shares, the member project accepts ------------------------------

    @handles(AddMember, key=lambda m: m.image_id)
    async def add_member(self, msg: AddMember, ctx: Context) -> MemberView:
        async with self.store.transaction() as tx:
            image = await self._changeable(tx, ctx, msg.image_id)
            if image.visibility != "shared":
                raise Forbidden(
                    f"image: {msg.image_id} is {image.visibility}; only shared images have members"
                )
            if msg.member_id == image.owner:
                raise Invalid("member", "the owner cannot be a member of its own image")
            added = await sql.add_member(tx, msg.image_id, msg.member_id)
        if added is None:
            raise Conflict("image member", f"{msg.member_id} is a member of {msg.image_id} already")
        return added

    @handles(ListMembers)
    async def list_members(self, msg: ListMembers, ctx: Context) -> MemberList:
        async with self.store.transaction() as tx:
            image = await self._visible(tx, ctx, msg.image_id)
            if image.visibility != "shared":
                raise Forbidden(
                    f"image: {msg.image_id} is {image.visibility}; only shared images have members"
                )
            found = await sql.members(tx, msg.image_id)
        if may_change(ctx, image):
            return MemberList(items=tuple(found))
        return MemberList(items=tuple(m for m in found if m.member_id == ctx.project_id))

    @handles(GetMember)
    async def get_member(self, msg: GetMember, ctx: Context) -> MemberView:
        async with self.store.transaction() as tx:
            image = await self._visible(tx, ctx, msg.image_id)
            found = await sql.member(tx, msg.image_id, msg.member_id)
        if found is None or not (may_change(ctx, image) or msg.member_id == ctx.project_id):
            raise NotFound("image member", msg.member_id)
        return found

    @handles(SetMemberStatus, key=lambda m: m.image_id)
    async def set_member_status(self, msg: SetMemberStatus, ctx: Context) -> MemberView:
        if msg.member_id != ctx.project_id:  # not even an admin answers for another project
            raise Forbidden("image: only the member project answers a share")
        async with self.store.transaction() as tx:
            await self._visible(tx, ctx, msg.image_id)
            updated = await sql.set_member_status(tx, msg.image_id, msg.member_id, msg.status)
        if updated is None:
            raise NotFound("image member", msg.member_id)
        return updated

    @handles(RemoveMember, key=lambda m: m.image_id)
    async def remove_member(self, msg: RemoveMember, ctx: Context) -> MemberList:
        async with self.store.transaction() as tx:
            await self._changeable(tx, ctx, msg.image_id)
            if not await sql.remove_member(tx, msg.image_id, msg.member_id):
                raise NotFound("image member", msg.member_id)
            left = MemberList(items=tuple(await sql.members(tx, msg.image_id)))
        await self._changed(msg.image_id, ctx)
        return left
