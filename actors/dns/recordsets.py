"""Recordset handlers. Every change bumps its zone's serial first (`sql.bump`, the zone's row
lock), then checks what depends on the zone's other recordsets (one recordset per name and
type, a CNAME alone at its name, the `zone_recordsets` quota) and writes, all in one
transaction: concurrent changes to one zone queue on that lock, so none is lost and serials
strictly increase. The zone's own SOA and NS, and the names the service keeps for ports and
floating IPs, are managed: users cannot change them."""

import dataclasses

import asyncpg

from actors.dns import names, quota_sql, sql
from actors.dns.list_sql import RECORDSETS, Query, marker_row, page
from actors.dns.views import recordset_view
from actors.dns.zones import Zones, visible
from fabric.actor import handles
from fabric.service import require_member
from fabric.store import Connection
from protocol.dns import (
    USER_TYPES,
    CreateRecordset,
    DeleteRecordset,
    GetRecordset,
    ListRecordsets,
    RecordsetList,
    RecordsetView,
    UpdateRecordset,
)
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound, QuotaExceeded


def checked_records(kind: str, records: tuple[str, ...], limit: int) -> list[str]:
    """The records in their normal forms, each once; at most `limit` (-1: any number)."""
    if 0 <= limit < len(records):
        raise QuotaExceeded("recordset_records", str(limit))
    normal = [names.record_data(kind, data, f"records[{i}]") for i, data in enumerate(records)]
    if len(set(normal)) != len(normal):
        raise Invalid("records", "a record is given more than once")
    if kind == "CNAME" and len(normal) > 1:
        raise Invalid("records", "a CNAME recordset holds one record")
    return normal


