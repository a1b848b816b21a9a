"""A volume service that has just started waits for the first storage host instead of failing
the first creates with "No valid backend" (a fresh cloud's agent reports a moment later)."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from actors.volume import placement
from actors.volume.placement import Placement
from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from fabric.config import Settings
from fabric.store import Store
from protocol.envelope import Context
from tests.unit.test_volume_states import report


class Written:
    """A store that takes the hosts the service writes and has none to read."""

    async def execute(self, *args: Any) -> None:
        return None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator["Written"]:
        yield self


class Fresh(Placement):
    """Nothing in the database yet: a new cloud."""

    service = "volume"

    async def load_hosts(self) -> None:
        return None


def service() -> Fresh:
    return Fresh(Bus(MemoryBroker().transport()), cast(Store, Written()), Settings())


def ctx() -> Context:
    return Context(request_id="req-1", deadline=time.time() + 5)


async def test_a_create_before_the_first_report_waits_for_it() -> None:
    volumes = service()
    picking = asyncio.create_task(volumes.pick_host(10, backend=None, zone="nova"))
    await asyncio.sleep(0.1)
    assert not picking.done()
    await volumes.on_host_report(report("first"), ctx())
    host = await asyncio.wait_for(picking, 1)
    assert host is not None and host.name == "first"


async def test_after_the_grace_no_host_is_no_valid_backend_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "STARTUP_GRACE_S", 0.2)
    volumes = service()
    started = time.monotonic()
    assert await volumes.pick_host(10, backend=None, zone="nova") is None
    assert 0.15 < time.monotonic() - started < 1
    started = time.monotonic()
    assert await volumes.pick_host(10, backend=None, zone="nova") is None
    assert time.monotonic() - started < 0.05


async def test_once_a_host_has_reported_a_create_that_fits_nowhere_does_not_wait() -> None:
    volumes = service()
    await volumes.on_host_report(report("small", free_gb=5), ctx())
    started = time.monotonic()
    assert await volumes.pick_host(500, backend=None, zone="nova") is None
    assert time.monotonic() - started < 0.05
