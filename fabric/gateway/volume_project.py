"""What is set about volumes rather than made: volume types and their extra specs (admins
manage them, everyone lists the public ones), per-project quotas (`os-quota-sets`) and the
absolute `limits` the CLI's `limits show` reads."""

import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from aiohttp import web

from fabric.gateway.context import BUS
from fabric.gateway.http import json_response, query_bool, query_str, read_json_value
from fabric.gateway.volume_request import ROOT, scoped, strict_bool, wrapped
from fabric.gateway.volume_views import limits_body, quota_set_body, type_body
from protocol.codec import MaxLen, MinLen, decode
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.volume import (
    DEFAULT_QUOTAS,
    QUEUE,
    CreateVolumeType,
    DeleteVolumeType,
    Description,
    GetVolumeQuotas,
    GetVolumeType,
    ListVolumeTypes,
    SetVolumeQuotas,
    UpdateVolumeType,
    VolumeQuotaSet,
    VolumeTypeList,
    VolumeTypeView,
)

TypeName = Annotated[str, MinLen(1), MaxLen(255)]
#: Keys Cinder skips in a quota update body.
NON_QUOTA_KEYS = frozenset({"id", "tenant_id"})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{ROOT}/types", list_types)
    r.add_post(f"{ROOT}/types", create_type)
    r.add_get(f"{ROOT}/types/{{type_id}}", show_type)
    r.add_put(f"{ROOT}/types/{{type_id}}", update_type)
    r.add_delete(f"{ROOT}/types/{{type_id}}", delete_type)
    r.add_get(f"{ROOT}/types/{{type_id}}/extra_specs", list_extra_specs)
    r.add_post(f"{ROOT}/types/{{type_id}}/extra_specs", merge_extra_specs)
    r.add_get(f"{ROOT}/types/{{type_id}}/extra_specs/{{key}}", show_extra_spec)
    r.add_put(f"{ROOT}/types/{{type_id}}/extra_specs/{{key}}", set_extra_spec)
    r.add_delete(f"{ROOT}/types/{{type_id}}/extra_specs/{{key}}", delete_extra_spec)
    r.add_get(f"{ROOT}/os-quota-sets/{{target}}", show_quotas)
    r.add_get(f"{ROOT}/os-quota-sets/{{target}}/defaults", show_quota_defaults)
    r.add_put(f"{ROOT}/os-quota-sets/{{target}}", update_quotas)
    r.add_get(f"{ROOT}/limits", limits)


# --- types -------------------------------------------------------------------------------------


def _specs(raw: Any, field: str) -> dict[str, str]:
    """Extra specs as Cinder takes them: string values, and numbers or booleans as their text."""
    if not isinstance(raw, dict):
        raise Invalid(field, "an object of key: value")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not 1 <= len(key) <= 255:
            raise Invalid(f"{field}.{key[:64]}", "a key has 1 to 255 characters")
        if isinstance(value, (bool, int, float)):
            value = orjson.dumps(value).decode()
        if not isinstance(value, str) or len(value) > 255:
            raise Invalid(f"{field}.{key[:64]}", "a string of at most 255 characters")
        out[key] = value
    return out


async def _get_type(request: web.Request, ctx: Context) -> VolumeTypeView:
    ref = request.match_info["type_id"]
    if len(ref) > 255:
        raise NotFound("volume type", ref[:64])
    found: VolumeTypeView = await request.app[BUS].call(QUEUE, GetVolumeType(type_ref=ref), ctx)
    return found


async def list_types(request: web.Request) -> web.Response:
    ctx = scoped(request)
    found: VolumeTypeList = await request.app[BUS].call(QUEUE, ListVolumeTypes(), ctx)
    # As in Cinder: public types, unless an admin asks for private ones (`is_public=false`) or
    # for both (`is_public=none`).
    raw = query_str(request, "is_public")
    wanted: bool | None = True
    if ctx.is_admin and raw is not None:
        wanted = None if raw.lower() == "none" else strict_bool(raw, "is_public")
    items = [t for t in found.items if wanted is None or t.is_public == wanted]
    return json_response({"volume_types": [type_body(t, ctx) for t in items]})


async def show_type(request: web.Request) -> web.Response:
    ctx = scoped(request)
    return json_response({"volume_type": type_body(await _get_type(request, ctx), ctx)})


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeFields:
    name: TypeName
    description: Description | None = None
    extra_specs: Any = None


async def create_type(request: web.Request) -> web.Response:
    ctx = scoped(request)
    raw = wrapped(await read_json_value(request), "volume_type")
    is_public = raw.pop("os-volume-type-access:is_public", None)
    f = decode(TypeFields, raw, path="volume_type")
    if not f.name.strip():
        raise Invalid("volume_type.name", "must not be blank")
    msg = CreateVolumeType(
        type_id=str(uuid.uuid4()),
        name=f.name.strip(),
        description=f.description,
        is_public=True if is_public is None else strict_bool(is_public, "volume_type.is_public"),
        extra_specs={} if f.extra_specs is None else _specs(f.extra_specs, "volume_type.extra_specs"),
    )
    created: VolumeTypeView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"volume_type": type_body(created, ctx)})


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeUpdate:
    name: TypeName | None = None
    description: Description | None = None
    is_public: Any = None


