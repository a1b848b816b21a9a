"""Ports and the addresses they hold (mixed into `actor.Network`).

An address is taken by inserting its row in `ip_allocations`, whose primary key is
(subnet, address), under a lock on the subnet's row: replicas allocating in one subnet queue
behind each other for the few statements it takes, and even without the lock the key would
refuse a second holder. A subnet with no free address left is a 409, as Neutron's
IpAddressGenerationFailure.
"""

import ipaddress
import random
import re

import asyncpg

from actors.network import dns_bindings, dns_names, ipam, quotas, sql
from actors.network.security_groups import SecurityGroups
from fabric.actor import handles
from fabric.service import require_member
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Conflict, Forbidden, Invalid, NotFound
from protocol.network import (
    CreatePort,
    DeletePort,
    FixedIpRequest,
    GetPort,
    ListPorts,
    NetworkView,
    PortList,
    PortView,
    UpdatePort,
)
from protocol.system import Done

DHCP_OWNER = "network:dhcp"
#: Owners whose ports only the network service itself, or an admin, may make.
RESERVED_OWNERS = ("network:",)
#: Neutron's base MAC: OpenStack guests are recognisable by it.
MAC_PREFIX = "fa:16:3e"
MAC_TRIES = 8
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def random_mac() -> str:
    return MAC_PREFIX + "".join(f":{random.randrange(256):02x}" for _ in range(3))


