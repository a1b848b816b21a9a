"""Volumes: the list with live statuses, create, extend, attach to and detach from a server,
delete. Block storage's own API for the volumes, Compute's `os-volume_attachments` for
attaching (as the CLI does); the list page makes two calls together, the volumes and the
project's servers (to name attachments and offer them as targets).
"""

import asyncio
import time
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud
from fabric.dashboard.page import cloud_of, error_page, form_str, redirect, render, signed_in

PAGE_SIZE = 20
MOVING = frozenset({"creating", "attaching", "detaching", "extending", "deleting", "downloading", "reserved"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/volumes", volume_list, name="volumes")
    app.router.add_post("/volumes", create_volume, name="volume-create")
    app.router.add_post("/volumes/{volume_id}/action", volume_action, name="volume-action")


async def _page(
    request: web.Request, *, values: dict[str, str], errors: dict[str, str], message: str | None, status: int
) -> web.Response:
    cloud = cloud_of(request)
    params = {"limit": str(PAGE_SIZE)}
    marker = request.query.get("marker", "")[:64]
    if marker:
        params["marker"] = marker
    rendered_at = time.time()
    page, servers = await asyncio.gather(
        cloud.get("block-storage", "/volumes/detail", **params),
        cloud.get("compute", "/servers/detail", limit="1000"),
    )
    volumes = page["volumes"]
    context = {
        "volumes": volumes,
        "servers": {s["id"]: s for s in servers["servers"] if s["status"] in ("ACTIVE", "SHUTOFF")},
        "server_names": {s["id"]: s["name"] for s in servers["servers"]},
        "next_marker": volumes[-1]["id"] if len(volumes) == PAGE_SIZE else None,
        "values": values,
        "errors": errors,
        "message": message,
        "since": rendered_at,
        "watch": ",".join(v["id"] for v in volumes if v["status"] in MOVING),
    }
    return render(request, "volumes.html", context, status=status)


async def volume_list(request: web.Request) -> web.Response:
    return await _page(request, values={"size": "1"}, errors={}, message=None, status=200)


async def create_volume(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    values = {"name": form_str(form, "name", 255), "size": form_str(form, "size", 20)}
    try:
        size: Any = int(values["size"])
    except ValueError:
        size = values["size"]  # the API says what is wrong with it, as for any other client
    try:
        await cloud_of(request).call(
            "POST", "block-storage", "/volumes", {"volume": {"name": values["name"], "size": size}}
        )
    except ApiError as exc:
        if not exc.is_client_error or exc.status == 401:
            raise
        where = (
            "size"
            if exc.field and "size" in exc.field
            else "name"
            if exc.field and "name" in exc.field
            else None
        )
        errors = {where: exc.message} if where else {}
        return await _page(
            request, values=values, errors=errors, message=None if where else exc.message, status=exc.status
        )
    session.flash(f"Creating volume {values['name'] or '(no name)'}.")
    return redirect("/volumes")


async def _act(cloud: Cloud, volume_id: str, action: str, form: Any) -> str:
    if action == "extend":
        new_size = form_str(form, "new_size", 20)
        size: Any = int(new_size) if new_size.isdigit() else new_size
        await cloud.call(
            "POST", "block-storage", f"/volumes/{volume_id}/action", {"os-extend": {"new_size": size}}
        )
        return f"Extending to {new_size} GB."
    if action == "attach":
        server_id = form_str(form, "server_id", 64)
        body = {"volumeAttachment": {"volumeId": volume_id}}
        await cloud.compute("POST", f"/servers/{server_id}/os-volume_attachments", body)
        return "Attaching."
    if action == "detach":
        server_id = form_str(form, "server_id", 64)
        await cloud.compute("DELETE", f"/servers/{server_id}/os-volume_attachments/{volume_id}")
        return "Detaching."
    if action == "delete":
        await cloud.call("DELETE", "block-storage", f"/volumes/{volume_id}")
        return "Deleting."
    return f"Unknown action {action[:20]!r}."


async def volume_action(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    action = form_str(form, "action", 20)
    name = form_str(form, "name", 255) or request.match_info["volume_id"]
    try:
        done = await _act(cloud_of(request), request.match_info["volume_id"], action, form)
    except ApiError as exc:
        if exc.status == 401:
            raise
        if not exc.is_client_error:
            return error_page(request, exc)
        session.flash(f"Cannot {action} {name}: {exc.message}", "error")
        return redirect("/volumes")
    session.flash(f"{name}: {done}")
    return redirect("/volumes")
