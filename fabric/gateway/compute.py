"""Compute v2.1 (Nova) under `/compute`: the version documents and flavors. Servers,
hypervisors and what projects keep (keypairs, groups, quotas) have their own modules;
microversions are negotiated in `microversion`.
"""

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from aiohttp import web

from fabric.gateway.context import BUS, SETTINGS, authenticated
from fabric.gateway.http import json_response, next_links, query_bool, query_str, read_json
from fabric.gateway.microversion import MAX_VERSION, MIN_VERSION, text
from protocol.codec import MaxLen, MinLen, Range, decode
from protocol.compute import (
    QUEUE,
    CreateFlavor,
    DeleteExtraSpec,
    DeleteFlavor,
    FlavorAccess,
    FlavorView,
    GetExtraSpecs,
    GetFlavor,
    ListFlavorAccess,
    ListFlavors,
    SetExtraSpecs,
    SetFlavorAccess,
)
from protocol.errors import Invalid, NotFound


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/compute", versions)
    r.add_get("/compute/", versions)
    r.add_get("/compute/v2.1", version)
    r.add_get("/compute/v2.1/", version)
    r.add_get("/compute/v2.1/flavors", list_flavors)
    r.add_get("/compute/v2.1/flavors/detail", list_flavors_detail)
    r.add_post("/compute/v2.1/flavors", create_flavor)
    r.add_get("/compute/v2.1/flavors/{flavor_id}", show_flavor)
    r.add_delete("/compute/v2.1/flavors/{flavor_id}", delete_flavor)
    r.add_post("/compute/v2.1/flavors/{flavor_id}/action", flavor_action)
    r.add_get("/compute/v2.1/flavors/{flavor_id}/os-flavor-access", list_flavor_access)
    r.add_get("/compute/v2.1/flavors/{flavor_id}/os-extra_specs", list_extra_specs)
    r.add_post("/compute/v2.1/flavors/{flavor_id}/os-extra_specs", set_extra_specs)
    r.add_get("/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", show_extra_spec)
    r.add_delete("/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", delete_extra_spec)


def base_url(request: web.Request) -> str:
    return f"{request.app[SETTINGS].gateway_url}/compute/v2.1"


def _version_doc(request: web.Request) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": text(MAX_VERSION),
        "min_version": text(MIN_VERSION),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base_url(request)}/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}
        ],
    }


async def versions(request: web.Request) -> web.Response:
    return json_response({"versions": [_version_doc(request)]})


async def version(request: web.Request) -> web.Response:
    return json_response({"version": _version_doc(request)})


# --- flavors -------------------------------------------------------------------------------