class Ports(SecurityGroups):
    async def _visible_network(
        self, conn: Connection, network_id: str, ctx: Context, *, lock: bool = False
    ) -> NetworkView:
        """The network if the caller may see it (its project's, shared, external; all for
        admins), else NotFound. `lock`: its row stays locked until the transaction ends."""
        row = await sql.get_network(conn, network_id, lock=lock)
        if row is None:
            raise NotFound("network", network_id)
        view = sql.network_view(row)
        if not (ctx.is_admin or view.project_id == ctx.project_id or view.shared or view.external):
            raise NotFound("network", network_id)
        return view

    async def allocate_ips(
        self,
        tx: Connection,
        network: NetworkView,
        port_id: str,
        requests: list[FixedIpRequest],
        *,
        outside_pools: bool = False,
    ) -> None:
        """Take the asked addresses for the port. `outside_pools`: an asked address may be any
        usable one of its subnet (the service's own ports: a router's leg takes the gateway)."""
        subnets = {r["id"]: r for r in await sql.subnets_of(tx, network.id)}
        for i, req in enumerate(requests):
            field = f"port.fixed_ips[{i}]"
            subnet = self._subnet_for(req, subnets, network.id, field)
            await tx.execute("SELECT 1 FROM network.subnets WHERE id = $1 FOR UPDATE", subnet["id"])
            pools = [(p.start, p.end) for p in sql.subnet_view(subnet).allocation_pools]
            if req.ip_address is not None:
                ip = ipam.address(req.ip_address, f"{field}.ip_address")
                if outside_pools:
                    if not ipam.usable(ipaddress.ip_network(subnet["cidr"]), ip):  # type: ignore[arg-type]
                        raise Invalid(
                            f"{field}.ip_address", f"{ip} is not a usable address of {subnet['cidr']}"
                        )
                elif not ipam.in_pools(ip, pools):
                    raise Invalid(
                        f"{field}.ip_address",
                        f"{ip} is outside the allocation pools of subnet {subnet['id']}",
                    )
                if not await sql.allocate(tx, subnet["id"], str(ip), port_id):
                    raise Conflict("port", f"IP address {ip} already allocated in subnet {subnet['id']}")
                continue
            for start, end in pools:
                free = await sql.first_free(tx, subnet["id"], start, end)
                if free is not None and await sql.allocate(tx, subnet["id"], free, port_id):
                    break
            else:
                raise Conflict("port", f"No more IP addresses available on network {network.id}")

    def _subnet_for(
        self, req: FixedIpRequest, subnets: dict[str, asyncpg.Record], network_id: str, field: str
    ) -> asyncpg.Record:
        if req.subnet_id is not None:
            subnet = subnets.get(req.subnet_id)
            if subnet is None:
                raise Invalid(f"{field}.subnet_id", f"subnet {req.subnet_id} is not on network {network_id}")
            return subnet
        if req.ip_address is None:
            raise Invalid(field, "give subnet_id, ip_address or both")
        ip = ipam.address(req.ip_address, f"{field}.ip_address")
        for subnet in subnets.values():
            if ip in ipaddress.ip_network(subnet["cidr"]):
                return subnet
        raise Invalid(f"{field}.ip_address", f"{ip} is in no subnet of network {network_id}")

    async def insert_port_with_ips(
        self,
        tx: Connection,
        network: NetworkView,
        *,
        port_id: str,
        project_id: str,
        requests: list[FixedIpRequest],
        mac_address: str | None = None,
        name: str = "",
        description: str = "",
        device_id: str = "",
        device_owner: str = "",
        binding_host_id: str = "",
        admin_state_up: bool = True,
        port_security_enabled: bool | None = None,
        outside_pools: bool = False,
        dns_name: str = "",
        dns_domain: str = "",
    ) -> None:
        values = {
            "dns_name": dns_name,
            "dns_domain": dns_domain,
            "id": port_id,
            "network_id": network.id,
            "name": name,
            "description": description,
            "project_id": project_id,
            "device_id": device_id,
            "device_owner": device_owner,
            "binding_host_id": binding_host_id,
            "admin_state_up": admin_state_up,
            "port_security_enabled": (
                network.port_security_enabled if port_security_enabled is None else port_security_enabled
            ),
        }
        for _ in range(1 if mac_address else MAC_TRIES):
            values["mac_address"] = mac_address or random_mac()
            try:
                if await sql.insert_port(tx, values):
                    break
            except asyncpg.UniqueViolationError:
                raise Conflict("port", f"a port with id {port_id} exists") from None
        else:
            raise Conflict("port", f"MAC address {values['mac_address']} is in use on network {network.id}")
        await self.allocate_ips(tx, network, port_id, requests, outside_pools=outside_pools)

    @handles(CreatePort, key=lambda m: m.port_id)
    async def create_port(self, msg: CreatePort, ctx: Context) -> PortView:
        require_member(ctx, "create_port")
        if msg.project_id not in (None, ctx.project_id) or msg.device_owner.startswith(RESERVED_OWNERS):
            if not ctx.is_admin:
                raise Forbidden("create_port:project_id" if msg.project_id else "create_port:device_owner")
        if msg.mac_address is not None and not MAC.fullmatch(msg.mac_address.lower()):
            raise Invalid("port.mac_address", f"{msg.mac_address!r} is not a MAC address")
        dns_name = dns_names.port_name(msg.dns_name, "port.dns_name")
        own_zone = dns_names.domain(msg.dns_domain, "port.dns_domain")
        async with self.store.transaction() as tx:
            network = await self._visible_network(tx, msg.network_id, ctx)
            if network.project_id != ctx.project_id and not network.shared and not ctx.is_admin:
                raise Forbidden(f"create_port: network {network.id} belongs to another project")
            dns_names.fits(dns_name, own_zone or network.dns_domain, "port.dns_name")
            if not msg.device_owner.startswith(RESERVED_OWNERS):
                await quotas.take(tx, msg.project_id or ctx.project_id or "", "port")
            subnets = await sql.subnets_of(tx, network.id)
            requests = (
                list(msg.fixed_ips)
                if msg.fixed_ips is not None
                else ([FixedIpRequest(subnet_id=subnets[0]["id"])] if subnets else [])
            )
            await self.insert_port_with_ips(
                tx,
                network,
                port_id=msg.port_id,
                project_id=msg.project_id or ctx.project_id or "",
                requests=requests,
                mac_address=msg.mac_address.lower() if msg.mac_address else None,
                name=msg.name,
                description=msg.description,
                device_id=msg.device_id,
                device_owner=msg.device_owner,
                binding_host_id=msg.binding_host_id,
                dns_name=dns_name,
                dns_domain=own_zone,
                admin_state_up=msg.admin_state_up,
                port_security_enabled=msg.port_security_enabled,
            )
            await self._set_groups(tx, msg.port_id, msg.security_groups, ctx, made=True)
            row = await sql.get_port(tx, msg.port_id)
        assert row is not None
        if dns_name:
            await dns_bindings.announce(self.bus, ctx, [msg.port_id])
        return sql.port_view(row)

    async def _set_groups(
        self, tx: Connection, port_id: str, groups: tuple[str, ...] | None, ctx: Context, *, made: bool
    ) -> None:
        """A new port joins `groups`, or its project's default group when None and it filters
        traffic; an updated one is in exactly `groups` (None: unchanged)."""
        port = await sql.get_port(tx, port_id)
        assert port is not None
        if port["device_owner"].startswith(RESERVED_OWNERS) or (groups is None and not made):
            return
        if groups is None:
            if not port["port_security_enabled"]:
                return
            groups = (await self.ensure_default_group(tx, port["project_id"]),)
        elif groups and not port["port_security_enabled"]:
            raise Invalid("port.security_groups", "a port without port security has no security groups")
        for group_id in groups:
            owner = await tx.fetchval(
                "SELECT project_id FROM network.security_groups WHERE id = $1", group_id
            )
            if owner is None or (owner != port["project_id"] and not ctx.is_admin):
                raise NotFound("security group", group_id)
        await tx.execute("DELETE FROM network.port_security_groups WHERE port_id = $1", port_id)
        await tx.executemany(
            "INSERT INTO network.port_security_groups (port_id, security_group_id) VALUES ($1, $2)",
            [(port_id, g) for g in groups],
        )

    async def _port(self, conn: Connection, port_id: str, ctx: Context) -> PortView:
        row = await sql.get_port(conn, port_id)
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("port", port_id)
        return sql.port_view(row)

    @handles(GetPort)
    async def get_port(self, msg: GetPort, ctx: Context) -> PortView:
        async with self.store.connection() as conn:
            return await self._port(conn, msg.port_id, ctx)

    @handles(ListPorts)
    async def list_ports(self, msg: ListPorts, ctx: Context) -> PortList:
        args: list[object] = [ctx.project_id, ctx.is_admin]
        async with self.store.connection() as conn:
            rows = await sql.list_rows(
                conn,
                table="ports",
                columns=sql.PORT_COLUMNS,
                filters={
                    "name": msg.name,
                    "network_id": msg.network_id,
                    "project_id": msg.project_id,
                    "device_id": msg.device_id,
                    "device_owner": msg.device_owner,
                    "mac_address::text": msg.mac_address.lower() if msg.mac_address else None,
                    "id": msg.ids,
                },
                scope="($2::bool OR p.project_id = $1)",
                args=args,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return PortList(items=tuple(sql.port_view(r) for r in rows[: msg.limit]), more=len(rows) > msg.limit)

    @handles(UpdatePort, key=lambda m: m.port_id)
    async def update_port(self, msg: UpdatePort, ctx: Context) -> PortView:
        require_member(ctx, "update_port")
        if (msg.device_owner or "").startswith(RESERVED_OWNERS) and not ctx.is_admin:
            raise Forbidden("update_port:device_owner")
        dns_name = dns_names.port_name(msg.dns_name, "port.dns_name") if msg.dns_name is not None else None
        own_zone = dns_names.domain(msg.dns_domain, "port.dns_domain") if msg.dns_domain is not None else None
        renamed: list[str] = []
        moved: list[str] = []
        async with self.store.transaction() as tx:
            before = await self._port(tx, msg.port_id, ctx)
            name = before.dns_name if dns_name is None else dns_name
            zone = before.dns_domain if own_zone is None else own_zone
            if (name, zone) != (before.dns_name, before.dns_domain):
                network = await sql.get_network(tx, before.network_id)
                assert network is not None
                dns_names.fits(name, zone or network["dns_domain"], "port.dns_name")
                if name or before.dns_name:  # a port without a name has no record to change
                    renamed = [msg.port_id]
                    moved = await dns_bindings.floating_ips_on(tx, renamed)
            await tx.execute(
                """UPDATE network.ports
                    SET name = coalesce($2, name), description = coalesce($3, description),
                        device_id = coalesce($4, device_id), device_owner = coalesce($5, device_owner),
                        binding_host_id = coalesce($6, binding_host_id),
                        admin_state_up = coalesce($7, admin_state_up),
                        port_security_enabled = coalesce($8, port_security_enabled),
                        dns_name = coalesce($9, dns_name), dns_domain = coalesce($10, dns_domain),
                        updated_at = now(), revision_number = revision_number + 1
                    WHERE id = $1""",
                msg.port_id, msg.name, msg.description, msg.device_id, msg.device_owner, msg.binding_host_id,
                msg.admin_state_up, msg.port_security_enabled, dns_name, own_zone,
            )  # fmt: skip
            if msg.port_security_enabled is False and msg.security_groups is None:
                await tx.execute("DELETE FROM network.port_security_groups WHERE port_id = $1", msg.port_id)
            await self._set_groups(tx, msg.port_id, msg.security_groups, ctx, made=False)
            row = await sql.get_port(tx, msg.port_id)
        assert row is not None
        await dns_bindings.announce(self.bus, ctx, renamed, moved)
        return sql.port_view(row)

    @handles(DeletePort, key=lambda m: m.port_id)
    async def delete_port(self, msg: DeletePort, ctx: Context) -> Done:
        require_member(ctx, "delete_port")
        async with self.store.transaction() as tx:
            port = await self._port(tx, msg.port_id, ctx)
            if port.device_owner.startswith(RESERVED_OWNERS) and not ctx.is_admin:
                raise Conflict(
                    "port", f"{port.id} is owned by {port.device_owner}: remove it through its owner"
                )
            # A floating IP on it stays allocated to its project, associated with nothing.
            freed = await tx.fetch(
                """UPDATE network.floating_ips SET port_id = NULL, fixed_ip_address = NULL, router_id = NULL,
                        updated_at = now(), revision_number = revision_number + 1 WHERE port_id = $1
                    RETURNING id""",
                msg.port_id,
            )
            await tx.execute("DELETE FROM network.ports WHERE id = $1", msg.port_id)  # addresses cascade
        await dns_bindings.announce(
            self.bus, ctx, [msg.port_id] if port.dns_name else [], [r["id"] for r in freed]
        )
        return Done()
