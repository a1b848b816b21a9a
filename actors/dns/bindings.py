"""Names for ports and floating IPs (Neutron's DNS integration), kept by reconciling.

The network service publishes `DnsNamesChanged` with the ids of ports and floating IPs whose
names may have changed; this service asks it what they are now (`ListDnsBindings`) and makes
the records it keeps for them agree: an A (or AAAA) recordset per named port, an A recordset
per named floating IP, and a PTR recordset for its address. At start, and every ten minutes, it
reconciles all of them, so an event missed while it was down does no lasting harm.

Each record it keeps is marked with what it is for (`managed_by`: `port:<id>`,
`floatingip:<id>`, `ptr:<id>`), so users cannot change it and a reconcile finds its own. A
name goes in the deepest zone that holds it and belongs to the port's or floating IP's
project; with no such zone there is no record (as Neutron, which needs the zone made first). A
PTR goes in the reverse zone of the address's /24 (/64), made by the service when missing and
owned by no project (admins see it across projects). A name that already has a recordset of
that type someone else keeps is left alone.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import asyncpg

from actors.dns import names, sql
from actors.dns.recordsets import Recordsets
from fabric.actor import handles, subscribes
from fabric.service import require_admin, service_context
from fabric.store import Connection
from protocol.dns import FloatingIpPtr, FloatingIpPtrList, ListFloatingIpPtrs, ReconcileNames
from protocol.envelope import Context
from protocol.errors import NotFound
from protocol.network import QUEUE as NETWORK
from protocol.network import DnsBindings, DnsNamesChanged, ListDnsBindings
from protocol.network_l3 import FloatingIpList, ListFloatingIps
from protocol.system import Done

log = logging.getLogger("fabric.dns")

#: The owner of the reverse zones the service makes: no project's.
SERVICE_PROJECT = ""
#: Until the network service answers a reconcile, it is asked again this often; all names are
#: reconciled this often besides the events.
START_RETRY_S = 2.0
RECONCILE_S = 600.0


@dataclass(frozen=True, slots=True)
class Wanted:
    name: str
    type: str
    records: tuple[str, ...]
    project_id: str


def wanted(bindings: DnsBindings) -> dict[str, Wanted]:
    """The recordsets the bindings call for, by what they are for."""
    want: dict[str, Wanted] = {}
    for port in bindings.ports:
        v4 = tuple(a for a in port.addresses if ":" not in a)
        v6 = tuple(a for a in port.addresses if ":" in a)
        if v4:
            want[f"port:{port.port_id}"] = Wanted(port.fqdn, "A", v4, port.project_id)
        if v6:
            want[f"port:{port.port_id}:v6"] = Wanted(port.fqdn, "AAAA", v6, port.project_id)
    for fip in bindings.floatingips:
        if fip.fqdn is None:
            continue
        want[f"floatingip:{fip.floatingip_id}"] = Wanted(fip.fqdn, "A", (fip.address,), fip.project_id)
        want[f"ptr:{fip.floatingip_id}"] = Wanted(names.reverse_name(fip.address), "PTR", (fip.fqdn,), "")
    return want


def keys_of(port_ids: tuple[str, ...], floatingip_ids: tuple[str, ...]) -> list[str]:
    keys = [f"port:{p}" for p in port_ids] + [f"port:{p}:v6" for p in port_ids]
    return keys + [f"floatingip:{f}" for f in floatingip_ids] + [f"ptr:{f}" for f in floatingip_ids]


class Bindings(Recordsets):
    """Keeps the names of ports and floating IPs (mixed into `actor.Dns`)."""

    @subscribes(DnsNamesChanged, group="dns.names")
    async def on_names_changed(self, event: DnsNamesChanged, ctx: Context) -> None:
        await self.reconcile(event.port_ids, event.floatingip_ids)

    @handles(ReconcileNames)
    async def reconcile_names(self, msg: ReconcileNames, ctx: Context) -> Done:
        require_admin(ctx, "reconcile_names")
        await self.reconcile(msg.port_ids, msg.floatingip_ids)
        return Done()

    @handles(ListFloatingIpPtrs)
    async def list_floatingip_ptrs(self, msg: ListFloatingIpPtrs, ctx: Context) -> FloatingIpPtrList:
        """The network service decides which floating IPs the caller sees (asked with the
        caller's own context); this service adds what their addresses' PTRs say."""
        ids = (msg.floatingip_id,) if msg.floatingip_id is not None else None
        shown: FloatingIpList = await self.bus.call(
            NETWORK, ListFloatingIps(project_id=ctx.project_id, ids=ids), ctx
        )
        if msg.floatingip_id is not None and not shown.items:
            raise NotFound("floatingip", msg.floatingip_id)
        async with self.store.connection() as conn:
            rows = {row["floatingip_id"]: row for row in await sql.ptrs(conn, [f.id for f in shown.items])}
        items = []
        for fip in shown.items:
            row = rows.get(fip.id)
            items.append(
                FloatingIpPtr(
                    floatingip_id=fip.id,
                    address=fip.floating_ip_address,
                    ptrdname=row["records"][0] if row else None,
                    ttl=row["ttl"] if row else None,
                    status=row["status"] if row else "ACTIVE",
                    action=row["action"] if row else "NONE",
                )
            )
        return FloatingIpPtrList(items=tuple(items))

    async def reconcile_forever(self) -> None:
        """Everything, as soon as the network service answers and then every RECONCILE_S: an
        event lost while this service was down (or in flight when it stopped) is made good."""
        while True:
            try:
                await self.reconcile(None, None)
            except Exception as exc:  # the network service may not be up yet
                log.info("names not reconciled (%r); again in %.0fs", exc, START_RETRY_S)
                await asyncio.sleep(START_RETRY_S)
                continue
            await asyncio.sleep(RECONCILE_S)

    async def reconcile(
        self, port_ids: tuple[str, ...] | None, floatingip_ids: tuple[str, ...] | None
    ) -> None:
        everything = port_ids is None and floatingip_ids is None
        # Only the kinds named: a None in the question would mean all of that kind.
        asked = (
            ListDnsBindings()
            if everything
            else ListDnsBindings(port_ids=port_ids or (), floatingip_ids=floatingip_ids or ())
        )
        bindings: DnsBindings = await self.bus.call(NETWORK, asked, service_context())
        want = wanted(bindings)
        keys = None if everything else keys_of(port_ids or (), floatingip_ids or ())
        async with self.store.connection() as conn:
            kept = await sql.kept_for_names(conn, keys)
        by_key = {row["managed_by"]: row for row in kept}
        for key, row in by_key.items():
            goal = want.get(key)
            if goal is None or (goal.name, goal.type) != (row["name"], row["type"]):
                await self._drop(row)
        for key, goal in want.items():
            had = by_key.get(key)
            if had is not None and (had["name"], had["type"], tuple(had["records"])) == (
                goal.name, goal.type, goal.records,
            ):  # fmt: skip
                continue
            await self._put(key, goal)

    async def _drop(self, row: asyncpg.Record) -> None:
        async with self.store.transaction() as tx:
            serial = await sql.bump(tx, row["zone_id"], recordsets=-1)
            if serial is None:
                return
            await sql.delete_recordset(tx, row["id"])
        self.changed(row["zone_id"], row["zone_name"], serial)

    async def _put(self, key: str, goal: Wanted) -> None:
        async with self.store.transaction() as tx:
            zone = await self._zone_for(tx, goal)
            if zone is None:
                log.debug("no zone of project %r holds %s: no record", goal.project_id, goal.name)
                return
            serial = await sql.bump(tx, zone["id"])
            assert serial is not None
            present = await tx.fetchrow(
                "SELECT id, managed_by FROM dns.recordsets WHERE zone_id = $1 AND name = $2 AND type = $3",
                zone["id"],
                goal.name,
                goal.type,
            )
            if present is not None and present["managed_by"] != key:
                log.info(
                    "%s %s is kept by %s: not taken for %s", goal.type, goal.name, present["managed_by"], key
                )
                return
            if "CNAME" in await sql.types_at(tx, zone["id"], goal.name):
                return
            if present is not None:
                await sql.update_recordset(
                    tx, present["id"], records=goal.records, ttl=None, clear_ttl=False, description=None,
                    serial=serial,
                )  # fmt: skip
            else:
                await sql.count_recordsets(tx, zone["id"], 1)
                name, pdns = goal.name, names.pdns_name(goal.name)
                new = (str(uuid.uuid4()), zone["id"], zone["project_id"], name, pdns, goal.type,
                       list(goal.records), None, None, serial, key)  # fmt: skip
                await sql.insert_recordsets(tx, [new])
        self.changed(zone["id"], zone["name"], serial)

    async def _zone_for(self, tx: Connection, goal: Wanted) -> asyncpg.Record | None:
        """The deepest zone holding the name and of the goal's project; for a PTR, the address's
        reverse zone, made when missing."""
        if goal.type == "PTR":
            reverse = ".".join(goal.name.split(".")[1:])
            zone = await sql.zone_by_name(tx, reverse)
            if zone is None:
                zone = await self._make_reverse_zone(tx, reverse)
            return zone
        candidates = [goal.name, *names.ancestors(goal.name)]
        rows = await tx.fetch(
            f"SELECT {sql.ZONE_COLUMNS} FROM dns.zones z WHERE z.name = ANY($1::text[]) AND z.project_id = $2"
            " ORDER BY length(z.name) DESC LIMIT 1",
            candidates,
            goal.project_id,
        )
        return rows[0] if rows else None

    async def _make_reverse_zone(self, tx: Connection, name: str) -> asyncpg.Record | None:
        await sql.lock_zone_tree(tx)
        existing = await sql.zone_by_name(tx, name)
        if existing is not None:
            return existing
        nameservers = self.nameservers()
        zone_id = str(uuid.uuid4())
        await sql.insert_zone(
            tx,
            {
                "id": zone_id,
                "name": name,
                "pdns_name": names.pdns_name(name),
                "project_id": SERVICE_PROJECT,
                "email": f"hostmaster@{nameservers[0].rstrip('.')}",
                "ttl": self.settings.dns_default_ttl,
                "serial": int(time.time()),
                "soa_mname": nameservers[0],
                "soa_rname": names.soa_rname(f"hostmaster@{nameservers[0].rstrip('.')}"),
                "description": "reverse zone of floating IPs",
                "managed": True,
            },
        )
        await self.add_zone_records(tx, zone_id, name, SERVICE_PROJECT, nameservers)
        return await sql.zone(tx, zone_id)
