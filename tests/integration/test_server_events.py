"""Compute's ServerStatusChanged events on the real bus: one per change of a server's status or
task state, in the order of the changes, naming the server's project, published after commit."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from fabric.bus import Bus
from fabric.client import Client
from fabric.compose import Cloud
from protocol.compute import ServerStatusChanged
from protocol.envelope import Context
from protocol.registry import type_name
from tests.integration.test_identity import Member, member  # noqa: F401 - the fixture
from tests.integration.test_servers import Api, api, login  # noqa: F401 - the fixture

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


class Heard:
    """The ServerStatusChanged events published while it listens, by server."""

    def __init__(self) -> None:
        self.events: list[ServerStatusChanged] = []

    async def on(self, event: ServerStatusChanged, ctx: Context) -> None:
        self.events.append(event)

    def of(self, server_id: str) -> list[ServerStatusChanged]:
        return [e for e in self.events if e.server_id == server_id]

    def states(self, server_id: str) -> list[tuple[str, str | None]]:
        return [(e.status, e.task_state) for e in self.of(server_id)]

    async def until(self, server_id: str, status: str, *, nth: int = 1, timeout_s: float = 15.0) -> None:
        """Until the server has come to rest in `status` for the `nth` time."""
        deadline = time.monotonic() + timeout_s
        while self.states(server_id).count((status, None)) < nth:
            assert time.monotonic() < deadline, f"no {status} for {server_id}: {self.states(server_id)}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def heard(cloud: Cloud) -> AsyncIterator[Heard]:
    bus: Bus | None = cloud.bus
    assert bus is not None
    listener = Heard()
    consumer = await bus.subscribe((type_name(ServerStatusChanged),), listener.on)
    try:
        yield listener
    finally:
        await consumer.stop()


async def test_a_servers_life_is_announced_to_its_project_in_order(
    cloud: Cloud,
    api: Api,  # noqa: F811
    admin: Client,
    member: Member,  # noqa: F811
    heard: Heard,
) -> None:
    flavor = await api.flavor()
    own = await login(cloud, admin, member)
    image = await own.image()
    name = f"evt-{uuid.uuid4().hex[:6]}"
    server = await own.boot(image["id"], flavor["id"], name=name)
    await heard.until(server["id"], "ACTIVE")
    # Published after commit: what the event says, the API shows already.
    status, shown = await own.nova("GET", f"/servers/{server['id']}")
    assert status == 200 and shown["server"]["status"] == "ACTIVE", shown
    action = f"/servers/{server['id']}/action"
    assert (await own.nova("POST", action, {"os-stop": None}))[0] == 202
    await heard.until(server["id"], "SHUTOFF")
    assert (await own.nova("POST", action, {"os-start": None}))[0] == 202
    await heard.until(server["id"], "ACTIVE", nth=2)
    assert (await own.nova("POST", action, {"reboot": {"type": "SOFT"}}))[0] == 202
    await heard.until(server["id"], "ACTIVE", nth=3)
    assert (await own.nova("POST", action, {"os-stop": None}))[0] == 202
    await heard.until(server["id"], "SHUTOFF", nth=2)
    assert (await own.nova("DELETE", f"/servers/{server['id']}"))[0] == 204
    await heard.until(server["id"], "DELETED")

    assert heard.states(server["id"]) == [
        ("BUILD", "scheduling"),  # accepted
        ("BUILD", "spawning"),  # placed
        ("ACTIVE", None),
        ("ACTIVE", "powering-off"),
        ("SHUTOFF", None),
        ("SHUTOFF", "powering-on"),
        ("ACTIVE", None),
        ("REBOOT", "rebooting"),
        ("ACTIVE", None),
        ("ACTIVE", "powering-off"),
        ("SHUTOFF", None),
        ("SHUTOFF", "deleting"),
        ("DELETED", None),
    ]
    events = heard.of(server["id"])
    assert {e.project_id for e in events} == {member.project_id}
    assert {e.name for e in events} == {name}
    assert events[1].host is not None and events[2].host == events[1].host
    assert (await own.nova("GET", f"/servers/{server['id']}"))[0] == 404


async def test_a_build_no_host_can_take_is_announced_as_error(api: Api, heard: Heard) -> None:  # noqa: F811
    image, huge = await api.image(), await api.flavor(disk=100000)
    server = await api.boot(image["id"], huge["id"])
    await heard.until(server["id"], "ERROR")
    assert heard.states(server["id"]) == [("BUILD", "scheduling"), ("ERROR", None)]
    shown = await api.wait(server["id"], "ERROR", timeout_s=1)
    assert heard.of(server["id"])[-1].project_id == shown["tenant_id"]
    assert (await api.nova("DELETE", f"/servers/{server['id']}"))[0] == 204
    await heard.until(server["id"], "DELETED")
    assert heard.states(server["id"])[-2:] == [("ERROR", "deleting"), ("DELETED", None)]
