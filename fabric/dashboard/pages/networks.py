"""Networks and their subnets: the list (a page at a time), create a network with a subnet,
delete. The page makes two calls in series, whatever its length: a page of networks, then the
subnets of exactly those networks (one call: the ids the networks name, as repeated `id`
filters).

A network is made in two calls (Neutron has no single one); when the subnet is refused, the
new network is deleted again, so that a refusal leaves nothing behind, and the form shows the
message beside the field it names with what was typed.
"""

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud
from fabric.dashboard.page import cloud_of, error_page, form_str, redirect, render, signed_in
from fabric.dashboard.pages.refusals import FormState, page_params, refused

PAGE_SIZE = 20
FIELDS = {
    "network.name": "name",
    "subnet.name": "name",
    "cidr": "cidr",
    "gateway_ip": "gateway_ip",
    "enable_dhcp": "enable_dhcp",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/networks", network_list, name="networks")
    app.router.add_post("/networks", create_network, name="network-create")
    app.router.add_post("/networks/{network_id}/delete", delete_network, name="network-delete")


def filtered(path: str, name: str, values: list[str], **more: str) -> str:
    """`path` with `name` repeated once per value (an "any of" filter, which Neutron takes for
    `id`)."""
    return f"{path}?{urlencode([(name, v) for v in values] + list(more.items()))}"


async def _page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    cloud = cloud_of(request)
    page = await cloud.get("network", "/v2.0/networks", **page_params(request.query, PAGE_SIZE))
    networks = page["networks"]
    subnets: dict[str, list[dict[str, Any]]] = {n["id"]: [] for n in networks}
    subnet_ids = [sid for n in networks for sid in n.get("subnets", [])]
    if subnet_ids:
        found = await cloud.get("network", filtered("/v2.0/subnets", "id", subnet_ids))
        for s in found["subnets"]:
            subnets.setdefault(s["network_id"], []).append(s)
    context = {
        "networks": networks,
        "subnets": subnets,
        "project_id": session.token.project.id,
        "next_marker": networks[-1]["id"] if len(networks) == PAGE_SIZE else None,
        "marker": request.query.get("marker", ""),
        "form": form,
    }
    return render(request, "networks.html", context, status=status)


async def network_list(request: web.Request) -> web.Response:
    return await _page(request, FormState({"enable_dhcp": "on"}))


async def _create(cloud: Cloud, values: dict[str, str]) -> dict[str, Any]:
    made = await cloud.call("POST", "network", "/v2.0/networks", {"network": {"name": values["name"]}})
    network = made["network"]
    subnet: dict[str, Any] = {
        "network_id": network["id"],
        "name": f"{values['name']}-subnet" if values["name"] else "",
        "ip_version": 4,
        "cidr": values["cidr"],
        "enable_dhcp": values["enable_dhcp"] == "on",
    }
    if values["gateway_ip"]:
        subnet["gateway_ip"] = values["gateway_ip"]
    try:
        await cloud.call("POST", "network", "/v2.0/subnets", {"subnet": subnet})
    except ApiError:
        # Not left half-made: the user asked for a network with a subnet.
        await cloud.call("DELETE", "network", f"/v2.0/networks/{network['id']}")
        raise
    return dict(network)


async def create_network(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    values = {name: form_str(form, name, 255) for name in ("name", "cidr", "gateway_ip", "enable_dhcp")}
    try:
        await _create(cloud_of(request), values)
    except ApiError as exc:
        return await _page(request, refused(exc, FIELDS, values), status=exc.status)
    session.flash(f"Made network {values['name'] or '(no name)'} with subnet {values['cidr']}.")
    return redirect("/networks")


async def delete_network(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    name = form_str(form, "name", 255) or request.match_info["network_id"]
    try:
        await cloud_of(request).call(
            "DELETE", "network", f"/v2.0/networks/{request.match_info['network_id']}"
        )
    except ApiError as exc:
        if exc.status == 401:
            raise
        if not exc.is_client_error:
            return error_page(request, exc)
        session.flash(f"Cannot delete {name}: {exc.message}", "error")
        return redirect("/networks")
    session.flash(f"Deleted network {name}.")
    return redirect("/networks")
