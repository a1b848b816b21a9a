"""The async client's compute and image calls: what tests, the harness, `fabric up` and scripts
need, with typed results and waiters (`await client.compute.wait(server.id, "ACTIVE")`).

Waiting polls the API, as every OpenStack client does: the gateway offers no push channel.
Polls start fast and back off, so a server that turns ACTIVE in 50 ms is seen in about 50 ms,
and one that takes a minute costs a poll a second.
"""

import asyncio
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fabric.api_error import ApiError

if TYPE_CHECKING:
    from fabric.client import Client


@dataclass(frozen=True, slots=True)
class Server:
    id: str
    name: str
    status: str
    task_state: str | None
    host: str | None
    fault: dict[str, Any] | None
    raw: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "Server":
        return cls(
            id=body["id"],
            name=body.get("name", ""),
            status=body.get("status", "BUILD"),
            task_state=body.get("OS-EXT-STS:task_state"),
            host=body.get("OS-EXT-SRV-ATTR:host"),
            fault=body.get("fault"),
            raw=body,
        )


class ServerFailed(Exception):
    def __init__(self, server: Server) -> None:
        fault = server.fault or {}
        super().__init__(f"server {server.id} went to ERROR: {fault.get('message', 'no fault recorded')}")
        self.server = server


class ComputeApi:
    """Nova v2.1."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    @property
    def url(self) -> str:
        return self.client.endpoint("compute")

    async def _call(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        _, _, body = await self.client.request(method, f"{self.url}{path}", json, **kw)
        return body

    async def create_flavor(
        self, name: str, *, vcpus: int, ram: int, disk: int, flavor_id: str | None = None, public: bool = True
    ) -> dict[str, Any]:
        body = {"name": name, "vcpus": vcpus, "ram": ram, "disk": disk, "id": flavor_id}
        body["os-flavor-access:is_public"] = public
        return dict((await self._call("POST", "/flavors", {"flavor": body}))["flavor"])

    async def list_flavors(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/flavors/detail?is_public=None"))["flavors"])

    async def create_server(self, name: str, *, image: str, flavor: str, **fields: Any) -> Server:
        body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor, **fields}}
        created = (await self._call("POST", "/servers", body, expect=(202,)))["server"]
        return Server.from_body(created)

    async def get_server(self, server_id: str) -> Server | None:
        status, _, body = await self.client.request(
            "GET", f"{self.url}/servers/{server_id}", expect=(200, 404)
        )
        return None if status == 404 else Server.from_body(body["server"])

    async def list_servers(self, **query: str) -> list[Server]:
        """Every page of `servers/detail` with these filters."""
        servers: list[Server] = []
        marker: str | None = None
        while True:
            params = {**query, "limit": "1000"} | ({"marker": marker} if marker else {})
            path = "/servers/detail?" + urlencode(params)
            page = (await self._call("GET", path))["servers"]
            servers += [Server.from_body(s) for s in page]
            if len(page) < 1000:
                return servers
            marker = page[-1]["id"]

    async def changed_since(self, since: float) -> list[Server]:
        """Servers changed at or after `since` (epoch seconds): one poll watches them all."""
        when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return await self.list_servers(**{"changes-since": when})

    async def delete_server(self, server_id: str) -> None:
        await self._call("DELETE", f"/servers/{server_id}", expect=(204, 404))

    async def action(self, server_id: str, body: dict[str, Any]) -> Any:
        return await self._call("POST", f"/servers/{server_id}/action", body, expect=(200, 202))

    async def console(self, server_id: str) -> str:
        return str((await self.action(server_id, {"os-getConsoleOutput": {}}))["output"])

    async def wait(
        self, server_id: str, status: str, *, timeout_s: float = 300.0, max_pause_s: float = 1.0
    ) -> Server | None:
        """Until the server has `status` with no task running (`DELETED`: until it is gone,
        then None). ServerFailed if it goes to ERROR instead; TimeoutError after `timeout_s`.
        Polls at growing intervals, up to `max_pause_s` apart."""
        deadline = time.monotonic() + timeout_s
        pause = 0.02
        while True:
            server = await self.get_server(server_id)
            if server is None:
                if status == "DELETED":
                    return None
                raise LookupError(f"server {server_id} is gone")
            if server.status == status and server.task_state is None:
                return server
            if server.status == "ERROR" and status not in ("ERROR", "DELETED"):
                raise ServerFailed(server)
            if time.monotonic() + pause > deadline:
                raise TimeoutError(f"server {server_id} is {server.status}, not {status}, after {timeout_s}s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, max_pause_s)

    async def hypervisors(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/os-hypervisors/detail"))["hypervisors"])

    async def set_quotas(self, project_id: str, **limits: int) -> dict[str, Any]:
        body = await self._call("PUT", f"/os-quota-sets/{project_id}", {"quota_set": limits})
        return dict(body["quota_set"])


class ImageApi:
    """Glance v2."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    @property
    def url(self) -> str:
        return f"{self.client.endpoint('image')}/v2"

    async def create(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "disk_format": "raw", "container_format": "bare", **fields}
        _, _, created = await self.client.request("POST", f"{self.url}/images", body, expect=(201,))
        return dict(created)

    async def upload(self, image_id: str, data: bytes | AsyncIterable[bytes]) -> None:
        """Streams `data` (bytes, or chunks as they come) as the image's file."""
        assert self.client.token is not None
        headers = {"X-Auth-Token": self.client.token.id, "Content-Type": "application/octet-stream"}
        url = f"{self.url}/images/{image_id}/file"
        async with self.client.http.put(url, data=data, headers=headers) as resp:
            if resp.status != 204:
                raise ApiError(resp.status, await resp.text(), resp.headers.get("x-openstack-request-id"))

    async def find(self, name: str) -> list[dict[str, Any]]:
        _, _, body = await self.client.request("GET", f"{self.url}/images?name={name}")
        return list(body["images"])

    async def delete(self, image_id: str) -> None:
        await self.client.request("DELETE", f"{self.url}/images/{image_id}", expect=(204, 404))