def flavor_body(base: str, f: FlavorView, *, detail: bool = True) -> dict[str, Any]:
    links = [
        {"rel": "self", "href": f"{base}/flavors/{f.id}"},
        {"rel": "bookmark", "href": f"{base.removesuffix('/v2.1')}/flavors/{f.id}"},
    ]
    if not detail:  # the list form carries exactly these (tempest checks)
        return {"id": f.id, "name": f.name, "links": links}
    return {
        "id": f.id,
        "name": f.name,
        "vcpus": f.vcpus,
        "ram": f.ram,
        "disk": f.disk,
        "swap": f.swap or "",
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral,
        "OS-FLV-DISABLED:disabled": f.disabled,
        "os-flavor-access:is_public": f.is_public,
        "rxtx_factor": f.rxtx_factor,
        "links": links,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorFields:
    name: Annotated[str, MinLen(1), MaxLen(255)]
    vcpus: Annotated[int, Range(1, 2**31 - 1)]
    ram: Annotated[int, Range(1, 2**31 - 1)]
    disk: Annotated[int, Range(0, 2**31 - 1)] = 0
    id: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    swap: Annotated[int, Range(0, 2**31 - 1)] | None = None
    rxtx_factor: Annotated[float, Range(0.0, 1e6)] | None = None
    description: Annotated[str, MaxLen(65535)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorRequest:
    flavor: dict[str, Any]


async def create_flavor(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    raw = (await read_json(request, FlavorRequest)).flavor
    # Nova's extension keys are not Python names: take them out before decoding the rest.
    ephemeral = raw.pop("OS-FLV-EXT-DATA:ephemeral", None)
    is_public = raw.pop("os-flavor-access:is_public", None)
    body = decode(FlavorFields, raw, path="flavor", allow_extra=False)
    ephemeral = 0 if ephemeral is None else ephemeral
    if type(ephemeral) is not int or ephemeral < 0:
        raise Invalid("flavor.OS-FLV-EXT-DATA:ephemeral", "a whole number of GiB, 0 or more")
    if is_public is not None and type(is_public) is not bool:
        raise Invalid("flavor.os-flavor-access:is_public", "true or false")
    msg = CreateFlavor(
        flavor_id=body.id or str(uuid.uuid4()),
        name=body.name,
        vcpus=body.vcpus,
        ram=body.ram,
        disk=body.disk,
        swap=body.swap or 0,
        ephemeral=ephemeral,
        is_public=True if is_public is None else is_public,
        rxtx_factor=1.0 if body.rxtx_factor is None else body.rxtx_factor,
        description=body.description,
    )
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"flavor": flavor_body(base_url(request), created)})


def _list_message(request: web.Request) -> ListFlavors:
    # Absent: public ones. `None` (the literal word, as the CLI sends it) or `all`: every flavor.
    raw_public = query_str(request, "is_public")
    is_public: bool | None
    if raw_public is None:
        is_public = True
    elif raw_public.lower() in ("none", "all"):
        is_public = None
    else:
        is_public = query_bool(request, "is_public")
    query: dict[str, Any] = {"is_public": is_public}
    for name in ("minRam", "minDisk", "limit"):
        value = query_str(request, name)
        if value is not None:
            if not value.isdigit():
                raise Invalid(name, "a whole number")
            query[{"minRam": "min_ram", "minDisk": "min_disk"}.get(name, name)] = int(value)
    marker = query_str(request, "marker")
    if marker is not None:
        query["marker"] = marker
    return decode(ListFlavors, query, path="query")


async def _list(request: web.Request, *, detail: bool) -> web.Response:
    ctx = authenticated(request)
    msg = _list_message(request)
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    base = base_url(request)
    body: dict[str, Any] = {"flavors": [flavor_body(base, f, detail=detail) for f in found.items]}
    if found.more:
        body["flavors_links"] = next_links(
            request, request.app[SETTINGS].gateway_url, msg.limit, found.items[-1].id
        )
    return json_response(body)


async def list_flavors(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def list_flavors_detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def show_flavor(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetFlavor(flavor_id=request.match_info["flavor_id"]), ctx)
    return json_response({"flavor": flavor_body(base_url(request), found)})


async def delete_flavor(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteFlavor(flavor_id=request.match_info["flavor_id"]), ctx)
    return web.Response(status=202)


def access_body(access: FlavorAccess) -> dict[str, Any]:
    return {"flavor_access": [{"flavor_id": access.flavor_id, "tenant_id": p} for p in access.project_ids]}


async def flavor_action(request: web.Request) -> web.Response:
    """`addTenantAccess` / `removeTenantAccess`: `{"addTenantAccess": {"tenant": PROJECT}}`."""
    ctx = authenticated(request)
    body = await read_json(request, dict[str, Any])
    if len(body) != 1:
        raise Invalid("body", "one action: addTenantAccess or removeTenantAccess")
    ((action, args),) = body.items()
    if action not in ("addTenantAccess", "removeTenantAccess"):
        raise Invalid("body", f"unknown flavor action {action[:40]!r}")
    if not isinstance(args, dict) or not isinstance(args.get("tenant"), str) or not args["tenant"]:
        raise Invalid(f"{action}.tenant", "the project id to give or take access")
    msg = SetFlavorAccess(
        flavor_id=request.match_info["flavor_id"],
        project_id=args["tenant"],
        allowed=action == "addTenantAccess",
    )
    return json_response(access_body(await request.app[BUS].call(QUEUE, msg, ctx)))


async def list_flavor_access(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = ListFlavorAccess(flavor_id=request.match_info["flavor_id"])
    return json_response(access_body(await request.app[BUS].call(QUEUE, msg, ctx)))


# --- extra specs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecsRequest:
    extra_specs: dict[str, Any]


async def list_extra_specs(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetExtraSpecs(flavor_id=request.match_info["flavor_id"]), ctx)
    return json_response({"extra_specs": found.specs})


async def set_extra_specs(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    specs = (await read_json(request, SpecsRequest)).extra_specs
    # Nova takes numbers and booleans too, and stores their string form.
    as_text = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in specs.items()}
    msg = decode(SetExtraSpecs, {"flavor_id": request.match_info["flavor_id"], "specs": as_text}, path="")
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"extra_specs": {k: found.specs[k] for k in as_text}})


async def show_extra_spec(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    flavor_id, key = request.match_info["flavor_id"], request.match_info["key"]
    found = await request.app[BUS].call(QUEUE, GetExtraSpecs(flavor_id=flavor_id), ctx)
    if key not in found.specs:
        raise NotFound("flavor extra spec", f"{flavor_id}/{key}")
    return json_response({key: found.specs[key]})


async def delete_extra_spec(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = DeleteExtraSpec(flavor_id=request.match_info["flavor_id"], key=request.match_info["key"])
    await request.app[BUS].call(QUEUE, msg, ctx)
    return web.Response(status=200)
