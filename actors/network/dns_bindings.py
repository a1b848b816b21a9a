"""What the DNS service learns from the network service: which names changed (the event
DnsNamesChanged, ids only) and what they are now (ListDnsBindings).

The DNS service reconciles: on an event it asks for the bindings of the ids it names, and now
and then for all of them; an id it asked for and did not get back has no record any more. So
an event lost, or two arriving out of order, does no lasting harm, and the event can be cheap:
the handlers say which ids a change touched and never what the names became.

Each kind is answered by one statement, however many ids are asked for (up to DNS_IDS_MAX).
"""

from collections.abc import Iterable

import asyncpg

from fabric.bus import Bus
from fabric.store import Connection
from protocol.envelope import Context
from protocol.network import DNS_IDS_MAX, DnsBindings, DnsNamesChanged, FloatingIpDnsBinding, PortDnsBinding

#: A port's domain: its own (dns-domain-ports), else its network's (`p` ports, `n` networks).
ZONE = "coalesce(nullif(p.dns_domain, ''), n.dns_domain)"

PORT_BINDINGS = f"""
SELECT p.id, p.project_id, p.dns_name || '.' || {ZONE} AS fqdn,
       array_agg(host(a.ip_address) ORDER BY a.ip_address) AS addresses
  FROM network.ports p
  JOIN network.networks n ON n.id = p.network_id
  JOIN network.ip_allocations a ON a.port_id = p.id
 WHERE p.dns_name <> '' AND {ZONE} <> '' AND {{which}}
 GROUP BY p.id, n.id
 ORDER BY p.id"""

FLOATING_IP_BINDINGS = """
SELECT f.id, f.project_id, host(f.floating_ip_address) AS address,
       CASE WHEN f.dns_name <> '' AND f.dns_domain <> '' THEN f.dns_name || '.' || f.dns_domain
            WHEN p.dns_name <> '' AND x.dns_domain <> '' THEN p.dns_name || '.' || x.dns_domain
       END AS fqdn
  FROM network.floating_ips f
  JOIN network.networks x ON x.id = f.floating_network_id
  LEFT JOIN network.ports p ON p.id = f.port_id
 WHERE (f.port_id IS NOT NULL OR f.dns_name <> '') AND {which}
 ORDER BY f.id"""


async def _fetch(
    conn: Connection, statement: str, alias: str, ids: tuple[str, ...] | None
) -> list[asyncpg.Record]:
    # Two statements rather than `$1 IS NULL OR id = ANY($1)`: a prepared statement's generic
    # plan for that would scan the table even when three ids are asked for.
    if ids is None:
        return await conn.fetch(statement.format(which="true"))
    return await conn.fetch(statement.format(which=f"{alias}.id = ANY($1::text[])"), list(ids))


async def bindings(
    conn: Connection, port_ids: tuple[str, ...] | None, floatingip_ids: tuple[str, ...] | None
) -> DnsBindings:
    ports = await _fetch(conn, PORT_BINDINGS, "p", port_ids)
    fips = await _fetch(conn, FLOATING_IP_BINDINGS, "f", floatingip_ids)
    return DnsBindings(
        ports=tuple(
            PortDnsBinding(
                port_id=r["id"], project_id=r["project_id"], fqdn=r["fqdn"], addresses=tuple(r["addresses"])
            )
            for r in ports
        ),
        floatingips=tuple(
            FloatingIpDnsBinding(
                floatingip_id=r["id"], project_id=r["project_id"], address=r["address"], fqdn=r["fqdn"]
            )
            for r in fips
        ),
    )


async def floating_ips_on(conn: Connection, port_ids: list[str]) -> list[str]:
    """The floating IPs associated with these ports: their names follow the ports'."""
    rows = await conn.fetch("SELECT id FROM network.floating_ips WHERE port_id = ANY($1::text[])", port_ids)
    return [r["id"] for r in rows]


async def floating_ips_of(conn: Connection, network_id: str) -> list[str]:
    """The floating IPs of an external network: without names of their own, theirs are in its
    domain."""
    rows = await conn.fetch("SELECT id FROM network.floating_ips WHERE floating_network_id = $1", network_id)
    return [r["id"] for r in rows]


async def named_ports_in(conn: Connection, network_id: str) -> list[str]:
    """The ports of the network whose names are in its domain (a name, no domain of their own)."""
    rows = await conn.fetch(
        "SELECT id FROM network.ports WHERE network_id = $1 AND dns_name <> '' AND dns_domain = ''",
        network_id,
    )
    return [r["id"] for r in rows]


async def announce(
    bus: Bus, ctx: Context, ports: Iterable[str] = (), floatingips: Iterable[str] = ()
) -> None:
    """Publish DnsNamesChanged for these ids (none: nothing), in events a ListDnsBindings can
    answer whole. Call it after the change committed, never inside the transaction."""
    port_ids, fip_ids = tuple(dict.fromkeys(ports)), tuple(dict.fromkeys(floatingips))
    for i in range(0, max(len(port_ids), len(fip_ids)), DNS_IDS_MAX):
        event = DnsNamesChanged(
            port_ids=port_ids[i : i + DNS_IDS_MAX], floatingip_ids=fip_ids[i : i + DNS_IDS_MAX]
        )
        await bus.publish(event, ctx)
