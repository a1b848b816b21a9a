"""`python -m bench dashboard`: how fast the dashboard's big pages answer under load, and how soon
a server that turns ACTIVE shows in an open page.

The harness starts a fabric of its own (`fabric up` with H simulated hosts), lifts the admin
project's quotas and boots N servers there on the fake driver. Then U dashboard sessions sign in
as the admin through the login form (CSRF token and cookie, as a browser does) and each fetches
the servers page (its default page size, of the N servers) and the fleet page (of the H hosts)
in turn, in a closed loop: at once, or after `--think-ms` on average (a person reading). The time
from sending the request to having read the whole page, over loopback, is the page's
server-side time as a client sees it (`servers_page_*`, `fleet_page_*`).

Then, with the load stopped, one more session opens the live stream the servers page opens
(`/dashboard/events?topics=servers&since=...`) and the harness boots K servers one after another.
For each it notes when the server became ACTIVE and when the stream's `server` event saying so
arrived: `active_to_browser_*` counts from the instant compute made it ACTIVE (the server's
`OS-SRV-USG:launched_at`, stamped in the transaction that set ACTIVE; same machine, same clock),
and `api_active_to_browser_*` from the first answer of the API showing ACTIVE (the harness asks
for the server every 10 ms while it boots, so that figure may be up to 10 ms too small).
"""

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from bench import cpu
from bench.boot import Run, boot_one, wait_for_fleet
from bench.cloud import Credentials, Service, own_fabric
from bench.run import SPLIT
from bench.stats import Record
from bench.steps import Watcher
from fabric.client import ApiError, Client
from fabric.config import Settings

log = logging.getLogger("bench")

PAGES = {"servers": "/dashboard/servers", "fleet": "/dashboard/fleet"}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: How often the harness asks the API for a booting server (the resolution of `api_active_*`).
API_POLL_S = 0.01
#: A server whose ACTIVE event has not arrived this long after the API showed it counts as an error.
EVENT_TIMEOUT_S = 10.0
#: Boots in flight while the N servers are made (not measured).
BOOT_CONCURRENCY = 64


class SignInFailed(RuntimeError):
    """The dashboard's login form did not sign the harness in."""


class DashboardUser:
    """One browser's session: its own connections and cookie jar, signed in through the form."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        # The cookie is for 127.0.0.1, which an aiohttp jar keeps only when `unsafe`.
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(limit=2),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def close(self) -> None:
        await self.http.close()

    async def sign_in(self, creds: Credentials) -> None:
        async with self.http.get(f"{self.url}/dashboard/login") as resp:
            found = _CSRF.search(await resp.text())
        if found is None:
            raise SignInFailed("the login page has no CSRF token")
        form = {
            "csrf_token": found.group(1),
            "user": creds.username,
            "password": creds.password,
            "project": creds.project,
            "domain": creds.user_domain,
        }
        async with self.http.post(f"{self.url}/dashboard/login", data=form, allow_redirects=False) as resp:
            if resp.status != 303 or resp.headers.get("Location") != "/dashboard/overview":
                raise SignInFailed(f"login answered {resp.status}: {(await resp.text())[:300]}")

    async def fetch(self, path: str) -> tuple[int, str]:
        """The status and the whole page, read to its end (a redirect is not followed)."""
        async with self.http.get(f"{self.url}{path}", allow_redirects=False) as resp:
            return resp.status, await resp.text()


@dataclass
class Stream:
    """What one open live stream has said: when each server's ACTIVE event arrived."""

    active_at: dict[str, float] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hello: asyncio.Event = field(default_factory=asyncio.Event)


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    extra = {"FABRIC_CAPACITY_REPORT_INTERVAL_S": "30", "FABRIC_HOST_TTL_S": "120"}
    if args.layout == "split":
        # The gateway (with the dashboard) in a process of its own, the services in theirs and
        # the simulated fleet in another: the deployment layout, using both cores.
        fleet = [
            Service(
                "fleet",
                ["service", "compute-agent", "--host", "bench-fleet", "--fake-hosts", str(args.hosts)],
                ready="compute-agent serving bench-fleet",
            )
        ]
        async with own_fabric(
            settings, hash_cost="minimal", extra_env=extra, services=fleet, split=SPLIT
        ) as creds:
            return await _measure(args, creds) | {"layout": "split"}
    extra["FABRIC_FAKE_HOSTS"] = str(args.hosts)
    async with own_fabric(settings, hash_cost="minimal", extra_env=extra) as creds:
        return await _measure(args, creds) | {"layout": "up"}


