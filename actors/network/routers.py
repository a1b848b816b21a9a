"""Routers: interfaces in tenant subnets and a gateway on an external network (mixed into
`actor.Network`). Both are ports the service makes itself, with the router as `device_id`."""

import ipaddress
import uuid

import asyncpg

from actors.network import ipam, quotas, sql
from actors.network.ports import Ports
from fabric.actor import handles
from fabric.service import require_member
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound
from protocol.network import FixedIp, FixedIpRequest
from protocol.network_l3 import (
    AddRouterInterface,
    CreateRouter,
    DeleteRouter,
    ExternalGateway,
    GatewayRequest,
    GetRouter,
    ListRouters,
    RemoveRouterInterface,
    RouterInterface,
    RouterList,
    RouterView,
    UpdateRouter,
)
from protocol.system import Done

ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"

ROUTER_COLUMNS = """r.id, r.name, r.description, r.project_id, r.admin_state_up, r.gw_network_id,
    r.gw_port_id, r.enable_snat, extract(epoch FROM r.created_at) AS created_at,
    extract(epoch FROM r.updated_at) AS updated_at, r.revision_number,
    coalesce((SELECT array_agg(array[a.subnet_id, host(a.ip_address)] ORDER BY a.ip_address)
                FROM network.ip_allocations a WHERE a.port_id = r.gw_port_id), '{}') AS gw_ips"""


def router_view(r: asyncpg.Record) -> RouterView:
    gateway = None
    if r["gw_network_id"] is not None:
        gateway = ExternalGateway(
            network_id=r["gw_network_id"],
            enable_snat=r["enable_snat"],
            external_fixed_ips=tuple(FixedIp(subnet_id=s, ip_address=ip) for s, ip in r["gw_ips"]),
        )
    return RouterView(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        project_id=r["project_id"],
        admin_state_up=r["admin_state_up"],
        external_gateway=gateway,
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        revision_number=r["revision_number"],
    )


