"""The compute service, behind the `compute` queue: flavors here; servers, keypairs, quotas
and server groups in the modules mixed in below.

Admins manage flavors and who may use the private ones; every project sees the public flavors
and the private ones it was given, and nothing else (another project's private flavor is not
found, not forbidden, so that its existence does not leak).
"""

from collections.abc import Awaitable
from pathlib import Path

from actors.compute import create_inputs, sql
from actors.compute.groups import ServerGroups
from actors.compute.keypairs import Keypairs
from actors.compute.quotas import Quotas
from actors.compute.servers import Servers
from fabric.actor import handles
from fabric.service import ServiceActor, require_admin
from protocol.compute import (
    QUEUE,
    CreateFlavor,
    DeleteExtraSpec,
    DeleteFlavor,
    ExtraSpecs,
    FlavorAccess,
    FlavorChanged,
    FlavorList,
    FlavorView,
    GetExtraSpecs,
    GetFlavor,
    ListFlavorAccess,
    ListFlavors,
    SetExtraSpecs,
    SetFlavorAccess,
)
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound
from protocol.system import Done

MIGRATIONS = Path(__file__).parent / "migrations"


class Compute(Servers, Keypairs, Quotas, ServerGroups, ServiceActor):
    service = QUEUE

    async def setup(self) -> None:
        await self.register_endpoint("compute", "nova", "/compute/v2.1")

    async def background(self) -> list[Awaitable[None]]:
        return self.saga_jobs()

    @handles(CreateFlavor)
    async def create_flavor(self, msg: CreateFlavor, ctx: Context) -> FlavorView:
        require_admin(ctx, "compute:create_flavor")
        async with self.store.transaction() as tx:
            created = await sql.insert_flavor(tx, msg)
        if created is None:
            raise Conflict("flavor", f"a flavor with id {msg.flavor_id} or name {msg.name} exists")
        return created

    @handles(GetFlavor)
    async def get_flavor(self, msg: GetFlavor, ctx: Context) -> FlavorView:
        async with self.store.connection() as tx:
            found = await sql.get_flavor(tx, msg.flavor_id, project=ctx.project_id, admin=ctx.is_admin)
        if found is None:
            raise NotFound("flavor", msg.flavor_id)
        return found

    @handles(ListFlavors)
    async def list_flavors(self, msg: ListFlavors, ctx: Context) -> FlavorList:
        async with self.store.connection() as tx:
            items = await sql.list_flavors(
                tx,
                project=ctx.project_id,
                admin=ctx.is_admin,
                is_public=msg.is_public,
                min_ram=msg.min_ram,
                min_disk=msg.min_disk,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return FlavorList(items=tuple(items[: msg.limit]), more=len(items) > msg.limit)

    @handles(DeleteFlavor)
    async def delete_flavor(self, msg: DeleteFlavor, ctx: Context) -> Done:
        require_admin(ctx, "compute:delete_flavor")
        async with self.store.transaction() as tx:
            if not await sql.delete_flavor(tx, msg.flavor_id):
                raise NotFound("flavor", msg.flavor_id)
        await self._flavor_changed(msg.flavor_id, ctx)
        return Done()

    @handles(SetFlavorAccess, key=lambda m: m.flavor_id)
    async def set_flavor_access(self, msg: SetFlavorAccess, ctx: Context) -> FlavorAccess:
        require_admin(ctx, "compute:set_flavor_access")
        async with self.store.transaction() as tx:
            flavor = await sql.get_flavor(tx, msg.flavor_id, project=None, admin=True)
            if flavor is None:
                raise NotFound("flavor", msg.flavor_id)
            if flavor.is_public:
                raise Conflict("flavor", f"{msg.flavor_id} is public: every project may use it")
            if msg.allowed:
                if not await sql.grant_flavor(tx, msg.flavor_id, msg.project_id):
                    raise Conflict("flavor access", f"{msg.project_id} has access to {msg.flavor_id} already")
            elif not await sql.revoke_flavor(tx, msg.flavor_id, msg.project_id):
                raise NotFound("flavor access", msg.project_id)
            access = FlavorAccess(
                flavor_id=msg.flavor_id, project_ids=tuple(await sql.flavor_access(tx, msg.flavor_id))
            )
        await self._flavor_changed(msg.flavor_id, ctx)
        return access

    async def _flavor_changed(self, flavor_id: str, ctx: Context) -> None:
        """After the commit: this replica forgets the flavor now, the others when told."""
        self.create_inputs.forget_flavor(flavor_id)
        await create_inputs.announce(self.bus, FlavorChanged(flavor_id=flavor_id), ctx)

    @handles(ListFlavorAccess)
    async def list_flavor_access(self, msg: ListFlavorAccess, ctx: Context) -> FlavorAccess:
        require_admin(ctx, "compute:list_flavor_access")
        async with self.store.transaction() as tx:
            flavor = await sql.get_flavor(tx, msg.flavor_id, project=None, admin=True)
            if flavor is None:
                raise NotFound("flavor", msg.flavor_id)
            if flavor.is_public:
                raise NotFound("access list of public flavor", msg.flavor_id)  # as Nova answers
            return FlavorAccess(
                flavor_id=msg.flavor_id, project_ids=tuple(await sql.flavor_access(tx, msg.flavor_id))
            )

    @handles(GetExtraSpecs)
    async def get_extra_specs(self, msg: GetExtraSpecs, ctx: Context) -> ExtraSpecs:
        async with self.store.transaction() as tx:
            if await sql.get_flavor(tx, msg.flavor_id, project=ctx.project_id, admin=ctx.is_admin) is None:
                raise NotFound("flavor", msg.flavor_id)
            specs = await sql.extra_specs(tx, msg.flavor_id)
        return ExtraSpecs(flavor_id=msg.flavor_id, specs=specs or {})

    @handles(SetExtraSpecs, key=lambda m: m.flavor_id)
    async def set_extra_specs(self, msg: SetExtraSpecs, ctx: Context) -> ExtraSpecs:
        require_admin(ctx, "compute:set_extra_specs")
        for key in msg.specs:
            if not 1 <= len(key) <= 255:
                raise Invalid(f"extra_specs.{key[:64]}", "a key has 1 to 255 characters")
        async with self.store.transaction() as tx:
            specs = await sql.merge_extra_specs(tx, msg.flavor_id, msg.specs)
        if specs is None:
            raise NotFound("flavor", msg.flavor_id)
        return ExtraSpecs(flavor_id=msg.flavor_id, specs=specs)

    @handles(DeleteExtraSpec, key=lambda m: m.flavor_id)
    async def delete_extra_spec(self, msg: DeleteExtraSpec, ctx: Context) -> ExtraSpecs:
        require_admin(ctx, "compute:delete_extra_spec")
        async with self.store.transaction() as tx:
            specs = await sql.delete_extra_spec(tx, msg.flavor_id, msg.key)
        if specs is None:
            raise NotFound("flavor extra spec", f"{msg.flavor_id}/{msg.key}")
        return ExtraSpecs(flavor_id=msg.flavor_id, specs=specs)
