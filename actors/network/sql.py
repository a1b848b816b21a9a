"""The statements behind networks, subnets and ports, beside the functions that run them."""

import ipaddress
from typing import Any

import asyncpg
import orjson

from actors.network import dns_names
from fabric.store import Connection
from protocol.network import FixedIp, HostRoute, NetworkView, Pool, PortView, SubnetView


def _epoch(column: str) -> str:
    return f"extract(epoch FROM {column}) AS {column}"


NETWORK_COLUMNS = f"""n.id, n.name, n.description, n.project_id, n.admin_state_up, n.shared, n.external,
    n.mtu, n.port_security_enabled, n.dns_domain, {_epoch("created_at")}, {_epoch("updated_at")},
    n.revision_number,
    coalesce((SELECT array_agg(s.id ORDER BY s.created_at) FROM network.subnets s WHERE s.network_id = n.id),
             '{{}}') AS subnets"""


def network_view(r: asyncpg.Record) -> NetworkView:
    return NetworkView(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        project_id=r["project_id"],
        admin_state_up=r["admin_state_up"],
        shared=r["shared"],
        external=r["external"],
        mtu=r["mtu"],
        port_security_enabled=r["port_security_enabled"],
        subnets=tuple(r["subnets"]),
        dns_domain=r["dns_domain"],
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        revision_number=r["revision_number"],
    )


def visible(project_param: str, admin_param: str, alias: str = "n") -> str:
    """Which networks a caller sees: its project's, shared and external ones; admins all."""
    return (
        f"({admin_param}::bool OR {alias}.project_id = {project_param} OR {alias}.shared OR {alias}.external)"
    )


