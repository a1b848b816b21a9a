"""The AMQP transport, on aio-pika's robust connection.

Topology:
- the default exchange carries calls and casts straight to a service's queue (`identity`) or an
  agent's (`compute.<host>`); each such queue is durable and dead-letters into `fabric.dead`,
  which routes to `<queue>.dead`;
- `fabric.events` (topic) carries events; a subscription is a queue bound to it, private to the
  process (exclusive, gone with the connection) or shared by a named group (durable);
- replies use RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): no reply queue at all.

aio-pika restores channels, queues, bindings and consumers after a reconnect, but not the
direct reply-to consumer (a pseudo-queue it cannot re-declare), so we re-open that one ourselves.
Each consumer gets its own channel, so its prefetch is its own and closing it gives back exactly
the frames it held.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic

from fabric.bus.transport import OnDelivery

log = logging.getLogger("fabric.bus.amqp")

EVENTS = "fabric.events"
DEAD = "fabric.dead"
REPLY_TO = "amq.rabbitmq.reply-to"
JSON = "application/json"
#: How long to wait for the broker to answer a consumer cancel or a channel close.
CONTROL_TIMEOUT_S = 2.0


class AmqpDelivery:
    __slots__ = ("_message", "body", "redelivered", "reply_to")

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        self.body = message.body
        self.redelivered = bool(message.redelivered)
        self.reply_to = message.reply_to

    async def ack(self) -> None:
        await _settle(self._message.ack())

    async def requeue(self) -> None:
        await _settle(self._message.nack(requeue=True))

    async def dead_letter(self) -> None:
        await _settle(self._message.reject(requeue=False))


async def _settle(op: Any) -> None:
    # A channel that closed under us already gave the frame back to the broker, which will
    # deliver it again: nothing is lost by ignoring the failure to settle it here.
    try:
        await op
    except (aiormq.exceptions.AMQPError, aio_pika.exceptions.ChannelInvalidStateError, RuntimeError) as exc:
        log.warning("could not settle a frame; the broker will redeliver it", extra={"error": repr(exc)})


class AmqpTransport:
    def __init__(self, url: str, *, name: str = "fabric", reconnect_interval_s: float = 0.5) -> None:
        self.url = url
        self.name = name
        self.reconnect_interval_s = reconnect_interval_s
        self.on_replies: Callable[[bytes], None] = lambda body: None
        self.on_lost: Callable[[], None] = lambda: None
        self.on_restored: Callable[[], None] = lambda: None
        self._conn: AbstractRobustConnection | None = None
        self._rpc: AbstractRobustChannel | None = None
        self._confirm: AbstractRobustChannel | None = None
        self._channels: set[AbstractRobustChannel] = set()  # strong refs: robust restore needs them
        self._specs: dict[str, dict[str, Any]] = {}  # queue name -> declare arguments
        self._connected = False
        self._closing = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self._conn = await aio_pika.connect_robust(
            self.url,
            client_properties={"connection_name": self.name},
            reconnect_interval=self.reconnect_interval_s,
        )
        self._conn.close_callbacks.add(self._closed)
        self._conn.reconnect_callbacks.add(self._reconnected)
        self._rpc = await self._channel(confirms=False)
        self._confirm = await self._channel(confirms=True)
        await self._confirm.declare_exchange(EVENTS, aio_pika.ExchangeType.TOPIC, durable=True)
        await self._confirm.declare_exchange(DEAD, aio_pika.ExchangeType.DIRECT, durable=True)
        await self._consume_replies()
        self._connected = True

    async def close(self) -> None:
        self._closing = True
        self._connected = False
        if self._conn is not None:
            await self._conn.close()
        self._channels.clear()

    async def _channel(self, *, confirms: bool, prefetch: int = 0) -> AbstractRobustChannel:
        assert self._conn is not None, "connect() first"
        channel = self._conn.channel(publisher_confirms=confirms)
        await channel.initialize()
        if prefetch:
            await channel.set_qos(prefetch_count=prefetch)
        self._channels.add(channel)
        return channel

    async def _consume_replies(self) -> None:
        assert self._rpc is not None
        raw = await self._rpc.get_underlay_channel()
        await raw.basic_consume(REPLY_TO, self._on_reply_frame, no_ack=True)

    async def _on_reply_frame(self, message: aiormq.abc.DeliveredMessage) -> None:
        self.on_replies(message.body)

    def _closed(self, _conn: object, exc: BaseException | None = None) -> None:
        if self._closing:
            return
        self._connected = False
        log.warning("AMQP connection lost", extra={"error": repr(exc)})
        self.on_lost()

    async def _reconnected(self, _conn: object) -> None:
        await self._consume_replies()
        self._connected = True
        self.on_restored()

    # --- topology --------------------------------------------------------------------------

    def _dead_lettered(self, name: str) -> dict[str, Any]:
        return {
            "durable": True,
            "arguments": {"x-dead-letter-exchange": DEAD, "x-dead-letter-routing-key": name},
        }

    async def declare_queue(self, name: str) -> None:
        assert self._confirm is not None
        self._specs[name] = self._dead_lettered(name)
        await self._confirm.declare_queue(name, **self._specs[name])
        dead = await self._confirm.declare_queue(f"{name}.dead", durable=True)
        await dead.bind(DEAD, routing_key=name)

    async def declare_subscription(self, patterns: tuple[str, ...], group: str | None) -> str:
        assert self._confirm is not None
        if group is None:
            # aio-pika names it on our side, so the same name comes back after a reconnect.
            queue = await self._confirm.declare_queue(exclusive=True, auto_delete=True)
            self._specs[queue.name] = {"exclusive": True, "auto_delete": True}
        else:
            await self.declare_queue(f"events.{group}")
            queue = await self._confirm.declare_queue(f"events.{group}", **self._specs[f"events.{group}"])
        for pattern in patterns:
            await queue.bind(EVENTS, routing_key=pattern)
        return queue.name

    async def delete_queue(self, name: str) -> None:
        assert self._confirm is not None
        self._specs.pop(name, None)
        await self._confirm.queue_delete(name)
        await self._confirm.queue_delete(f"{name}.dead")

    # --- sending ---------------------------------------------------------------------------

    async def send_request(self, queue: str, body: bytes) -> None:
        assert self._rpc is not None
        raw = await self._rpc.get_underlay_channel()
        await raw.basic_publish(
            body,
            exchange="",
            routing_key=queue,
            properties=Basic.Properties(content_type=JSON, delivery_mode=1, reply_to=REPLY_TO),
        )

    async def send_reply(self, reply_to: str, body: bytes) -> None:
        assert self._rpc is not None
        raw = await self._rpc.get_underlay_channel()
        await raw.basic_publish(
            body,
            exchange="",
            routing_key=reply_to,
            properties=Basic.Properties(content_type=JSON, delivery_mode=1),
        )

    async def _confirmed(
        self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any] | None = None
    ) -> None:
        assert self._confirm is not None
        raw = await self._confirm.get_underlay_channel()
        result = await raw.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=Basic.Properties(content_type=JSON, delivery_mode=2, headers=headers),
        )
        if not isinstance(result, Basic.Ack):
            raise aio_pika.exceptions.DeliveryError(None, result)  # type: ignore[arg-type]

    async def send_command(self, queue: str, body: bytes) -> None:
        await self._confirmed("", queue, body)

    async def send_event(self, topic: str, body: bytes) -> None:
        await self._confirmed(EVENTS, topic, body)

    async def forward(self, queue: str, body: bytes, reply_to: str | None) -> None:
        if reply_to is None:
            await self._confirmed("", queue, body)
            return
        assert self._rpc is not None
        raw = await self._rpc.get_underlay_channel()
        await raw.basic_publish(
            body,
            exchange="",
            routing_key=queue,
            properties=Basic.Properties(content_type=JSON, delivery_mode=1, reply_to=reply_to),
        )

    async def send_dead(self, queue: str, body: bytes, reason: str) -> None:
        await self._confirmed(DEAD, queue, body, {"x-fabric-reason": reason})

    # --- consuming -------------------------------------------------------------------------

    async def consume(self, queue: str, prefetch: int, on_delivery: OnDelivery) -> "AmqpSubscription":
        channel = await self._channel(confirms=False, prefetch=prefetch)
        # Declared (not merely looked up) on the consumer's own channel, so that the robust
        # channel re-declares it and restarts the consumer after a reconnect.
        q = await channel.declare_queue(queue, **self._specs.get(queue, {"passive": True}))

        async def deliver(message: AbstractIncomingMessage) -> None:
            on_delivery(AmqpDelivery(message))

        tag = await q.consume(deliver)
        return AmqpSubscription(self, channel, q, tag)


class AmqpSubscription:
    def __init__(
        self, transport: AmqpTransport, channel: AbstractRobustChannel, queue: Any, tag: str
    ) -> None:
        self._transport, self._channel, self._queue, self._tag = transport, channel, queue, tag

    async def cancel(self) -> None:
        # With the connection down the consumer is gone already; waiting for the broker's
        # answer would wait for a reconnection that may never come.
        if not self._transport.is_connected:
            return
        try:
            async with asyncio.timeout(CONTROL_TIMEOUT_S):
                await self._queue.cancel(self._tag)
        except (
            TimeoutError,
            aiormq.exceptions.AMQPError,
            aio_pika.exceptions.ChannelInvalidStateError,
            RuntimeError,
        ):
            pass  # the channel is gone already, and with it our consumer

    async def close(self) -> None:
        # Closing the channel hands back every frame it still held, marked redelivered.
        self._transport._channels.discard(self._channel)
        if not self._channel.is_closed:
            try:
                async with asyncio.timeout(CONTROL_TIMEOUT_S):
                    await self._channel.close()
            except (TimeoutError, aiormq.exceptions.AMQPError, RuntimeError):
                pass
