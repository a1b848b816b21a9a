"""A small DNS service for gateway tests: zones and recordsets in memory on the `dns` queue,
answering the messages of `protocol/dns.py` as the real service would, in outline. It keeps every
message with its context, so tests see what the gateway asked, and it can be told to fail."""

from dataclasses import replace
from typing import Any

from fabric.bus import Bus
from protocol.dns import (
    DEFAULT_QUOTAS,
    QUEUE,
    CreateRecordset,
    CreateZone,
    DeleteRecordset,
    DeleteZone,
    DnsQuotas,
    GetDnsQuotas,
    GetRecordset,
    GetZone,
    ListRecordsets,
    ListZones,
    RecordsetList,
    RecordsetView,
    SetDnsQuotas,
    UpdateRecordset,
    UpdateZone,
    ZoneList,
    ZoneView,
)
from protocol.envelope import Context
from protocol.errors import Conflict, FabricError, Forbidden, NotFound

#: 2026-11-26T12:00:00 UTC: what every created_at is, so bodies can be compared whole.
T0 = 1795694400.0


class FakeDns:
    def __init__(self) -> None:
        self.zones: dict[str, ZoneView] = {}
        self.recordsets: dict[str, RecordsetView] = {}
        self.quotas: dict[str, dict[str, int]] = {}
        self.seen: list[tuple[Any, Context]] = []
        #: The next request of this type fails with this error.
        self.fail: dict[type, FabricError] = {}
        #: A zone or recordset turns ACTIVE after this many GETs of it.
        self.gets_until_active = 2
        self._gets: dict[str, int] = {}

    async def serve(self, bus: Bus) -> None:
        await bus.serve(QUEUE, self.handle)

    def last(self, kind: type) -> Any:
        return next(m for m, _ in reversed(self.seen) if isinstance(m, kind))

    async def handle(self, msg: Any, ctx: Context) -> object:
        self.seen.append((msg, ctx))
        error = self.fail.pop(type(msg), None)
        if error is not None:
            raise error
        handler = getattr(self, f"on_{type(msg).__name__}")
        result: object = handler(msg, ctx)
        return result

    # zones

    def _zone(self, zone_id: str, ctx: Context, all_projects: bool) -> ZoneView:
        z = self.zones.get(zone_id)
        if z is None or (z.project_id != ctx.project_id and not all_projects):
            raise NotFound("zone", zone_id)
        return z

    def on_CreateZone(self, msg: CreateZone, ctx: Context) -> ZoneView:
        if any(z.name == msg.name for z in self.zones.values()):
            raise Conflict("zone", msg.name)
        z = ZoneView(
            id=msg.zone_id, name=msg.name, email=msg.email, ttl=msg.ttl or 3600, serial=1,
            status="PENDING", action="CREATE", project_id=str(ctx.project_id),
            description=msg.description, version=1, managed=False, created_at=T0, updated_at=T0,
        )  # fmt: skip
        self.zones[z.id] = z
        for rtype, data in (("SOA", "ns1.example. admin.example.org. 1 3600 600 86400 3600"), ("NS", "ns1.")):
            rs = self._new_recordset(z, f"{z.id[:8]}-{rtype}", z.name, rtype, (data,), managed=True)
            self.recordsets[rs.id] = replace(rs, status="ACTIVE", action="NONE")
        return z

    def on_GetZone(self, msg: GetZone, ctx: Context) -> ZoneView:
        z = self._zone(msg.zone_id, ctx, msg.all_projects)
        self._gets[z.id] = self._gets.get(z.id, 0) + 1
        if self._gets[z.id] >= self.gets_until_active and z.status == "PENDING":
            z = self.zones[z.id] = replace(z, status="ACTIVE", action="NONE", updated_at=T0 + 1)
        return z

    def on_ListZones(self, msg: ListZones, ctx: Context) -> ZoneList:
        found = [
            z
            for z in self.zones.values()
            if (msg.all_projects or z.project_id == ctx.project_id)
            and all(
                getattr(msg, f) is None or getattr(msg, f) == getattr(z, f)
                for f in ("name", "email", "ttl", "status", "description")
            )
        ]
        found.sort(key=lambda z: getattr(z, msg.sort_key), reverse=msg.sort_dir == "desc")
        if msg.marker is not None:
            found = found[[z.id for z in found].index(msg.marker) + 1 :]
        return ZoneList(items=tuple(found[: msg.limit]), total_count=len(found), more=len(found) > msg.limit)

    def on_UpdateZone(self, msg: UpdateZone, ctx: Context) -> ZoneView:
        z = self._zone(msg.zone_id, ctx, msg.all_projects)
        z = replace(
            z,
            email=msg.email or z.email,
            ttl=msg.ttl or z.ttl,
            description=None if msg.clear_description else msg.description or z.description,
            serial=z.serial + 1, status="PENDING", action="UPDATE", version=z.version + 1,
            updated_at=T0 + 2,
        )  # fmt: skip
        self.zones[z.id] = z
        return z

    def on_DeleteZone(self, msg: DeleteZone, ctx: Context) -> ZoneView:
        z = self.zones.pop(self._zone(msg.zone_id, ctx, msg.all_projects).id)
        return replace(z, status="PENDING", action="DELETE", updated_at=T0 + 3)

    # recordsets

    def _new_recordset(
        self, z: ZoneView, rs_id: str, name: str, rtype: str, records: tuple[str, ...], **kw: Any
    ) -> RecordsetView:
        return RecordsetView(
            id=rs_id, zone_id=z.id, zone_name=z.name, name=name, type=rtype, records=records,
            ttl=kw.get("ttl"), description=kw.get("description"), status="PENDING", action="CREATE",
            version=1, project_id=z.project_id, managed=kw.get("managed", False), created_at=T0,
            updated_at=T0,
        )  # fmt: skip

    def _recordset(self, zone_id: str, rs_id: str, ctx: Context, all_projects: bool) -> RecordsetView:
        self._zone(zone_id, ctx, all_projects)
        rs = self.recordsets.get(rs_id)
        if rs is None or rs.zone_id != zone_id:
            raise NotFound("recordset", rs_id)
        return rs

    def on_CreateRecordset(self, msg: CreateRecordset, ctx: Context) -> RecordsetView:
        z = self._zone(msg.zone_id, ctx, msg.all_projects)
        if any(r.name == msg.name and r.type == msg.type for r in self.recordsets.values()):
            raise Conflict("recordset", f"{msg.name} {msg.type}")
        rs = self._new_recordset(
            z, msg.recordset_id, msg.name, msg.type, msg.records, ttl=msg.ttl, description=msg.description
        )
        self.recordsets[rs.id] = rs
        return rs

    def on_GetRecordset(self, msg: GetRecordset, ctx: Context) -> RecordsetView:
        rs = self._recordset(msg.zone_id, msg.recordset_id, ctx, msg.all_projects)
        self._gets[rs.id] = self._gets.get(rs.id, 0) + 1
        if self._gets[rs.id] >= self.gets_until_active and rs.status == "PENDING":
            rs = self.recordsets[rs.id] = replace(rs, status="ACTIVE", action="NONE", updated_at=T0 + 1)
        return rs

    def on_ListRecordsets(self, msg: ListRecordsets, ctx: Context) -> RecordsetList:
        if msg.zone_id is not None:
            self._zone(msg.zone_id, ctx, msg.all_projects)
        found = [
            r
            for r in self.recordsets.values()
            if (msg.zone_id is None or r.zone_id == msg.zone_id)
            and (msg.all_projects or r.project_id == ctx.project_id)
            and (msg.data is None or msg.data in r.records)
            and all(
                getattr(msg, f) is None or getattr(msg, f) == getattr(r, f)
                for f in ("name", "type", "ttl", "status", "description")
            )
        ]
        if msg.marker is not None:
            found = found[[r.id for r in found].index(msg.marker) + 1 :]
        items = tuple(found[: msg.limit])
        return RecordsetList(items=items, total_count=len(found), more=len(found) > msg.limit)

    def on_UpdateRecordset(self, msg: UpdateRecordset, ctx: Context) -> RecordsetView:
        rs = self._recordset(msg.zone_id, msg.recordset_id, ctx, msg.all_projects)
        rs = replace(
            rs,
            records=msg.records or rs.records,
            ttl=None if msg.clear_ttl else (msg.ttl or rs.ttl),
            description=None if msg.clear_description else msg.description or rs.description,
            status="PENDING", action="UPDATE", version=rs.version + 1, updated_at=T0 + 2,
        )  # fmt: skip
        self.recordsets[rs.id] = rs
        return rs

    def on_DeleteRecordset(self, msg: DeleteRecordset, ctx: Context) -> RecordsetView:
        rs = self.recordsets.pop(self._recordset(msg.zone_id, msg.recordset_id, ctx, msg.all_projects).id)
        return replace(rs, status="PENDING", action="DELETE", updated_at=T0 + 3)

    # quotas

    def on_GetDnsQuotas(self, msg: GetDnsQuotas, ctx: Context) -> DnsQuotas:
        if msg.project_id != ctx.project_id and not ctx.is_admin:
            raise Forbidden("get_quotas")
        return DnsQuotas(
            project_id=msg.project_id, limits=DEFAULT_QUOTAS | self.quotas.get(msg.project_id, {})
        )

    def on_SetDnsQuotas(self, msg: SetDnsQuotas, ctx: Context) -> DnsQuotas:
        if not ctx.is_admin:
            raise Forbidden("set_quota")
        self.quotas[msg.project_id] = self.quotas.get(msg.project_id, {}) | msg.limits
        return DnsQuotas(project_id=msg.project_id, limits=DEFAULT_QUOTAS | self.quotas[msg.project_id])
