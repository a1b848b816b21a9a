"""Servers: the list (a page at a time), the launch form, a server's detail and its actions.

Each page makes its API calls together (`asyncio.gather`), never one per row: the list is one
`servers/detail` page plus the flavors and images that name its rows. A refused launch shows
the API's message beside the field it names (400) or at the top of the form (quota, conflict),
with what the user chose still chosen; a failure of the cloud (5xx) shows the request id.
"""

import asyncio
import time
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud
from fabric.dashboard.page import cloud_of, display_names, error_page, redirect, render, signed_in

PAGE_SIZE = 20
MAX_PAGE_SIZE = 200
MOVING = frozenset({"BUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "REBUILD", "MIGRATING"})
#: The launch form's fields by the names the Compute API gives them in its messages.
API_FIELDS = {
    "server.name": "name",
    "server.imageRef": "image",
    "server.flavorRef": "flavor",
    "server.networks": "network",
    "server.key_name": "key_name",
    "server.security_groups": "security_groups",
}
#: For messages that name what was not found rather than a field ("Could not find flavor: x.").
NOT_FOUND_WORDS = (
    ("flavor", "flavor"),
    ("image", "image"),
    ("keypair", "key_name"),
    ("key pair", "key_name"),
    ("security group", "security_groups"),
    ("network", "network"),
)
ACTIONS: dict[str, dict[str, Any]] = {
    "start": {"os-start": None},
    "stop": {"os-stop": None},
    "reboot": {"reboot": {"type": "SOFT"}},
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/servers", server_list, name="servers")
    app.router.add_get("/servers/new", launch_form, name="launch")
    app.router.add_post("/servers", launch, name="launch-post")
    app.router.add_get("/servers/{server_id}", server_detail, name="server")
    app.router.add_post("/servers/{server_id}/action", server_action, name="server-action")


def field_of(exc: ApiError) -> str | None:
    """The launch form's field a refusal is about, or None for the form as a whole."""
    if exc.field:
        for api_name, form_name in API_FIELDS.items():
            if exc.field == api_name or exc.field.startswith(api_name + "["):
                return form_name
    if exc.status in (400, 404):
        lowered = exc.message.lower()
        for word, form_name in NOT_FOUND_WORDS:
            if word in lowered:
                return form_name
    return None


async def server_list(request: web.Request) -> web.Response:
    cloud = cloud_of(request)
    try:
        limit = min(max(int(request.query.get("limit", PAGE_SIZE)), 1), MAX_PAGE_SIZE)
    except ValueError:
        limit = PAGE_SIZE
    params = {"limit": str(limit)}
    marker = request.query.get("marker", "")[:64]
    if marker:
        params["marker"] = marker
    rendered_at = time.time()
    page, (flavors, images) = await asyncio.gather(
        cloud.get("compute", "/servers/detail", **params), display_names(request, cloud)
    )
    servers = page["servers"]
    context = {
        "servers": servers,
        "flavors": flavors,
        "images": images,
        "next_marker": servers[-1]["id"] if len(servers) == limit else None,
        "limit": limit,
        "marker": marker,
        "since": rendered_at,
        "watch": ",".join(s["id"] for s in servers if _is_moving(s)),
    }
    return render(request, "servers.html", context)


def _is_moving(server: dict[str, Any]) -> bool:
    return server.get("status") in MOVING or bool(server.get("OS-EXT-STS:task_state"))


async def _launch_choices(cloud: Cloud, project_id: str) -> dict[str, Any]:
    images, flavors, networks, keypairs, groups = await asyncio.gather(
        cloud.get("image", "/v2/images", limit="1000"),
        cloud.get("compute", "/flavors/detail"),
        cloud.get("network", "/v2.0/networks"),
        cloud.get("compute", "/os-keypairs"),
        cloud.get("network", "/v2.0/security-groups", project_id=project_id),
    )
    return {
        "images": [i for i in images["images"] if i.get("status") == "active"],
        "flavors": sorted(flavors["flavors"], key=lambda f: (f["vcpus"], f["ram"], f["name"])),
        # Ports on external networks are for admins; a project's own and shared ones are for all.
        "networks": [n for n in networks["networks"] if not n.get("router:external") or n.get("shared")],
        "keypairs": [k["keypair"] for k in keypairs["keypairs"]],
        "security_groups": groups["security_groups"],
    }


async def launch_form(request: web.Request) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    choices = await _launch_choices(cloud_of(request), session.token.project.id)
    values = {"security_groups": [g["id"] for g in choices["security_groups"] if g["name"] == "default"]}
    return render(request, "launch.html", choices | {"values": values, "errors": {}, "message": None})


def _launch_body(values: dict[str, Any]) -> dict[str, Any]:
    server: dict[str, Any] = {
        "name": values["name"],
        "imageRef": values["image"],
        "flavorRef": values["flavor"],
        "networks": [{"uuid": values["network"]}] if values["network"] else "none",
    }
    if values["key_name"]:
        server["key_name"] = values["key_name"]
    if values["security_groups"]:
        server["security_groups"] = [{"name": g} for g in values["security_groups"]]
    return {"server": server}


async def launch(request: web.Request) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    form = await request.post()
    values: dict[str, Any] = {
        name: str(form.get(name, "")).strip()[:255]
        for name in ("name", "image", "flavor", "network", "key_name")
    }
    values["security_groups"] = [str(g)[:64] for g in form.getall("security_groups", [])][:20]
    cloud = cloud_of(request)
    try:
        created = await cloud.compute("POST", "/servers", _launch_body(values))
    except ApiError as exc:
        choices = await _launch_choices(cloud, session.token.project.id)
        errors: dict[str, str] = {}
        message = None
        if exc.is_client_error:
            where = field_of(exc)
            if where is None:
                message = exc.message
            else:
                errors[where] = exc.message
        else:
            message = f"The cloud failed to launch the server: {exc.message} (request {exc.request_id})"
        context = choices | {"values": values, "errors": errors, "message": message}
        return render(request, "launch.html", context, status=exc.status)
    server_id = created["server"]["id"]
    session.flash(f"Launching {values['name']}.")
    return redirect(f"/servers/{server_id}")


async def _console(cloud: Cloud, server_id: str) -> str:
    body = await cloud.compute(
        "POST", f"/servers/{server_id}/action", {"os-getConsoleOutput": {"length": 50}}
    )
    return str(body.get("output", ""))


async def _volumes(cloud: Cloud) -> dict[str, dict[str, Any]]:
    if not cloud.has("block-storage"):
        return {}
    body = await cloud.get("block-storage", "/volumes/detail")
    return {v["id"]: v for v in body["volumes"]}


async def server_detail(request: web.Request) -> web.Response:
    cloud = cloud_of(request)
    server_id = request.match_info["server_id"]
    rendered_at = time.time()
    got, console, volumes, names = await asyncio.gather(
        cloud.get("compute", f"/servers/{server_id}"),
        _console(cloud, server_id),
        _volumes(cloud),
        display_names(request, cloud),
        return_exceptions=True,
    )
    if isinstance(got, BaseException):
        raise got
    server = got["server"]
    flavors, images = names if isinstance(names, tuple) else ({}, {})
    attached = [
        {"id": a["id"], "volume": volumes.get(a["id"]) if isinstance(volumes, dict) else None}
        for a in server.get("os-extended-volumes:volumes_attached", [])
    ]
    context = {
        "server": server,
        "flavor_name": flavors.get(server["flavor"]["id"], server["flavor"]["id"]),
        "image_name": images.get(server["image"]["id"], server["image"]["id"]) if server.get("image") else "",
        "console": console if isinstance(console, str) else None,
        "console_error": console.message if isinstance(console, ApiError) else None,
        "attached": attached,
        "since": rendered_at,
        "watch": server["id"] if _is_moving(server) else "",
    }
    return render(request, "server.html", context)


async def server_action(request: web.Request) -> web.Response:
    session = signed_in(request)
    server_id = request.match_info["server_id"]
    form = await request.post()
    action = str(form.get("action", ""))
    name = str(form.get("name", ""))[:255] or server_id
    cloud = cloud_of(request)
    try:
        if action == "delete":
            await cloud.compute("DELETE", f"/servers/{server_id}")
            session.flash(f"Deleting {name}.")
            return redirect("/servers")
        if action not in ACTIONS:
            session.flash(f"Unknown action {action[:20]!r}.", "error")
            return redirect(f"/servers/{server_id}")
        await cloud.compute("POST", f"/servers/{server_id}/action", ACTIONS[action])
    except ApiError as exc:
        if not exc.is_client_error or exc.status == 401:
            if exc.status == 401:
                raise
            return error_page(request, exc)
        session.flash(f"Cannot {action} {name}: {exc.message}", "error")
        return redirect(f"/servers/{server_id}")
    session.flash(f"{action.capitalize()} requested for {name}.")
    return redirect(f"/servers/{server_id}")
