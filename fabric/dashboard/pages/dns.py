"""DNS: zones (list, create with an email, delete) and a zone's recordsets (list with its SOA
and NS, create, delete) through the DNS v2 API in Designate's shapes.

Each page is one call (the zone page two, together: the zone and a page of its recordsets).
A recordset's name may be typed relative to the zone (`www`, or `@` for the apex); it is sent
fully qualified, as Designate wants. The SOA and the apex NS are the service's to manage: they
are listed with no delete button.
"""

import asyncio
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud
from fabric.dashboard.page import cloud_of, error_page, form_str, redirect, render, signed_in
from fabric.dashboard.pages.refusals import FormState, page_params, refused

PAGE_SIZE = 20
TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "PTR", "NS")
ZONE_FIELDS = {"name": "name", "email": "email", "ttl": "ttl", "description": "description"}
RECORDSET_FIELDS = {"name": "name", "type": "type", "records": "records", "ttl": "ttl"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dns", zone_list, name="dns")
    app.router.add_post("/dns", create_zone, name="zone-create")
    app.router.add_post("/dns/{zone_id}/delete", delete_zone, name="zone-delete")
    app.router.add_get("/dns/{zone_id}", zone_detail, name="zone")
    app.router.add_post("/dns/{zone_id}/recordsets", create_recordset, name="recordset-create")
    app.router.add_post(
        "/dns/{zone_id}/recordsets/{recordset_id}/delete", delete_recordset, name="recordset-delete"
    )


def _next_marker(page: dict[str, Any], key: str) -> str | None:
    items = page[key]
    return str(items[-1]["id"]) if items and page.get("links", {}).get("next") else None


def _number(value: str) -> Any:
    """A whole number as one, anything else as typed: the API says what is wrong with it."""
    return int(value) if value.isdigit() else value


async def _zones_page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    page = await cloud_of(request).get("dns", "/v2/zones", **page_params(request.query, PAGE_SIZE))
    context = {
        "zones": page["zones"],
        "next_marker": _next_marker(page, "zones"),
        "marker": request.query.get("marker", ""),
        "form": form,
    }
    return render(request, "dns_zones.html", context, status=status)


async def zone_list(request: web.Request) -> web.Response:
    return await _zones_page(request, FormState())


async def create_zone(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    values = {name: form_str(form, name, 255) for name in ("name", "email", "ttl")}
    body: dict[str, Any] = {"name": values["name"], "email": values["email"], "type": "PRIMARY"}
    if values["ttl"]:
        body["ttl"] = _number(values["ttl"])
    try:
        await cloud_of(request).call("POST", "dns", "/v2/zones", body)
    except ApiError as exc:
        return await _zones_page(request, refused(exc, ZONE_FIELDS, values), status=exc.status)
    session.flash(f"Creating zone {values['name']}.")
    return redirect("/dns")


async def _delete(request: web.Request, path: str, what: str, back: str) -> web.Response:
    session = signed_in(request)
    try:
        await cloud_of(request).call("DELETE", "dns", path)
    except ApiError as exc:
        if exc.status == 401:
            raise
        if not exc.is_client_error:
            return error_page(request, exc)
        session.flash(f"Cannot delete {what}: {exc.message}", "error")
        return redirect(back)
    session.flash(f"Deleting {what}.")
    return redirect(back)


async def delete_zone(request: web.Request) -> web.Response:
    form = await request.post()
    zone_id = request.match_info["zone_id"]
    return await _delete(request, f"/v2/zones/{zone_id}", form_str(form, "name", 255) or zone_id, "/dns")


def is_managed(recordset: dict[str, Any], zone: dict[str, Any]) -> bool:
    """The service's own: the SOA, the apex NS, and the names it keeps for ports and IPs."""
    if recordset["type"] == "SOA" or (recordset["type"] == "NS" and recordset["name"] == zone["name"]):
        return True
    return bool(recordset.get("managed") or recordset.get("managed_by"))


async def _zone_page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    cloud = cloud_of(request)
    zone_id = request.match_info["zone_id"]
    zone, page = await asyncio.gather(
        cloud.get("dns", f"/v2/zones/{zone_id}"),
        cloud.get("dns", f"/v2/zones/{zone_id}/recordsets", **page_params(request.query, PAGE_SIZE)),
    )
    recordsets = page["recordsets"]
    context = {
        "zone": zone,
        "recordsets": [r | {"is_managed": is_managed(r, zone)} for r in recordsets],
        "types": TYPES,
        "next_marker": _next_marker(page, "recordsets"),
        "marker": request.query.get("marker", ""),
        "form": form,
    }
    return render(request, "dns_zone.html", context, status=status)


async def zone_detail(request: web.Request) -> web.Response:
    return await _zone_page(request, FormState({"type": "A"}))


def full_name(name: str, zone_name: str) -> str:
    """`www` -> `www.example.org.`; `@` or nothing -> the zone; a name ending in a dot as is."""
    if name in ("", "@"):
        return zone_name
    return name if name.endswith(".") else f"{name}.{zone_name}"


async def _create_recordset(cloud: Cloud, zone_id: str, values: dict[str, str]) -> None:
    zone = await cloud.get("dns", f"/v2/zones/{zone_id}")
    body: dict[str, Any] = {
        "name": full_name(values["name"], zone["name"]),
        "type": values["type"],
        "records": [line.strip() for line in values["records"].splitlines() if line.strip()],
    }
    if values["ttl"]:
        body["ttl"] = _number(values["ttl"])
    await cloud.call("POST", "dns", f"/v2/zones/{zone_id}/recordsets", body)


async def create_recordset(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    values = {name: form_str(form, name, 255) for name in ("name", "type", "ttl")}
    values["records"] = form_str(form, "records", 16384)
    zone_id = request.match_info["zone_id"]
    try:
        await _create_recordset(cloud_of(request), zone_id, values)
    except ApiError as exc:
        return await _zone_page(request, refused(exc, RECORDSET_FIELDS, values), status=exc.status)
    session.flash(f"Creating {values['type']} {values['name'] or '@'}.")
    return redirect(f"/dns/{zone_id}")


async def delete_recordset(request: web.Request) -> web.Response:
    form = await request.post()
    zone_id, recordset_id = request.match_info["zone_id"], request.match_info["recordset_id"]
    path = f"/v2/zones/{zone_id}/recordsets/{recordset_id}"
    return await _delete(request, path, form_str(form, "name", 255) or recordset_id, f"/dns/{zone_id}")
