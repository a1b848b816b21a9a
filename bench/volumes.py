"""`python -m bench volumes`: volumes created, and attached then detached, per second through
the Block Storage and Compute APIs, on the fake volume backend.

The harness starts a fabric of its own with a fake volume host and simulated compute hosts,
lifts the project's volume quotas, and creates N volumes with C requests in flight, as
`openstack volume create --size 1` does. Two latencies per volume: the API's accept (the 202)
and request → `available`, watched for every volume at once by one poller (`Watcher`: one
small list request per round, however many are waiting). Then it attaches each available
volume to one of 32 servers and detaches it again (`server add
volume` / `server remove volume`), each pair timed from the attach request until the volume is
`available` again.
"""

import asyncio
import time
from typing import Any

from bench.cloud import Credentials, own_fabric
from bench.stats import Record
from fabric.client import ApiError, Client
from fabric.config import Settings

SERVERS = 32


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    extra = {
        "FABRIC_VOLUME_BACKEND": "fake",
        "FABRIC_FAKE_HOSTS": str(SERVERS),
        "FABRIC_COMPUTE_DRIVER": "none",
        "FABRIC_CAPACITY_REPORT_INTERVAL_S": "5",
    }
    async with own_fabric(settings, hash_cost="minimal", extra_env=extra) as creds:
        return await _measure(args, creds)