async def _measure(args: Any, creds: Credentials) -> dict[str, Any]:
    async with creds.client(connections=BOOT_CONCURRENCY + 8) as client:
        assert client.token is not None and client.token.project_id is not None
        await client.compute.set_quotas(client.token.project_id, instances=-1, cores=-1, ram=-1)
        register_s = await wait_for_fleet(client, args.hosts)
        log.info("%d hosts up after %.1f s", args.hosts, register_s)
        image = await client.image.create("bench-dashboard", visibility="public")
        await client.image.upload(image["id"], b"\0" * 4096)
        tiny = [f["id"] for f in await client.compute.list_flavors() if f["name"] == "m1.tiny"]
        # `fabric up` seeds m1.tiny; a split fabric has no flavor yet.
        flavor = (
            tiny[0]
            if tiny
            else (await client.compute.create_flavor("m1.tiny", vcpus=1, ram=512, disk=1))["id"]
        )
        began = time.perf_counter()
        booted = await _boot_many(client, image["id"], flavor, args.servers)
        boot_s = time.perf_counter() - began
        log.info("%d servers ACTIVE in %.1f s", booted.active.ops, boot_s)

        async with _signed_in(creds, args.users) as users:
            pages, window_s, cpu_pct = await _load(
                users, creds, args.seconds, args.warmup, args.think_ms / 1000
            )
        async with _signed_in(creds, 1) as (watcher,):
            active, api_active = await _active_to_browser(client, watcher, image["id"], flavor, args.events)

    errors = {f"boot: {k}": n for k, n in (booted.accept.errors + booted.active.errors).items()}
    for name, record in pages.items():
        errors |= {f"{name} page: {k}": n for k, n in record.errors.items()}
    errors |= {f"event: {k}": n for k, n in active.errors.items()}
    result: dict[str, Any] = {
        "bench": "dashboard",
        "hosts": args.hosts,
        "servers": args.servers,
        "users": args.users,
        "think_ms": args.think_ms,
        "seconds": round(window_s, 2),
    }
    for name, record in pages.items():
        s = record.summary()
        result |= {
            f"{name}_page_per_s": round(record.ops / window_s, 1) if window_s else 0.0,
            f"{name}_page_p50_ms": s["p50_ms"],
            f"{name}_page_p90_ms": s["p90_ms"],
            f"{name}_page_p99_ms": s["p99_ms"],
            f"{name}_page_max_ms": s["max_ms"],
        }
    a, b = active.summary(), api_active.summary()
    result |= {
        "events": args.events,
        "active_to_browser_p50_ms": a["p50_ms"],
        "active_to_browser_p99_ms": a["p99_ms"],
        "active_to_browser_max_ms": a["max_ms"],
        "api_active_to_browser_p50_ms": b["p50_ms"],
        "api_active_to_browser_p99_ms": b["p99_ms"],
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "fleet_register_s": round(register_s, 2),
        "boot_s": round(boot_s, 2),
        **cpu_pct,
    }
    return result


async def _boot_many(client: Client, image: str, flavor: str, count: int) -> Run:
    booted = Run()
    left = count
    watcher = Watcher(client, 0.05)
    watching = asyncio.create_task(watcher.run())

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await boot_one(client, watcher, booted, image, flavor)

    try:
        await asyncio.gather(*(worker() for _ in range(min(BOOT_CONCURRENCY, count))))
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    return booted


@asynccontextmanager
async def _signed_in(creds: Credentials, count: int) -> AsyncIterator[list[DashboardUser]]:
    users = [DashboardUser(creds.url) for _ in range(count)]
    try:
        await asyncio.gather(*(u.sign_in(creds) for u in users))
        yield users
    finally:
        await asyncio.gather(*(u.close() for u in users))


