"""DNS v2 (Designate) under `/dns`: the version document, zones and quotas. Recordsets are in
`dns_recordsets`, bodies in `dns_views`, what every route uses (errors, Designate's headers,
ids, list queries) in `dns_request`.

The service behind it is the `dns` queue (`protocol/dns.py`). Every change is asynchronous in
Designate's way: the reply is the zone `PENDING` with its action, answered 202, and it becomes
`ACTIVE` once the nameserver serves it. Names are found with `?name=` by the clients (there is no
get-by-name), and an id in the path that is not a UUID is a 400 `invalid_uuid`, as in Designate.
"""

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from aiohttp import web

from fabric.gateway import dns_recordsets, dns_reverse
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
from fabric.gateway.dns_views import SHOWN_ONLY_QUOTAS, V2, page_body, quotas_body, versions_body, zone_body
from fabric.gateway.http import json_response
from protocol.codec import MaxLen, decode
from protocol.dns import (
    DEFAULT_QUOTAS,
    QUEUE,
    CreateZone,
    DeleteZone,
    Description,
    DnsName,
    DnsQuotas,
    Email,
    GetDnsQuotas,
    GetZone,
    ListZones,
    QuotaLimit,
    SetDnsQuotas,
    Ttl,
    UpdateZone,
    ZoneList,
    ZoneView,
)
from protocol.errors import Forbidden, Invalid

ZONE_FILTERS = frozenset({"name", "email", "ttl", "status", "description", "type"})
#: What a zone shows but a PATCH cannot change (Designate: immutable or read-only).
ZONE_FIXED = frozenset(
    {"id", "pool_id", "project_id", "name", "serial", "status", "action", "version", "attributes", "type"}
    | {"created_at", "updated_at", "transferred_at", "shared", "links"}
)
Master = Annotated[str, MaxLen(255)]


def add_routes(app: web.Application) -> None:
    r = app.router
    for path in ("/dns", "/dns/", V2, f"{V2}/"):
        r.add_get(path, versions)
    r.add_get(f"{V2}/zones", list_zones)
    r.add_post(f"{V2}/zones", create_zone)
    r.add_get(f"{V2}/zones/{{zone_id}}", show_zone)
    r.add_patch(f"{V2}/zones/{{zone_id}}", update_zone)
    r.add_delete(f"{V2}/zones/{{zone_id}}", delete_zone)
    r.add_get(f"{V2}/quotas", show_own_quotas)
    r.add_get(f"{V2}/quotas/{{project_id}}", show_quotas)
    r.add_patch(f"{V2}/quotas/{{project_id}}", set_quotas)
    r.add_delete(f"{V2}/quotas/{{project_id}}", reset_quotas)
    dns_recordsets.add_routes(app)
    dns_reverse.add_routes(app)


async def versions(request: web.Request) -> web.Response:
    """The version list, without a token: the SDK reads it before authenticating."""
    return json_response(versions_body(urls_of(request)))


# --- zones -------------------------------------------------------------------------------------


def _zone_response(request: web.Request, zone: ZoneView, *, status: int) -> web.Response:
    body = zone_body(zone, urls_of(request))
    headers = {"Location": body["links"]["self"]} if request.method == "POST" else None
    return json_response(body, status=status, headers=headers)


async def list_zones(request: web.Request) -> web.Response:
    who = caller(request)
    fields: dict[str, Any] = list_query(request, ZONE_FILTERS, ListZones)
    ttl_filter(fields)
    if fields.pop("type", "PRIMARY") != "PRIMARY":  # every zone here is a primary one
        found = ZoneList(items=(), total_count=0, more=False)
    else:
        msg = decode(ListZones, fields | {"all_projects": who.all_projects})
        found = await request.app[BUS].call(QUEUE, msg, who.ctx)
    urls = urls_of(request)
    last = found.items[-1].id if found.items else None
    self_url, next_url = self_and_next(request, urls, last, found.more)
    items = [zone_body(z, urls) for z in found.items]
    return json_response(page_body("zones", items, found.total_count, self_url, next_url))


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneCreateBody:
    """`POST /v2/zones`, in Designate's names; anything else is a 400 naming the field."""

    name: DnsName
    email: Email | None = None
    ttl: Ttl | None = None
    description: Description | None = None
    type: Annotated[str, MaxLen(16)] = "PRIMARY"
    masters: tuple[Master, ...] = ()
    attributes: dict[str, Annotated[str, MaxLen(255)]] = field(default_factory=dict)


def create_message(body: dict[str, Any]) -> CreateZone:
    f = decode(ZoneCreateBody, body)
    if f.type == "SECONDARY":
        raise Invalid("type", "secondary zones are not served here, only PRIMARY ones")
    if f.type != "PRIMARY":
        raise Invalid("type", "expected one of 'PRIMARY', 'SECONDARY'")
    if f.masters:
        raise Invalid("masters", "a PRIMARY zone has no masters")
    if f.attributes:
        raise Invalid("attributes", "zone attributes (pool scheduling hints) are not supported")
    if f.email is None:
        raise Invalid("email", "a PRIMARY zone needs an email")
    return CreateZone(
        zone_id=str(uuid.uuid4()), name=f.name, email=f.email, ttl=f.ttl, description=f.description
    )


