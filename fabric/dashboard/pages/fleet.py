"""The fleet, for admins: each hypervisor's used and total vCPUs, RAM and disk as bars, kept
live by the compute agents' capacity reports, and the scheduler's dry run for a flavor.

One page of `os-hypervisors/detail` (`limit`/`marker`, in the scheduler's id order) and the
fleet's totals from `os-hypervisors/statistics` (summed by the database): a page costs the same
at 10 or 10,000 hosts. A non-admin gets the API's 403.
"""

import asyncio
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError
from fabric.dashboard.meters import host_bars
from fabric.dashboard.page import cloud_of, display_names, form_str, render, signed_in

PAGE_SIZE = 50


def add_routes(app: web.Application) -> None:
    app.router.add_get("/fleet", fleet, name="fleet")
    app.router.add_post("/fleet/explain", explain, name="fleet-explain")


async def _page(
    request: web.Request, explanation: dict[str, Any] | None, explain_error: str | None, flavor: str
) -> web.Response:
    cloud = cloud_of(request)
    marker = request.query.get("marker", "")
    paging = {"limit": str(PAGE_SIZE)} | ({"marker": marker} if marker.isdigit() else {})
    hypervisors, statistics, (flavors, _) = await asyncio.gather(
        cloud.get("compute", "/os-hypervisors/detail", **paging),
        cloud.get("compute", "/os-hypervisors/statistics"),
        display_names(request, cloud),
    )
    hosts = hypervisors["hypervisors"]
    totals = statistics["hypervisor_statistics"]
    context = {
        "hosts": [(h, *host_bars(h)) for h in hosts],
        "count": totals["count"],
        "marker": paging.get("marker"),
        "next_marker": hosts[-1]["id"] if hypervisors.get("hypervisors_links") else None,
        "totals": totals,
        "flavors": sorted(flavors.items(), key=lambda item: item[1]),
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