class Watcher:
    """Tells when volumes leave a transitional status, with one small list request per round.

    It lists only the volumes still in that status (`?status=creating`: at most the requests in
    flight), never the finished ones, so a round costs the same after 10 or 10,000 volumes. A
    volume accepted before a round's request began and absent from its answer has moved on; the
    `error` list (as small) tells a failure from a success.
    """

    def __init__(self, client: Client, url: str) -> None:
        self.client, self.url = client, url
        #: volume id → (the status it is leaving, when it was accepted, its future)
        self.waiting: dict[str, tuple[str, float, asyncio.Future[float]]] = {}

    def leaves(self, volume_id: str, status: str, accepted: float) -> asyncio.Future[float]:
        """A future of when the volume left `status` (raises if it went to `error`)."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[volume_id] = (status, accepted, done)
        return done

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.05)  # the harness's own load stays small beside the cloud's
            for status in {status for status, _, _ in self.waiting.values()}:
                asked = time.perf_counter()
                _, _, still = await self.client.request("GET", f"{self.url}/volumes/detail?status={status}")
                _, _, failed = await self.client.request("GET", f"{self.url}/volumes/detail?status=error")
                now = time.perf_counter()
                pending = {v["id"] for v in still["volumes"]}
                broken = {v["id"] for v in failed["volumes"]}
                for volume_id, (leaving, accepted, done) in list(self.waiting.items()):
                    if leaving != status or accepted > asked or volume_id in pending:
                        continue
                    del self.waiting[volume_id]
                    if volume_id in broken:
                        done.set_exception(RuntimeError(f"volume {volume_id} went to error"))
                    else:
                        done.set_result(now)


async def _measure(args: Any, creds: Credentials) -> dict[str, Any]:
    async with creds.client(connections=args.concurrency + 8) as client:
        assert client.token is not None and client.token.project_id is not None
        url = client.endpoint("block-storage")
        quotas = {"quota_set": {"volumes": -1, "gigabytes": -1}}
        await client.request("PUT", f"{url}/os-quota-sets/{client.token.project_id}", quotas)
        servers = await _servers(client)
        watcher = Watcher(client, url)
        watching = asyncio.create_task(watcher.run())
        accept, available, pairs = Record(), Record(), Record()
        made: list[str] = []
        left = args.count

        async def create() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                started = time.perf_counter()
                try:
                    _, _, body = await client.request(
                        "POST", f"{url}/volumes", {"volume": {"size": 1}}, expect=(202,)
                    )
                except ApiError as exc:
                    accept.fail(f"HTTP {exc.status}")
                    continue
                accepted = time.perf_counter()
                accept.add(accepted - started)
                try:
                    ready = await asyncio.wait_for(
                        watcher.leaves(body["volume"]["id"], "creating", accepted), 60
                    )
                except (RuntimeError, TimeoutError) as exc:
                    available.fail(type(exc).__name__)
                    continue
                available.add(ready - started)
                made.append(body["volume"]["id"])

        try:
            began = time.perf_counter()
            await asyncio.gather(*(create() for _ in range(args.concurrency)))
            create_s = time.perf_counter() - began
            queue = list(made)

            async def settled(volume_id: str, leaving: str, expected: str) -> None:
                await asyncio.wait_for(watcher.leaves(volume_id, leaving, time.perf_counter()), 60)
                _, _, shown = await client.request("GET", f"{url}/volumes/{volume_id}")
                if shown["volume"]["status"] != expected:
                    raise RuntimeError(f"volume {volume_id} is {shown['volume']['status']}, not {expected}")

            async def attach_detach(server_id: str) -> None:
                compute = client.endpoint("compute")
                while queue:
                    volume_id = queue.pop()
                    started = time.perf_counter()
                    try:
                        attach = {"volumeAttachment": {"volumeId": volume_id}}
                        path = f"{compute}/servers/{server_id}/os-volume_attachments"
                        await client.request("POST", path, attach, expect=(200,))
                        await asyncio.wait_for(
                            watcher.leaves(volume_id, "attaching", time.perf_counter()), 60
                        )
                        await client.request("DELETE", f"{path}/{volume_id}", expect=(202,))
                        await asyncio.wait_for(
                            watcher.leaves(volume_id, "detaching", time.perf_counter()), 60
                        )
                    except (ApiError, RuntimeError, TimeoutError) as exc:
                        pairs.fail(f"HTTP {exc.status}" if isinstance(exc, ApiError) else type(exc).__name__)
                        continue
                    pairs.add(time.perf_counter() - started)

            began = time.perf_counter()
            await asyncio.gather(*(attach_detach(s) for s in servers))
            pairs_s = time.perf_counter() - began
        finally:
            watching.cancel()
    a, r, p = accept.summary(), available.summary(), pairs.summary()
    errors = sum(accept.errors.values()) + sum(available.errors.values()) + sum(pairs.errors.values())
    return {
        "bench": "volumes",
        "count": args.count,
        "concurrency": args.concurrency,
        "creates_per_s": round(available.ops / create_s, 1) if create_s else 0.0,
        "accept_p50_ms": a["p50_ms"],
        "accept_p99_ms": a["p99_ms"],
        "available_p50_ms": r["p50_ms"],
        "available_p99_ms": r["p99_ms"],
        "attach_detach_per_s": round(pairs.ops / pairs_s, 1) if pairs_s else 0.0,
        "attach_detach_p50_ms": p["p50_ms"],
        "attach_detach_p99_ms": p["p99_ms"],
        "attach_servers": len(servers),
        "errors": errors,
        "errors_by_kind": dict(accept.errors) | dict(available.errors) | dict(pairs.errors),
        "seconds": round(create_s + pairs_s, 2),
    }


async def _servers(client: Client) -> list[str]:
    """A few active servers on the simulated hosts, to attach to."""
    compute = client.endpoint("compute")
    image_url = client.endpoint("image")
    assert client.token is not None and client.token.project_id is not None
    unlimited = {"quota_set": {"instances": -1, "cores": -1, "ram": -1}}
    await client.request("PUT", f"{compute}/os-quota-sets/{client.token.project_id}", unlimited)
    _, _, image = await client.request(
        "POST", f"{image_url}/v2/images", {"name": "bench", "disk_format": "raw", "container_format": "bare"}
    )
    headers = {"X-Auth-Token": client.token.id, "Content-Type": "application/octet-stream"}
    upload = f"{image_url}/v2/images/{image['id']}/file"
    async with client.http.put(upload, data=b"\0" * 4096, headers=headers) as r:
        if r.status != 204:
            raise RuntimeError(f"uploading the bench image: HTTP {r.status}")
    flavor = {"flavor": {"name": "bench", "vcpus": 1, "ram": 64, "disk": 1}}
    _, _, made = await client.request("POST", f"{compute}/flavors", flavor)
    ids = []
    for i in range(SERVERS):
        body = {"server": {"name": f"bench-{i}", "imageRef": image["id"], "flavorRef": made["flavor"]["id"]}}
        _, _, server = await client.request("POST", f"{compute}/servers", body, expect=(202,))
        ids.append(server["server"]["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, _, listed = await client.request("GET", f"{compute}/servers/detail")
        if sum(s["status"] == "ACTIVE" for s in listed["servers"] if s["id"] in ids) == len(ids):
            return ids
        await asyncio.sleep(0.2)
    raise RuntimeError("the bench servers did not become ACTIVE within 60 s")
