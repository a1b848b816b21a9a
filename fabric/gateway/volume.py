"""Block Storage v3 (Cinder) under `/volume`: version documents, version negotiation, the
project in the path, and volumes with their actions and metadata. Snapshots are in
`volume_snapshots`; types, quotas and limits in `volume_project`; bodies in `volume_views`;
what every route uses (the project check, ids, numbers, pages) in `volume_request`.

We serve microversion 3.0 only: every response shape here is 3.0's, and the SDK, seeing
`version: "3.0"` in the version document, asks for exactly that. A request without the
header gets 3.0, as in Cinder; `latest` gets 3.0; any other version is a 406 and a malformed
one a 400. Every `/volume` response, errors included, echoes `OpenStack-API-Version: volume 3.0`.

Paths carry the project (`/volume/v3/{project_id}/volumes`); as in Cinder, a project that is not
the token's is a 400 "Malformed request url", for admins too (an admin reaches other projects'
volumes with `all_tenants`, and their quotas through `os-quota-sets/{project}`).
"""

import ast
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from aiohttp import web

from fabric.gateway.context import BUS, SETTINGS
from fabric.gateway.http import Handler, json_response, next_links, query_bool, query_str, read_json_value
from fabric.gateway.volume_request import (
    ROOT,
    all_tenants,
    body_uuid,
    cleaned,
    links_of,
    metadata_keys,
    page_query,
    path_id,
    scoped,
    strict_bool,
    whole_number,
    wrapped,
)
from fabric.gateway.volume_views import volume_body, volume_summary
from protocol.codec import MaxLen, decode
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.volume import (
    QUEUE,
    CreateVolume,
    DeleteVolume,
    Description,
    ExtendVolume,
    GetVolume,
    ListVolumes,
    Metadata,
    Name,
    SetVolumeBootable,
    UpdateVolume,
    VolumeList,
    VolumeView,
)

VERSION = "3.0"
UPDATED = "2017-02-25T12:00:00Z"
VOLUME_VERSION = web.RequestKey("fabric.volume_version", str)
VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/volume", versions)
    r.add_get("/volume/", versions)
    r.add_get("/volume/v3", version)
    r.add_get("/volume/v3/", version)
    r.add_get(f"{ROOT}/volumes", list_volumes)
    r.add_get(f"{ROOT}/volumes/detail", list_volumes_detail)
    r.add_post(f"{ROOT}/volumes", create_volume)
    r.add_get(f"{ROOT}/volumes/{{volume_id}}", show_volume)
    r.add_put(f"{ROOT}/volumes/{{volume_id}}", update_volume)
    r.add_delete(f"{ROOT}/volumes/{{volume_id}}", delete_volume)
    r.add_post(f"{ROOT}/volumes/{{volume_id}}/action", volume_action)
    r.add_get(f"{ROOT}/volumes/{{volume_id}}/metadata", show_metadata)
    r.add_post(f"{ROOT}/volumes/{{volume_id}}/metadata", merge_metadata)
    r.add_put(f"{ROOT}/volumes/{{volume_id}}/metadata", replace_metadata)
    r.add_get(f"{ROOT}/volumes/{{volume_id}}/metadata/{{key}}", show_metadata_item)
    r.add_put(f"{ROOT}/volumes/{{volume_id}}/metadata/{{key}}", set_metadata_item)
    r.add_delete(f"{ROOT}/volumes/{{volume_id}}/metadata/{{key}}", delete_metadata_item)


# --- versions ----------------------------------------------------------------------------------


def asked_version(request: web.Request) -> str:
    """The volume microversion a request asks for (`OpenStack-API-Version: volume 3.0`)."""
    header = request.headers.get("OpenStack-API-Version")
    if header is None:
        return VERSION
    for part in header.split(","):
        words = part.split()
        if len(words) == 2 and words[0].lower() == "volume":
            raw = words[1]
            break
    else:
        return VERSION  # the header speaks of other services only
    if raw.lower() == "latest":
        return VERSION
    match = VERSION_RE.match(raw)
    if match is None:
        raise Invalid("OpenStack-API-Version", f"invalid API version request {raw[:20]!r}")
    if (int(match[1]), int(match[2])) != (3, 0):
        raise web.HTTPNotAcceptable(
            reason=f"Version {raw[:20]} is not supported by the API. "
            f"Minimum is {VERSION} and maximum is {VERSION}."
        )
    return VERSION


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/volume"):
        request[VOLUME_VERSION] = asked_version(request)
    return await handler(request)


