"""Live updates: server-sent events, fed by the bus and filtered by the viewer's project and roles.

The gateway process holds one subscription to the bus events a page can show, and hands each
open stream only what its viewer may see:
- `volume.VolumeStatusChanged` carries its project: a viewer of that project gets the volume's
  id and status (a stream first asks the API for the statuses of the page's moving volumes, so
  that a change made before it joined is not lost);
- `scheduler.CapacityReport` (a compute host's capacity, sent at once after every change on the
  host): admins get the host's used and total vCPUs, RAM and disk; for everyone it is a hint that
  servers may have changed, as is `network.DeviceAddressesChanged`;
- servers: compute publishes no event of its own for a server's status, so each stream asks the
  Compute API, with the viewer's token, for the servers changed since it last asked
  (`changes-since`): at once after a hint, every half second while one of the viewer's servers is
  in transition, and every few seconds otherwise. What the viewer sees is thus exactly what the
  API shows them, and the bus never tells a page anything about another project.
A stream sends ids and statuses only; the page then fetches what it shows through the dashboard,
that is, through the APIs.
"""

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from fabric.bus import Bus, Consumer
from fabric.dashboard.api import ApiError, Cloud, iso
from fabric.dashboard.page import HTTP, signed_in
from fabric.dashboard.sessions import SessionStore
from protocol.envelope import Context
from protocol.network import DeviceAddressesChanged
from protocol.registry import type_name
from protocol.scheduler import CapacityReport
from protocol.volume import VolumeStatusChanged

log = logging.getLogger("fabric.dashboard.live")

