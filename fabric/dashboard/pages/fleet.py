"""The fleet, for admins: each hypervisor's used and total vCPUs, RAM and disk as bars, kept
live by the compute agents' capacity reports, and the scheduler's dry run for a flavor.

`os-hypervisors/detail` answers the whole fleet in one call (the gateway reads it from the
scheduler's table); the page shows it a slice at a time. A non-admin gets the API's 403.
"""

import asyncio
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError
from fabric.dashboard.page import cloud_of, form_str, render, signed_in

PAGE_SIZE = 50


def add_routes(app: web.Application) -> None:
    app.router.add_get("/fleet", fleet, name="fleet")
    app.router.add_post("/fleet/explain", explain, name="fleet-explain")


async def _page(
    request: web.Request, explanation: dict[str, Any] | None, explain_error: str | None, flavor: str
) -> web.Response:
    cloud = cloud_of(request)
    hypervisors, flavors = await asyncio.gather(
        cloud.get("compute", "/os-hypervisors/detail"),
        cloud.get("compute", "/flavors/detail", is_public="None"),
    )
    hosts = sorted(hypervisors["hypervisors"], key=lambda h: h["hypervisor_hostname"])
    try:
        page = max(int(request.query.get("page", "1")), 1)
    except ValueError:
        page = 1
    shown = hosts[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    totals = {
        key: sum(int(h.get(key) or 0) for h in hosts)
        for key in ("vcpus", "vcpus_used", "memory_mb", "memory_mb_used", "local_gb", "local_gb_used")
    }
    context = {
        "hosts": shown,
        "count": len(hosts),
        "page": page,
        "pages": max(1, -(-len(hosts) // PAGE_SIZE)),
        "totals": totals,
        "flavors": flavors["flavors"],
        "flavor": flavor,
        "explanation": explanation,
        "explain_error": explain_error,
    }
    return render(request, "fleet.html", context)


async def fleet(request: web.Request) -> web.Response:
    signed_in(request)
    return await _page(request, None, None, "")


async def explain(request: web.Request) -> web.Response:
    """The scheduler's dry run: which hosts would take this flavor, and why the others would not."""
    form = await request.post()
    flavor = form_str(form, "flavor", 255)
    try:
        body = await cloud_of(request).compute("POST", "/os-scheduler/explain", {"flavorRef": flavor})
    except ApiError as exc:
        if not exc.is_client_error or exc.status == 401:
            raise
        return await _page(request, None, exc.message, flavor)
    return await _page(request, body["explanation"], None, flavor)