class Recordsets(Zones):
    """The recordset handlers of the DNS service (mixed into `actor.Dns`)."""

    async def _zone_and_recordset(
        self, conn: Connection, ctx: Context, zone_id: str, recordset_id: str, all_projects: bool
    ) -> tuple[asyncpg.Record, asyncpg.Record]:
        zone = visible(await sql.zone(conn, zone_id), ctx, all_projects, zone_id)
        row = await sql.recordset(conn, recordset_id)
        if row is None or row["zone_id"] != zone_id:
            raise NotFound("recordset", recordset_id)
        return zone, row

    @handles(CreateRecordset, key=lambda m: m.zone_id)
    async def create_recordset(self, msg: CreateRecordset, ctx: Context) -> RecordsetView:
        """One round trip for the change itself (`dns.create_recordset`), so that concurrent
        creates in one zone hold its lock as briefly as they can."""
        require_member(ctx, "create_recordset")
        async with self.store.connection() as conn:
            zone = visible(await sql.zone_with_limits(conn, msg.zone_id), ctx, msg.all_projects, msg.zone_id)
            limits = quota_sql.merged(zone["quota_resources"], zone["quota_limits"])
            if msg.type not in USER_TYPES:
                raise Invalid("type", f"{msg.type} recordsets are the zone's own")
            name = names.record_name(msg.name, zone["name"])
            if msg.type == "NS" and name == zone["name"]:
                raise Invalid("name", "the NS records at the zone's apex are managed")
            records = checked_records(msg.type, msg.records, limits["recordset_records"])
            pdns = names.pdns_name(name)
            values = (msg.recordset_id, msg.zone_id, zone["project_id"], name, pdns, msg.type, records,
                      msg.ttl, msg.description)  # fmt: skip
            try:
                made = await sql.create_recordset(conn, values, limits["zone_recordsets"])
            except asyncpg.RaiseError as exc:
                made = None
                if exc.message == "cname":
                    raise Invalid(
                        "type", f"a CNAME cannot share its name with other records ({name})"
                    ) from None
            if made is None or made["outcome"] == "exists":  # a name taken, or a retried create
                existing = await sql.recordset(conn, msg.recordset_id)
                if existing is None:
                    raise Conflict("recordset", f"a {msg.type} recordset named {name} already exists")
                if existing["zone_id"] != msg.zone_id:
                    raise Conflict("recordset", f"{msg.recordset_id} exists in another zone")
                return recordset_view(existing)
        if made["outcome"] == "gone":
            raise NotFound("zone", msg.zone_id)
        if made["outcome"] == "quota":
            raise QuotaExceeded("zone_recordsets", str(limits["zone_recordsets"]))
        self.changed(zone["id"], zone["name"], made["serial"])
        return RecordsetView(
            id=msg.recordset_id, zone_id=zone["id"], zone_name=zone["name"], name=name, type=msg.type,
            records=tuple(records), ttl=msg.ttl, description=msg.description, status="PENDING",
            action="CREATE", version=1, project_id=zone["project_id"], managed=False,
            created_at=made["created"], updated_at=made["created"],
        )  # fmt: skip

    @handles(GetRecordset)
    async def get_recordset(self, msg: GetRecordset, ctx: Context) -> RecordsetView:
        async with self.store.connection() as conn:
            _, row = await self._zone_and_recordset(
                conn, ctx, msg.zone_id, msg.recordset_id, msg.all_projects
            )
        return recordset_view(row)

    @handles(ListRecordsets)
    async def list_recordsets(self, msg: ListRecordsets, ctx: Context) -> RecordsetList:
        query = Query()
        sort = f"r.{msg.sort_key}"
        async with self.store.connection() as conn:
            if msg.zone_id is not None:
                visible(await sql.zone(conn, msg.zone_id), ctx, msg.all_projects, msg.zone_id)
                query.equal("r.zone_id", msg.zone_id)
            elif not (ctx.is_admin and msg.all_projects):
                query.equal("z.project_id", ctx.project_id)
            query.equal("r.name", msg.name.lower() if msg.name else None)
            query.equal("r.type", msg.type)
            query.equal("r.ttl", msg.ttl)
            query.equal("r.status", msg.status.upper() if msg.status else None)
            query.equal("r.description", msg.description)
            if msg.data is not None:
                query.where.append(f"{query.arg(msg.data)} = ANY(r.records)")
            marker = await marker_row(conn, "dns.recordsets", sort, msg.marker)
            rows, total, more = await page(
                conn,
                columns=sql.RECORDSET_COLUMNS,
                source=RECORDSETS,
                query=query,
                sort=sort,
                descending=msg.sort_dir == "desc",
                marker=marker,
                limit=msg.limit,
            )
        return RecordsetList(items=tuple(recordset_view(row) for row in rows), total_count=total, more=more)

    @handles(UpdateRecordset, key=lambda m: m.zone_id)
    async def update_recordset(self, msg: UpdateRecordset, ctx: Context) -> RecordsetView:
        require_member(ctx, "update_recordset")
        async with self.store.connection() as conn:
            zone, row = await self._zone_and_recordset(
                conn, ctx, msg.zone_id, msg.recordset_id, msg.all_projects
            )
            limits = await quota_sql.limits(conn, zone["project_id"])
        if row["managed_by"] is not None:
            raise Invalid("recordset", f"{row['type']} {row['name']} is managed and may not be updated")
        records = None
        if msg.records is not None:
            records = checked_records(row["type"], msg.records, limits["recordset_records"])
        async with self.store.transaction() as tx:
            serial = await sql.bump(tx, msg.zone_id)
            if serial is None or await sql.recordset(tx, msg.recordset_id) is None:
                raise NotFound("recordset", msg.recordset_id)
            await sql.update_recordset(
                tx,
                msg.recordset_id,
                records=records,
                ttl=msg.ttl,
                clear_ttl=msg.clear_ttl,
                description=msg.description,
                serial=serial,
                clear_description=msg.clear_description,
            )
            updated = await sql.recordset(tx, msg.recordset_id)
            assert updated is not None
        self.changed(zone["id"], zone["name"], serial)
        return recordset_view(updated)

    @handles(DeleteRecordset, key=lambda m: m.zone_id)
    async def delete_recordset(self, msg: DeleteRecordset, ctx: Context) -> RecordsetView:
        require_member(ctx, "delete_recordset")
        async with self.store.connection() as conn:
            zone, row = await self._zone_and_recordset(
                conn, ctx, msg.zone_id, msg.recordset_id, msg.all_projects
            )
        if row["managed_by"] is not None:
            raise Invalid("recordset", f"{row['type']} {row['name']} is managed and may not be deleted")
        async with self.store.transaction() as tx:
            serial = await sql.bump(tx, msg.zone_id, recordsets=-1)
            if serial is None or await sql.recordset(tx, msg.recordset_id) is None:
                raise NotFound("recordset", msg.recordset_id)
            await sql.delete_recordset(tx, msg.recordset_id)
        self.changed(zone["id"], zone["name"], serial)
        return dataclasses.replace(recordset_view(row), status="PENDING", action="DELETE")
