"""The dashboard's live stream fed by compute's ServerStatusChanged: how long from the event's
publish to the SSE line reaching the browser (printed; the figures belong in bench), and that an
admin's stream, scoped to its own project, carries no other project's server."""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from fabric.client import Client
from fabric.compose import Cloud
from protocol.compute import ServerStatusChanged
from protocol.envelope import Context
from tests.integration.dashboard_support import WebUser, eventually, image_and_flavor, person

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]

BOOTS = 5
#: A sanity bound, far above what the event takes and far below the API poll kept as a safety
#: net (`live.SAFETY_POLL_S`): a line this late did not come from the event.
SANE_S = 5.0


async def _stream(web: WebUser, url: str, topics: str, into: list[tuple[float, str, Any]]) -> None:
    """Read the SSE stream, noting when each data line arrived."""
    async with web.http.get(f"{url}/dashboard/events?topics={topics}&since={time.time()}") as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        kind = ""
        async for line in resp.content:
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                kind = text[7:]
            elif text.startswith("data: "):
                into.append((time.perf_counter(), kind, orjson.loads(text[6:])))


def _arrived(lines: list[tuple[float, str, Any]], server_id: str, status: str) -> float | None:
    return next(
        (at for at, kind, d in lines if kind == "server" and d["id"] == server_id and d["status"] == status),
        None,
    )


async def _until(lines: list[tuple[float, str, Any]], server_id: str, status: str) -> float:
    """When the stream's line saying `status` for the server arrived (waiting for it)."""
    assert await eventually(lambda: _arrived(lines, server_id, status) is not None), (server_id, lines)
    arrived = _arrived(lines, server_id, status)
    assert arrived is not None
    return arrived


async def test_active_reaches_the_stream_within_milliseconds_of_the_event(
    cloud: Cloud, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = cloud.bus
    assert bus is not None
    published: dict[str, float] = {}
    publish: Callable[..., Awaitable[None]] = bus.publish

    async def noting(event: object, ctx: Context, **kw: Any) -> None:
        if isinstance(event, ServerStatusChanged) and event.status == "ACTIVE" and event.task_state is None:
            published.setdefault(event.server_id, time.perf_counter())
        await publish(event, ctx, **kw)

    monkeypatch.setattr(bus, "publish", noting)  # the compute actor of the test cloud shares this bus

    alice, _ = await person(admin)
    image, flavor = await image_and_flavor(admin)
    lines: list[tuple[float, str, Any]] = []
    admin_lines: list[tuple[float, str, Any]] = []
    delays_ms: list[float] = []
    server_ids: list[str] = []
    async with WebUser(cloud.url) as web, WebUser(cloud.url) as boss:
        await web.login(alice.name, alice.password, alice.project)
        await boss.login(
            cloud.settings.admin_user, cloud.settings.admin_password, cloud.settings.admin_project
        )
        streams = [
            asyncio.create_task(_stream(web, cloud.url, "servers", lines)),
            asyncio.create_task(_stream(boss, cloud.url, "servers,hosts", admin_lines)),
        ]
        try:
            assert await eventually(lambda: any(k == "hello" for _, k, _ in lines), timeout_s=5)
            await asyncio.sleep(0.2)  # the stream's first poll of the API is done
            for i in range(BOOTS):
                await web.get("/servers/new")
                launched = await web.post(
                    "/servers",
                    {"name": f"live-{i}", "image": image, "flavor": flavor, "network": "", "key_name": ""},
                )
                assert launched.status == 303, launched.text[:300]
                server_id = (launched.location or "").rsplit("/", 1)[-1]
                server_ids.append(server_id)
                arrived = await _until(lines, server_id, "ACTIVE")
                delays_ms.append((arrived - published[server_id]) * 1000)
            for server_id in server_ids:
                assert (await web.post(f"/servers/{server_id}/action", {"action": "delete"})).status == 303
            for server_id in server_ids:
                await _until(lines, server_id, "DELETED")
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    print(
        f"\nACTIVE published -> SSE line, {BOOTS} boots: median {statistics.median(delays_ms):.1f} ms, "
        f"max {max(delays_ms):.1f} ms ({', '.join(f'{d:.1f}' for d in delays_ms)})"
    )
    assert max(delays_ms) < SANE_S * 1000, delays_ms
    # The admin's stream is scoped to the admin's project, like the API's list without all_tenants.
    assert not any(kind == "server" and d["id"] in server_ids for _, kind, d in admin_lines), admin_lines
