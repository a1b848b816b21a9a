"""Live updates: server-sent events, fed by the bus and filtered by the viewer's project and roles.

The gateway process holds one subscription to the bus events a page can show, and hands each
open stream only what its viewer may see:
- `volume.VolumeStatusChanged` carries its project: a viewer of that project gets the volume's
  id and status (a stream first asks the API for the statuses of the page's moving volumes, so
  that a change made before it joined is not lost);
- `scheduler.CapacityReport` (a compute host's capacity, sent at once after every change on the
  host): admins get the host's used and total vCPUs, RAM and disk;
- `compute.ServerStatusChanged` carries its project too: a viewer of that project gets the
  server's id, name, status and task state the moment it arrives, admins included (a stream is
  scoped to one project, as the API's server list is without `all_tenants`; the fleet page asks
  for hosts only). The bus never tells a page anything about another project.
The Compute API is still asked, with the viewer's token, for the servers changed since
(`changes-since`), but only as a safety net: at a stream's start (a change between the page's
rendering and the stream's joining had no viewer to go to), after the bus reconnected (events
sent meanwhile are lost to a private subscription), and every `SAFETY_POLL_S`, its window held
open while one of the viewer's servers is moving, so that a lost event is found at the next poll.
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
from protocol.compute import ServerStatusChanged
from protocol.envelope import Context
from protocol.registry import type_name
from protocol.scheduler import CapacityReport
from protocol.volume import VolumeStatusChanged

log = logging.getLogger("fabric.dashboard.live")

TOPICS = frozenset({"servers", "volumes", "hosts"})
#: Statuses a server leaves by itself: while the viewer has one, the poll's window stays open.
MOVING = frozenset({"BUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "MIGRATING", "REBUILD"})
#: Events carry every change; the API is asked this often only to find one that was lost.
SAFETY_POLL_S = 15.0
#: A hint (the bus came back) is followed after this delay, letting the stream settle first.
HINT_DELAY_S = 0.05
#: Asking again for a little of the window asked before: clocks of processes differ a little.
OVERLAP_S = 2.0
#: The oldest change a poll asks for, however long a server has been moving.
MAX_WINDOW_S = 600.0
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
            patterns = tuple(type_name(t) for t in (CapacityReport, VolumeStatusChanged, ServerStatusChanged))
            try:
                self._subscription = await self.bus.subscribe(patterns, self._on_event)
            except Exception:
                log.exception("dashboard: no live events (cannot subscribe); servers are still polled")
                return
            self.bus.on_restored(self._restored)

    async def _restored(self) -> None:
        """Events sent while the bus was away are lost to this private subscription: every
        stream asks the API now for what it missed."""
        for viewer in self.viewers:
            if "servers" in viewer.topics:
                viewer.hint()

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
        elif isinstance(event, ServerStatusChanged):
            server = {
                "id": event.server_id,
                "name": event.name,
                "status": event.status,
                "task_state": event.task_state,
            }
            for viewer in self.viewers:
                if viewer.project_id == event.project_id and "servers" in viewer.topics:
                    viewer.send("server", server)
        elif isinstance(event, VolumeStatusChanged):
            data = {"id": event.volume_id, "status": event.status}
            for viewer in self.viewers:
                if viewer.project_id == event.project_id and "volumes" in viewer.topics:
                    viewer.send("volume", data)


class ServerWatcher:
    """What one stream has sent of its viewer's servers, and when it asks the API again."""

    def __init__(self, cloud: Cloud, since: float, watched: list[str]) -> None:
        self.cloud, self.since = cloud, since
        #: id -> (status, task_state) as last sent; watched ids start unknown, hence moving.
        self.known: dict[str, tuple[str, str | None]] = {i: ("?", "?") for i in watched[:MAX_WATCHED]}
        self.next_at = 0.0  # ask at once: what changed between the page's rendering and the join

    @property
    def is_busy(self) -> bool:
        return any(status in MOVING or status == "?" or task for status, task in self.known.values())

    def due_in(self, hinted_at: float | None) -> float:
        now = time.monotonic()
        at = self.next_at
        if hinted_at is not None:
            at = min(at, hinted_at + HINT_DELAY_S)
        return max(0.0, at - now)

    def heard(self, server: dict[str, Any]) -> bool:
        """Note a server's state from an event: whether it is news to the page (a poll may have
        sent it already)."""
        return self._note(server["id"], (server["status"], server["task_state"]))

    def _note(self, server_id: str, state: tuple[str, str | None]) -> bool:
        if self.known.get(server_id) == state:
            return False
        if state[0] == "DELETED":
            self.known.pop(server_id, None)
        else:
            self.known[server_id] = state
        return True

    async def poll(self) -> list[dict[str, Any]]:
        """The viewer's servers whose status or task changed since the window's start, that the
        stream has not sent yet."""
        started = time.time()
        body = await self.cloud.get("compute", "/servers/detail", **{"changes-since": iso(self.since)})
        changed = []
        for s in body.get("servers", ()):
            state = (str(s.get("status")), s.get("OS-EXT-STS:task_state"))
            if self._note(s["id"], state):
                changed.append(
                    {"id": s["id"], "name": s.get("name", ""), "status": state[0], "task_state": state[1]}
                )
        # While one of its servers moves, the window stays where it was: should the event of the
        # server's next change be lost, the next poll still finds the change.
        self.since = started - OVERLAP_S if not self.is_busy else max(self.since, started - MAX_WINDOW_S)
        self.next_at = time.monotonic() + SAFETY_POLL_S
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
                if kind != "server" or watcher.heard(data):
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
