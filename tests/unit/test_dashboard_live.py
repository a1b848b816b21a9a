"""The live stream's routing and its safety-net poll, without a cloud: a server's event reaches
only streams of its project (an admin's too is scoped to its project), and the poll's window
stays open while a server moves, so that a lost event is found by the next poll."""

import time
from typing import Any, cast

from fabric.dashboard import live
from fabric.dashboard.api import Cloud
from fabric.dashboard.sessions import SessionStore
from fabric.service import service_context
from protocol.compute import ServerStatusChanged
from protocol.volume import VolumeStatusChanged


def event(project_id: str, status: str = "ACTIVE", task_state: str | None = None) -> ServerStatusChanged:
    return ServerStatusChanged(
        server_id="s1", project_id=project_id, name="web", status=status, task_state=task_state, host="h1"
    )


async def test_a_servers_event_reaches_the_streams_of_its_project_only() -> None:
    hub = live.LiveHub(None, SessionStore())
    alice = hub.join("a", "p1", False, frozenset({"servers"}))
    alice_volumes = hub.join("a2", "p1", False, frozenset({"volumes"}))
    bob = hub.join("b", "p2", False, frozenset({"servers"}))
    admin = hub.join("c", "p3", True, frozenset({"servers", "hosts"}))
    fleet = hub.join("d", "p3", True, frozenset({"hosts"}))
    await hub._on_event(event("p1"), service_context())
    assert alice.outbox == [("server", {"id": "s1", "name": "web", "status": "ACTIVE", "task_state": None})]
    assert alice.wake.is_set()
    assert not (alice_volumes.outbox or bob.outbox or admin.outbox or fleet.outbox)
    assert "h1" not in str(alice.outbox), "the host is not the viewer's to see"
    await hub._on_event(event("p3", "SHUTOFF"), service_context())
    assert [d["status"] for _, d in admin.outbox] == ["SHUTOFF"] and not fleet.outbox
    # A volume's event is not a reason to ask the API about servers any more.
    await hub._on_event(
        VolumeStatusChanged(volume_id="v1", project_id="p1", status="in-use"), service_context()
    )
    assert alice.hinted_at is None and alice_volumes.outbox == [("volume", {"id": "v1", "status": "in-use"})]


async def test_the_bus_coming_back_makes_every_server_stream_ask_the_api() -> None:
    hub = live.LiveHub(None, SessionStore())
    servers = hub.join("a", "p1", False, frozenset({"servers"}))
    volumes = hub.join("b", "p1", False, frozenset({"volumes"}))
    await hub._restored()
    assert servers.hinted_at is not None and volumes.hinted_at is None


class Api:
    """Compute's `changes-since` list, as the stream asks it."""

    def __init__(self) -> None:
        self.servers: list[dict[str, Any]] = []
        self.asked_since: list[str] = []

    async def get(self, service: str, path: str, **params: str) -> dict[str, Any]:
        self.asked_since.append(params["changes-since"])
        return {"servers": self.servers}


def server(status: str, task_state: str | None = None) -> dict[str, Any]:
    return {"id": "s1", "name": "web", "status": status, "OS-EXT-STS:task_state": task_state}


async def test_the_poll_sends_only_what_the_events_did_not_and_holds_its_window_while_moving() -> None:
    api = Api()
    start = time.time() - 5
    watcher = live.ServerWatcher(cast(Cloud, api), start, [])
    assert watcher.due_in(None) == 0, "a stream asks at once, for what changed before it joined"
    assert watcher.heard({"id": "s1", "status": "BUILD", "task_state": "spawning"})
    api.servers = [server("BUILD", "spawning")]
    assert await watcher.poll() == [], "the event said it already"
    assert watcher.since == start, "while s1 moves, the window stays where it was"
    assert watcher.due_in(None) > live.SAFETY_POLL_S - 1

    # The ACTIVE event was lost: the next poll finds it, and the window moves on.
    api.servers = [server("ACTIVE")]
    assert await watcher.poll() == [{"id": "s1", "name": "web", "status": "ACTIVE", "task_state": None}]
    assert watcher.since > start
    assert not watcher.heard({"id": "s1", "status": "ACTIVE", "task_state": None}), "sent once"
    assert watcher.heard({"id": "s1", "status": "DELETED", "task_state": None})
    assert "s1" not in watcher.known
