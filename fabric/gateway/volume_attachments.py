"""Compute v2.1 `os-volume_attachments`: volumes on a server, in Nova's 2.1 shapes.

At 2.1 an attachment's `id` is the volume's id, as Nova shows it; the volume service keeps the
real attachment id. The attach answers 200 once the volume is reserved and the host asked to
plug it; the volume turns `in-use` when the guest has the disk.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web

from fabric.gateway.context import BUS, authenticated
from fabric.gateway.http import json_response, read_json
from protocol.codec import MaxLen, MinLen, Pattern
from protocol.compute import (
    QUEUE,
    AttachVolume,
    DetachVolume,
    GetVolumeAttachment,
    ListVolumeAttachments,
    VolumeAttachmentList,
    VolumeAttachmentView,
)

Uuid = Annotated[str, Pattern(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentFields:
    volumeId: Uuid
    device: Annotated[str, MinLen(1), MaxLen(64)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachBody:
    volumeAttachment: AttachmentFields


def add_routes(app: web.Application) -> None:
    r = app.router
    base = "/compute/v2.1/servers/{server_id}/os-volume_attachments"
    r.add_get(base, list_attachments)
    r.add_post(base, attach)
    r.add_get(base + "/{volume_id}", show_attachment)
    r.add_delete(base + "/{volume_id}", detach)


def attachment_body(a: VolumeAttachmentView) -> dict[str, Any]:
    return {"id": a.volume_id, "serverId": a.server_id, "volumeId": a.volume_id, "device": a.device}


async def list_attachments(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = ListVolumeAttachments(server_id=request.match_info["server_id"])
    found: VolumeAttachmentList = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"volumeAttachments": [attachment_body(a) for a in found.items]})


async def attach(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = await read_json(request, AttachBody)
    fields = body.volumeAttachment
    server_id = request.match_info["server_id"]
    msg = AttachVolume(server_id=server_id, volume_id=fields.volumeId, device=fields.device)
    made: VolumeAttachmentView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"volumeAttachment": attachment_body(made)})


async def show_attachment(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    server_id, volume_id = request.match_info["server_id"], request.match_info["volume_id"]
    msg = GetVolumeAttachment(server_id=server_id, volume_id=volume_id)
    found: VolumeAttachmentView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"volumeAttachment": attachment_body(found)})


async def detach(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    server_id, volume_id = request.match_info["server_id"], request.match_info["volume_id"]
    msg = DetachVolume(server_id=server_id, volume_id=volume_id)
    await request.app[BUS].call(QUEUE, msg, ctx)
    return web.Response(status=202)
