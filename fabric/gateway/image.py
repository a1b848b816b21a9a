"""Image v2 (Glance) under `/image`: records through the image service, bytes streamed
between the client and the blob store here, never held whole in memory.

An upload: `BeginUpload` (the image service takes the image to `saving` and says how many bytes
the quota leaves), stream the body into the store while hashing, then `FinishUpload` with the
size and checksums; on any failure `AbortUpload` and the partial blob is removed.
"""

import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web

from fabric.blobs import BlobStore
from fabric.gateway import image_views as views
from fabric.gateway.context import BLOBS, BUS, authenticated
from fabric.gateway.http import json_response, no_content, query_bool, query_str, read_json, read_json_value
from protocol.codec import MaxLen, MinLen, decode
from protocol.envelope import Context
from protocol.errors import Conflict, FabricError, Forbidden, Invalid, NotFound
from protocol.image import (
    QUEUE,
    AbortUpload,
    AddMember,
    BeginUpload,
    CreateImage,
    DeleteImage,
    FinishUpload,
    GetImage,
    GetMember,
    ImageDeleted,
    ImageFields,
    ImageView,
    ListImages,
    ListMembers,
    MemberStatus,
    RemoveMember,
    SetMemberStatus,
    UpdateImage,
    UploadGranted,
)

log = logging.getLogger("fabric.gateway.image")
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
#: A patch is applied to the image as it is; if it changed meanwhile, to its new state, this
#: many times at most (each round of patches racing on one image lets one through).
PATCH_TRIES = 20


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/image", versions)
    r.add_get("/image/", versions)
    r.add_get("/image/v2", versions)
    r.add_get("/image/v2/", versions)
    r.add_get("/image/v2/images", list_images)
    r.add_post("/image/v2/images", create_image)
    r.add_get("/image/v2/images/{image_id}", show_image)
    r.add_patch("/image/v2/images/{image_id}", update_image)
    r.add_delete("/image/v2/images/{image_id}", delete_image)
    r.add_put("/image/v2/images/{image_id}/file", upload)
    r.add_get("/image/v2/images/{image_id}/file", download)
    r.add_get("/image/v2/images/{image_id}/members", list_members)
    r.add_post("/image/v2/images/{image_id}/members", add_member)
    r.add_get("/image/v2/images/{image_id}/members/{member_id}", show_member)
    r.add_put("/image/v2/images/{image_id}/members/{member_id}", set_member_status)
    r.add_delete("/image/v2/images/{image_id}/members/{member_id}", remove_member)


async def versions(request: web.Request) -> web.Response:
    base = f"{request.scheme}://{request.host}/image"
    return json_response({"versions": [views.version(base)]}, status=300)


def fields_of(body: dict[str, Any], *, field: str = "body") -> ImageFields:
    """An image's settable fields from a flat Glance object: known keys are fields, other
    string-valued keys are properties; read-only keys are refused by name."""
    base: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for key, value in body.items():
        if key in views.READ_ONLY:
            raise Forbidden(f"image: attribute '{key[:64]}' is read-only")
        if key in views.BASE:
            if value is not None:
                base[key] = value
        elif isinstance(value, str):
            properties[key] = value
        else:
            raise Invalid(f"{field}.{key[:64]}", "an image property is a string")
    return decode(ImageFields, {**base, "properties": properties}, path=field)


