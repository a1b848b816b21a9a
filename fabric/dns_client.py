"""The async client's DNS calls: zones, recordsets and quotas through Designate's v2 API
(catalog type `dns`), with a waiter for Designate's asynchronous changes
(`await client.dns.wait_active(zone.id)`).

Every change answers `PENDING` at once and turns `ACTIVE` once the nameserver serves it, so a
caller that needs the answer on the wire waits for it. Lists follow every page (`links.next`).
"""

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from fabric.client import Client


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    name: str
    email: str
    ttl: int
    serial: int
    status: str
    action: str
    project_id: str
    raw: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "Zone":
        return cls(
            id=body["id"],
            name=body["name"],
            email=body.get("email") or "",
            ttl=int(body.get("ttl") or 0),
            serial=int(body.get("serial") or 0),
            status=body.get("status", ""),
            action=body.get("action", ""),
            project_id=body.get("project_id") or "",
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class Recordset:
    id: str
    zone_id: str
    name: str
    type: str
    records: tuple[str, ...]
    #: None: the zone's TTL applies.
    ttl: int | None
    status: str
    action: str
    raw: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "Recordset":
        return cls(
            id=body["id"],
            zone_id=body["zone_id"],
            name=body["name"],
            type=body["type"],
            records=tuple(body.get("records") or ()),
            ttl=body.get("ttl"),
            status=body.get("status", ""),
            action=body.get("action", ""),
            raw=body,
        )


class DnsFailed(Exception):
    """The change never reached the nameserver: the zone or recordset went to ERROR."""

    def __init__(self, kind: str, item_id: str) -> None:
        super().__init__(f"{kind} {item_id} went to ERROR")
        self.item_id = item_id


class DnsApi:
    """Designate v2: zones, recordsets, quotas."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    @property
    def url(self) -> str:
        """`…/dns/v2`: the catalog gives the unversioned root."""
        return f"{self.client.endpoint('dns')}/v2"

    async def _call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        all_projects: bool = False,
        expect: tuple[int, ...] = (200, 201, 202, 204),
    ) -> tuple[int, Any]:
        headers = {"X-Auth-All-Projects": "True"} if all_projects else None
        status, _, body = await self.client.request(
            method, f"{self.url}{path}", json, headers=headers, expect=expect
        )
        return status, body

    async def _pages(self, path: str, key: str, filters: dict[str, Any], all_projects: bool) -> list[Any]:
        items: list[Any] = []
        params = {k: str(v) for k, v in filters.items() if v is not None}
        while True:
            query = f"?{urlencode(params)}" if params else ""
            _, page = await self._call("GET", f"{path}{query}", all_projects=all_projects)
            items += page[key]
            next_url = page.get("links", {}).get("next")
            if not next_url or not page[key]:
                return items
            params["marker"] = page[key][-1]["id"]

    # zones

    async def create_zone(
        self, name: str, email: str, *, ttl: int | None = None, description: str | None = None
    ) -> Zone:
        """`name` fully qualified, with its trailing dot. The zone is PENDING until served."""
        body: dict[str, Any] = {"name": name, "type": "PRIMARY", "email": email}
        if ttl is not None:
            body["ttl"] = ttl
        if description is not None:
            body["description"] = description
        return Zone.from_body((await self._call("POST", "/zones", body, expect=(201, 202)))[1])

    async def zones(self, *, all_projects: bool = False, **filters: Any) -> list[Zone]:
        """Every zone matching the filters (`name`, `email`, `ttl`, `status`, `description`),
        every page of them."""
        return [Zone.from_body(z) for z in await self._pages("/zones", "zones", filters, all_projects)]

    async def zone(self, zone_id: str, *, all_projects: bool = False) -> Zone | None:
        """None when there is no such zone (or it is another project's)."""
        status, body = await self._call(
            "GET", f"/zones/{zone_id}", all_projects=all_projects, expect=(200, 404)
        )
        return None if status == 404 else Zone.from_body(body)

    async def update_zone(self, zone_id: str, *, all_projects: bool = False, **fields: Any) -> Zone:
        """`email`, `ttl`, `description` (None clears it)."""
        _, body = await self._call("PATCH", f"/zones/{zone_id}", fields, all_projects=all_projects)
        return Zone.from_body(body)

    async def delete_zone(self, zone_id: str, *, all_projects: bool = False) -> Zone:
        _, body = await self._call("DELETE", f"/zones/{zone_id}", all_projects=all_projects, expect=(202,))
        return Zone.from_body(body)

    # recordsets

    def _recordsets(self, zone_id: str) -> str:
        return f"/zones/{zone_id}/recordsets"

    async def create_recordset(
        self,
        zone_id: str,
        name: str,
        type: str,
        records: list[str],
        *,
        ttl: int | None = None,
        description: str | None = None,
    ) -> Recordset:
        """`name` fully qualified (`www.example.org.`), inside the zone."""
        body: dict[str, Any] = {"name": name, "type": type, "records": records}
        if ttl is not None:
            body["ttl"] = ttl
        if description is not None:
            body["description"] = description
        _, got = await self._call("POST", self._recordsets(zone_id), body, expect=(201, 202))
        return Recordset.from_body(got)

    async def recordsets(
        self, zone_id: str | None = None, *, all_projects: bool = False, **filters: Any
    ) -> list[Recordset]:
        """A zone's recordsets (its SOA and NS too), or with no zone those of every zone the
        caller sees; filters: `name`, `type`, `ttl`, `data`, `status`, `description`."""
        path = "/recordsets" if zone_id is None else self._recordsets(zone_id)
        return [Recordset.from_body(r) for r in await self._pages(path, "recordsets", filters, all_projects)]

    async def recordset(self, zone_id: str, recordset_id: str) -> Recordset | None:
        status, body = await self._call(
            "GET", f"{self._recordsets(zone_id)}/{recordset_id}", expect=(200, 404)
        )
        return None if status == 404 else Recordset.from_body(body)

    async def update_recordset(self, zone_id: str, recordset_id: str, **fields: Any) -> Recordset:
        """`records` (the whole new list), `ttl` (None: back to the zone's), `description`."""
        _, body = await self._call("PUT", f"{self._recordsets(zone_id)}/{recordset_id}", fields)
        return Recordset.from_body(body)

    async def delete_recordset(self, zone_id: str, recordset_id: str) -> Recordset:
        _, body = await self._call("DELETE", f"{self._recordsets(zone_id)}/{recordset_id}", expect=(202,))
        return Recordset.from_body(body)

    # quotas

    async def quotas(self, project_id: str | None = None) -> dict[str, int]:
        """The project's limits (the caller's own project by default); another project's takes
        an admin, and is asked with `X-Auth-All-Projects` as Designate wants."""
        path = "/quotas" if project_id is None else f"/quotas/{project_id}"
        return dict((await self._call("GET", path, all_projects=project_id is not None))[1])

    async def set_quotas(self, project_id: str, **limits: int) -> dict[str, int]:
        """`zones`, `zone_recordsets`, `recordset_records`; -1 is unlimited. Admins only."""
        _, body = await self._call("PATCH", f"/quotas/{project_id}", limits, all_projects=True)
        return dict(body)

    # waiting

    async def wait_active(
        self, zone_id: str, recordset_id: str | None = None, *, timeout_s: float = 30.0
    ) -> Zone | Recordset:
        """Until the zone (or its recordset) is ACTIVE: served by the nameserver. DnsFailed if
        it goes to ERROR, LookupError if it is gone, TimeoutError after `timeout_s`."""
        kind, item_id = ("zone", zone_id) if recordset_id is None else ("recordset", recordset_id)
        deadline = time.monotonic() + timeout_s
        pause = 0.02
        while True:
            item: Zone | Recordset | None = (
                await self.zone(zone_id)
                if recordset_id is None
                else await self.recordset(zone_id, recordset_id)
            )
            if item is None:
                raise LookupError(f"{kind} {item_id} is gone")
            if item.status == "ACTIVE":
                return item
            if item.status == "ERROR":
                raise DnsFailed(kind, item_id)
            if time.monotonic() + pause > deadline:
                raise TimeoutError(f"{kind} {item_id} is {item.status}, not ACTIVE, after {timeout_s}s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 1.0)