async def _load(
    users: list[DashboardUser], creds: Credentials, seconds: float, warmup_s: float, think_s: float
) -> tuple[dict[str, Record], float, dict[str, float]]:
    """Each user fetches the two pages in turn until the window ends, pausing `think_s` on
    average after each (0: a closed loop at full speed); a fetch counts when it started after the warm-up and
    ended inside the window."""
    records = {name: Record() for name in PAGES}
    first = await users[0].fetch(PAGES["servers"])
    if first[0] != 200 or "data-server=" not in first[1]:
        raise RuntimeError(f"the servers page answered {first[0]}: {first[1][:300]}")
    started = time.perf_counter()
    measure_from, end = started + warmup_s, started + warmup_s + seconds
    before: dict[str, float] = {}

    async def probe() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        before.update(cpu.sample(creds.pids))

    # Pauses drawn from an exponential law (seeded): with one fixed pause, sessions that start
    # together would keep asking together, and each would wait for all the others' pages.
    pauses = random.Random(1)

    async def loop(user: DashboardUser, offset: int) -> None:
        order = list(PAGES)[offset:] + list(PAGES)[:offset]
        while True:
            for name in order:
                began = time.perf_counter()
                if began >= end:
                    return
                kind = None
                try:
                    status, _ = await user.fetch(PAGES[name])
                    if status != 200:
                        kind = f"HTTP {status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    kind = type(exc).__name__
                done = time.perf_counter()
                if measure_from <= began and done <= end:
                    if kind is None:
                        records[name].add(done - began)
                    else:
                        records[name].fail(kind)
                if think_s:
                    await asyncio.sleep(pauses.expovariate(1 / think_s))

    await asyncio.gather(probe(), *(loop(u, i % len(PAGES)) for i, u in enumerate(users)))
    after = cpu.sample(creds.pids)
    counted = {k: after[k] - before[k] for k in after if k in before}
    return records, seconds, cpu.percentages(counted, seconds)


async def _read_stream(resp: aiohttp.ClientResponse, stream: Stream) -> None:
    kind = ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind == "hello":
            stream.hello.set()
        elif line.startswith("data: ") and kind == "server":
            data = orjson.loads(line.removeprefix("data: "))
            if data.get("status") == "ACTIVE" and data["id"] not in stream.active_at:
                stream.active_at[data["id"]] = time.time()
                stream.arrived.set()


async def _active_to_browser(
    client: Client, user: DashboardUser, image: str, flavor: str, count: int
) -> tuple[Record, Record]:
    """Boot `count` servers one at a time with the servers page's live stream open."""
    since = time.time()
    stream = Stream()
    url = f"{user.url}/dashboard/events?topics=servers&since={since:.6f}&watch="
    from_compute, from_api = Record(), Record()
    async with user.http.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"the live stream answered {resp.status}")
        reading = asyncio.create_task(_read_stream(resp, stream))
        try:
            async with asyncio.timeout(10):
                await stream.hello.wait()
            for _ in range(count):
                await _one_event(client, stream, image, flavor, from_compute, from_api)
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
    return from_compute, from_api


async def _one_event(
    client: Client, stream: Stream, image: str, flavor: str, from_compute: Record, from_api: Record
) -> None:
    try:
        server = await client.compute.create_server(
            f"live-{uuid.uuid4().hex[:8]}", image=image, flavor=flavor
        )
    except ApiError as exc:
        from_compute.fail(f"create: HTTP {exc.status}")
        return
    url = f"{client.compute.url}/servers/{server.id}"
    deadline = time.monotonic() + EVENT_TIMEOUT_S * 2
    while True:
        _, _, body = await client.request("GET", url)
        status = body["server"]["status"]
        if status == "ACTIVE":
            api_at = time.time()
            launched = body["server"]["OS-SRV-USG:launched_at"]
            launched_at = datetime.fromisoformat(launched).replace(tzinfo=UTC).timestamp()
            break
        if status == "ERROR" or time.monotonic() > deadline:
            from_compute.fail("server went to ERROR" if status == "ERROR" else "not ACTIVE")
            return
        await asyncio.sleep(API_POLL_S)
    try:
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while server.id not in stream.active_at:
                stream.arrived.clear()
                await stream.arrived.wait()
    except TimeoutError:
        from_compute.fail("no ACTIVE event")
        return
    seen = stream.active_at[server.id]
    from_compute.add(max(0.0, seen - launched_at))
    # The event may arrive before the next poll shows ACTIVE: then the API's delay is nil.
    from_api.add(max(0.0, seen - api_at))
