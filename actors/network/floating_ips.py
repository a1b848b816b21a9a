"""Floating IPs (mixed into `actor.Network`): an external network's address, held by a port of
its own, forwarded by a router to a tenant port's fixed address.

Associating finds that router: one with an interface in the fixed address's subnet and its
gateway on the floating IP's network. None is Neutron's 404 (ExternalGatewayForFloatingIPNotFound),
which the CLI takes as "try the server's next port".
"""

import uuid

import asyncpg

from actors.network import dns_bindings, dns_names, ipam, quotas, sql
from actors.network.routers import ROUTER_INTERFACE, Routers
from fabric.actor import handles
from fabric.service import require_member
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Conflict, Forbidden, Invalid, NotFound
from protocol.network import DeviceAddressesChanged, FixedIpRequest
from protocol.network_l3 import (
    AssociateFloatingIp,
    CreateFloatingIp,
    DeleteFloatingIp,
    FloatingIpList,
    FloatingIpView,
    GetFloatingIp,
    ListFloatingIps,
)
from protocol.system import Done

FLOATING_IP_OWNER = "network:floatingip"

FIP_COLUMNS = """f.id, host(f.floating_ip_address) AS floating_ip_address, f.floating_network_id,
    host(f.fixed_ip_address) AS fixed_ip_address, f.port_id, f.router_id, f.description, f.project_id,
    f.floating_port_id, f.dns_name, f.dns_domain, extract(epoch FROM f.created_at) AS created_at,
    extract(epoch FROM f.updated_at) AS updated_at, f.revision_number"""


def fip_view(r: asyncpg.Record) -> FloatingIpView:
    return FloatingIpView(
        id=r["id"],
        floating_ip_address=r["floating_ip_address"],
        floating_network_id=r["floating_network_id"],
        fixed_ip_address=r["fixed_ip_address"],
        port_id=r["port_id"],
        router_id=r["router_id"],
        description=r["description"],
        project_id=r["project_id"],
        status="ACTIVE" if r["port_id"] else "DOWN",
        dns_name=r["dns_name"],
        dns_domain=r["dns_domain"],
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        revision_number=r["revision_number"],
    )


def own_name(dns_name: str, dns_domain: str) -> tuple[str, str]:
    """A floating IP's own name and domain, checked as Neutron does: both or neither."""
    name = dns_names.floating_ip_name(dns_name, "floatingip.dns_name")
    zone = dns_names.domain(dns_domain, "floatingip.dns_domain")
    if zone and not name:
        raise Invalid("floatingip.dns_domain", "cannot be given without a dns_name")
    if name and not zone:
        raise Invalid("floatingip.dns_name", "cannot be given without a dns_domain")
    dns_names.fits(name, zone, "floatingip.dns_name")
    return name, zone