async def get_network(conn: Connection, network_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE OF n" if lock else ""
    return await conn.fetchrow(
        f"SELECT {NETWORK_COLUMNS} FROM network.networks n WHERE n.id = $1{suffix}", network_id
    )


def where_equal(filters: dict[str, Any], args: list[Any], alias: str) -> list[str]:
    """`alias.column = $n` for every filter that is not None (lists: `= ANY`)."""
    clauses = []
    for column, value in filters.items():
        if value is None:
            continue
        if isinstance(value, tuple):
            args.append(list(value))
            clauses.append(f"{alias}.{column} = ANY(${len(args)})")
        else:
            args.append(value)
            clauses.append(f"{alias}.{column} = ${len(args)}")
    return clauses


async def list_rows(
    conn: Connection,
    *,
    table: str,
    columns: str,
    filters: dict[str, Any],
    scope: str | None,
    args: list[Any],
    marker: str | None,
    limit: int,
    alias: str | None = None,
) -> list[asyncpg.Record]:
    """Rows of `network.<table>` (aliased by its first letter unless `alias`) by id, filtered
    and paged."""
    alias = alias or table[0]
    where = where_equal(filters, args, alias)
    if scope is not None:
        where.append(scope)
    if marker is not None:
        args.append(marker)
        where.append(f"{alias}.id > ${len(args)}")
    args.append(limit)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return await conn.fetch(
        f"SELECT {columns} FROM network.{table} {alias} {clause} ORDER BY {alias}.id LIMIT ${len(args)}",
        *args,
    )


# --- subnets -----------------------------------------------------------------------------------

SUBNET_COLUMNS = f"""s.id, s.name, s.description, s.network_id, s.project_id, s.cidr::text AS cidr,
    host(s.gateway_ip) AS gateway_ip, s.allocation_pools, s.enable_dhcp, s.dns_nameservers, s.host_routes,
    {_epoch("created_at")}, {_epoch("updated_at")}, s.revision_number"""


def subnet_view(r: asyncpg.Record) -> SubnetView:
    return SubnetView(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        network_id=r["network_id"],
        project_id=r["project_id"],
        cidr=r["cidr"],
        gateway_ip=r["gateway_ip"],
        allocation_pools=tuple(Pool(start=a, end=b) for a, b in orjson.loads(r["allocation_pools"])),
        enable_dhcp=r["enable_dhcp"],
        dns_nameservers=tuple(orjson.loads(r["dns_nameservers"])),
        host_routes=tuple(HostRoute(destination=d, nexthop=h) for d, h in orjson.loads(r["host_routes"])),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        revision_number=r["revision_number"],
    )


async def get_subnet(conn: Connection, subnet_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(
        f"SELECT {SUBNET_COLUMNS} FROM network.subnets s WHERE s.id = $1{suffix}", subnet_id
    )


async def subnets_of(conn: Connection, network_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {SUBNET_COLUMNS} FROM network.subnets s WHERE s.network_id = $1 ORDER BY s.created_at, s.id",
        network_id,
    )


async def insert_subnet(tx: Connection, v: dict[str, Any]) -> None:
    await tx.execute(
        """INSERT INTO network.subnets (id, network_id, name, description, project_id, cidr, gateway_ip,
                allocation_pools, enable_dhcp, dns_nameservers, host_routes)
            VALUES ($1, $2, $3, $4, $5, $6::cidr, $7::inet, $8, $9, $10, $11)""",
        v["id"], v["network_id"], v["name"], v["description"], v["project_id"], v["cidr"], v["gateway_ip"],
        orjson.dumps(v["allocation_pools"]).decode(), v["enable_dhcp"],
        orjson.dumps(v["dns_nameservers"]).decode(), orjson.dumps(v["host_routes"]).decode(),
    )  # fmt: skip


# --- ports and addresses -------------------------------------------------------------------------

PORT_COLUMNS = f"""p.id, p.name, p.description, p.network_id, p.project_id,
    p.mac_address::text AS mac_address, p.device_id, p.device_owner, p.binding_host_id, p.status,
    p.admin_state_up, p.port_security_enabled, p.dns_name, p.dns_domain,
    coalesce(nullif(p.dns_domain, ''),
             (SELECT n.dns_domain FROM network.networks n WHERE n.id = p.network_id)) AS zone,
    {_epoch("created_at")}, {_epoch("updated_at")}, p.revision_number,
    coalesce((SELECT array_agg(array[a.subnet_id, host(a.ip_address)] ORDER BY a.ip_address)
                FROM network.ip_allocations a WHERE a.port_id = p.id), '{{}}') AS fixed_ips,
    coalesce((SELECT array_agg(g.security_group_id ORDER BY g.security_group_id)
                FROM network.port_security_groups g WHERE g.port_id = p.id), '{{}}') AS security_groups"""


def port_view(r: asyncpg.Record) -> PortView:
    fixed_ips = tuple(FixedIp(subnet_id=s, ip_address=ip) for s, ip in r["fixed_ips"])
    return PortView(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        network_id=r["network_id"],
        project_id=r["project_id"],
        mac_address=r["mac_address"],
        fixed_ips=fixed_ips,
        device_id=r["device_id"],
        device_owner=r["device_owner"],
        binding_host_id=r["binding_host_id"],
        status=r["status"],
        admin_state_up=r["admin_state_up"],
        port_security_enabled=r["port_security_enabled"],
        security_groups=tuple(r["security_groups"]),
        dns_name=r["dns_name"],
        dns_domain=r["dns_domain"],
        dns_assignment=dns_names.assignment(r["dns_name"], r["zone"], tuple(f.ip_address for f in fixed_ips)),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        revision_number=r["revision_number"],
    )


async def get_port(conn: Connection, port_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PORT_COLUMNS} FROM network.ports p WHERE p.id = $1", port_id)


async def insert_port(tx: Connection, v: dict[str, Any]) -> bool:
    """False when the MAC is taken on the network."""
    done: str = await tx.execute(
        """INSERT INTO network.ports (id, network_id, name, description, project_id, mac_address, device_id,
                device_owner, binding_host_id, admin_state_up, port_security_enabled, dns_name, dns_domain)
            VALUES ($1, $2, $3, $4, $5, $6::macaddr, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT (network_id, mac_address) DO NOTHING""",
        v["id"], v["network_id"], v["name"], v["description"], v["project_id"], v["mac_address"],
        v["device_id"], v["device_owner"], v["binding_host_id"], v["admin_state_up"],
        v["port_security_enabled"], v.get("dns_name", ""), v.get("dns_domain", ""),
    )  # fmt: skip
    return done.endswith(" 1")


FREE_IN_POOL = """
SELECT host($2::inet + g) FROM generate_series(0, $3::inet - $2::inet) g
 WHERE NOT EXISTS (SELECT 1 FROM network.ip_allocations a
                    WHERE a.subnet_id = $1 AND a.ip_address = $2::inet + g)
 LIMIT 1"""


AFTER_HIGHEST = """
SELECT host(coalesce(max(ip_address) + 1, $2::inet)) FROM network.ip_allocations
 WHERE subnet_id = $1 AND ip_address BETWEEN $2::inet AND $3::inet"""


async def first_free(tx: Connection, subnet_id: str, start: str, end: str) -> str | None:
    """A free address of the pool: the one after the highest held (an index lookup, so a pool
    fills in constant time per address), else the lowest gap (a scan, once the top is reached)."""
    after: str = await tx.fetchval(AFTER_HIGHEST, subnet_id, start, end)
    if ipaddress.IPv4Address(after) <= ipaddress.IPv4Address(end):
        return after
    value: str | None = await tx.fetchval(FREE_IN_POOL, subnet_id, start, end)
    return value


async def allocate(tx: Connection, subnet_id: str, ip: str, port_id: str) -> bool:
    """False when the address is held already."""
    done: str = await tx.execute(
        """INSERT INTO network.ip_allocations (subnet_id, ip_address, port_id) VALUES ($1, $2::inet, $3)
            ON CONFLICT DO NOTHING""",
        subnet_id, ip, port_id,
    )  # fmt: skip
    return done.endswith(" 1")
