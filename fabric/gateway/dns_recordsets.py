"""DNS v2 recordsets: `/v2/zones/{zone}/recordsets` and the all-zones list `/v2/recordsets`.

The clients qualify names before they send them (`www` becomes `www.example.org.`). The zone's
own SOA and NS recordsets are listed with the others; creating an SOA is refused here, changing
the zone's own recordsets by the service. `"ttl": null` in a PUT goes back to the zone's TTL.
"""

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, cast, get_args

from aiohttp import web

from fabric.gateway.context import BUS
from fabric.gateway.dns_request import (
    caller,
    fixed_fields,
    list_query,
    path_uuid,
    read_object,
    self_and_next,
    ttl_filter,
    urls_of,
)
from fabric.gateway.dns_views import V2, page_body, recordset_body
from fabric.gateway.http import json_response
from protocol.codec import MaxLen, MinLen, decode
from protocol.dns import (
    QUEUE,
    USER_TYPES,
    CreateRecordset,
    DeleteRecordset,
    Description,
    DnsName,
    GetRecordset,
    ListRecordsets,
    RecordData,
    RecordsetList,
    RecordsetView,
    RecordType,
    Ttl,
    UpdateRecordset,
)
from protocol.errors import Invalid

RECORDSET_FILTERS = frozenset({"name", "type", "ttl", "data", "status", "description"})
#: What a recordset shows but a PUT cannot change (Designate: immutable or read-only).
RECORDSET_FIXED = frozenset(
    {"id", "project_id", "zone_id", "zone_name", "name", "type", "status", "action", "version"}
    | {"created_at", "updated_at", "links"}
)
KNOWN_TYPES = frozenset(get_args(RecordType))
Records = Annotated[tuple[RecordData, ...], MinLen(1), MaxLen(1000)]


def add_routes(app: web.Application) -> None:
    r = app.router
    one = f"{V2}/zones/{{zone_id}}/recordsets/{{recordset_id}}"
    r.add_get(f"{V2}/recordsets", list_all_recordsets)
    r.add_get(f"{V2}/zones/{{zone_id}}/recordsets", list_recordsets)
    r.add_post(f"{V2}/zones/{{zone_id}}/recordsets", create_recordset)
    r.add_get(one, show_recordset)
    r.add_put(one, update_recordset)
    r.add_delete(one, delete_recordset)


def _response(request: web.Request, rs: RecordsetView, *, status: int) -> web.Response:
    body = recordset_body(rs, urls_of(request))
    headers = {"Location": body["links"]["self"]} if request.method == "POST" else None
    return json_response(body, status=status, headers=headers)


async def _list(request: web.Request, zone_id: str | None) -> web.Response:
    who = caller(request)
    fields: dict[str, Any] = list_query(request, RECORDSET_FILTERS, ListRecordsets)
    ttl_filter(fields)
    if fields.get("type", "A") not in KNOWN_TYPES:  # a type nothing here serves has no recordsets
        found = RecordsetList(items=(), total_count=0, more=False)
    else:
        msg = decode(ListRecordsets, fields | {"zone_id": zone_id, "all_projects": who.all_projects})
        found = await request.app[BUS].call(QUEUE, msg, who.ctx)
    urls = urls_of(request)
    last = found.items[-1].id if found.items else None
    self_url, next_url = self_and_next(request, urls, last, found.more)
    items = [recordset_body(rs, urls) for rs in found.items]
    return json_response(page_body("recordsets", items, found.total_count, self_url, next_url))


async def list_recordsets(request: web.Request) -> web.Response:
    return await _list(request, path_uuid(request, "zone_id"))


async def list_all_recordsets(request: web.Request) -> web.Response:
    return await _list(request, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordsetCreateBody:
    name: DnsName
    type: Annotated[str, MinLen(1), MaxLen(16)]
    records: Records
    ttl: Ttl | None = None
    description: Description | None = None


def create_message(zone_id: str, body: dict[str, Any], all_projects: bool) -> CreateRecordset:
    f = decode(RecordsetCreateBody, body)
    rtype = f.type.upper()
    if rtype == "SOA":
        raise Invalid("type", "Creating a SOA recordset is not allowed")
    if rtype not in USER_TYPES:
        raise Invalid("type", f"expected one of {', '.join(sorted(USER_TYPES))}")
    return CreateRecordset(
        recordset_id=str(uuid.uuid4()),
        zone_id=zone_id,
        name=f.name,
        type=cast(RecordType, rtype),
        records=f.records,
        ttl=f.ttl,
        description=f.description,
        all_projects=all_projects,
    )


async def create_recordset(request: web.Request) -> web.Response:
    who = caller(request)
    zone_id = path_uuid(request, "zone_id")
    msg = create_message(zone_id, await read_object(request), who.all_projects)
    created: RecordsetView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _response(request, created, status=202 if created.status == "PENDING" else 201)


def _ids(request: web.Request) -> tuple[str, str]:
    return path_uuid(request, "zone_id"), path_uuid(request, "recordset_id")


async def show_recordset(request: web.Request) -> web.Response:
    who = caller(request)
    zone_id, recordset_id = _ids(request)
    msg = GetRecordset(zone_id=zone_id, recordset_id=recordset_id, all_projects=who.all_projects)
    found: RecordsetView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _response(request, found, status=200)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordsetUpdateBody:
    records: Records | None = None
    ttl: Ttl | None = None
    description: Description | None = None


def update_message(
    zone_id: str, recordset_id: str, body: dict[str, Any], all_projects: bool
) -> UpdateRecordset:
    """`"ttl": null` is `clear_ttl` (the zone's TTL applies again); `"description": null` is
    `clear_description`."""
    fixed_fields(body, RECORDSET_FIXED)
    f = decode(RecordsetUpdateBody, body)
    if "records" in body and body["records"] is None:
        raise Invalid("records", "expected a list, got null")
    return UpdateRecordset(
        zone_id=zone_id,
        recordset_id=recordset_id,
        records=f.records,
        ttl=f.ttl,
        clear_ttl="ttl" in body and body["ttl"] is None,
        description=f.description,
        clear_description="description" in body and body["description"] is None,
        all_projects=all_projects,
    )


async def update_recordset(request: web.Request) -> web.Response:
    who = caller(request)
    zone_id, recordset_id = _ids(request)
    msg = update_message(zone_id, recordset_id, await read_object(request), who.all_projects)
    updated: RecordsetView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _response(request, updated, status=202 if updated.status == "PENDING" else 200)


async def delete_recordset(request: web.Request) -> web.Response:
    """202 with the recordset, PENDING and DELETE; it stops being served at once."""
    who = caller(request)
    zone_id, recordset_id = _ids(request)
    msg = DeleteRecordset(zone_id=zone_id, recordset_id=recordset_id, all_projects=who.all_projects)
    deleted: RecordsetView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _response(request, deleted, status=202)
