"""The bus contract on the real RabbitMQ, each bus behind a proxy a test can cut."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest

from fabric.bus import Bus
from fabric.bus.amqp import AmqpTransport
from tests.bus_contract import *  # noqa: F403 - the shared suite runs here
from tests.support import CuttableProxy, cuttable_amqp


class AmqpBuses:
    def __init__(self, url: str) -> None:
        self.url = url
        self.stack = contextlib.AsyncExitStack()
        self.proxies: dict[int, CuttableProxy] = {}
        self.all: list[Bus] = []

    async def new(self) -> Bus:
        proxied, proxy = await self.stack.enter_async_context(cuttable_amqp(self.url))
        bus = Bus(AmqpTransport(proxied, name="test", reconnect_interval_s=0.2), retry_pause_s=0.01)
        await bus.start()
        self.proxies[id(bus)] = proxy
        self.all.append(bus)
        return bus

    def cut(self, bus: Bus) -> None:
        self.proxies[id(bus)].cut()

    def kill(self, bus: Bus) -> None:
        proxy = self.proxies[id(bus)]
        proxy.refuse()
        proxy.cut()

    async def dead_letters(self, queue: str) -> list[Any]:
        items: list[Any] = []
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            dead = await channel.declare_queue(f"{queue}.dead", durable=True)
            while (message := await dead.get(fail=False)) is not None:
                items.extend(orjson.loads(message.body))
                await message.ack()
        return items

    async def close(self) -> None:
        for bus in self.all:
            await bus.close(drain_s=0.5)
        await self.stack.aclose()


@pytest.fixture
async def buses(amqp_url: str) -> AsyncIterator[AmqpBuses]:
    made = AmqpBuses(amqp_url)
    yield made
    await made.close()