async def create_image(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = await read_json_value(request)
    if not isinstance(body, dict):
        raise Invalid("body", "an image is a JSON object")
    image_id = body.pop("id", None) or str(uuid.uuid4())
    if not isinstance(image_id, str):
        raise Invalid("id", "an image id is a string")
    created = await request.app[BUS].call(QUEUE, CreateImage(image_id=image_id, fields=fields_of(body)), ctx)
    return json_response(views.image(created), status=201, headers={"Location": f"/v2/images/{image_id}"})


async def show_image(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetImage(image_id=request.match_info["image_id"]), ctx)
    return json_response(views.image(found))


def _limit(request: web.Request) -> int:
    raw = query_str(request, "limit")
    if raw is None:
        return 25
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise Invalid("limit", "a whole number from 1 to 1000")
    return int(raw)


def _ids(request: web.Request) -> list[str] | None:
    """`id=X` or Glance's `id=in:X,Y`."""
    raw = query_str(request, "id")
    if raw is None:
        return None
    return raw.removeprefix("in:").split(",") if raw.startswith("in:") else [raw]


async def list_images(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    raw = {
        "name": query_str(request, "name"),
        "status": query_str(request, "status"),
        "visibility": query_str(request, "visibility"),
        "owner": query_str(request, "owner"),
        "ids": _ids(request),
        "os_hidden": bool(query_bool(request, "os_hidden")),
        "member_status": query_str(request, "member_status"),
        "limit": _limit(request),
        "marker": query_str(request, "marker"),
    }
    msg = decode(ListImages, {k: v for k, v in raw.items() if v is not None}, path="query")
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    body: dict[str, Any] = {
        "images": [views.image(i) for i in found.items],
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    }
    if found.more:
        query = {k: v for k, v in request.query.items() if k != "marker"}
        query["marker"] = found.items[-1].id
        body["next"] = str(request.rel_url.with_path("/v2/images").with_query(query))
    return json_response(body)


def apply_patch(current: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Glance's JSON-patch dialect: add, replace and remove on top-level paths."""
    if not isinstance(ops, list):
        raise Invalid("body", "a JSON patch is a list of operations")
    result = dict(current)
    for n, op in enumerate(ops):
        where = f"body[{n}]"
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
            raise Invalid(f"{where}.op", "one of add, replace, remove")
        path = op.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1 or len(path) < 2:
            raise Invalid(f"{where}.path", "a path names one top-level attribute, as /name")
        key = path[1:]
        if key in views.READ_ONLY:
            raise Forbidden(f"image: attribute '{key[:64]}' is read-only")
        if op["op"] == "remove":
            if key in views.BASE:
                raise Forbidden(f"image: attribute '{key}' cannot be removed")
            if key not in result:
                raise Invalid(f"{where}.path", f"no property '{key[:64]}' to remove")
            del result[key]
            continue
        if "value" not in op:
            raise Invalid(f"{where}.value", "this field is required")
        if op["op"] == "replace" and key not in result:
            raise Invalid(f"{where}.path", f"no property '{key[:64]}' to replace")
        result[key] = op["value"]
    return result


async def update_image(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    if request.content_type != PATCH_TYPE:
        raise web.HTTPUnsupportedMediaType(reason=f"send {PATCH_TYPE}")
    image_id = request.match_info["image_id"]
    ops = await read_json_value(request)
    for _ in range(PATCH_TRIES - 1):
        try:
            return json_response(views.image(await _patch(request, image_id, ops, ctx)))
        except Conflict:
            continue  # another patch landed first: apply this one to what it made
    return json_response(views.image(await _patch(request, image_id, ops, ctx)))


async def _patch(request: web.Request, image_id: str, ops: Any, ctx: Context) -> ImageView:
    bus = request.app[BUS]
    current: ImageView = await bus.call(QUEUE, GetImage(image_id=image_id), ctx)
    fields = fields_of(apply_patch(views.settable(current), ops))
    msg = UpdateImage(image_id=image_id, fields=fields, expected_updated_at=current.updated_at)
    updated: ImageView = await bus.call(QUEUE, msg, ctx)
    return updated


async def delete_image(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    gone: ImageDeleted = await request.app[BUS].call(
        QUEUE, DeleteImage(image_id=request.match_info["image_id"]), ctx
    )
    if gone.location is not None:
        await request.app[BLOBS].delete(gone.location)
    return no_content()


async def upload(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    image_id = request.match_info["image_id"]
    bus, blobs = request.app[BUS], request.app[BLOBS]
    granted: UploadGranted = await bus.call(QUEUE, BeginUpload(image_id=image_id), ctx)
    try:
        stored = await blobs.write(
            granted.location, request.content.iter_chunked(256 * 1024), granted.max_bytes
        )
        if stored.size == 0:
            raise Invalid("body", "an image needs data: the upload was empty")
        expected = granted.expected_md5
        if expected is not None and expected != stored.md5:
            raise Invalid("body", f"the data's md5 {stored.md5} is not the declared {expected[:64]}")
        await bus.call(
            QUEUE,
            FinishUpload(
                image_id=image_id, size=stored.size, checksum=stored.md5, os_hash_value=stored.sha512
            ),
            ctx,
        )
    except BaseException:
        await _abandon(bus, blobs, granted.location, image_id, ctx)
        raise
    return no_content()


async def _abandon(bus: Any, blobs: BlobStore, location: str, image_id: str, ctx: Context) -> None:
    """Undo a failed upload: the blob goes, the image is `queued` again for another try."""
    await blobs.delete(location)
    try:
        await bus.call(QUEUE, AbortUpload(image_id=image_id), ctx)
    except FabricError:
        # The image stays `saving` (a new upload is refused with 409) until the abort is
        # retried: say so rather than hide it.
        log.warning(
            "could not put an image back to queued after a failed upload", extra={"image_id": image_id}
        )


async def download(request: web.Request) -> web.StreamResponse:
    ctx = authenticated(request)
    image_id = request.match_info["image_id"]
    found: ImageView = await request.app[BUS].call(QUEUE, GetImage(image_id=image_id), ctx)
    if found.status != "active" or found.location is None:
        return no_content()  # Glance: no data yet
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(found.size),
            "Content-MD5": found.checksum or "",
        }
    )
    chunks = request.app[BLOBS].read(found.location)
    try:
        first = await anext(chunks, None)  # a missing blob is a 404 before any byte is sent
    except FileNotFoundError:
        raise NotFound("image data", image_id) from None
    await response.prepare(request)
    if first is not None:
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


# --- members -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMember:
    member: Annotated[str, MinLen(1), MaxLen(64)]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberAnswer:
    status: MemberStatus


async def list_members(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, ListMembers(image_id=request.match_info["image_id"]), ctx)
    return json_response(views.members(found.items))


async def add_member(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = await read_json(request, NewMember)
    msg = AddMember(image_id=request.match_info["image_id"], member_id=body.member)
    return json_response(views.member(await request.app[BUS].call(QUEUE, msg, ctx)))


async def show_member(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = GetMember(image_id=request.match_info["image_id"], member_id=request.match_info["member_id"])
    return json_response(views.member(await request.app[BUS].call(QUEUE, msg, ctx)))


async def set_member_status(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = await read_json(request, MemberAnswer)
    msg = SetMemberStatus(
        image_id=request.match_info["image_id"], member_id=request.match_info["member_id"], status=body.status
    )
    return json_response(views.member(await request.app[BUS].call(QUEUE, msg, ctx)))


async def remove_member(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = RemoveMember(image_id=request.match_info["image_id"], member_id=request.match_info["member_id"])
    await request.app[BUS].call(QUEUE, msg, ctx)
    return no_content()
