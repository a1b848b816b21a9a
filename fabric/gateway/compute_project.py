"""What a project and its users keep beside servers, in Compute v2.1: keypairs
(`os-keypairs`), server groups (`os-server-groups`), quotas (`os-quota-sets`) and `limits`."""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from aiohttp import web

from fabric.gateway.context import BUS, authenticated
from fabric.gateway.http import json_response, query_bool, read_json
from fabric.gateway.microversion import Version, version_of
from fabric.gateway.times import seconds as iso
from protocol.codec import MaxLen, MinLen, decode
from protocol.compute import (
    QUEUE,
    QUOTA_DEFAULTS,
    CreateKeypair,
    CreateServerGroup,
    DeleteKeypair,
    DeleteServerGroup,
    GetKeypair,
    GetQuotas,
    GetServerGroup,
    KeypairList,
    KeypairView,
    ListKeypairs,
    ListServerGroups,
    QuotaSet,
    ServerGroupList,
    ServerGroupView,
    SetQuotas,
)
from protocol.errors import Invalid


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/compute/v2.1/os-keypairs", list_keypairs)
    r.add_post("/compute/v2.1/os-keypairs", create_keypair)
    r.add_get("/compute/v2.1/os-keypairs/{name}", show_keypair)
    r.add_delete("/compute/v2.1/os-keypairs/{name}", delete_keypair)
    r.add_get("/compute/v2.1/os-server-groups", list_groups)
    r.add_post("/compute/v2.1/os-server-groups", create_group)
    r.add_get("/compute/v2.1/os-server-groups/{group_id}", show_group)
    r.add_delete("/compute/v2.1/os-server-groups/{group_id}", delete_group)
    r.add_get("/compute/v2.1/os-quota-sets/{project_id}", show_quotas)
    r.add_get("/compute/v2.1/os-quota-sets/{project_id}/detail", show_quotas_detail)
    r.add_get("/compute/v2.1/os-quota-sets/{project_id}/defaults", show_quota_defaults)
    r.add_put("/compute/v2.1/os-quota-sets/{project_id}", update_quotas)
    r.add_get("/compute/v2.1/limits", limits)


# --- keypairs ----------------------------------------------------------------------------------


def keypair_body(k: KeypairView, version: Version, *, full: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint}
    if version >= (2, 2):
        body["type"] = k.type
    if full:
        body |= {"user_id": k.user_id, "created_at": iso(k.created_at), "deleted": False}
        body |= {"deleted_at": None, "updated_at": None}
    if k.private_key is not None:
        body["private_key"] = k.private_key
    return body


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypairFields:
    name: Annotated[str, MinLen(1), MaxLen(255)]
    public_key: Annotated[str, MinLen(1), MaxLen(16384)] | None = None
    #: From 2.2; only SSH keys are kept here.
    type: Literal["ssh"] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypairRequest:
    keypair: KeypairFields


async def create_keypair(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    fields = (await read_json(request, KeypairRequest)).keypair
    msg = decode(CreateKeypair, {"name": fields.name, "public_key": fields.public_key}, path="keypair")
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    body = keypair_body(created, version_of(request), full=False) | {"user_id": created.user_id}
    return json_response({"keypair": body})


async def list_keypairs(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found: KeypairList = await request.app[BUS].call(QUEUE, ListKeypairs(), ctx)
    version = version_of(request)
    return json_response(
        {"keypairs": [{"keypair": keypair_body(k, version, full=False)} for k in found.items]}
    )


async def show_keypair(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetKeypair(name=request.match_info["name"]), ctx)
    return json_response({"keypair": keypair_body(found, version_of(request))})


async def delete_keypair(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteKeypair(name=request.match_info["name"]), ctx)
    return web.Response(status=202)


# --- server groups -----------------------------------------------------------------------------


def group_body(g: ServerGroupView) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "policies": [g.policy],
        "members": list(g.members),
        "metadata": {},
        "project_id": g.project_id,
        "user_id": g.user_id,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFields:
    name: Annotated[str, MinLen(1), MaxLen(255)]
    policies: Annotated[tuple[Literal["affinity", "anti-affinity"], ...], MinLen(1), MaxLen(1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRequest:
    server_group: GroupFields


async def create_group(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    fields = (await read_json(request, GroupRequest)).server_group
    msg = CreateServerGroup(name=fields.name, policy=fields.policies[0])
    return json_response({"server_group": group_body(await request.app[BUS].call(QUEUE, msg, ctx))})


async def list_groups(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = ListServerGroups(all_projects=bool(query_bool(request, "all_projects")))
    found: ServerGroupList = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"server_groups": [group_body(g) for g in found.items]})


async def show_group(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetServerGroup(group_id=request.match_info["group_id"]), ctx)
    return json_response({"server_group": group_body(found)})


async def delete_group(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteServerGroup(group_id=request.match_info["group_id"]), ctx)
    return web.Response(status=204)


# --- quotas and limits -------------------------------------------------------------------------


async def _quotas(request: web.Request) -> QuotaSet:
    ctx = authenticated(request)
    msg = GetQuotas(project_id=request.match_info.get("project_id") or ctx.project_id or "")
    found: QuotaSet = await request.app[BUS].call(QUEUE, msg, ctx)
    return found


async def show_quotas(request: web.Request) -> web.Response:
    found = await _quotas(request)
    return json_response({"quota_set": {"id": found.project_id, **found.limits}})


async def show_quotas_detail(request: web.Request) -> web.Response:
    found = await _quotas(request)
    detail = {
        k: {"limit": v, "in_use": found.in_use.get(k, 0), "reserved": 0} for k, v in found.limits.items()
    }
    return json_response({"quota_set": {"id": found.project_id, **detail}})


async def show_quota_defaults(request: web.Request) -> web.Response:
    authenticated(request)
    return json_response({"quota_set": {"id": request.match_info["project_id"], **QUOTA_DEFAULTS}})


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaRequest:
    quota_set: dict[str, Any]


async def update_quotas(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    values = dict((await read_json(request, QuotaRequest)).quota_set)
    values.pop("force", None)
    for key, value in values.items():
        if isinstance(value, str) and value.lstrip("-").isdigit():
            values[key] = int(value)  # Nova takes numbers as strings too
        elif type(value) is not int:
            raise Invalid(f"quota_set.{key[:64]}", "a whole number, -1 for unlimited")
        if values[key] < -1:
            raise Invalid(f"quota_set.{key[:64]}", "-1 (unlimited) or more")
    msg = decode(SetQuotas, {"project_id": request.match_info["project_id"], "limits": values}, path="")
    found: QuotaSet = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"quota_set": dict(found.limits)})


ABSOLUTE = {
    "instances": ("maxTotalInstances", "totalInstancesUsed"),
    "cores": ("maxTotalCores", "totalCoresUsed"),
    "ram": ("maxTotalRAMSize", "totalRAMUsed"),
    "key_pairs": ("maxTotalKeypairs", None),
    "metadata_items": ("maxServerMeta", None),
    "server_groups": ("maxServerGroups", "totalServerGroupsUsed"),
    "server_group_members": ("maxServerGroupMembers", None),
}


async def limits(request: web.Request) -> web.Response:
    found = await _quotas(request)
    absolute: dict[str, int] = {}
    for resource, (limit_name, used_name) in ABSOLUTE.items():
        absolute[limit_name] = found.limits.get(resource, -1)
        if used_name is not None:
            absolute[used_name] = found.in_use.get(resource, 0)
    return json_response({"limits": {"rate": [], "absolute": absolute}})