TOPICS = frozenset({"servers", "volumes", "hosts"})
#: Statuses a server leaves by itself: while the viewer has one, its stream asks often.
MOVING = frozenset({"BUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "MIGRATING", "REBUILD"})
FAST_POLL_S = 0.5
SLOW_POLL_S = 5.0
#: A hint is followed after this delay, so that the change it announces has committed.
HINT_DELAY_S = 0.05
#: Asking again for a little of the window asked before: clocks of processes differ a little.
OVERLAP_S = 2.0
KEEPALIVE_S = 15.0
MAX_WATCHED = 100
_ID = re.compile(r"^[0-9a-fA-F-]{8,64}$")


@dataclass(eq=False)
class Viewer:
    """One open stream: who watches, what, and what waits to be sent to it."""

    session_id: str
    project_id: str
    is_admin: bool
    topics: frozenset[str]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    outbox: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: The latest report of each host since the last send (admins on the fleet page).
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    hinted_at: float | None = None
    closed: bool = False

    def send(self, kind: str, data: dict[str, Any]) -> None:
        self.outbox.append((kind, data))
        self.wake.set()

    def hint(self) -> None:
        if self.hinted_at is None:
            self.hinted_at = time.monotonic()
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class LiveHub:
    """The gateway process's one subscription, fanned out to the open streams."""

    def __init__(self, bus: Bus | None, sessions: SessionStore) -> None:
        self.bus, self.sessions = bus, sessions
        self.viewers: set[Viewer] = set()
        self._subscription: Consumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscribing = asyncio.Lock()
        self.http: aiohttp.ClientSession | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def subscribe(self) -> None:
        """Subscribe at the first stream, not at start: a gateway nobody watches a page on does
        not decode every capacity report of a large fleet. No group: every gateway process hears
        every event, for its own viewers."""
        if self.bus is None or self._subscription is not None:
            return
        async with self._subscribing:
            if self._subscription is not None:
                return
            patterns = tuple(
                type_name(t) for t in (CapacityReport, VolumeStatusChanged, DeviceAddressesChanged)
            )
            try:
                self._subscription = await self.bus.subscribe(patterns, self._on_event)
            except Exception:
                log.exception("dashboard: no live events (cannot subscribe); servers are still polled")

    async def stop(self) -> None:
        self.close_all()
        if self._subscription is not None:
            await self._subscription.stop(drain_s=1.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def keep(self, task: "asyncio.Task[None]") -> None:
        """Own a background task of a page (it is awaited, or cancelled, at stop)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def join(self, session_id: str, project_id: str, is_admin: bool, topics: frozenset[str]) -> Viewer:
        viewer = Viewer(session_id, project_id, is_admin, topics)
        self.viewers.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def session_ended(self, session_id: str) -> None:
        """Signed out, or switched project: its streams end (the page opens a new one)."""
        for viewer in [v for v in self.viewers if v.session_id == session_id]:
            viewer.close()

    def close_all(self) -> None:
        for viewer in list(self.viewers):
            viewer.close()

    async def _on_event(self, event: object, ctx: Context) -> None:
        if isinstance(event, CapacityReport):
            report = {
                "host": event.host,
                "vcpus": event.vcpus,
                "vcpus_used": event.used_vcpus,
                "memory_mb": event.ram_mb,
                "memory_mb_used": event.used_ram_mb,
                "local_gb": event.disk_gb,
                "local_gb_used": event.used_disk_gb,
                "running_vms": event.running,
            }
            for viewer in self.viewers:
                if viewer.is_admin and "hosts" in viewer.topics:
                    viewer.hosts[event.host] = report
                    viewer.wake.set()
                if "servers" in viewer.topics:
                    viewer.hint()
        elif isinstance(event, VolumeStatusChanged):
            data = {"id": event.volume_id, "status": event.status}
            for viewer in self.viewers:
                if viewer.project_id == event.project_id:
                    if "volumes" in viewer.topics:
                        viewer.send("volume", data)
                    if "servers" in viewer.topics:
                        viewer.hint()
        elif isinstance(event, DeviceAddressesChanged):
            for viewer in self.viewers:
                if "servers" in viewer.topics:
                    viewer.hint()


class ServerWatcher:
    """What one stream knows of its viewer's servers, and when it should ask again."""

    def __init__(self, cloud: Cloud, since: float, watched: list[str]) -> None:
        self.cloud, self.since = cloud, since
        #: id -> (status, task_state) as last sent; watched ids start unknown, hence moving.
        self.known: dict[str, tuple[str, str | None]] = {i: ("?", "?") for i in watched[:MAX_WATCHED]}
        self.next_at = 0.0  # ask at once

    @property
    def is_busy(self) -> bool:
        return any(status in MOVING or status == "?" or task for status, task in self.known.values())

    def due_in(self, hinted_at: float | None) -> float:
        now = time.monotonic()
        at = self.next_at
        if hinted_at is not None:
            at = min(at, hinted_at + HINT_DELAY_S)
        return max(0.0, at - now)

    async def poll(self) -> list[dict[str, Any]]:
        """The viewer's servers whose status or task changed since the last poll."""
        started = time.time()
        body = await self.cloud.get("compute", "/servers/detail", **{"changes-since": iso(self.since)})
        self.since = started - OVERLAP_S
        changed = []
        for s in body.get("servers", ()):
            state = (str(s.get("status")), s.get("OS-EXT-STS:task_state"))
            if self.known.get(s["id"]) == state:
                continue
            changed.append(
                {"id": s["id"], "name": s.get("name", ""), "status": state[0], "task_state": state[1]}
            )
            if state[0] == "DELETED":
                self.known.pop(s["id"], None)
            else:
                self.known[s["id"]] = state
        self.next_at = time.monotonic() + (FAST_POLL_S if self.is_busy else SLOW_POLL_S)
        return changed


def _topics(raw: str, is_admin: bool) -> frozenset[str]:
    asked = frozenset(raw.split(",")) & TOPICS if raw else frozenset({"servers"})
    return asked if is_admin else asked - {"hosts"}


def _since(raw: str | None) -> float:
    now = time.time()
    try:
        asked = float(raw) if raw else now
    except ValueError:
        asked = now
    return min(max(asked, now - 600), now) - OVERLAP_S


async def _volumes_now(cloud: Cloud, watched: list[str]) -> list[dict[str, Any]]:
    """The statuses of the page's moving volumes now. A change between the page's rendering and
    this stream's joining had no viewer to go to; asked after joining, nothing falls between
    this answer and the events that follow it."""
    body = await cloud.get("block-storage", "/volumes/detail")
    wanted = set(watched)
    return [{"id": v["id"], "status": v["status"]} for v in body.get("volumes", ()) if v["id"] in wanted]


async def _send(resp: web.StreamResponse, kind: str, data: dict[str, Any]) -> None:
    await resp.write(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


async def events(request: web.Request) -> web.StreamResponse:
    """GET /dashboard/events?topics=servers,volumes,hosts&since=T&watch=ID,...: the stream."""
    session = signed_in(request)
    token = session.token
    assert token is not None
    hub = request.app[LIVE]
    topics = _topics(request.query.get("topics", ""), token.is_admin)
    watched = [i for i in request.query.get("watch", "").split(",") if _ID.match(i)]
    watcher = ServerWatcher(Cloud(request.app[HTTP], token), _since(request.query.get("since")), watched)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await hub.subscribe()
    await resp.prepare(request)
    viewer = hub.join(session.id, token.project.id, token.is_admin, topics)
    last_write = time.monotonic()
    try:
        await _send(resp, "hello", {"topics": sorted(topics)})
        if "volumes" in topics and watched:
            for data in await _volumes_now(watcher.cloud, watched):
                await _send(resp, "volume", data)
        while not viewer.closed:
            wait_s = watcher.due_in(viewer.hinted_at) if "servers" in topics else KEEPALIVE_S
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait_s, KEEPALIVE_S)):
                        await viewer.wake.wait()
            viewer.wake.clear()
            if viewer.closed:
                break
            outbox, viewer.outbox = viewer.outbox, []
            hosts, viewer.hosts = viewer.hosts, {}
            for kind, data in outbox:
                await _send(resp, kind, data)
            for report in hosts.values():
                await _send(resp, "host", report)
            if "servers" in topics and watcher.due_in(viewer.hinted_at) == 0:
                viewer.hinted_at = None
                for server in await watcher.poll():
                    await _send(resp, "server", server)
                    last_write = time.monotonic()
            if outbox or hosts:
                last_write = time.monotonic()
            if time.monotonic() - last_write >= KEEPALIVE_S:
                await resp.write(b": keep-alive\n\n")
                last_write = time.monotonic()
    except ApiError as exc:
        # The token was revoked or expired (401), or compute is down: the page's script
        # reconnects, and a session that is gone gets a 401 that stops it.
        log.info("dashboard stream ended", extra={"status": exc.status})
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass
    finally:
        hub.leave(viewer)
    return resp


LIVE = web.AppKey("dashboard.live", LiveHub)
