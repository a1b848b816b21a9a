"""The steps scenarios are made of: each one API operation (or a wait) a user's script would do,
timed by the runner as an operation of its own.

Steps talk only to the public OpenStack APIs through `fabric.client.Client`, so the same
scenario runs against our gateway or any OpenStack cloud. One iteration's steps share a dict
(`it`) for what they hand on (the server a boot made, for the wait and the delete); what the
whole run shares, and what must be cleaned up after it, is in `Context`.
"""

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fabric.client import ApiError, Client, Server, ServerFailed

#: How often the watcher polls for changed servers: ACTIVE is seen up to this late.
POLL_S = 0.05
#: How long a server may take to become ACTIVE, or to go once deleted.
WAIT_TIMEOUT_S = 120.0


class StepFailed(Exception):
    """A step's failure, counted under `kind` (an HTTP status, a fault, a timeout)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Watcher:
    """Sees servers turn ACTIVE (or ERROR), or go, with one `changes-since` poll every
    `interval_s`, however many are in flight, as an efficient client watches many servers:
    polling each one would load the cloud more than booting it does. (Nova, and the fabric,
    list a server deleted since then as DELETED.)"""

    #: Look this far behind the last poll: a row's `updated_at` is its transaction's start, and
    #: the transaction may commit after a poll that began later. Short, because every server
    #: changed inside the window is sent again on every poll (with 64 boots in flight, a 2 s
    #: window made the cloud render each server ~40 times); a transaction that commits later
    #: than this is caught by asking for the server itself (`RECHECK_S`).
    OVERLAP_S = 0.5
    #: A server waited on this long without being seen to arrive is asked for by id.
    RECHECK_S = 5.0

    def __init__(self, client: Client, interval_s: float = POLL_S) -> None:
        self.client, self.interval_s = client, interval_s
        #: Server id -> (the status waited for: ACTIVE or DELETED, its future).
        self.waiting: dict[str, tuple[str, asyncio.Future[Server | None]]] = {}
        self._asked: dict[str, float] = {}

    def until(self, server_id: str, status: str) -> asyncio.Future[Server | None]:
        """Resolves with the server once ACTIVE (ServerFailed if it goes to ERROR), or with
        None once it is gone (`status` DELETED). Ask before the request that starts the change,
        so that no poll can see it happen unwatched."""
        future: asyncio.Future[Server | None] = asyncio.get_running_loop().create_future()
        self.waiting[server_id] = (status, future)
        self._asked[server_id] = time.monotonic()
        return future

    def forget(self, server_id: str) -> None:
        self.waiting.pop(server_id, None)
        self._asked.pop(server_id, None)

    async def run(self) -> None:
        since = time.time() - self.OVERLAP_S
        while True:
            polled_at = time.time()
            if self.waiting:
                for server in await self.client.compute.changed_since(since):
                    self._seen(server.id, server)
                since = polled_at - self.OVERLAP_S
                await self._recheck()
            await asyncio.sleep(self.interval_s)

    async def _recheck(self) -> None:
        now = time.monotonic()
        late = [i for i, asked in self._asked.items() if now - asked > self.RECHECK_S and i in self.waiting]
        for server_id in late:
            self._asked[server_id] = now
        found = await asyncio.gather(*(self.client.compute.get_server(i) for i in late))
        for server_id, server in zip(late, found, strict=True):
            self._seen(server_id, server)

    def _seen(self, server_id: str, server: Server | None) -> None:
        """`server` None: it is gone."""
        entry = self.waiting.get(server_id)
        if entry is None or entry[1].done():
            return
        wanted, future = entry
        if server is None or server.status == "DELETED":
            if wanted == "DELETED":
                future.set_result(None)
            else:
                future.set_exception(LookupError(f"server {server_id} is gone"))
        elif wanted == "DELETED" or server.task_state is not None:
            return
        elif server.status == "ACTIVE":
            future.set_result(server)
        elif server.status == "ERROR":
            future.set_exception(ServerFailed(server))
        else:
            return
        self.forget(server_id)


@dataclass
class Context:
    """What a run's steps share: the client, what the set-up found or made, and what the steps
    made and did not delete (cleaned up after the run, outside the measurement)."""

    client: Client
    watcher: Watcher
    rng: random.Random
    image_id: str = ""
    flavor_id: str = ""
    #: Networks a server is booted on (None: the cloud's default, as `server create` without --nic).
    boot_networks: list[dict[str, str]] | None = None
    image_data: bytes = b""
    auth_body: dict[str, Any] = field(default_factory=dict)
    token_to_validate: str = ""
    servers: set[str] = field(default_factory=set)
    deleted_servers: list[str] = field(default_factory=list)
    networks: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)

    def name(self, kind: str) -> str:
        return f"bench-{kind}-{uuid.uuid4().hex[:8]}"

    def network_url(self) -> str:
        return f"{self.client.endpoint('network')}/v2.0"


Step = Callable[[Context, dict[str, Any]], Awaitable[None]]


async def _api(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except ApiError as exc:
        raise StepFailed(f"HTTP {exc.status}") from exc


# --- compute -------------------------------------------------------------------------------


async def boot_server(ctx: Context, it: dict[str, Any]) -> None:
    fields: dict[str, Any] = {} if ctx.boot_networks is None else {"networks": ctx.boot_networks}
    server = await _api(
        ctx.client.compute.create_server(
            ctx.name("server"), image=ctx.image_id, flavor=ctx.flavor_id, **fields
        )
    )
    ctx.servers.add(server.id)
    it["server"] = server.id
    it["watch"] = ctx.watcher.until(server.id, "ACTIVE")  # before any poll can see it ACTIVE


async def wait_active(ctx: Context, it: dict[str, Any]) -> None:
    try:
        await asyncio.wait_for(it["watch"], timeout=WAIT_TIMEOUT_S)
    except ServerFailed as exc:
        raise StepFailed("ERROR: " + str((exc.server.fault or {}).get("message", "no fault"))[:60]) from exc
    except LookupError:
        raise StepFailed("gone before it was ACTIVE") from None
    except TimeoutError:
        ctx.watcher.forget(it["server"])
        raise StepFailed(f"not ACTIVE in {WAIT_TIMEOUT_S:.0f} s") from None
    it["active"] = True


async def delete_server(ctx: Context, it: dict[str, Any]) -> None:
    it["gone"] = ctx.watcher.until(it["server"], "DELETED")
    try:
        await _api(ctx.client.compute.delete_server(it["server"]))
    except StepFailed:
        ctx.watcher.forget(it["server"])
        raise
    ctx.servers.discard(it["server"])
    ctx.deleted_servers.append(it["server"])


async def wait_deleted(ctx: Context, it: dict[str, Any]) -> None:
    try:
        await asyncio.wait_for(it["gone"], timeout=WAIT_TIMEOUT_S)
    except TimeoutError:
        ctx.watcher.forget(it["server"])
        raise StepFailed(f"not gone in {WAIT_TIMEOUT_S:.0f} s") from None


async def list_servers(ctx: Context, it: dict[str, Any]) -> None:
    await _api(ctx.client.compute.list_servers())


# --- network -------------------------------------------------------------------------------


async def _post(ctx: Context, path: str, body: dict[str, Any]) -> dict[str, Any]:
    _, _, made = await _api(ctx.client.request("POST", f"{ctx.network_url()}/{path}", body, expect=(201,)))
    return dict(made)


async def create_network(ctx: Context, it: dict[str, Any]) -> None:
    made = await _post(ctx, "networks", {"network": {"name": ctx.name("net")}})
    it["network"] = made["network"]["id"]
    ctx.networks.add(it["network"])


async def create_subnet(ctx: Context, it: dict[str, Any]) -> None:
    # Every network is its own address space: the same range in each is fine.
    body = {"subnet": {"network_id": it["network"], "cidr": "10.250.0.0/24", "ip_version": 4}}
    it["subnet"] = (await _post(ctx, "subnets", body))["subnet"]["id"]


async def create_port(ctx: Context, it: dict[str, Any]) -> None:
    it["port"] = (await _post(ctx, "ports", {"port": {"network_id": it["network"]}}))["port"]["id"]


async def delete_port(ctx: Context, it: dict[str, Any]) -> None:
    await _api(ctx.client.request("DELETE", f"{ctx.network_url()}/ports/{it['port']}", expect=(204,)))


async def delete_network(ctx: Context, it: dict[str, Any]) -> None:
    url = f"{ctx.network_url()}/networks/{it['network']}"
    await _api(ctx.client.request("DELETE", url, expect=(204,)))
    ctx.networks.discard(it["network"])


# --- identity ------------------------------------------------------------------------------


async def issue_token(ctx: Context, it: dict[str, Any]) -> None:
    await _api(ctx.client.identity.issue_token(ctx.auth_body))


async def validate_token(ctx: Context, it: dict[str, Any]) -> None:
    await _api(ctx.client.identity.validate_token(ctx.token_to_validate))


# --- image ---------------------------------------------------------------------------------


async def create_image(ctx: Context, it: dict[str, Any]) -> None:
    made = await _api(ctx.client.image.create(ctx.name("image")))
    it["image"] = made["id"]
    ctx.images.add(made["id"])


async def upload_image(ctx: Context, it: dict[str, Any]) -> None:
    await _api(ctx.client.image.upload(it["image"], ctx.image_data))


async def download_image(ctx: Context, it: dict[str, Any]) -> None:
    """The whole file, read as it streams; a short or altered body is a failure."""
    client = ctx.client
    assert client.token is not None
    url = f"{client.image.url}/images/{it['image']}/file"
    got = 0
    async with client.http.get(url, headers={"X-Auth-Token": client.token.id}) as resp:
        if resp.status != 200:
            raise StepFailed(f"HTTP {resp.status}")
        async for chunk in resp.content.iter_chunked(1 << 16):
            got += len(chunk)
    if got != len(ctx.image_data):
        raise StepFailed("short download")


async def delete_image(ctx: Context, it: dict[str, Any]) -> None:
    await _api(ctx.client.image.delete(it["image"]))
    ctx.images.discard(it["image"])


STEPS: dict[str, Step] = {
    step.__name__: step
    for step in (
        boot_server,
        wait_active,
        delete_server,
        wait_deleted,
        list_servers,
        create_network,
        create_subnet,
        create_port,
        delete_port,
        delete_network,
        issue_token,
        validate_token,
        create_image,
        upload_image,
        download_image,
        delete_image,
    )
}


def needs_compute(step: str) -> bool:
    """Steps that need servers to boot (hence hosts, an image and a flavor)."""
    return step == "boot_server"


def needs_image_data(step: str) -> bool:
    return step == "upload_image"
