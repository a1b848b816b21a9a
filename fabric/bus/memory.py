"""An in-memory broker with RabbitMQ's semantics, for unit tests and one-process runs.

Queues hold frames until a consumer with room takes them; a frame delivered but not settled
when its consumer goes away returns to the queue marked redelivered, exactly as RabbitMQ does
when a channel closes. `MemoryBroker.cut(transport)` drops a "connection" the way a network
failure would, so reconnect behaviour is testable without sockets.
"""

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fabric.bus.transport import OnDelivery


def topic_matches(pattern: str, topic: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""
    return _match(pattern.split("."), topic.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


@dataclass(eq=False)
class _Frame:
    body: bytes
    reply_to: str | None
    redelivered: bool = False


@dataclass(eq=False)
class _Consumer:
    transport: "MemoryTransport"
    prefetch: int
    on_delivery: OnDelivery
    unsettled: set["MemoryDelivery"] = field(default_factory=set)
    active: bool = True


@dataclass(eq=False)
class _Queue:
    name: str
    exclusive_to: "MemoryTransport | None" = None
    frames: deque[_Frame] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)
    next_consumer: int = 0


class MemoryDelivery:
    def __init__(self, broker: "MemoryBroker", queue: _Queue, consumer: _Consumer, frame: _Frame):
        self.body = frame.body
        self.redelivered = frame.redelivered
        self.reply_to = frame.reply_to
        self._broker, self._queue, self._consumer, self._frame = broker, queue, consumer, frame
        self._settled = False

    def _settle(self) -> bool:
        if self._settled or self not in self._consumer.unsettled:
            return False  # the connection went away first: the frame is back in the queue
        self._settled = True
        self._consumer.unsettled.discard(self)
        self._broker._pump(self._queue)
        return True

    async def ack(self) -> None:
        self._settle()

    async def requeue(self) -> None:
        if self._settle():
            self._frame.redelivered = True
            self._queue.frames.appendleft(self._frame)
            self._broker._pump(self._queue)

    async def dead_letter(self) -> None:
        if self._settle():
            self._broker._enqueue(f"{self._queue.name}.dead", _Frame(self._frame.body, None))


class MemoryBroker:
    """The shared state of every MemoryTransport in one process: queues and bindings."""

    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = {}
        self.bindings: list[tuple[str, str]] = []  # (pattern, queue)
        self.transports: dict[str, MemoryTransport] = {}
        self._ids = itertools.count(1)

    def transport(self) -> "MemoryTransport":
        return MemoryTransport(self)

    def frames_in(self, queue: str) -> list[bytes]:
        q = self.queues.get(queue)
        return [f.body for f in q.frames] if q else []

    def cut(self, transport: "MemoryTransport", *, down_s: float = 0.05) -> None:
        """Drop a transport's connection as a network failure would, then restore it."""
        transport._drop()
        asyncio.get_running_loop().call_later(down_s, transport._restore)

    def kill(self, transport: "MemoryTransport") -> None:
        """Drop a transport's connection for good, as when its process dies."""
        transport._drop()

    def _declare(self, name: str, exclusive_to: "MemoryTransport | None" = None) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = _Queue(name, exclusive_to)
        return q

    def _enqueue(self, name: str, frame: _Frame) -> None:
        q = self.queues.get(name)
        if q is None:
            return  # like the default exchange: a frame for no queue is dropped
        q.frames.append(frame)
        self._pump(q)

    def _pump(self, q: _Queue) -> None:
        while q.frames:
            consumer = self._next_with_room(q)
            if consumer is None:
                return
            frame = q.frames.popleft()
            delivery = MemoryDelivery(self, q, consumer, frame)
            consumer.unsettled.add(delivery)
            asyncio.get_running_loop().call_soon(consumer.on_delivery, delivery)

    def _next_with_room(self, q: _Queue) -> _Consumer | None:
        n = len(q.consumers)
        for i in range(n):
            c = q.consumers[(q.next_consumer + i) % n]
            if c.active and c.transport.is_connected and len(c.unsettled) < c.prefetch:
                q.next_consumer = (q.next_consumer + i + 1) % n
                return c
        return None

    def _release(self, consumer: _Consumer, q: _Queue) -> None:
        """A consumer is gone: what it held goes back to the queue, marked redelivered."""
        held = list(consumer.unsettled)
        consumer.unsettled.clear()
        for delivery in reversed(held):
            delivery._frame.redelivered = True
            q.frames.appendleft(delivery._frame)
        self._pump(q)


class MemoryTransport:
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.address = f"memory-reply-{next(broker._ids)}"
        self.on_replies: Callable[[bytes], None] = lambda body: None
        self.on_lost: Callable[[], None] = lambda: None
        self.on_restored: Callable[[], None] = lambda: None
        self._connected = False
        self._consumers: list[tuple[_Queue, _Consumer]] = []
        self._restored = asyncio.Event()

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self.broker.transports[self.address] = self
        self._connected = True
        self._restored.set()

    async def close(self) -> None:
        for q, c in self._consumers:
            c.active = False
            if c in q.consumers:
                q.consumers.remove(c)
            self.broker._release(c, q)
        self._consumers.clear()
        self._connected = False
        self.broker.transports.pop(self.address, None)
        for name in [n for n, q in self.broker.queues.items() if q.exclusive_to is self]:
            del self.broker.queues[name]

    def _drop(self) -> None:
        self._connected = False
        self._restored.clear()
        for q, c in self._consumers:
            self.broker._release(c, q)
        self.on_lost()

    def _restore(self) -> None:
        self._connected = True
        self._restored.set()
        for q, _ in self._consumers:
            self.broker._pump(q)
        self.on_restored()

    async def _ready(self) -> None:
        if not self._connected:
            await self._restored.wait()

    async def declare_queue(self, name: str) -> None:
        await self._ready()
        self.broker._declare(name)
        self.broker._declare(f"{name}.dead")

    async def declare_subscription(self, patterns: tuple[str, ...], group: str | None) -> str:
        await self._ready()
        if group is None:
            name = f"events.{self.address}.{next(self.broker._ids)}"
            self.broker._declare(name, exclusive_to=self)
        else:
            name = f"events.{group}"
            self.broker._declare(name)
            self.broker._declare(f"{name}.dead")
        for pattern in patterns:
            if (pattern, name) not in self.broker.bindings:
                self.broker.bindings.append((pattern, name))
        return name

    async def delete_queue(self, name: str) -> None:
        self.broker.queues.pop(name, None)
        self.broker.bindings = [(p, q) for p, q in self.broker.bindings if q != name]

    async def send_request(self, queue: str, body: bytes) -> None:
        await self._ready()
        self.broker._enqueue(queue, _Frame(body, self.address))

    async def send_command(self, queue: str, body: bytes) -> None:
        await self._ready()
        self.broker._enqueue(queue, _Frame(body, None))

    async def send_event(self, topic: str, body: bytes) -> None:
        await self._ready()
        for pattern, queue in self.broker.bindings:
            if topic_matches(pattern, topic):
                self.broker._enqueue(queue, _Frame(body, None))

    async def send_reply(self, reply_to: str, body: bytes) -> None:
        await self._ready()
        target = self.broker.transports.get(reply_to)
        if target is not None and target.is_connected:
            asyncio.get_running_loop().call_soon(target.on_replies, body)

    async def forward(self, queue: str, body: bytes, reply_to: str | None) -> None:
        await self._ready()
        self.broker._enqueue(queue, _Frame(body, reply_to))

    async def send_dead(self, queue: str, body: bytes, reason: str) -> None:
        await self._ready()
        self.broker._enqueue(f"{queue}.dead", _Frame(body, None))

    async def consume(self, queue: str, prefetch: int, on_delivery: OnDelivery) -> "MemorySubscription":
        await self._ready()
        q = self.broker._declare(queue)
        consumer = _Consumer(self, prefetch, on_delivery)
        q.consumers.append(consumer)
        self._consumers.append((q, consumer))
        self.broker._pump(q)
        return MemorySubscription(self, q, consumer)


class MemorySubscription:
    def __init__(self, transport: MemoryTransport, queue: _Queue, consumer: _Consumer) -> None:
        self._transport, self._queue, self._consumer = transport, queue, consumer

    async def cancel(self) -> None:
        self._consumer.active = False
        if self._consumer in self._queue.consumers:
            self._queue.consumers.remove(self._consumer)

    async def close(self) -> None:
        await self.cancel()
        pair = (self._queue, self._consumer)
        if pair in self._transport._consumers:
            self._transport._consumers.remove(pair)
        self._transport.broker._release(self._consumer, self._queue)
