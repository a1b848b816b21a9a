"""The bus contract on the in-memory broker."""

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker, MemoryTransport
from tests.bus_contract import *  # noqa: F403 - the shared suite runs here


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
