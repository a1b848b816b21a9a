"""Zone handlers. A zone is made with its SOA and NS recordsets in one transaction, so that it
answers (authoritatively, with its SOA) the moment the create commits; a delete removes it and
its recordsets in one, so that it stops answering at once.

Designate's ownership rules: a name is one zone's only (409), and a project may not put a zone
under another project's zone, nor above one (403): one advisory lock serializes zone creates so
that two of them cannot both pass those checks.
"""

import dataclasses
import time
import uuid

import asyncpg

from actors.dns import names, quota_sql, sql
from actors.dns.list_sql import ZONES, Query, marker_row, page
from actors.dns.served import Served
from actors.dns.views import zone_view
from fabric.actor import handles
from fabric.service import require_member
from fabric.store import Connection
from protocol.dns import CreateZone, DeleteZone, GetZone, ListZones, UpdateZone, ZoneList, ZoneView
from protocol.envelope import Context
from protocol.errors import Conflict, Forbidden, Invalid, NotFound, QuotaExceeded


def visible(row: asyncpg.Record | None, ctx: Context, all_projects: bool, zone_id: str) -> asyncpg.Record:
    """Another project's zone is not found (its existence does not leak), unless an admin asks
    across projects (Designate's `X-Auth-All-Projects`)."""
    if row is None or (row["project_id"] != ctx.project_id and not (ctx.is_admin and all_projects)):
        raise NotFound("zone", zone_id)
    return row


class Zones(Served):
    """The zone handlers of the DNS service (mixed into `actor.Dns`)."""

    def nameservers(self) -> list[str]:
        return [
            names.host_name(ns.strip(), "dns_nameservers")
            for ns in self.settings.dns_nameservers.split(",")
            if ns.strip()
        ]

    @handles(CreateZone, key=lambda m: m.zone_id)
    async def create_zone(self, msg: CreateZone, ctx: Context) -> ZoneView:
        require_member(ctx, "create_zone")
        name = names.zone_name(msg.name)
        email = names.email(msg.email)
        nameservers = self.nameservers()
        async with self.store.transaction() as tx:
            existing = await sql.zone(tx, msg.zone_id)
            if existing is not None:  # a retried create
                return zone_view(visible(existing, ctx, False, msg.zone_id))
            await sql.lock_zone_tree(tx)
            if await sql.zone_by_name(tx, name) is not None:
                raise Conflict("zone", f"{name} already exists")
            around = [*await sql.owners_above(tx, names.ancestors(name)), *await sql.owners_below(tx, name)]
            for other in around:
                if other["project_id"] != ctx.project_id and not ctx.is_admin:
                    raise Forbidden(f"zone {name}: zone {other['name']} belongs to another project")
            limits = await quota_sql.limits(tx, ctx.project_id or "")
            if not await sql.count_zone(tx, ctx.project_id or "", limits["zones"]):
                raise QuotaExceeded("zones", str(limits["zones"]))
            serial = int(time.time())
            await sql.insert_zone(
                tx,
                {
                    "id": msg.zone_id,
                    "name": name,
                    "pdns_name": names.pdns_name(name),
                    "project_id": ctx.project_id,
                    "email": email,
                    "ttl": msg.ttl or self.settings.dns_default_ttl,
                    "serial": serial,
                    "soa_mname": nameservers[0],
                    "soa_rname": names.soa_rname(email),
                    "description": msg.description,
                    "managed": False,
                },
            )
            await self.add_zone_records(tx, msg.zone_id, name, ctx.project_id or "", nameservers)
            row = await sql.zone(tx, msg.zone_id)
            assert row is not None
        self.changed(row["id"], row["name"], row["serial"])
        return zone_view(row)

    async def add_zone_records(
        self, tx: Connection, zone_id: str, name: str, project_id: str, nameservers: list[str]
    ) -> None:
        """The zone's own SOA and apex NS (managed: users cannot change them)."""
        serial = await sql.bump(tx, zone_id, recordsets=2)
        assert serial is not None
        rows = [(str(uuid.uuid4()), "SOA", []), (str(uuid.uuid4()), "NS", nameservers)]
        await sql.insert_recordsets(
            tx,
            [
                (
                    rid,
                    zone_id,
                    project_id,
                    name,
                    names.pdns_name(name),
                    kind,
                    records,
                    None,
                    None,
                    serial,
                    "zone",
                )
                for rid, kind, records in rows
            ],
        )

    @handles(GetZone)
    async def get_zone(self, msg: GetZone, ctx: Context) -> ZoneView:
        async with self.store.connection() as conn:
            return zone_view(visible(await sql.zone(conn, msg.zone_id), ctx, msg.all_projects, msg.zone_id))

    @handles(ListZones)
    async def list_zones(self, msg: ListZones, ctx: Context) -> ZoneList:
        query = Query()
        if not (ctx.is_admin and msg.all_projects):
            query.equal("z.project_id", ctx.project_id)
        query.equal("z.name", msg.name.lower() if msg.name else None)
        query.equal("z.email", msg.email)
        query.equal("z.ttl", msg.ttl)
        query.equal("z.status", msg.status.upper() if msg.status else None)
        query.equal("z.description", msg.description)
        sort = f"z.{msg.sort_key}"
        async with self.store.connection() as conn:
            marker = await marker_row(conn, "dns.zones", sort, msg.marker)
            rows, total, more = await page(
                conn,
                columns=sql.ZONE_COLUMNS,
                source=ZONES,
                query=query,
                sort=sort,
                descending=msg.sort_dir == "desc",
                marker=marker,
                limit=msg.limit,
            )
        return ZoneList(items=tuple(zone_view(row) for row in rows), total_count=total, more=more)

    @handles(UpdateZone, key=lambda m: m.zone_id)
    async def update_zone(self, msg: UpdateZone, ctx: Context) -> ZoneView:
        require_member(ctx, "update_zone")
        email = names.email(msg.email) if msg.email is not None else None
        async with self.store.transaction() as tx:
            visible(await sql.zone(tx, msg.zone_id), ctx, msg.all_projects, msg.zone_id)
            if await sql.bump(tx, msg.zone_id) is None:
                raise NotFound("zone", msg.zone_id)
            await sql.update_zone(
                tx,
                msg.zone_id,
                email=email,
                rname=names.soa_rname(email) if email else None,
                ttl=msg.ttl,
                description=msg.description,
                clear_description=msg.clear_description,
            )
            row = await sql.zone(tx, msg.zone_id)
            assert row is not None
        self.changed(row["id"], row["name"], row["serial"])
        return zone_view(row)

    @handles(DeleteZone, key=lambda m: m.zone_id)
    async def delete_zone(self, msg: DeleteZone, ctx: Context) -> ZoneView:
        require_member(ctx, "delete_zone")
        async with self.store.transaction() as tx:
            visible(await sql.zone(tx, msg.zone_id), ctx, msg.all_projects, msg.zone_id)
            await sql.lock_zone_tree(tx)
            row = await sql.delete_zone(tx, msg.zone_id)
            if row is None:
                raise NotFound("zone", msg.zone_id)
            below = await sql.owners_below(tx, row["name"])
            if below:
                raise Invalid(
                    "zone", f"zone {row['name']} has subzones ({below[0]['name']}...): delete them first"
                )
            await sql.uncount_zone(tx, row["project_id"])
        return dataclasses.replace(zone_view(row), status="PENDING", action="DELETE")