class Routers(Ports):
    async def _router(
        self, conn: Connection, router_id: str, ctx: Context, *, lock: bool = False
    ) -> asyncpg.Record:
        suffix = " FOR UPDATE OF r" if lock else ""
        row = await conn.fetchrow(
            f"SELECT {ROUTER_COLUMNS} FROM network.routers r WHERE r.id = $1{suffix}", router_id
        )
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("router", router_id)
        return row

    async def _router_view(self, conn: Connection, router_id: str, ctx: Context) -> RouterView:
        return router_view(await self._router(conn, router_id, ctx))

    async def _set_gateway(
        self, tx: Connection, router: asyncpg.Record, gw: GatewayRequest, ctx: Context
    ) -> None:
        network = await self._visible_network(tx, gw.network_id, ctx)
        if not network.external:
            raise Invalid("router.external_gateway_info.network_id", f"network {network.id} is not external")
        if router["gw_network_id"] == network.id:
            await tx.execute(
                "UPDATE network.routers SET enable_snat = $2 WHERE id = $1", router["id"], gw.enable_snat
            )
            return
        if router["gw_port_id"] is not None:
            await self._clear_gateway(tx, router)
        subnets = await sql.subnets_of(tx, network.id)
        if not subnets:
            raise Invalid("router.external_gateway_info.network_id", f"network {network.id} has no subnet")
        port_id = str(uuid.uuid4())
        await self.insert_port_with_ips(
            tx,
            network,
            port_id=port_id,
            project_id="",  # owned by no project: the service's own, as Neutron's gateway ports
            requests=[FixedIpRequest(subnet_id=subnets[0]["id"])],
            device_id=router["id"],
            device_owner=ROUTER_GATEWAY,
        )
        await tx.execute(
            """UPDATE network.routers
                SET gw_network_id = $2, gw_port_id = $3, enable_snat = $4, updated_at = now(),
                    revision_number = revision_number + 1
                WHERE id = $1""",
            router["id"], network.id, port_id, gw.enable_snat,
        )  # fmt: skip

    async def _clear_gateway(self, tx: Connection, router: asyncpg.Record) -> None:
        used = await tx.fetchval(
            "SELECT count(*) FROM network.floating_ips WHERE router_id = $1", router["id"]
        )
        if used:
            raise Conflict("router", f"{router['id']}'s gateway is in use by {used} floating IP(s)")
        await tx.execute(
            """UPDATE network.routers SET gw_network_id = NULL, gw_port_id = NULL, updated_at = now(),
                    revision_number = revision_number + 1 WHERE id = $1""",
            router["id"],
        )
        if router["gw_port_id"] is not None:
            await tx.execute("DELETE FROM network.ports WHERE id = $1", router["gw_port_id"])

    @handles(CreateRouter, key=lambda m: m.router_id)
    async def create_router(self, msg: CreateRouter, ctx: Context) -> RouterView:
        require_member(ctx, "create_router")
        if msg.project_id not in (None, ctx.project_id) and not ctx.is_admin:
            raise NotFound("project", msg.project_id or "")
        async with self.store.transaction() as tx:
            await quotas.take(tx, msg.project_id or ctx.project_id or "", "router")
            try:
                await tx.execute(
                    """INSERT INTO network.routers (id, name, description, project_id, admin_state_up)
                        VALUES ($1, $2, $3, $4, $5)""",
                    msg.router_id, msg.name, msg.description, msg.project_id or ctx.project_id,
                    msg.admin_state_up,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise Conflict("router", f"a router with id {msg.router_id} exists") from None
            if msg.gateway is not None:
                await self._set_gateway(tx, await self._router(tx, msg.router_id, ctx), msg.gateway, ctx)
            return await self._router_view(tx, msg.router_id, ctx)

    @handles(GetRouter)
    async def get_router(self, msg: GetRouter, ctx: Context) -> RouterView:
        async with self.store.connection() as conn:
            return await self._router_view(conn, msg.router_id, ctx)

    @handles(ListRouters)
    async def list_routers(self, msg: ListRouters, ctx: Context) -> RouterList:
        async with self.store.connection() as conn:
            rows = await sql.list_rows(
                conn,
                table="routers",
                columns=ROUTER_COLUMNS,
                filters={"name": msg.name, "project_id": msg.project_id, "id": msg.ids},
                scope="($2::bool OR r.project_id = $1)",
                args=[ctx.project_id, ctx.is_admin],
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return RouterList(items=tuple(router_view(r) for r in rows[: msg.limit]), more=len(rows) > msg.limit)

    @handles(UpdateRouter, key=lambda m: m.router_id)
    async def update_router(self, msg: UpdateRouter, ctx: Context) -> RouterView:
        require_member(ctx, "update_router")
        async with self.store.transaction() as tx:
            router = await self._router(tx, msg.router_id, ctx, lock=True)
            await tx.execute(
                """UPDATE network.routers
                    SET name = coalesce($2, name), description = coalesce($3, description),
                        admin_state_up = coalesce($4, admin_state_up), updated_at = now(),
                        revision_number = revision_number + 1
                    WHERE id = $1""",
                msg.router_id, msg.name, msg.description, msg.admin_state_up,
            )  # fmt: skip
            if msg.clear_gateway:
                await self._clear_gateway(tx, router)
            elif msg.gateway is not None:
                await self._set_gateway(tx, router, msg.gateway, ctx)
            return await self._router_view(tx, msg.router_id, ctx)

    @handles(DeleteRouter, key=lambda m: m.router_id)
    async def delete_router(self, msg: DeleteRouter, ctx: Context) -> Done:
        require_member(ctx, "delete_router")
        async with self.store.transaction() as tx:
            router = await self._router(tx, msg.router_id, ctx, lock=True)
            interfaces = await tx.fetchval(
                "SELECT count(*) FROM network.ports WHERE device_id = $1 AND device_owner = $2",
                msg.router_id, ROUTER_INTERFACE,
            )  # fmt: skip
            if interfaces:
                raise Conflict("router", f"{msg.router_id} still has {interfaces} interface(s)")
            await self._clear_gateway(tx, router)
            await tx.execute("DELETE FROM network.routers WHERE id = $1", msg.router_id)
        return Done()

    # --- interfaces ----------------------------------------------------------------------------

    async def _interface_subnets(self, tx: Connection, router_id: str) -> list[asyncpg.Record]:
        return list(
            await tx.fetch(
                """SELECT s.id, s.cidr::text AS cidr, p.id AS port_id FROM network.ports p
                     JOIN network.ip_allocations a ON a.port_id = p.id
                     JOIN network.subnets s ON s.id = a.subnet_id
                    WHERE p.device_id = $1 AND p.device_owner = $2""",
                router_id,
                ROUTER_INTERFACE,
            )
        )

    @handles(AddRouterInterface, key=lambda m: m.router_id)
    async def add_router_interface(self, msg: AddRouterInterface, ctx: Context) -> RouterInterface:
        require_member(ctx, "add_router_interface")
        if (msg.subnet_id is None) == (msg.port_id is None):
            raise Invalid("subnet_id", "give either subnet_id or port_id")
        async with self.store.transaction() as tx:
            router = await self._router(tx, msg.router_id, ctx, lock=True)
            if msg.subnet_id is not None:
                subnet = await sql.get_subnet(tx, msg.subnet_id)
                if subnet is None:
                    raise NotFound("subnet", msg.subnet_id)
                network = await self._visible_network(tx, subnet["network_id"], ctx)
                if network.project_id != router["project_id"] and not ctx.is_admin:
                    raise NotFound("subnet", msg.subnet_id)
                if subnet["gateway_ip"] is None:
                    raise Invalid(
                        "subnet_id", f"subnet {msg.subnet_id} has no gateway address for the router"
                    )
                await self._check_no_overlap(tx, router["id"], subnet["cidr"])
                port_id = str(uuid.uuid4())
                await self.insert_port_with_ips(
                    tx,
                    network,
                    port_id=port_id,
                    project_id=router["project_id"],
                    requests=[FixedIpRequest(subnet_id=subnet["id"], ip_address=subnet["gateway_ip"])],
                    device_id=router["id"],
                    device_owner=ROUTER_INTERFACE,
                    port_security_enabled=False,
                    outside_pools=True,  # the gateway address is outside the pools by design
                )
                subnet_id, network_id = subnet["id"], network.id
            else:
                port = await self._port(tx, msg.port_id or "", ctx)
                if port.device_id or port.device_owner:
                    raise Conflict("port", f"{port.id} is in use by {port.device_owner or port.device_id}")
                if len(port.fixed_ips) != 1:
                    raise Invalid("port_id", "a router interface port has exactly one address")
                subnet = await sql.get_subnet(tx, port.fixed_ips[0].subnet_id)
                assert subnet is not None
                await self._check_no_overlap(tx, router["id"], subnet["cidr"])
                await tx.execute(
                    "UPDATE network.ports SET device_id = $2, device_owner = $3 WHERE id = $1",
                    port.id, router["id"], ROUTER_INTERFACE,
                )  # fmt: skip
                port_id, subnet_id, network_id = port.id, subnet["id"], port.network_id
        return RouterInterface(
            router_id=router["id"], subnet_id=subnet_id, port_id=port_id, network_id=network_id,
            project_id=router["project_id"],
        )  # fmt: skip

    async def _check_no_overlap(self, tx: Connection, router_id: str, cidr: str) -> None:
        others = await self._interface_subnets(tx, router_id)
        clash = ipam.overlapping(ipaddress.ip_network(cidr), [o["cidr"] for o in others])  # type: ignore[arg-type]
        if clash is not None:
            raise Invalid("subnet_id", f"{cidr} overlaps {clash}, a subnet router {router_id} is on already")

    @handles(RemoveRouterInterface, key=lambda m: m.router_id)
    async def remove_router_interface(self, msg: RemoveRouterInterface, ctx: Context) -> RouterInterface:
        require_member(ctx, "remove_router_interface")
        async with self.store.transaction() as tx:
            router = await self._router(tx, msg.router_id, ctx, lock=True)
            found = [
                i for i in await self._interface_subnets(tx, router["id"])
                if (msg.subnet_id is None or i["id"] == msg.subnet_id)
                and (msg.port_id is None or i["port_id"] == msg.port_id)
            ]  # fmt: skip
            if not found or (msg.subnet_id is None and msg.port_id is None):
                raise NotFound("router interface", msg.subnet_id or msg.port_id or "")
            interface = found[0]
            used = await tx.fetchval(
                """SELECT count(*) FROM network.floating_ips
                    WHERE router_id = $1 AND fixed_ip_address << $2::cidr""",
                router["id"], interface["cidr"],
            )  # fmt: skip
            if used:
                raise Conflict(
                    "router interface", f"{used} floating IP(s) reach subnet {interface['id']} through it"
                )
            network_id = await tx.fetchval(
                "SELECT network_id FROM network.ports WHERE id = $1", interface["port_id"]
            )
            await tx.execute("DELETE FROM network.ports WHERE id = $1", interface["port_id"])
        return RouterInterface(
            router_id=router["id"], subnet_id=interface["id"], port_id=interface["port_id"],
            network_id=network_id, project_id=router["project_id"],
        )  # fmt: skip