class FloatingIps(Routers):
    async def _fip(
        self, conn: Connection, fip_id: str, ctx: Context, *, lock: bool = False
    ) -> asyncpg.Record:
        suffix = " FOR UPDATE OF f" if lock else ""
        row = await conn.fetchrow(
            f"SELECT {FIP_COLUMNS} FROM network.floating_ips f WHERE f.id = $1{suffix}", fip_id
        )
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("floating IP", fip_id)
        return row

    @handles(CreateFloatingIp, key=lambda m: m.floatingip_id)
    async def create_floating_ip(self, msg: CreateFloatingIp, ctx: Context) -> FloatingIpView:
        require_member(ctx, "create_floatingip")
        if msg.floating_ip_address is not None and not ctx.is_admin:
            raise Forbidden("create_floatingip:floating_ip_address")
        dns_name, dns_domain = own_name(msg.dns_name, msg.dns_domain)
        async with self.store.transaction() as tx:
            network = await self._visible_network(tx, msg.floating_network_id, ctx)
            if not network.external:
                raise Invalid("floatingip.floating_network_id", f"network {network.id} is not external")
            await quotas.take(tx, msg.project_id or ctx.project_id or "", "floatingip")
            subnets = await sql.subnets_of(tx, network.id)
            if not subnets:
                raise Conflict("floating IP", f"external network {network.id} has no subnet")
            request = (
                FixedIpRequest(ip_address=msg.floating_ip_address)
                if msg.floating_ip_address
                else FixedIpRequest(subnet_id=subnets[0]["id"])
            )
            port_id = str(uuid.uuid4())
            await self.insert_port_with_ips(
                tx,
                network,
                port_id=port_id,
                project_id="",
                requests=[request],
                device_id=msg.floatingip_id,
                device_owner=FLOATING_IP_OWNER,
            )
            address = await tx.fetchval(
                "SELECT host(ip_address) FROM network.ip_allocations WHERE port_id = $1", port_id
            )
            try:
                await tx.execute(
                    """INSERT INTO network.floating_ips (id, project_id, description, floating_network_id,
                            floating_port_id, floating_ip_address, dns_name, dns_domain)
                        VALUES ($1, $2, $3, $4, $5, $6::inet, $7, $8)""",
                    msg.floatingip_id, msg.project_id or ctx.project_id, msg.description, network.id, port_id,
                    address, dns_name, dns_domain,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise Conflict("floating IP", f"a floating IP with id {msg.floatingip_id} exists") from None
            if msg.port_id is not None:
                row = await self._fip(tx, msg.floatingip_id, ctx, lock=True)
                await self._associate(tx, row, msg.port_id, msg.fixed_ip_address, ctx)
            view = fip_view(await self._fip(tx, msg.floatingip_id, ctx))
        await self._addresses_changed([msg.port_id], ctx)
        await dns_bindings.announce(self.bus, ctx, floatingips=[msg.floatingip_id])
        return view

    async def _associate(
        self, tx: Connection, fip: asyncpg.Record, port_id: str, fixed_ip: str | None, ctx: Context
    ) -> None:
        port = await self._port(tx, port_id, ctx)
        if port.project_id != fip["project_id"] and not ctx.is_admin:
            raise NotFound("port", port_id)
        if not port.fixed_ips:
            raise Invalid("floatingip.port_id", f"port {port_id} has no fixed address")
        chosen = next((f for f in port.fixed_ips if fixed_ip in (None, f.ip_address)), None)
        if chosen is None:
            raise Invalid("floatingip.fixed_ip_address", f"{fixed_ip} is not an address of port {port_id}")
        router_id = await tx.fetchval(
            """SELECT r.id FROM network.routers r
                 JOIN network.ports p ON p.device_id = r.id AND p.device_owner = $3
                 JOIN network.ip_allocations a ON a.port_id = p.id AND a.subnet_id = $1
                WHERE r.gw_network_id = $2
                ORDER BY r.id LIMIT 1""",
            chosen.subnet_id, fip["floating_network_id"], ROUTER_INTERFACE,
        )  # fmt: skip
        if router_id is None:
            raise NotFound(
                "router",
                f"external network {fip['floating_network_id']} is not reachable "
                f"from subnet {chosen.subnet_id}",
            )
        taken = await tx.fetchval(
            """SELECT id FROM network.floating_ips WHERE fixed_ip_address = $1::inet AND port_id = $2
                AND floating_network_id = $3 AND id <> $4""",
            chosen.ip_address, port_id, fip["floating_network_id"], fip["id"],
        )  # fmt: skip
        if taken is not None:
            raise Conflict(
                "floating IP", f"{chosen.ip_address} of port {port_id} has floating IP {taken} already"
            )
        await tx.execute(
            """UPDATE network.floating_ips SET port_id = $2, fixed_ip_address = $3::inet, router_id = $4,
                    updated_at = now(), revision_number = revision_number + 1 WHERE id = $1""",
            fip["id"], port_id, chosen.ip_address, router_id,
        )  # fmt: skip

    @handles(AssociateFloatingIp, key=lambda m: m.floatingip_id)
    async def associate_floating_ip(self, msg: AssociateFloatingIp, ctx: Context) -> FloatingIpView:
        require_member(ctx, "update_floatingip")
        async with self.store.transaction() as tx:
            fip = await self._fip(tx, msg.floatingip_id, ctx, lock=True)
            if msg.description is not None:
                await tx.execute(
                    "UPDATE network.floating_ips SET description = $2 WHERE id = $1",
                    fip["id"],
                    msg.description,
                )
            if msg.port_id is None:
                await tx.execute(
                    """UPDATE network.floating_ips
                        SET port_id = NULL, fixed_ip_address = NULL, router_id = NULL, updated_at = now(),
                            revision_number = revision_number + 1
                        WHERE id = $1""",
                    fip["id"],
                )
            else:
                await self._associate(tx, fip, msg.port_id, msg.fixed_ip_address, ctx)
            view = fip_view(await self._fip(tx, msg.floatingip_id, ctx))
        await self._addresses_changed([fip["port_id"], msg.port_id], ctx)
        await dns_bindings.announce(self.bus, ctx, floatingips=[msg.floatingip_id])
        return view

    @handles(GetFloatingIp)
    async def get_floating_ip(self, msg: GetFloatingIp, ctx: Context) -> FloatingIpView:
        async with self.store.connection() as conn:
            return fip_view(await self._fip(conn, msg.floatingip_id, ctx))

    @handles(ListFloatingIps)
    async def list_floating_ips(self, msg: ListFloatingIps, ctx: Context) -> FloatingIpList:
        address = (
            ipam.address(msg.floating_ip_address, "floating_ip_address") if msg.floating_ip_address else None
        )
        async with self.store.connection() as conn:
            rows = await sql.list_rows(
                conn,
                table="floating_ips",
                columns=FIP_COLUMNS,
                filters={
                    "floating_network_id": msg.floating_network_id,
                    "port_id": msg.port_id,
                    "router_id": msg.router_id,
                    "project_id": msg.project_id,
                    "floating_ip_address": address,
                    "id": msg.ids,
                },
                scope="($2::bool OR f.project_id = $1)",
                args=[ctx.project_id, ctx.is_admin],
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return FloatingIpList(items=tuple(fip_view(r) for r in rows[: msg.limit]), more=len(rows) > msg.limit)

    @handles(DeleteFloatingIp, key=lambda m: m.floatingip_id)
    async def delete_floating_ip(self, msg: DeleteFloatingIp, ctx: Context) -> Done:
        require_member(ctx, "delete_floatingip")
        async with self.store.transaction() as tx:
            fip = await self._fip(tx, msg.floatingip_id, ctx, lock=True)
            await tx.execute("DELETE FROM network.floating_ips WHERE id = $1", fip["id"])
            await tx.execute("DELETE FROM network.ports WHERE id = $1", fip["floating_port_id"])
        await self._addresses_changed([fip["port_id"]], ctx)
        await dns_bindings.announce(self.bus, ctx, floatingips=[msg.floatingip_id])
        return Done()

    async def _addresses_changed(self, port_ids: list[str | None], ctx: Context) -> None:
        """Tell compute which servers' addresses moved (the devices of these ports)."""
        wanted = [p for p in port_ids if p]
        if not wanted:
            return
        async with self.store.connection() as conn:
            devices = await conn.fetch(
                """SELECT DISTINCT device_id FROM network.ports
                    WHERE id = ANY($1) AND device_owner LIKE 'compute:%' AND device_id <> ''""",
                wanted,
            )
        if devices:
            event = DeviceAddressesChanged(device_ids=tuple(r["device_id"] for r in devices))
            await self.bus.publish(event, ctx)
