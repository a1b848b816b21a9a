"""What a host's network agent should plumb, computed from the network service's tables.

A host needs the networks its guests' ports are on (they are bound to it by compute when placed),
the routers with an interface on those networks, and those routers' external networks; DHCP for
the networks' subnets that have it; floating IPs of those routers; and each guest port's
security-group rules, with remote groups expanded to their members' addresses. Bridges are
local to a host, so a network whose guests sit on two hosts is two segments (an overlay between
hosts is not built yet).
"""

import ipaddress
from typing import Any

import asyncpg
import orjson

from fabric.store import Connection
from protocol.network_agent import (
    FloatingIp,
    HostNetworking,
    Lease,
    NetworkPlumbing,
    PortPlumbing,
    RouterLeg,
    RouterPlumbing,
    Rule,
    SubnetPlumbing,
)

GUEST_PORTS = "p.device_owner LIKE 'compute:%'"


def _hostname(port: asyncpg.Record, ip: str) -> str:
    return str(port["dns_name"]) or "host-" + ip.replace(".", "-")


async def _ips(conn: Connection, port_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    rows = await conn.fetch(
        """SELECT port_id, subnet_id, host(ip_address) AS ip FROM network.ip_allocations
            WHERE port_id = ANY($1) ORDER BY ip_address""",
        port_ids,
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        found.setdefault(r["port_id"], []).append((r["subnet_id"], r["ip"]))
    return found


async def host_networking(conn: Connection, host: str, outside_namespace: str) -> HostNetworking:
    generation = int(await conn.fetchval("SELECT last_value FROM network.generation"))
    guests = await conn.fetch(
        f"""SELECT p.id, p.network_id, p.mac_address::text AS mac, p.dns_name, p.port_security_enabled
              FROM network.ports p WHERE p.binding_host_id = $1 AND {GUEST_PORTS} ORDER BY p.id""",
        host,
    )
    guest_networks = sorted({g["network_id"] for g in guests})
    routers = await conn.fetch(
        """SELECT DISTINCT r.id, r.gw_network_id, r.gw_port_id, r.enable_snat FROM network.routers r
             JOIN network.ports p ON p.device_id = r.id AND p.device_owner = 'network:router_interface'
            WHERE p.network_id = ANY($1) AND r.admin_state_up ORDER BY r.id""",
        guest_networks,
    )
    legs = await conn.fetch(
        """SELECT p.id, p.device_id, p.network_id, p.mac_address::text AS mac FROM network.ports p
            WHERE p.device_id = ANY($1)
              AND p.device_owner IN ('network:router_interface', 'network:router_gateway')""",
        [r["id"] for r in routers],
    )
    network_ids = sorted(set(guest_networks) | {leg["network_id"] for leg in legs})
    networks = await conn.fetch(
        "SELECT id, mtu, external FROM network.networks WHERE id = ANY($1) ORDER BY id", network_ids
    )
    subnets = await conn.fetch(
        """SELECT id, network_id, cidr::text AS cidr, host(gateway_ip) AS gateway_ip, enable_dhcp,
                  dns_nameservers, host_routes
             FROM network.subnets WHERE network_id = ANY($1) ORDER BY created_at, id""",
        network_ids,
    )
    prefix = {s["id"]: ipaddress.ip_network(s["cidr"]).prefixlen for s in subnets}
    lease_ports = await conn.fetch(
        f"""SELECT p.id, p.network_id, p.mac_address::text AS mac, p.dns_name, p.device_owner
              FROM network.ports p
             WHERE p.network_id = ANY($1) AND ({GUEST_PORTS} OR p.device_owner = 'network:dhcp')""",
        network_ids,
    )
    ips = await _ips(conn, [p["id"] for p in lease_ports] + [leg["id"] for leg in legs])

    plumbed_networks = []
    for net in networks:
        dhcp = next(
            (p for p in lease_ports if p["network_id"] == net["id"] and p["device_owner"] == "network:dhcp"),
            None,
        )
        dhcp_ips = dict(ips.get(dhcp["id"], [])) if dhcp else {}
        net_subnets = tuple(
            SubnetPlumbing(
                subnet_id=s["id"],
                cidr=s["cidr"],
                gateway_ip=s["gateway_ip"],
                enable_dhcp=s["enable_dhcp"] and not net["external"],
                dns_nameservers=tuple(orjson.loads(s["dns_nameservers"])),
                host_routes=tuple((d, h) for d, h in orjson.loads(s["host_routes"])),
                dhcp_port_id=dhcp["id"] if dhcp and s["id"] in dhcp_ips else None,
                dhcp_ip=dhcp_ips.get(s["id"]),
                dhcp_mac=dhcp["mac"] if dhcp and s["id"] in dhcp_ips else None,
            )
            for s in subnets
            if s["network_id"] == net["id"]
        )
        leases = tuple(
            Lease(mac=p["mac"], ip=ip, hostname=_hostname(p, ip))
            for p in lease_ports
            if p["network_id"] == net["id"] and p["device_owner"] != "network:dhcp"
            for _, ip in ips.get(p["id"], [])
        )
        plumbed_networks.append(
            NetworkPlumbing(
                network_id=net["id"],
                mtu=net["mtu"],
                external=net["external"],
                subnets=net_subnets,
                leases=leases,
            )
        )

    gateways = {s["id"]: s["gateway_ip"] for s in subnets}
    plumbed_routers = []
    for router in routers:
        interfaces, gateway, next_hop = [], None, None
        for leg in legs:
            if leg["device_id"] != router["id"]:
                continue
            for subnet_id, ip in ips.get(leg["id"], []):
                plumbed = RouterLeg(
                    port_id=leg["id"],
                    network_id=leg["network_id"],
                    mac=leg["mac"],
                    address=f"{ip}/{prefix[subnet_id]}",
                )
                if leg["id"] == router["gw_port_id"]:
                    gateway, next_hop = plumbed, gateways.get(subnet_id)
                else:
                    interfaces.append(plumbed)
        fips = await conn.fetch(
            """SELECT host(floating_ip_address) AS fip, host(fixed_ip_address) AS fixed
                 FROM network.floating_ips
                WHERE router_id = $1 AND port_id IS NOT NULL ORDER BY floating_ip_address""",
            router["id"],
        )
        plumbed_routers.append(
            RouterPlumbing(
                router_id=router["id"],
                interfaces=tuple(interfaces),
                gateway=gateway,
                gateway_next_hop=next_hop,
                snat=router["enable_snat"],
                floating_ips=tuple(FloatingIp(floating_ip=f["fip"], fixed_ip=f["fixed"]) for f in fips),
            )
        )

    return HostNetworking(
        host=host,
        generation=generation,
        outside_namespace=outside_namespace,
        networks=tuple(plumbed_networks),
        routers=tuple(plumbed_routers),
        ports=tuple(await _port_rules(conn, guests)),
    )


async def _port_rules(conn: Connection, guests: list[asyncpg.Record]) -> list[PortPlumbing]:
    guest_ips = await _ips(conn, [g["id"] for g in guests])
    memberships = await conn.fetch(
        "SELECT port_id, security_group_id FROM network.port_security_groups WHERE port_id = ANY($1)",
        [g["id"] for g in guests],
    )
    groups_of: dict[str, list[str]] = {}
    for m in memberships:
        groups_of.setdefault(m["port_id"], []).append(m["security_group_id"])
    all_groups = sorted({g for gs in groups_of.values() for g in gs})
    rules = await conn.fetch(
        """SELECT security_group_id, direction, protocol, port_range_min, port_range_max,
                  remote_ip_prefix::text AS remote_ip_prefix, remote_group_id
             FROM network.security_group_rules WHERE security_group_id = ANY($1) ORDER BY id""",
        all_groups,
    )
    remote_groups = sorted({r["remote_group_id"] for r in rules if r["remote_group_id"]})
    members = await conn.fetch(
        """SELECT g.security_group_id, host(a.ip_address) AS ip FROM network.port_security_groups g
             JOIN network.ip_allocations a ON a.port_id = g.port_id
            WHERE g.security_group_id = ANY($1) ORDER BY a.ip_address""",
        remote_groups,
    )
    member_ips: dict[str, list[str]] = {}
    for m in members:
        member_ips.setdefault(m["security_group_id"], []).append(m["ip"])
    plumbed = []
    for g in guests:
        own_rules = [r for r in rules if r["security_group_id"] in groups_of.get(g["id"], [])]
        plumbed.append(
            PortPlumbing(
                port_id=g["id"],
                network_id=g["network_id"],
                mac=g["mac"],
                ips=tuple(ip for _, ip in guest_ips.get(g["id"], [])),
                port_security=g["port_security_enabled"],
                rules=tuple(_rule(r, member_ips) for r in own_rules),
            )
        )
    return plumbed


def _rule(r: Any, member_ips: dict[str, list[str]]) -> Rule:
    return Rule(
        direction=r["direction"],
        protocol=r["protocol"],
        port_min=r["port_range_min"],
        port_max=r["port_range_max"],
        remote_cidr=r["remote_ip_prefix"],
        remote_ips=tuple(member_ips.get(r["remote_group_id"], [])) if r["remote_group_id"] else None,
    )
