"""The network service, behind the `network` queue: networks and subnets here; ports and their
addresses (`ports.py`), routers (`routers.py`), floating IPs (`floating_ips.py`) and security
groups (`security_groups.py`) mixed in.

Who sees what (Neutron's defaults): a project sees its own networks, shared ones and external
ones; admins see all. Only admins make a network shared or external. A subnet belongs to its
network's owner; its DHCP server is a port of the network (`device_owner` network:dhcp) that
takes the first free address of each subnet with DHCP.
"""

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from actors.network import dns_bindings, dns_names, ipam, plumbing, quotas, sql
from actors.network.floating_ips import FloatingIps
from actors.network.ports import DHCP_OWNER
from fabric.actor import handles
from fabric.service import require_admin, require_member
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound
from protocol.network import (
    QUEUE,
    CreateNetwork,
    CreatePort,
    CreateSubnet,
    DeleteNetwork,
    DeletePort,
    DeleteSubnet,
    DnsBindings,
    FixedIpRequest,
    GetNetwork,
    GetSubnet,
    ListDnsBindings,
    ListNetworks,
    ListSubnets,
    NetworkList,
    NetworkView,
    SubnetList,
    SubnetView,
    UpdateNetwork,
    UpdatePort,
    UpdateSubnet,
)
from protocol.network_agent import GetHostNetworking, HostNetworking, NetworkingChanged
from protocol.network_l3 import (
    AddRouterInterface,
    AssociateFloatingIp,
    CreateFloatingIp,
    CreateRouter,
    DeleteFloatingIp,
    DeleteRouter,
    RemoveRouterInterface,
    UpdateRouter,
)
from protocol.security_groups import CreateSecurityGroupRule, DeleteSecurityGroup, DeleteSecurityGroupRule
from protocol.system import Done

MIGRATIONS = Path(__file__).parent / "migrations"


#: What changes what agents plumb: after each, agents are told to fetch their state again.
PLUMBING_CHANGES: frozenset[type] = frozenset({
    UpdateNetwork, DeleteNetwork, CreateSubnet, UpdateSubnet, DeleteSubnet, CreatePort, UpdatePort,
    DeletePort, CreateRouter, UpdateRouter, DeleteRouter, AddRouterInterface, RemoveRouterInterface,
    CreateFloatingIp, AssociateFloatingIp, DeleteFloatingIp, DeleteSecurityGroup, CreateSecurityGroupRule,
    DeleteSecurityGroupRule,
})  # fmt: skip


