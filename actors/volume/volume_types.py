"""Volume types: what a user picks when creating a volume, which admins map to backends with
the `volume_backend_name` extra spec. Admins manage them; every project sees the public ones.
The default type (`__DEFAULT__`, made by the first migration, as Cinder makes it) takes every
volume created without a type, and cannot be deleted; nor can a type that volumes use."""

import asyncpg

from actors.volume import type_sql
from fabric.actor import handles
from fabric.service import ServiceActor, require_admin
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound
from protocol.system import Done
from protocol.volume import (
    CreateVolumeType,
    DeleteVolumeType,
    GetVolumeType,
    ListVolumeTypes,
    UpdateVolumeType,
    VolumeTypeList,
    VolumeTypeView,
)


def _check_specs(specs: dict[str, str]) -> None:
    for key in specs:
        if not 1 <= len(key) <= 255:
            raise Invalid(f"extra_specs.{key[:64]}", "a key has 1 to 255 characters")


class VolumeTypes(ServiceActor):
    """The volume type handlers of the volume service (mixed into `actor.Volume`)."""

    @handles(CreateVolumeType, key=lambda m: m.name)
    async def create_volume_type(self, msg: CreateVolumeType, ctx: Context) -> VolumeTypeView:
        require_admin(ctx, "volume_extension:types_manage")
        _check_specs(msg.extra_specs)
        values = {
            "name": msg.name,
            "description": msg.description,
            "is_public": msg.is_public,
            "extra_specs": msg.extra_specs,
        }
        async with self.store.transaction() as tx:
            created = await type_sql.insert(tx, msg.type_id, values)
        if created is None:
            raise Conflict("volume_type", f"a volume type with id {msg.type_id} or name {msg.name} exists")
        return type_sql.view(created)

    @handles(GetVolumeType)
    async def get_volume_type(self, msg: GetVolumeType, ctx: Context) -> VolumeTypeView:
        async with self.store.connection() as conn:
            found = await type_sql.find(conn, msg.type_ref)
        if found is None or not (found["is_public"] or ctx.is_admin):
            raise NotFound("volume_type", msg.type_ref)
        return type_sql.view(found)

    @handles(ListVolumeTypes)
    async def list_volume_types(self, msg: ListVolumeTypes, ctx: Context) -> VolumeTypeList:
        async with self.store.connection() as conn:
            rows = await type_sql.listing(conn, admin=ctx.is_admin)
        return VolumeTypeList(items=tuple(type_sql.view(r) for r in rows))

    @handles(UpdateVolumeType, key=lambda m: m.type_id)
    async def update_volume_type(self, msg: UpdateVolumeType, ctx: Context) -> VolumeTypeView:
        """`extra_specs` replaces them whole; fields left None are unchanged."""
        require_admin(ctx, "volume_extension:types_manage")
        if msg.extra_specs is not None:
            _check_specs(msg.extra_specs)
        fields = {
            k: v
            for k, v in (
                ("name", msg.name),
                ("description", msg.description),
                ("is_public", msg.is_public),
                ("extra_specs", msg.extra_specs),
            )
            if v is not None
        }
        try:
            async with self.store.transaction() as tx:
                updated = await type_sql.update(tx, msg.type_id, fields)
        except asyncpg.UniqueViolationError:
            raise Conflict("volume_type", f"a volume type named {msg.name} exists") from None
        if updated is None:
            raise NotFound("volume_type", msg.type_id)
        return type_sql.view(updated)

    @handles(DeleteVolumeType, key=lambda m: m.type_id)
    async def delete_volume_type(self, msg: DeleteVolumeType, ctx: Context) -> Done:
        require_admin(ctx, "volume_extension:types_manage")
        try:
            async with self.store.transaction() as tx:
                found = await type_sql.get(tx, msg.type_id)
                if found is None:
                    raise NotFound("volume_type", msg.type_id)
                if found["is_default"]:
                    raise Invalid(
                        "volume_type", f"{found['name']} is the default volume type: it cannot be deleted"
                    )
                used = await tx.fetchval(
                    "SELECT count(*) FROM volume.volumes WHERE type_id = $1", msg.type_id
                )
                if used:
                    raise Invalid("volume_type", f"volume type {msg.type_id} is in use by {used} volume(s)")
                await tx.execute("DELETE FROM volume.volume_types WHERE id = $1", msg.type_id)
        except asyncpg.ForeignKeyViolationError:  # a volume of this type was created meanwhile
            raise Invalid("volume_type", f"volume type {msg.type_id} is in use") from None
        return Done()
