"""The bus contract on the in-memory broker."""

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker, MemoryTransport
from protocol.system import Echo
from tests.bus_contract import *  # noqa: F403 - the shared suite runs here
from tests.bus_contract import ctx, eventually


class MemoryBuses:
    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.all: list[Bus] = []

    async def new(self) -> Bus:
        bus = Bus(self.broker.transport(), retry_pause_s=0.01)
        await bus.start()
        self.all.append(bus)
        return bus

    def cut(self, bus: Bus) -> None:
        assert isinstance(bus.transport, MemoryTransport)
        self.broker.cut(bus.transport)

    def kill(self, bus: Bus) -> None:
        assert isinstance(bus.transport, MemoryTransport)
        self.broker.kill(bus.transport)

    async def dead_letters(self, queue: str) -> list[Any]:
        return [item for body in self.broker.frames_in(f"{queue}.dead") for item in orjson.loads(body)]

    async def close(self) -> None:
        for bus in self.all:
            await bus.close(drain_s=0.5)


@pytest.fixture
async def buses() -> AsyncIterator[MemoryBuses]:
    made = MemoryBuses()
    yield made
    await made.close()


async def test_an_unconfirmed_cast_the_broker_never_took_is_logged(
    buses: MemoryBuses, caplog: pytest.LogCaptureFixture
) -> None:
    client = await buses.new()
    await client.cast("test.lost", Echo(payload="declared"), ctx())
    assert isinstance(client.transport, MemoryTransport)
    buses.broker.kill(client.transport)
    with caplog.at_level(logging.WARNING, logger="fabric.bus"):
        await client.cast("test.lost", Echo(payload="lost"), ctx(), ttl_s=0.1, confirm=False)
        await eventually(lambda: any(r.message == "unconfirmed message lost" for r in caplog.records))
    lost = next(r for r in caplog.records if r.message == "unconfirmed message lost")
    assert lost.__dict__["target"] == "test.lost" and lost.__dict__["type"].endswith("Echo")
