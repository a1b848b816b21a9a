"""The async client's block storage calls: volumes, snapshots, types and quotas through Cinder's
v3 API, and a server's volume attachments through Nova's (`os-volume_attachments`), with
waiters (`await client.volume.wait(volume.id, "available")`).

Waiting polls, as for servers: fast at first, then backing off to one poll a second.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

if TYPE_CHECKING:
    from fabric.client import Client

T = TypeVar("T", "Volume", "Snapshot")

#: The statuses a volume or snapshot stops in when something went wrong.
ERROR_STATUSES = frozenset({"error", "error_deleting", "error_extending"})


@dataclass(frozen=True, slots=True)
class Volume:
    id: str
    name: str
    status: str
    size_gb: int
    bootable: bool
    #: `{server_id, attachment_id, device, ...}` for each server the volume is attached to.
    attachments: tuple[dict[str, Any], ...]
    error_reason: str | None
    raw: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "Volume":
        return cls(
            id=body["id"],
            name=body.get("name") or "",
            status=body.get("status", ""),
            size_gb=int(body.get("size") or 0),
            bootable=body.get("bootable") == "true",
            attachments=tuple(body.get("attachments") or ()),
            error_reason=body.get("error_reason"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    name: str
    volume_id: str
    status: str
    size_gb: int
    raw: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "Snapshot":
        return cls(
            id=body["id"],
            name=body.get("name") or "",
            volume_id=body["volume_id"],
            status=body.get("status", ""),
            size_gb=int(body.get("size") or 0),
            raw=body,
        )


class VolumeFailed(Exception):
    def __init__(self, kind: str, item_id: str, status: str, reason: str | None) -> None:
        super().__init__(f"{kind} {item_id} went to {status}: {reason or 'no reason recorded'}")
        self.item_id, self.status, self.reason = item_id, status, reason


class VolumeApi:
    """Cinder v3 (catalog type `block-storage`) and Nova's volume attachments."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    @property
    def url(self) -> str:
        """`…/volume/v3/<project>`: the catalog names the token's project."""
        return self.client.endpoint("block-storage")

    async def _call(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        _, _, body = await self.client.request(method, f"{self.url}{path}", json, **kw)
        return body

    # volumes

    async def create_volume(self, size_gb: int | None = None, *, name: str = "", **fields: Any) -> Volume:
        """`fields` in Cinder's names: `imageRef`, `snapshot_id`, `source_volid`, `volume_type`,
        `description`, `metadata`, `availability_zone`."""
        body = {"volume": {"size": size_gb, "name": name, **fields}}
        return Volume.from_body((await self._call("POST", "/volumes", body, expect=(202,)))["volume"])

    async def get_volume(self, volume_id: str) -> Volume | None:
        status, _, body = await self.client.request(
            "GET", f"{self.url}/volumes/{volume_id}", expect=(200, 404)
        )
        return None if status == 404 else Volume.from_body(body["volume"])

    async def list_volumes(self, **query: str) -> list[Volume]:
        """Every page of `volumes/detail` with these filters (`name`, `status`, `all_tenants`...)."""
        volumes: list[Volume] = []
        marker: str | None = None
        while True:
            params = {**query} | ({"marker": marker} if marker else {})
            page = await self._call("GET", "/volumes/detail" + (f"?{urlencode(params)}" if params else ""))
            volumes += [Volume.from_body(v) for v in page["volumes"]]
            if not page.get("volumes_links") or not page["volumes"]:
                return volumes
            marker = page["volumes"][-1]["id"]

    async def update_volume(self, volume_id: str, **fields: Any) -> Volume:
        """`name`, `description`, `metadata` (replaced whole)."""
        body = await self._call("PUT", f"/volumes/{volume_id}", {"volume": fields})
        return Volume.from_body(body["volume"])

    async def extend_volume(self, volume_id: str, new_size_gb: int) -> None:
        await self._call("POST", f"/volumes/{volume_id}/action", {"os-extend": {"new_size": new_size_gb}})

    async def set_bootable(self, volume_id: str, bootable: bool = True) -> None:
        await self._call("POST", f"/volumes/{volume_id}/action", {"os-set_bootable": {"bootable": bootable}})

    async def delete_volume(self, volume_id: str, *, cascade: bool = False) -> None:
        """202 or already gone (404)."""
        await self._call("DELETE", f"/volumes/{volume_id}?cascade={cascade}", expect=(202, 404))

    async def wait(
        self, volume_id: str, status: str, *, timeout_s: float = 60.0, max_pause_s: float = 1.0
    ) -> Volume | None:
        """Until the volume has `status` (`deleted`: until it is gone, then None). VolumeFailed
        if it stops in an error status instead; TimeoutError after `timeout_s`."""
        return await _wait(
            "volume", volume_id, self.get_volume, status, timeout_s=timeout_s, max_pause_s=max_pause_s
        )

    # snapshots

    async def create_snapshot(
        self, volume_id: str, *, name: str = "", force: bool = False, **fields: Any
    ) -> Snapshot:
        body = {"snapshot": {"volume_id": volume_id, "name": name, "force": force, **fields}}
        return Snapshot.from_body((await self._call("POST", "/snapshots", body, expect=(202,)))["snapshot"])

    async def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        status, _, body = await self.client.request(
            "GET", f"{self.url}/snapshots/{snapshot_id}", expect=(200, 404)
        )
        return None if status == 404 else Snapshot.from_body(body["snapshot"])

    async def list_snapshots(self, **query: str) -> list[Snapshot]:
        path = "/snapshots/detail" + (f"?{urlencode(query)}" if query else "")
        return [Snapshot.from_body(s) for s in (await self._call("GET", path))["snapshots"]]

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self._call("DELETE", f"/snapshots/{snapshot_id}", expect=(202, 404))

    async def wait_snapshot(
        self, snapshot_id: str, status: str, *, timeout_s: float = 60.0
    ) -> Snapshot | None:
        return await _wait("snapshot", snapshot_id, self.get_snapshot, status, timeout_s=timeout_s)

    # types and quotas

    async def list_types(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/types"))["volume_types"])

    async def create_type(
        self, name: str, *, extra_specs: dict[str, str] | None = None, public: bool = True
    ) -> dict[str, Any]:
        body = {"name": name, "extra_specs": extra_specs or {}, "os-volume-type-access:is_public": public}
        return dict((await self._call("POST", "/types", {"volume_type": body}))["volume_type"])

    async def delete_type(self, type_id: str) -> None:
        await self._call("DELETE", f"/types/{type_id}", expect=(202, 404))

    async def quotas(self, project_id: str, *, usage: bool = False) -> dict[str, Any]:
        return dict((await self._call("GET", f"/os-quota-sets/{project_id}?usage={usage}"))["quota_set"])

    async def set_quotas(self, project_id: str, **limits: int) -> dict[str, Any]:
        return dict(
            (await self._call("PUT", f"/os-quota-sets/{project_id}", {"quota_set": limits}))["quota_set"]
        )

    # attachments, through Compute

    def _attachments_url(self, server_id: str) -> str:
        return f"{self.client.endpoint('compute')}/servers/{server_id}/os-volume_attachments"

    async def attach(self, server_id: str, volume_id: str, *, device: str | None = None) -> dict[str, Any]:
        """Nova's `volumeAttachment` (`id`, `serverId`, `volumeId`, `device`); the volume is
        `in-use` once the guest has the disk (wait for it)."""
        body = {"volumeAttachment": {"volumeId": volume_id, "device": device}}
        _, _, got = await self.client.request("POST", self._attachments_url(server_id), body, expect=(200,))
        return dict(got["volumeAttachment"])

    async def attachments(self, server_id: str) -> list[dict[str, Any]]:
        _, _, got = await self.client.request("GET", self._attachments_url(server_id))
        return list(got["volumeAttachments"])

    async def detach(self, server_id: str, volume_id: str) -> None:
        await self.client.request("DELETE", f"{self._attachments_url(server_id)}/{volume_id}", expect=(202,))


async def _wait(
    kind: str,
    item_id: str,
    get: Callable[[str], Awaitable[T | None]],
    status: str,
    *,
    timeout_s: float,
    max_pause_s: float = 1.0,
) -> T | None:
    deadline = time.monotonic() + timeout_s
    pause = 0.02
    while True:
        item = await get(item_id)
        if item is None:
            if status == "deleted":
                return None
            raise LookupError(f"{kind} {item_id} is gone")
        if item.status == status:
            return item
        if item.status in ERROR_STATUSES and status not in ERROR_STATUSES:
            raise VolumeFailed(kind, item_id, item.status, item.raw.get("error_reason"))
        if time.monotonic() + pause > deadline:
            raise TimeoutError(f"{kind} {item_id} is {item.status}, not {status}, after {timeout_s}s")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, max_pause_s)
