"""Floating IPs: the list, allocate from an external network, associate with a server's port,
disassociate, release.

Four calls made together: a page of floating IPs, the external networks to allocate from, the
project's ports and its servers (the ports servers hold, named after their server, are what an
address can be associated with).
"""

import asyncio
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud
from fabric.dashboard.page import cloud_of, error_page, form_str, redirect, render, signed_in
from fabric.dashboard.pages.refusals import FormState, page_params, refused

PAGE_SIZE = 20
FIELDS = {"floating_network_id": "network_id", "port_id": "port_id"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/floating-ips", floating_ip_list, name="floating-ips")
    app.router.add_post("/floating-ips", allocate, name="floating-ip-allocate")
    app.router.add_post("/floating-ips/{fip_id}/action", floating_ip_action, name="floating-ip-action")


async def _page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    cloud = cloud_of(request)
    page, external, ports, servers = await asyncio.gather(
        cloud.get("network", "/v2.0/floatingips", **page_params(request.query, PAGE_SIZE)),
        cloud.get("network", "/v2.0/networks", **{"router:external": "True"}),
        cloud.get("network", "/v2.0/ports", project_id=session.token.project.id),
        cloud.get("compute", "/servers", limit="1000"),
    )
    fips = page["floatingips"]
    names = {s["id"]: s["name"] for s in servers["servers"]}
    targets = [
        {"port_id": p["id"], "server": names.get(p["device_id"], p["device_id"]), "ip": ip["ip_address"]}
        for p in ports["ports"]
        if str(p.get("device_owner", "")).startswith("compute:")
        for ip in p["fixed_ips"][:1]
    ]
    context = {
        "fips": fips,
        "external": {n["id"]: n for n in external["networks"]},
        "targets": sorted(targets, key=lambda t: (t["server"], t["ip"])),
        "owners": {p["id"]: names.get(p["device_id"], p["device_id"]) for p in ports["ports"]},
        "next_marker": fips[-1]["id"] if len(fips) == PAGE_SIZE else None,
        "marker": request.query.get("marker", ""),
        "form": form,
    }
    return render(request, "floating_ips.html", context, status=status)


async def floating_ip_list(request: web.Request) -> web.Response:
    return await _page(request, FormState())


async def allocate(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    values = {"network_id": form_str(form, "network_id", 64)}
    body = {"floatingip": {"floating_network_id": values["network_id"]}}
    try:
        made = await cloud_of(request).call("POST", "network", "/v2.0/floatingips", body)
    except ApiError as exc:
        return await _page(request, refused(exc, FIELDS, values), status=exc.status)
    session.flash(f"Allocated {made['floatingip']['floating_ip_address']}.")
    return redirect("/floating-ips")


async def _act(cloud: Cloud, fip_id: str, action: str, form: Any) -> str:
    path = f"/v2.0/floatingips/{fip_id}"
    if action == "associate":
        port_id = form_str(form, "port_id", 64)
        await cloud.call("PUT", "network", path, {"floatingip": {"port_id": port_id}})
        return "associated."
    if action == "disassociate":
        await cloud.call("PUT", "network", path, {"floatingip": {"port_id": None}})
        return "disassociated."
    if action == "release":
        await cloud.call("DELETE", "network", path)
        return "released."
    return f"unknown action {action[:20]!r}."


async def floating_ip_action(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    action = form_str(form, "action", 20)
    address = form_str(form, "address", 64) or request.match_info["fip_id"]
    try:
        done = await _act(cloud_of(request), request.match_info["fip_id"], action, form)
    except ApiError as exc:
        if exc.status == 401:
            raise
        if not exc.is_client_error:
            return error_page(request, exc)
        session.flash(f"Cannot {action} {address}: {exc.message}", "error")
        return redirect("/floating-ips")
    session.flash(f"{address} {done}")
    return redirect("/floating-ips")
