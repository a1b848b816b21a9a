"""Routers: the list with each router's gateway and interfaces, create with an external gateway,
add and remove an interface, delete.

The page makes its calls together, never one per router: a page of routers, the external
networks (gateways), the project's subnets (interfaces to add, and the names of those there
are) and the router interface ports (which subnet each router has a leg in).
"""

import asyncio
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud
from fabric.dashboard.page import cloud_of, error_page, form_str, redirect, render, signed_in
from fabric.dashboard.pages.refusals import FormState, page_params, refused

PAGE_SIZE = 20
FIELDS = {"router.name": "name", "network_id": "network_id", "external_gateway_info": "network_id"}
INTERFACE_OWNER = "network:router_interface"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/routers", router_list, name="routers")
    app.router.add_post("/routers", create_router, name="router-create")
    app.router.add_post("/routers/{router_id}/action", router_action, name="router-action")


async def _page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    cloud = cloud_of(request)
    page, external, subnets, legs = await asyncio.gather(
        cloud.get("network", "/v2.0/routers", **page_params(request.query, PAGE_SIZE)),
        cloud.get("network", "/v2.0/networks", **{"router:external": "True"}),
        cloud.get("network", "/v2.0/subnets", project_id=session.token.project.id),
        cloud.get("network", "/v2.0/ports", device_owner=INTERFACE_OWNER),
    )
    routers = page["routers"]
    subnet_by_id = {s["id"]: s for s in subnets["subnets"]}
    interfaces: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in routers}
    for port in legs["ports"]:
        for fixed in port["fixed_ips"]:
            if port["device_id"] in interfaces:
                interfaces[port["device_id"]].append(
                    {
                        "subnet": subnet_by_id.get(fixed["subnet_id"]),
                        "subnet_id": fixed["subnet_id"],
                        "ip": fixed["ip_address"],
                        "port_id": port["id"],
                    }
                )
    context = {
        "routers": routers,
        "external": {n["id"]: n for n in external["networks"]},
        "subnets": sorted(subnet_by_id.values(), key=lambda s: (s.get("name") or "", s["cidr"])),
        "interfaces": interfaces,
        "next_marker": routers[-1]["id"] if len(routers) == PAGE_SIZE else None,
        "marker": request.query.get("marker", ""),
        "form": form,
    }
    return render(request, "routers.html", context, status=status)


async def router_list(request: web.Request) -> web.Response:
    return await _page(request, FormState())


async def create_router(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    values = {"name": form_str(form, "name", 255), "network_id": form_str(form, "network_id", 64)}
    router: dict[str, Any] = {"name": values["name"]}
    if values["network_id"]:
        router["external_gateway_info"] = {"network_id": values["network_id"]}
    try:
        await cloud_of(request).call("POST", "network", "/v2.0/routers", {"router": router})
    except ApiError as exc:
        return await _page(request, refused(exc, FIELDS, values), status=exc.status)
    session.flash(f"Made router {values['name'] or '(no name)'}.")
    return redirect("/routers")


async def _act(cloud: Cloud, router_id: str, action: str, form: Any) -> str:
    path = f"/v2.0/routers/{router_id}"
    if action in ("add_interface", "remove_interface"):
        subnet_id = form_str(form, "subnet_id", 64)
        await cloud.call(
            "PUT", "network", f"{path}/{action.replace('_', '_router_', 1)}", {"subnet_id": subnet_id}
        )
        return "Interface added." if action == "add_interface" else "Interface removed."
    if action == "clear_gateway":
        await cloud.call("PUT", "network", path, {"router": {"external_gateway_info": {}}})
        return "Gateway cleared."
    if action == "delete":
        await cloud.call("DELETE", "network", path)
        return "Deleted."
    return f"Unknown action {action[:20]!r}."


async def router_action(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    action = form_str(form, "action", 20)
    name = form_str(form, "name", 255) or request.match_info["router_id"]
    try:
        done = await _act(cloud_of(request), request.match_info["router_id"], action, form)
    except ApiError as exc:
        if exc.status == 401:
            raise
        if not exc.is_client_error:
            return error_page(request, exc)
        session.flash(f"Cannot {action.replace('_', ' ')} on {name}: {exc.message}", "error")
        return redirect("/routers")
    session.flash(f"Router {name}: {done}")
    return redirect("/routers")
