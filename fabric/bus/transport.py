"""The seam between the bus's semantics and the thing that moves bytes.

`fabric.bus.core.Bus` owns every rule (deadlines, batching, acks after handling, bounded
redelivery, dead letters, late replies); a transport only moves opaque frames between named
queues, as RabbitMQ does. Two transports implement this: AMQP over aio-pika and an in-memory
broker. Because the rules live above the seam, both buses behave the same by construction, and
one contract test suite checks it.
"""

from collections.abc import Callable
from typing import Protocol


class Delivery(Protocol):
    """One frame taken from a queue; it stays owned by this consumer until settled once."""

    body: bytes
    redelivered: bool
    reply_to: str | None

    async def ack(self) -> None: ...

    async def requeue(self) -> None:
        """Give the frame back untouched (we are stopping and never looked at it)."""

    async def dead_letter(self) -> None:
        """Reject it to the queue's dead-letter queue."""


OnDelivery = Callable[[Delivery], None]


class Subscription(Protocol):
    """A running consumer on one queue."""

    async def cancel(self) -> None:
        """Stop new frames (basic.cancel); frames in hand stay ours until settled."""

    async def close(self) -> None:
        """Give back to the queue, marked redelivered, every frame still unsettled."""


class Transport(Protocol):
    #: Called with the body of every reply frame that reaches this process.
    on_replies: Callable[[bytes], None]
    #: Called when the connection is lost (pending replies can no longer arrive) and when it
    #: has been restored (queues, bindings and consumers are back).
    on_lost: Callable[[], None]
    on_restored: Callable[[], None]

    @property
    def is_connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def declare_queue(self, name: str) -> None:
        """A durable queue with a dead-letter queue `<name>.dead` beside it. Idempotent."""

    async def declare_subscription(self, patterns: tuple[str, ...], group: str | None) -> str:
        """A queue bound to the event topics; `group` None: private to this process and gone
        with it; otherwise a durable queue shared by every subscriber of that group."""

    async def delete_queue(self, name: str) -> None: ...

    async def send_request(self, queue: str, body: bytes) -> None:
        """A frame of calls, with this process's reply address; not persisted."""

    async def send_command(self, queue: str, body: bytes) -> None:
        """A frame of casts, persisted; returns once the broker has confirmed it."""

    async def send_event(self, topic: str, body: bytes) -> None:
        """A frame of events to the topic exchange, confirmed."""

    async def send_reply(self, reply_to: str, body: bytes) -> None: ...

    async def forward(self, queue: str, body: bytes, reply_to: str | None) -> None:
        """Put a frame back on a queue with the reply address it came with (a call's replies
        still go to its caller); confirmed and persisted when it has no reply address."""

    async def send_dead(self, queue: str, body: bytes, reason: str) -> None:
        """A frame straight to `<queue>.dead`, confirmed."""

    async def consume(self, queue: str, prefetch: int, on_delivery: OnDelivery) -> Subscription:
        """Deliver frames from `queue` (declared before), at most `prefetch` unsettled at once."""