def echo(request: web.Request, response: web.StreamResponse) -> None:
    """Cinder's version headers on every volume response, errors included."""
    v = request.get(VOLUME_VERSION)
    if v is not None and not response.prepared:
        response.headers["OpenStack-API-Version"] = f"volume {v}"
        response.headers["Vary"] = "OpenStack-API-Version"


def _version_doc(request: web.Request) -> dict[str, Any]:
    return {
        "id": "v3.0",
        "status": "CURRENT",
        "version": VERSION,
        "min_version": VERSION,
        "updated": UPDATED,
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": f"{request.app[SETTINGS].gateway_url}/volume/v3/"},
        ],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}
        ],
    }


async def versions(request: web.Request) -> web.Response:
    """The unversioned root: 300 Multiple Choices, as Cinder answers."""
    return json_response({"versions": [_version_doc(request)]}, status=300)


async def version(request: web.Request) -> web.Response:
    """`/v3/`, what the SDK reads (no token): Cinder gives the list form here too."""
    return json_response({"versions": [_version_doc(request)]})


# --- volumes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeFields:
    """`POST /volumes`'s `volume`, with Cinder's names. At 3.0 Cinder ignores keys it does not
    know, so this is decoded with extra keys allowed."""

    name: Name | None = None
    description: Description | None = None
    display_name: Name | None = None
    display_description: Description | None = None
    size: Any = None
    volume_type: Annotated[str, MaxLen(255)] | None = None
    imageRef: Annotated[str, MaxLen(255)] | None = None  # Cinder's name
    image_id: Annotated[str, MaxLen(255)] | None = None
    snapshot_id: Annotated[str, MaxLen(64)] | None = None
    source_volid: Annotated[str, MaxLen(64)] | None = None
    consistencygroup_id: Any = None
    backup_id: Any = None
    availability_zone: Annotated[str, MaxLen(255)] | None = None
    metadata: Metadata | None = None
    multiattach: Any = None


def create_message(body: Any) -> CreateVolume:
    raw = wrapped(body, "volume", also=frozenset({"OS-SCH-HNT:scheduler_hints"}))
    if isinstance(body, dict) and body.get("OS-SCH-HNT:scheduler_hints"):
        raise Invalid("OS-SCH-HNT:scheduler_hints", "scheduler hints are not supported here")
    f = decode(VolumeFields, raw, path="volume", allow_extra=True)
    if f.backup_id is not None:
        raise Invalid("volume.backup_id", "there are no backups here to create a volume from")
    if f.consistencygroup_id is not None:
        raise Invalid("volume.consistencygroup_id", "consistency groups are not supported")
    if f.multiattach is not None and strict_bool(f.multiattach, "volume.multiattach"):
        raise Invalid(
            "volume.multiattach",
            "multiattach parameter has been removed; multiattach volumes come from a volume type",
        )
    image_ref = f.imageRef if f.imageRef is not None else f.image_id
    image_id = None
    if image_ref is not None:
        image_id = image_ref.rstrip("/").rsplit("/", 1)[-1]  # Nova passes an image URL
        if not image_id:
            raise Invalid("volume.imageRef", "an image id is required here")
    snapshot_id = body_uuid(f.snapshot_id, "volume.snapshot_id")
    source_id = body_uuid(f.source_volid, "volume.source_volid")
    size = None if f.size is None else whole_number(f.size, "volume.size")
    if size is None and snapshot_id is None and source_id is None:
        raise Invalid("volume.size", "required unless the volume is made from a snapshot or another volume")
    name = cleaned(f.name if f.name is not None else f.display_name)
    return CreateVolume(
        volume_id=str(uuid.uuid4()),
        size_gb=size,
        name=name or "",
        description=cleaned(f.description if f.description is not None else f.display_description),
        volume_type=f.volume_type or None,  # "" is the default type, as in Cinder
        image_id=image_id,
        snapshot_id=snapshot_id,
        source_volume_id=source_id,
        availability_zone=f.availability_zone or None,
        metadata=metadata_keys(f.metadata, "volume.metadata") or {},
    )