class Network(FloatingIps):
    service = QUEUE

    async def setup(self) -> None:
        await self.register_endpoint("network", "neutron", "/network")

    async def dispatch(self, message: Any, ctx: Context) -> object | None:
        result = await super().dispatch(message, ctx)
        if type(message) in PLUMBING_CHANGES:
            async with self.store.connection() as conn:
                generation = await conn.fetchval("SELECT nextval('network.generation')")
            await self.bus.publish(NetworkingChanged(generation=generation), ctx)
        return result

    @handles(GetHostNetworking)
    async def get_host_networking(self, msg: GetHostNetworking, ctx: Context) -> HostNetworking:
        require_admin(ctx, "get_host_networking")  # agents, on the service's behalf
        async with self.store.transaction() as tx:  # one snapshot of every table
            return await plumbing.host_networking(tx, msg.host, self.settings.outside_namespace)

    @handles(ListDnsBindings)
    async def list_dns_bindings(self, msg: ListDnsBindings, ctx: Context) -> DnsBindings:
        require_admin(ctx, "list_dns_bindings")  # the DNS service, on its own behalf
        async with self.store.transaction() as tx:  # one snapshot of ports and floating IPs
            return await dns_bindings.bindings(tx, msg.port_ids, msg.floatingip_ids)

    # --- networks ------------------------------------------------------------------------------

    @handles(CreateNetwork, key=lambda m: m.network_id)
    async def create_network(self, msg: CreateNetwork, ctx: Context) -> NetworkView:
        require_member(ctx, "create_network")
        if msg.shared or msg.external:
            require_admin(ctx, "create_network:shared" if msg.shared else "create_network:router:external")
        if msg.project_id not in (None, ctx.project_id):
            require_admin(ctx, "create_network:project_id")
        zone = dns_names.domain(msg.dns_domain, "network.dns_domain")
        async with self.store.transaction() as tx:
            await quotas.take(tx, msg.project_id or ctx.project_id or "", "network")
            try:
                await tx.execute(
                    """INSERT INTO network.networks (id, name, description, project_id, admin_state_up,
                            shared, external, mtu, port_security_enabled, dns_domain)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
                    msg.network_id, msg.name, msg.description, msg.project_id or ctx.project_id,
                    msg.admin_state_up, msg.shared, msg.external, msg.mtu, msg.port_security_enabled, zone,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise Conflict("network", f"a network with id {msg.network_id} exists") from None
            row = await sql.get_network(tx, msg.network_id)
        assert row is not None
        return sql.network_view(row)

    def _owns(self, view: NetworkView, ctx: Context, action: str) -> None:
        if not ctx.is_admin and view.project_id != ctx.project_id:
            raise (
                NotFound("network", view.id)
                if not (view.shared or view.external)
                else Conflict("network", f"{action}: {view.id} belongs to another project")
            )

    @handles(GetNetwork)
    async def get_network(self, msg: GetNetwork, ctx: Context) -> NetworkView:
        async with self.store.connection() as conn:
            return await self._visible_network(conn, msg.network_id, ctx)

    @handles(ListNetworks)
    async def list_networks(self, msg: ListNetworks, ctx: Context) -> NetworkList:
        args: list[object] = [ctx.project_id, ctx.is_admin]
        async with self.store.connection() as conn:
            rows = await sql.list_rows(
                conn,
                table="networks",
                columns=sql.NETWORK_COLUMNS,
                filters={
                    "name": msg.name,
                    "project_id": msg.project_id,
                    "shared": msg.shared,
                    "external": msg.external,
                    "id": msg.ids,
                },
                scope=sql.visible("$1", "$2"),
                args=args,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return NetworkList(
            items=tuple(sql.network_view(r) for r in rows[: msg.limit]), more=len(rows) > msg.limit
        )

    @handles(UpdateNetwork, key=lambda m: m.network_id)
    async def update_network(self, msg: UpdateNetwork, ctx: Context) -> NetworkView:
        require_member(ctx, "update_network")
        if msg.shared is not None or msg.external is not None:
            require_admin(
                ctx, "update_network:shared" if msg.shared is not None else "update_network:router:external"
            )
        zone = dns_names.domain(msg.dns_domain, "network.dns_domain") if msg.dns_domain is not None else None
        renamed: list[str] = []
        async with self.store.transaction() as tx:
            view = await self._visible_network(tx, msg.network_id, ctx, lock=True)
            self._owns(view, ctx, "update")
            if zone is not None and zone != view.dns_domain:
                renamed = await dns_bindings.named_ports_in(tx, msg.network_id)
                longest = await tx.fetchval(
                    """SELECT dns_name FROM network.ports WHERE id = ANY($1::text[])
                        ORDER BY length(dns_name) DESC LIMIT 1""",
                    renamed,
                )
                dns_names.fits(longest or "", zone, "network.dns_domain")
            await tx.execute(
                """UPDATE network.networks
                    SET name = coalesce($2, name), description = coalesce($3, description),
                        admin_state_up = coalesce($4, admin_state_up), shared = coalesce($5, shared),
                        external = coalesce($6, external), mtu = coalesce($7, mtu),
                        port_security_enabled = coalesce($8, port_security_enabled),
                        dns_domain = coalesce($9, dns_domain),
                        updated_at = now(), revision_number = revision_number + 1
                    WHERE id = $1""",
                msg.network_id, msg.name, msg.description, msg.admin_state_up, msg.shared, msg.external,
                msg.mtu, msg.port_security_enabled, zone,
            )  # fmt: skip
            row = await sql.get_network(tx, msg.network_id)
            moved = await dns_bindings.floating_ips_on(tx, renamed) if renamed else []
            if zone is not None and zone != view.dns_domain:
                moved += await dns_bindings.floating_ips_of(tx, msg.network_id)
        assert row is not None
        # Every name in the old domain moves to the new one, with the floating IPs named after
        # them, and (an external network's domain) the floating IPs of its addresses.
        await dns_bindings.announce(self.bus, ctx, renamed, moved)
        return sql.network_view(row)

    @handles(DeleteNetwork, key=lambda m: m.network_id)
    async def delete_network(self, msg: DeleteNetwork, ctx: Context) -> Done:
        require_member(ctx, "delete_network")
        async with self.store.transaction() as tx:
            view = await self._visible_network(tx, msg.network_id, ctx, lock=True)
            self._owns(view, ctx, "delete")
            in_use = await tx.fetchval(
                "SELECT count(*) FROM network.ports WHERE network_id = $1 AND device_owner <> $2",
                msg.network_id, DHCP_OWNER,
            )  # fmt: skip
            if in_use:
                raise Conflict("network", f"{msg.network_id} is in use by {in_use} port(s)")
            await tx.execute("DELETE FROM network.ports WHERE network_id = $1", msg.network_id)
            await tx.execute(
                """DELETE FROM network.ip_allocations
                    WHERE subnet_id IN (SELECT id FROM network.subnets WHERE network_id = $1)""",
                msg.network_id,
            )
            await tx.execute("DELETE FROM network.subnets WHERE network_id = $1", msg.network_id)
            await tx.execute("DELETE FROM network.networks WHERE id = $1", msg.network_id)
        return Done()

    # --- subnets -------------------------------------------------------------------------------

    @handles(CreateSubnet, key=lambda m: m.network_id)
    async def create_subnet(self, msg: CreateSubnet, ctx: Context) -> SubnetView:
        require_member(ctx, "create_subnet")
        net = ipam.network_of(msg.cidr)
        gateway = ipam.gateway(net, msg.gateway_ip, none=msg.no_gateway)
        asked = [(p.start, p.end) for p in msg.allocation_pools] if msg.allocation_pools is not None else None
        pools = ipam.pools(net, asked, gateway)
        for i, dns in enumerate(msg.dns_nameservers):
            ipam.address(dns, f"subnet.dns_nameservers[{i}]")
        for i, route in enumerate(msg.host_routes):
            ipam.network_of(route.destination, f"subnet.host_routes[{i}].destination")
            ipam.address(route.nexthop, f"subnet.host_routes[{i}].nexthop")
        async with self.store.transaction() as tx:
            view = await self._visible_network(
                tx, msg.network_id, ctx, lock=True
            )  # one subnet change at a time
            if not ctx.is_admin and view.project_id != ctx.project_id:
                raise NotFound("network", msg.network_id)
            await quotas.take(tx, view.project_id, "subnet")
            others = [r["cidr"] for r in await sql.subnets_of(tx, msg.network_id)]
            clash = ipam.overlapping(net, others)
            if clash is not None:
                raise Invalid(
                    "subnet.cidr", f"{net} overlaps {clash}, another subnet of network {msg.network_id}"
                )
            try:
                await sql.insert_subnet(
                    tx,
                    {
                        "id": msg.subnet_id,
                        "network_id": msg.network_id,
                        "name": msg.name,
                        "description": msg.description,
                        "project_id": view.project_id,
                        "cidr": str(net),
                        "gateway_ip": str(gateway) if gateway else None,
                        "allocation_pools": [[str(a), str(b)] for a, b in pools],
                        "enable_dhcp": msg.enable_dhcp,
                        "dns_nameservers": list(msg.dns_nameservers),
                        "host_routes": [[r.destination, r.nexthop] for r in msg.host_routes],
                    },
                )
            except asyncpg.UniqueViolationError:
                raise Conflict("subnet", f"a subnet with id {msg.subnet_id} exists") from None
            if msg.enable_dhcp and not view.external:
                await self._ensure_dhcp_address(tx, view, msg.subnet_id)
            row = await sql.get_subnet(tx, msg.subnet_id)
        assert row is not None
        return sql.subnet_view(row)

    async def _ensure_dhcp_address(self, tx: Connection, network: NetworkView, subnet_id: str) -> None:
        """The network's DHCP port, with an address in this subnet (the first free one)."""
        port_id = await tx.fetchval(
            "SELECT id FROM network.ports WHERE network_id = $1 AND device_owner = $2", network.id, DHCP_OWNER
        )
        if port_id is None:
            await self.insert_port_with_ips(
                tx,
                network,
                port_id=str(uuid.uuid4()),
                project_id=network.project_id,
                requests=[FixedIpRequest(subnet_id=subnet_id)],
                device_id=f"dhcp-{network.id}",
                device_owner=DHCP_OWNER,
            )
        else:
            await self.allocate_ips(tx, network, port_id, [FixedIpRequest(subnet_id=subnet_id)])

    async def _subnet(self, conn: Connection, subnet_id: str, ctx: Context) -> SubnetView:
        row = await sql.get_subnet(conn, subnet_id)
        if row is None:
            raise NotFound("subnet", subnet_id)
        await self._visible_network(conn, row["network_id"], ctx)  # visible only through its network
        return sql.subnet_view(row)

    @handles(GetSubnet)
    async def get_subnet(self, msg: GetSubnet, ctx: Context) -> SubnetView:
        async with self.store.connection() as conn:
            return await self._subnet(conn, msg.subnet_id, ctx)

    @handles(ListSubnets)
    async def list_subnets(self, msg: ListSubnets, ctx: Context) -> SubnetList:
        args: list[object] = [ctx.project_id, ctx.is_admin]
        scope = f"""EXISTS (SELECT 1 FROM network.networks n
                             WHERE n.id = s.network_id AND {sql.visible("$1", "$2")})"""
        cidr = str(ipam.network_of(msg.cidr, "cidr")) if msg.cidr is not None else None
        async with self.store.connection() as conn:
            rows = await sql.list_rows(
                conn,
                table="subnets",
                columns=sql.SUBNET_COLUMNS,
                filters={
                    "name": msg.name,
                    "network_id": msg.network_id,
                    "project_id": msg.project_id,
                    "id": msg.ids,
                    "cidr::text": cidr,
                },
                scope=scope,
                args=args,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        return SubnetList(
            items=tuple(sql.subnet_view(r) for r in rows[: msg.limit]), more=len(rows) > msg.limit
        )

    @handles(UpdateSubnet, key=lambda m: m.subnet_id)
    async def update_subnet(self, msg: UpdateSubnet, ctx: Context) -> SubnetView:
        require_member(ctx, "update_subnet")
        async with self.store.transaction() as tx:
            subnet = await self._subnet(tx, msg.subnet_id, ctx)
            network = await self._visible_network(tx, subnet.network_id, ctx, lock=True)
            self._owns(network, ctx, "update subnet")
            dns = list(msg.dns_nameservers) if msg.dns_nameservers is not None else None
            routes = (
                [[r.destination, r.nexthop] for r in msg.host_routes] if msg.host_routes is not None else None
            )
            await tx.execute(
                """UPDATE network.subnets
                    SET name = coalesce($2, name), description = coalesce($3, description),
                        enable_dhcp = coalesce($4, enable_dhcp),
                        dns_nameservers = coalesce($5::jsonb, dns_nameservers),
                        host_routes = coalesce($6::jsonb, host_routes), updated_at = now(),
                        revision_number = revision_number + 1
                    WHERE id = $1""",
                msg.subnet_id, msg.name, msg.description, msg.enable_dhcp,
                orjson.dumps(dns).decode() if dns is not None else None,
                orjson.dumps(routes).decode() if routes is not None else None,
            )  # fmt: skip
            if msg.enable_dhcp:
                await self._ensure_dhcp_address(tx, network, msg.subnet_id)
            row = await sql.get_subnet(tx, msg.subnet_id)
        assert row is not None
        return sql.subnet_view(row)

    @handles(DeleteSubnet, key=lambda m: m.subnet_id)
    async def delete_subnet(self, msg: DeleteSubnet, ctx: Context) -> Done:
        require_member(ctx, "delete_subnet")
        async with self.store.transaction() as tx:
            subnet = await self._subnet(tx, msg.subnet_id, ctx)
            network = await self._visible_network(tx, subnet.network_id, ctx, lock=True)
            self._owns(network, ctx, "delete subnet")
            in_use = await tx.fetchval(
                """SELECT count(*) FROM network.ip_allocations a JOIN network.ports p ON p.id = a.port_id
                    WHERE a.subnet_id = $1 AND p.device_owner <> $2""",
                msg.subnet_id, DHCP_OWNER,
            )  # fmt: skip
            if in_use:
                raise Conflict("subnet", f"{msg.subnet_id} has {in_use} address(es) in use")
            await tx.execute("DELETE FROM network.ip_allocations WHERE subnet_id = $1", msg.subnet_id)
            await tx.execute("DELETE FROM network.subnets WHERE id = $1", msg.subnet_id)
        return Done()
