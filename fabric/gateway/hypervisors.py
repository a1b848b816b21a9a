"""Compute v2.1's view of the fleet: os-hypervisors, os-availability-zone, and the scheduler's
dry run (`POST /compute/v2.1/os-scheduler/explain`, ours: what Nova operators dig out of logs).

The scheduler owns hosts, so these routes ask it directly.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web

from fabric.gateway.context import BUS, SETTINGS, authenticated
from fabric.gateway.http import json_response, next_links, read_json
from fabric.gateway.microversion import Version, version_of
from protocol.codec import MaxLen, MinLen
from protocol.compute import QUEUE as COMPUTE
from protocol.compute import FlavorView, GetFlavor
from protocol.errors import Invalid, NotFound
from protocol.scheduler import (
    QUEUE,
    AvailabilityZones,
    ExplainPlacement,
    GetHypervisor,
    GetHypervisorStatistics,
    HypervisorList,
    HypervisorStatistics,
    HypervisorView,
    ListAvailabilityZones,
    ListHypervisors,
    PlacementExplanation,
    Resources,
)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/compute/v2.1/os-hypervisors", list_hypervisors)
    r.add_get("/compute/v2.1/os-hypervisors/detail", list_hypervisors_detail)
    r.add_get("/compute/v2.1/os-hypervisors/statistics", statistics)
    r.add_get("/compute/v2.1/os-hypervisors/{hypervisor_id}", show_hypervisor)
    r.add_get("/compute/v2.1/os-hypervisors/{pattern}/search", search_hypervisors)
    r.add_get("/compute/v2.1/os-availability-zone", list_zones)
    r.add_get("/compute/v2.1/os-availability-zone/detail", list_zones_detail)
    r.add_post("/compute/v2.1/os-scheduler/explain", explain)
    r.add_get("/compute/v2.1/os-aggregates", list_aggregates)
    r.add_get("/compute/v2.1/os-hypervisors/{hypervisor_id}/uptime", hypervisor_uptime)


def hypervisor_body(h: HypervisorView, version: Version, *, detail: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": h.id,
        "hypervisor_hostname": h.host,
        "state": h.state,
        "status": "enabled" if h.enabled else "disabled",
    }
    if not detail:
        return body
    return body | {
        "hypervisor_type": h.hypervisor_type,
        "hypervisor_version": 1000,
        "host_ip": None,
        "vcpus": h.vcpus,
        "memory_mb": h.ram_mb,
        "local_gb": h.disk_gb,
        "vcpus_used": h.used_vcpus,
        "memory_mb_used": h.used_ram_mb,
        "local_gb_used": h.used_disk_gb,
        "free_ram_mb": h.ram_mb - h.used_ram_mb,
        "free_disk_gb": h.disk_gb - h.used_disk_gb,
        "current_workload": 0,
        "running_vms": h.running,
        "disk_available_least": h.disk_gb - h.used_disk_gb,
        "cpu_info": {} if version >= (2, 28) else "{}",
        "service": {"host": h.host, "id": h.id, "disabled_reason": None},
    }


async def _all(request: web.Request) -> list[HypervisorView]:
    ctx = authenticated(request)
    bus = request.app[BUS]
    items: list[HypervisorView] = []
    marker: int | None = None
    while True:
        page: HypervisorList = await bus.call(QUEUE, ListHypervisors(marker=marker, limit=1000), ctx)
        items += page.items
        if not page.more:
            return items
        marker = page.items[-1].id


def _page_query(request: web.Request) -> tuple[int, int | None] | None:
    """`limit` and `marker` (a hypervisor id), as Nova takes them from 2.33; None: no `limit`,
    the whole fleet."""
    raw_limit, raw_marker = request.query.get("limit"), request.query.get("marker")
    if raw_limit is None:
        if raw_marker is not None:
            raise Invalid("limit", "a marker needs a limit")
        return None
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise Invalid("limit", "must be an integer from 1 to 1000")
    if raw_marker is not None and not raw_marker.isdigit():
        raise Invalid("marker", "must be a hypervisor id")
    return int(raw_limit), int(raw_marker) if raw_marker is not None else None


async def _list(request: web.Request, *, detail: bool) -> web.Response:
    paging = _page_query(request)
    if paging is None:
        items, more = await _all(request), False
    else:
        limit, marker = paging
        page: HypervisorList = await request.app[BUS].call(
            QUEUE, ListHypervisors(limit=limit, marker=marker), authenticated(request)
        )
        items, more = list(page.items), page.more
    body: dict[str, Any] = {
        "hypervisors": [hypervisor_body(h, version_of(request), detail=detail) for h in items]
    }
    if more and paging is not None:
        body["hypervisors_links"] = next_links(
            request, request.app[SETTINGS].gateway_url, paging[0], str(items[-1].id)
        )
    return json_response(body)


async def list_hypervisors(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def list_hypervisors_detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def show_hypervisor(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    raw = request.match_info["hypervisor_id"]
    if not raw.isdigit():
        raise NotFound("hypervisor", raw[:64])
    found = await request.app[BUS].call(QUEUE, GetHypervisor(hypervisor_id=int(raw)), ctx)
    return json_response({"hypervisor": hypervisor_body(found, version_of(request), detail=True)})


async def search_hypervisors(request: web.Request) -> web.Response:
    pattern = request.match_info["pattern"]
    found = [
        hypervisor_body(h, version_of(request), detail=False)
        for h in await _all(request)
        if pattern in h.host
    ]
    if not found:
        raise NotFound("hypervisor matching", pattern[:64])
    return json_response({"hypervisors": found})


async def statistics(request: web.Request) -> web.Response:
    """Summed by the scheduler's database, not by listing the fleet here."""
    found: HypervisorStatistics = await request.app[BUS].call(
        QUEUE, GetHypervisorStatistics(), authenticated(request)
    )
    total = {
        "count": found.count,
        "vcpus": found.vcpus,
        "memory_mb": found.ram_mb,
        "local_gb": found.disk_gb,
        "vcpus_used": found.used_vcpus,
        "memory_mb_used": found.used_ram_mb,
        "local_gb_used": found.used_disk_gb,
        "running_vms": found.running,
        "current_workload": 0,
        "free_ram_mb": found.ram_mb - found.used_ram_mb,
        "free_disk_gb": found.disk_gb - found.used_disk_gb,
        "disk_available_least": found.disk_gb - found.used_disk_gb,
    }
    return json_response({"hypervisor_statistics": total})