async def create_volume(request: web.Request) -> web.Response:
    ctx = scoped(request)
    msg = create_message(await read_json_value(request))
    created: VolumeView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"volume": volume_body(created, ctx, links_of(request, ctx))}, status=202)


def metadata_filter(raw: str) -> dict[str, str]:
    """Cinder's `metadata` filter is a Python dict literal (`{'k': 'v'}`); JSON is one too."""
    if len(raw) > 4096:
        raise Invalid("metadata", "longer than 4096 characters")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise Invalid("metadata", "a dict such as {'key': 'value'}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise Invalid("metadata", "a dict such as {'key': 'value'}")
    return {k: v if isinstance(v, str) else str(v) for k, v in value.items()}


def list_message(request: web.Request, ctx: Context) -> ListVolumes | None:
    """The list request, or None for an empty page (`limit=0`)."""
    query: dict[str, Any] = {}
    for name in ("name", "status"):
        value = query_str(request, name)
        if value is not None:
            query[name] = value
    metadata = query_str(request, "metadata")
    if metadata is not None:
        query["metadata"] = metadata_filter(metadata)
    bootable = query_bool(request, "bootable")
    if bootable is not None:
        query["bootable"] = bootable
    all_tenants(request, ctx, query)
    if not page_query(request, query):
        return None
    return decode(ListVolumes, query, path="query")


async def _list(request: web.Request, *, detail: bool) -> web.Response:
    ctx = scoped(request)
    msg = list_message(request, ctx)
    if msg is None:
        return json_response({"volumes": []})
    found: VolumeList = await request.app[BUS].call(QUEUE, msg, ctx)
    links = links_of(request, ctx)
    items = [volume_body(v, ctx, links) if detail else volume_summary(v, links) for v in found.items]
    body: dict[str, Any] = {"volumes": items}
    if found.more and found.items:
        public_url = request.app[SETTINGS].gateway_url
        body["volumes_links"] = next_links(request, public_url, msg.limit, found.items[-1].id)
    return json_response(body)


async def list_volumes(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def list_volumes_detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def _get(request: web.Request, ctx: Context) -> VolumeView:
    found: VolumeView = await request.app[BUS].call(
        QUEUE, GetVolume(volume_id=path_id(request, "volume_id", "volume")), ctx
    )
    return found


async def show_volume(request: web.Request) -> web.Response:
    ctx = scoped(request)
    found = await _get(request, ctx)
    return json_response({"volume": volume_body(found, ctx, links_of(request, ctx))})


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeUpdate:
    name: Name | None = None
    description: Description | None = None
    display_name: Name | None = None
    display_description: Description | None = None
    metadata: Metadata | None = None


async def update_volume(request: web.Request) -> web.Response:
    ctx = scoped(request)
    volume_id = path_id(request, "volume_id", "volume")
    f = decode(VolumeUpdate, wrapped(await read_json_value(request), "volume"), path="volume")
    msg = UpdateVolume(
        volume_id=volume_id,
        name=cleaned(f.name if f.name is not None else f.display_name),
        description=cleaned(f.description if f.description is not None else f.display_description),
        metadata=metadata_keys(f.metadata, "volume.metadata"),
    )
    updated: VolumeView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"volume": volume_body(updated, ctx, links_of(request, ctx))})


async def delete_volume(request: web.Request) -> web.Response:
    """202; the volume is `deleting` and then gone. `cascade=True` deletes its snapshots first."""
    ctx = scoped(request)
    volume_id = path_id(request, "volume_id", "volume")
    cascade = query_str(request, "cascade")
    msg = DeleteVolume(
        volume_id=volume_id, cascade=False if cascade is None else strict_bool(cascade, "cascade")
    )
    await request.app[BUS].call(QUEUE, msg, ctx)
    return web.Response(status=202)