async def update_type(request: web.Request) -> web.Response:
    ctx = scoped(request)
    current = await _get_type(request, ctx)
    f = decode(TypeUpdate, wrapped(await read_json_value(request), "volume_type"), path="volume_type")
    if f.name is not None and not f.name.strip():
        raise Invalid("volume_type.name", "Volume type name can not be empty.")
    if f.name is None and f.description is None and f.is_public is None:
        raise Invalid(
            "volume_type", "Specify volume type name, description, is_public or a combination thereof."
        )
    msg = UpdateVolumeType(
        type_id=current.id,
        name=None if f.name is None else f.name.strip(),
        description=f.description,
        is_public=None if f.is_public is None else strict_bool(f.is_public, "volume_type.is_public"),
    )
    updated: VolumeTypeView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"volume_type": type_body(updated, ctx)})


async def delete_type(request: web.Request) -> web.Response:
    ctx = scoped(request)
    current = await _get_type(request, ctx)
    await request.app[BUS].call(QUEUE, DeleteVolumeType(type_id=current.id), ctx)
    return web.Response(status=202)


# Extra specs are replaced whole by the service; as with volume metadata, one key's change reads
# the type, changes it and writes it back (admins only, one command at a time).


async def _set_specs(request: web.Request, ctx: Context, type_id: str, specs: dict[str, str]) -> None:
    await request.app[BUS].call(QUEUE, UpdateVolumeType(type_id=type_id, extra_specs=specs), ctx)


async def list_extra_specs(request: web.Request) -> web.Response:
    ctx = scoped(request)
    return json_response({"extra_specs": type_body(await _get_type(request, ctx), ctx)["extra_specs"]})


async def merge_extra_specs(request: web.Request) -> web.Response:
    ctx = scoped(request)
    body = await read_json_value(request)
    if not isinstance(body, dict) or set(body) != {"extra_specs"}:
        raise Invalid("extra_specs", "the body is {'extra_specs': {...}}")
    new = _specs(body["extra_specs"], "extra_specs")
    current = await _get_type(request, ctx)
    await _set_specs(request, ctx, current.id, current.extra_specs | new)
    return json_response({"extra_specs": new})


async def show_extra_spec(request: web.Request) -> web.Response:
    ctx = scoped(request)
    key = request.match_info["key"]
    specs = type_body(await _get_type(request, ctx), ctx)["extra_specs"]
    if key not in specs:
        raise NotFound("volume type extra spec", key[:64])
    return json_response({key: specs[key]})


async def set_extra_spec(request: web.Request) -> web.Response:
    ctx = scoped(request)
    key = request.match_info["key"]
    item = _specs(await read_json_value(request), "body")
    if list(item) != [key]:
        raise Invalid("body", "one key, the one in the path")
    current = await _get_type(request, ctx)
    await _set_specs(request, ctx, current.id, current.extra_specs | item)
    return json_response(item)


async def delete_extra_spec(request: web.Request) -> web.Response:
    ctx = scoped(request)
    key = request.match_info["key"]
    current = await _get_type(request, ctx)
    if key not in current.extra_specs:
        raise NotFound("volume type extra spec", key[:64])
    await _set_specs(request, ctx, current.id, {k: v for k, v in current.extra_specs.items() if k != key})
    return web.Response(status=202)


# --- quotas and limits -------------------------------------------------------------------------


async def show_quotas(request: web.Request) -> web.Response:
    ctx = scoped(request)
    msg = decode(GetVolumeQuotas, {"project_id": request.match_info["target"]}, path="")
    found: VolumeQuotaSet = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"quota_set": quota_set_body(found, usage=bool(query_bool(request, "usage")))})


async def show_quota_defaults(request: web.Request) -> web.Response:
    scoped(request)
    return json_response({"quota_set": {"id": request.match_info["target"], **DEFAULT_QUOTAS}})


async def update_quotas(request: web.Request) -> web.Response:
    """Admins only (the service checks). Cinder answers with the limits and no `id`."""
    ctx = scoped(request)
    raw = wrapped(await read_json_value(request), "quota_set")
    values: dict[str, int] = {}
    for key, value in raw.items():
        if key in NON_QUOTA_KEYS:
            continue
        if key not in DEFAULT_QUOTAS:
            raise Invalid(f"quota_set.{key[:64]}", f"not a quota here ({', '.join(DEFAULT_QUOTAS)})")
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,10}", value):
            value = int(value)
        if type(value) is not int or value < -1:
            raise Invalid(f"quota_set.{key}", "a whole number, -1 for unlimited")
        values[key] = value
    msg = decode(SetVolumeQuotas, {"project_id": request.match_info["target"], "limits": values}, path="")
    found: VolumeQuotaSet = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"quota_set": dict(found.limits)})


async def limits(request: web.Request) -> web.Response:
    ctx = scoped(request)
    found: VolumeQuotaSet = await request.app[BUS].call(
        QUEUE, GetVolumeQuotas(project_id=str(ctx.project_id)), ctx
    )
    return json_response(limits_body(found))