async def _zones(request: web.Request, *, detail: bool) -> web.Response:
    ctx = authenticated(request)
    found: AvailabilityZones = await request.app[BUS].call(QUEUE, ListAvailabilityZones(), ctx)
    zones = []
    for name, hosts in sorted(found.zones.items()):
        available = name in found.available
        zone: dict[str, Any] = {"zoneName": name, "zoneState": {"available": available}, "hosts": None}
        if detail and ctx.is_admin:
            zone["hosts"] = {
                h: {"nova-compute": {"available": available, "active": True, "updated_at": None}}
                for h in hosts
            }
        zones.append(zone)
    return json_response({"availabilityZoneInfo": zones})


async def list_zones(request: web.Request) -> web.Response:
    return await _zones(request, detail=False)


async def list_zones_detail(request: web.Request) -> web.Response:
    return await _zones(request, detail=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExplainRequest:
    flavorRef: Annotated[str, MinLen(1), MaxLen(255)]  # Nova's name, as in a server create
    availability_zone: Annotated[str, MinLen(1), MaxLen(255)] | None = None


async def explain(request: web.Request) -> web.Response:
    """Which hosts would take a server of this flavor, and why the others would not."""
    ctx = authenticated(request)
    body = await read_json(request, ExplainRequest, allow_extra=False)
    bus = request.app[BUS]
    flavor: FlavorView = await bus.call(COMPUTE, GetFlavor(flavor_id=body.flavorRef), ctx)
    msg = ExplainPlacement(
        resources=Resources(vcpus=flavor.vcpus, ram_mb=flavor.ram, disk_gb=flavor.disk),
        availability_zone=body.availability_zone,
    )
    found: PlacementExplanation = await bus.call(QUEUE, msg, ctx)
    return json_response(
        {
            "explanation": {
                "flavor": flavor.id,
                "hosts": found.hosts,
                "rejected": found.rejected,
                "candidates": list(found.candidates),
                "summary": found.summary,
            }
        }
    )


async def list_aggregates(request: web.Request) -> web.Response:
    """Host aggregates are not a feature here (zones come from the hosts' own reports), so there
    are none; `hypervisor show` lists them to print a host's aggregates."""
    authenticated(request)
    return json_response({"aggregates": []})


async def hypervisor_uptime(request: web.Request) -> web.Response:
    """Agents do not report their host's uptime; 501 is how Nova says a driver lacks it (and
    what `hypervisor show` expects then)."""
    authenticated(request)
    raise web.HTTPNotImplemented(reason="Virt driver does not implement uptime function.")