async def volume_action(request: web.Request) -> web.Response:
    """`os-extend` (202) and `os-set_bootable` (200), as Cinder answers them. Attaching goes
    through Compute (`os-volume_attachments`), never through these actions."""
    ctx = scoped(request)
    volume_id = path_id(request, "volume_id", "volume")
    body = await read_json_value(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise Invalid("body", "one action, e.g. {'os-extend': {'new_size': 2}}")
    ((action, args),) = body.items()
    if action == "os-extend":
        if not isinstance(args, dict) or "new_size" not in args:
            raise Invalid("os-extend.new_size", "this field is required")
        new_size = whole_number(args["new_size"], "os-extend.new_size")
        await request.app[BUS].call(QUEUE, ExtendVolume(volume_id=volume_id, new_size_gb=new_size), ctx)
        return web.Response(status=202)
    if action == "os-set_bootable":
        if not isinstance(args, dict) or "bootable" not in args:
            raise Invalid("os-set_bootable.bootable", "this field is required")
        bootable = strict_bool(args["bootable"], "os-set_bootable.bootable")
        await request.app[BUS].call(QUEUE, SetVolumeBootable(volume_id=volume_id, bootable=bootable), ctx)
        return web.Response(status=200)
    raise Invalid(str(action)[:64], "There is no such action (os-extend and os-set_bootable are supported)")


# --- metadata ----------------------------------------------------------------------------------
# The service replaces a volume's metadata whole; a merge (POST, PUT or DELETE of one key) reads
# it, changes it and writes it back, so two merges racing on one volume can lose one's keys. The
# CLI sets metadata one command at a time, which is what these serve.


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataBody:
    metadata: Metadata


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaItemBody:
    meta: Metadata


async def _set_metadata(request: web.Request, ctx: Context, metadata: dict[str, str]) -> dict[str, str]:
    msg = UpdateVolume(volume_id=path_id(request, "volume_id", "volume"), metadata=metadata)
    updated: VolumeView = await request.app[BUS].call(QUEUE, msg, ctx)
    return updated.metadata


async def show_metadata(request: web.Request) -> web.Response:
    ctx = scoped(request)
    return json_response({"metadata": (await _get(request, ctx)).metadata})


async def merge_metadata(request: web.Request) -> web.Response:
    ctx = scoped(request)
    new = decode(MetadataBody, await read_json_value(request)).metadata
    metadata_keys(new, "metadata")
    current = (await _get(request, ctx)).metadata
    return json_response({"metadata": await _set_metadata(request, ctx, current | new)})


async def replace_metadata(request: web.Request) -> web.Response:
    ctx = scoped(request)
    new = decode(MetadataBody, await read_json_value(request)).metadata
    metadata_keys(new, "metadata")
    return json_response({"metadata": await _set_metadata(request, ctx, new)})


async def show_metadata_item(request: web.Request) -> web.Response:
    ctx = scoped(request)
    key = request.match_info["key"]
    metadata = (await _get(request, ctx)).metadata
    if key not in metadata:
        raise NotFound("volume metadata item", key[:64])
    return json_response({"meta": {key: metadata[key]}})


async def set_metadata_item(request: web.Request) -> web.Response:
    ctx = scoped(request)
    key = request.match_info["key"]
    item = decode(MetaItemBody, await read_json_value(request)).meta
    if list(item) != [key]:
        raise Invalid("meta", "one key, the one in the path")
    metadata_keys(item, "meta")
    current = (await _get(request, ctx)).metadata
    await _set_metadata(request, ctx, current | item)
    return json_response({"meta": item})


async def delete_metadata_item(request: web.Request) -> web.Response:
    ctx = scoped(request)
    key = request.match_info["key"]
    current = (await _get(request, ctx)).metadata
    if key not in current:
        raise NotFound("volume metadata item", key[:64])
    await _set_metadata(request, ctx, {k: v for k, v in current.items() if k != key})
    return web.Response(status=200)
