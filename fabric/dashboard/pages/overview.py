"""The project's overview: what it uses of its quotas, as bars.

Three calls, made together: compute's `limits` (instances, vCPUs, RAM), block storage's
`limits` (volumes, gigabytes) and the network quota details (floating IPs). A service that is
missing or fails leaves its bars out, with its error, and the others still show.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud
from fabric.dashboard.meters import level
from fabric.dashboard.page import cloud_of, render, signed_in


@dataclass(frozen=True, slots=True)
class Usage:
    label: str
    used: int
    #: -1: unlimited.
    limit: int
    unit: str = ""

    @property
    def percent(self) -> int:
        if self.limit <= 0:
            return 0 if self.limit < 0 or self.used == 0 else 100
        return min(100, round(100 * self.used / self.limit))

    @property
    def level(self) -> str:
        return level(self.percent / 100)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/overview", overview, name="overview")


async def _compute(cloud: Cloud) -> list[Usage]:
    a = (await cloud.get("compute", "/limits"))["limits"]["absolute"]
    return [
        Usage("Instances", a.get("totalInstancesUsed", 0), a.get("maxTotalInstances", -1)),
        Usage("vCPUs", a.get("totalCoresUsed", 0), a.get("maxTotalCores", -1)),
        Usage("RAM", a.get("totalRAMUsed", 0), a.get("maxTotalRAMSize", -1), "MB"),
    ]


async def _volume(cloud: Cloud) -> list[Usage]:
    a = (await cloud.get("block-storage", "/limits"))["limits"]["absolute"]
    return [
        Usage("Volumes", a.get("totalVolumesUsed", 0), a.get("maxTotalVolumes", -1)),
        Usage("Volume storage", a.get("totalGigabytesUsed", 0), a.get("maxTotalVolumeGigabytes", -1), "GB"),
    ]


async def _network(cloud: Cloud, project_id: str) -> list[Usage]:
    q = (await cloud.get("network", f"/v2.0/quotas/{project_id}/details"))["quota"]
    fip = q.get("floatingip", {"used": 0, "limit": -1})
    return [Usage("Floating IPs", fip["used"], fip["limit"])]


async def overview(request: web.Request) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    cloud = cloud_of(request)
    sections = {"Compute": _compute(cloud), "Block storage": _volume(cloud)}
    sections["Network"] = _network(cloud, session.token.project.id)
    results = await asyncio.gather(*sections.values(), return_exceptions=True)
    bars: list[Usage] = []
    problems: list[tuple[str, ApiError]] = []
    for name, result in zip(sections, results):
        if isinstance(result, ApiError):
            problems.append((name, result))
        elif isinstance(result, BaseException):
            raise result
        else:
            bars += result
    context: dict[str, Any] = {"bars": bars, "problems": problems}
    return render(request, "overview.html", context)