async def create_zone(request: web.Request) -> web.Response:
    """202 with the zone PENDING (201 if it were already ACTIVE), as Designate answers."""
    who = caller(request)
    msg = create_message(await read_object(request))
    created: ZoneView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _zone_response(request, created, status=202 if created.status == "PENDING" else 201)


async def show_zone(request: web.Request) -> web.Response:
    who = caller(request)
    msg = GetZone(zone_id=path_uuid(request, "zone_id"), all_projects=who.all_projects)
    found: ZoneView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _zone_response(request, found, status=200)


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneUpdateBody:
    email: Email | None = None
    ttl: Ttl | None = None
    description: Description | None = None
    masters: tuple[Master, ...] = ()


def update_message(zone_id: str, body: dict[str, Any], all_projects: bool) -> UpdateZone:
    """`"description": null` (the CLI's `--no-description`) clears it."""
    fixed_fields(body, ZONE_FIXED)
    f = decode(ZoneUpdateBody, body)
    for name in ("email", "ttl"):
        if name in body and body[name] is None:
            raise Invalid(name, "cannot be null")
    if f.masters:
        raise Invalid("masters", "a PRIMARY zone has no masters")
    return UpdateZone(
        zone_id=zone_id,
        email=f.email,
        ttl=f.ttl,
        description=f.description,
        clear_description="description" in body and body["description"] is None,
        all_projects=all_projects,
    )


async def update_zone(request: web.Request) -> web.Response:
    who = caller(request)
    zone_id = path_uuid(request, "zone_id")
    msg = update_message(zone_id, await read_object(request), who.all_projects)
    updated: ZoneView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _zone_response(request, updated, status=202 if updated.status == "PENDING" else 200)


async def delete_zone(request: web.Request) -> web.Response:
    """202 with the zone, PENDING and DELETE; its names stop being served at once."""
    who = caller(request)
    msg = DeleteZone(zone_id=path_uuid(request, "zone_id"), all_projects=who.all_projects)
    deleted: ZoneView = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return _zone_response(request, deleted, status=202)


# --- quotas ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaBody:
    """`PATCH /v2/quotas/{project}`: Designate's five resources. The two it has that nothing here
    counts (`zone_records`, `api_export_size`) are shown at their defaults and refused."""

    zones: QuotaLimit | None = None
    zone_recordsets: QuotaLimit | None = None
    recordset_records: QuotaLimit | None = None
    zone_records: QuotaLimit | None = None
    api_export_size: QuotaLimit | None = None


def quota_limits(body: dict[str, Any]) -> dict[str, int]:
    decode(QuotaBody, body)
    limits: dict[str, int] = {}
    for name, value in body.items():
        if value is None:
            raise Invalid(name, "expected an integer, got null")
        if name in SHOWN_ONLY_QUOTAS:
            raise Invalid(name, f"not enforced here; it stays at {SHOWN_ONLY_QUOTAS[name]}")
        limits[name] = value
    return limits


def quota_project(request: web.Request, ctx_project: str | None, all_projects: bool, rule: str) -> str:
    """The project in the path. Another project's quotas need `X-Auth-All-Projects` as well as
    the role (Designate's central checks it, for admins too)."""
    project_id = request.match_info["project_id"]
    if len(project_id) > 64:
        raise Invalid("project_id", "a project id has at most 64 characters")
    if project_id != ctx_project and not all_projects:
        raise Forbidden(rule)
    return project_id


async def show_own_quotas(request: web.Request) -> web.Response:
    who = caller(request)
    if who.ctx.project_id is None:
        raise Forbidden("get_quotas (a project-scoped token is needed)")
    msg = GetDnsQuotas(project_id=who.ctx.project_id)
    found: DnsQuotas = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return json_response(quotas_body(found))


async def show_quotas(request: web.Request) -> web.Response:
    who = caller(request)
    project_id = quota_project(request, who.ctx.project_id, who.all_projects, "get_quotas")
    found: DnsQuotas = await request.app[BUS].call(QUEUE, GetDnsQuotas(project_id=project_id), who.ctx)
    return json_response(quotas_body(found))


async def set_quotas(request: web.Request) -> web.Response:
    """Admins only (the service decides); 200 with every quota of the project after the change."""
    who = caller(request)
    project_id = quota_project(request, who.ctx.project_id, who.all_projects, "set_quota")
    msg = SetDnsQuotas(project_id=project_id, limits=quota_limits(await read_object(request)))
    found: DnsQuotas = await request.app[BUS].call(QUEUE, msg, who.ctx)
    return json_response(quotas_body(found))


async def reset_quotas(request: web.Request) -> web.Response:
    """Back to the defaults (Designate forgets the project's own limits): 204."""
    who = caller(request)
    project_id = request.match_info["project_id"]
    if len(project_id) > 64:
        raise Invalid("project_id", "a project id has at most 64 characters")
    msg = SetDnsQuotas(project_id=project_id, limits=dict(DEFAULT_QUOTAS))
    await request.app[BUS].call(QUEUE, msg, who.ctx)
    return web.Response(status=204)
