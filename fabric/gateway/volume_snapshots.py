"""Block Storage v3 snapshots under `/volume/v3/{project_id}/snapshots`: create (202), list
(Cinder's summary and detail items are the same object), show, update and delete (202)."""

import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fabric.gateway.context import BUS, SETTINGS
from fabric.gateway.http import json_response, next_links, query_str, read_json_value
from fabric.gateway.volume_request import (
    ROOT,
    all_tenants,
    body_uuid,
    cleaned,
    metadata_keys,
    page_query,
    path_id,
    scoped,
    strict_bool,
    wrapped,
)
from fabric.gateway.volume_views import snapshot_body
from protocol.codec import decode
from protocol.errors import Invalid
from protocol.volume import (
    QUEUE,
    CreateSnapshot,
    DeleteSnapshot,
    Description,
    GetSnapshot,
    ListSnapshots,
    Metadata,
    Name,
    SnapshotList,
    SnapshotView,
    UpdateSnapshot,
)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{ROOT}/snapshots", list_snapshots)
    r.add_get(f"{ROOT}/snapshots/detail", list_snapshots)
    r.add_post(f"{ROOT}/snapshots", create_snapshot)
    r.add_get(f"{ROOT}/snapshots/{{snapshot_id}}", show_snapshot)
    r.add_put(f"{ROOT}/snapshots/{{snapshot_id}}", update_snapshot)
    r.add_delete(f"{ROOT}/snapshots/{{snapshot_id}}", delete_snapshot)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFields:
    """`POST /snapshots`'s `snapshot`; Cinder refuses keys it does not know here."""

    volume_id: str | None
    name: Name | None = None
    display_name: Name | None = None
    description: Description | None = None
    display_description: Description | None = None
    force: Any = None
    metadata: Metadata | None = None


async def create_snapshot(request: web.Request) -> web.Response:
    ctx = scoped(request)
    f = decode(SnapshotFields, wrapped(await read_json_value(request), "snapshot"), path="snapshot")
    volume_id = body_uuid(f.volume_id, "snapshot.volume_id")
    if volume_id is None:
        raise Invalid("snapshot.volume_id", "the volume to snapshot is required")
    msg = CreateSnapshot(
        snapshot_id=str(uuid.uuid4()),
        volume_id=volume_id,
        name=cleaned(f.name if f.name is not None else f.display_name) or "",
        description=cleaned(f.description if f.description is not None else f.display_description),
        force=False if f.force is None else strict_bool(f.force, "snapshot.force"),
        metadata=metadata_keys(f.metadata, "snapshot.metadata") or {},
    )
    created: SnapshotView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"snapshot": snapshot_body(created)}, status=202)


async def list_snapshots(request: web.Request) -> web.Response:
    ctx = scoped(request)
    query: dict[str, Any] = {}
    for name in ("name", "status", "volume_id"):
        value = query_str(request, name)
        if value is not None:
            query[name] = value
    all_tenants(request, ctx, query)
    if not page_query(request, query):
        return json_response({"snapshots": []})
    msg = decode(ListSnapshots, query, path="query")
    found: SnapshotList = await request.app[BUS].call(QUEUE, msg, ctx)
    body: dict[str, Any] = {"snapshots": [snapshot_body(s) for s in found.items]}
    if found.more and found.items:
        public_url = request.app[SETTINGS].gateway_url
        body["snapshots_links"] = next_links(request, public_url, msg.limit, found.items[-1].id)
    return json_response(body)


async def show_snapshot(request: web.Request) -> web.Response:
    ctx = scoped(request)
    msg = GetSnapshot(snapshot_id=path_id(request, "snapshot_id", "snapshot"))
    found: SnapshotView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"snapshot": snapshot_body(found)})


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotUpdate:
    name: Name | None = None
    display_name: Name | None = None
    description: Description | None = None
    display_description: Description | None = None


async def update_snapshot(request: web.Request) -> web.Response:
    ctx = scoped(request)
    snapshot_id = path_id(request, "snapshot_id", "snapshot")
    f = decode(SnapshotUpdate, wrapped(await read_json_value(request), "snapshot"), path="snapshot")
    msg = UpdateSnapshot(
        snapshot_id=snapshot_id,
        name=cleaned(f.name if f.name is not None else f.display_name),
        description=cleaned(f.description if f.description is not None else f.display_description),
    )
    if msg.name is None and msg.description is None:
        raise Invalid("snapshot", "give a name or a description to change")
    updated: SnapshotView = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"snapshot": snapshot_body(updated)})


async def delete_snapshot(request: web.Request) -> web.Response:
    ctx = scoped(request)
    msg = DeleteSnapshot(snapshot_id=path_id(request, "snapshot_id", "snapshot"))
    await request.app[BUS].call(QUEUE, msg, ctx)
    return web.Response(status=202)
