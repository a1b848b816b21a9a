"""The bus: `call`, `cast`, `publish`, and consumers that serve queues and subscriptions.

Semantics, identical over every transport:

- `call` sends a request and waits for its reply until the deadline (the context's, bounded by
  `timeout_s`); a late reply is dropped. If the connection is lost while waiting, the reply can
  never come (the reply address died with the connection), so the call fails at once with
  `Unavailable` rather than waiting out its deadline.
- `cast` returns once the broker has confirmed the command; the consumer acks it only after its
  handler finished. A handler that raises an unexpected exception is retried with a growing
  pause; after `max_attempts` the envelope goes to the queue's dead-letter queue. A typed
  `FabricError` from a cast handler is a final answer (logged, not retried).
- `publish` sends an event to every subscription whose pattern matches its type name.
- A handler that raises during a call yields `Internal(request_id)` to the caller, never a hang.

Coalescing: under load, many envelopes for the same queue (and many replies for the same
caller) are written as one frame, because with aio-pika a call costs mostly client-library work
per AMQP message on both sides. Each envelope keeps its own id, deadline and attempt count; a
frame is acked after every envelope in it was handled, and only the envelopes that failed are
sent again, so coalescing changes no per-message rule. A frame the broker redelivers (its
consumer died mid-way) has each of its envelopes counted as one more attempt before it is handled
again, which bounds poison messages that crash the process itself.
"""

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fabric import metrics
from fabric.bus.transport import Delivery, Subscription, Transport
from fabric.logs import actor_var, request_id_var
from protocol.envelope import Context
from protocol.errors import FabricError, Internal, Invalid, Timeout, Unavailable
from protocol.wire import (
    decode_envelope,
    decode_reply,
    encode_envelope,
    encode_error,
    encode_reply,
    join_frame,
    name_of,
    split_frame,
    with_attempt,
)

log = logging.getLogger("fabric.bus")

Handler = Callable[[Any, Context], Awaitable[object | None]]

DEFAULT_CALL_TIMEOUT_S = 60.0
DEFAULT_CAST_TTL_S = 3600.0


class Bus:
    def __init__(
        self,
        transport: Transport,
        *,
        max_attempts: int = 5,
        max_batch: int = 256,
        retry_pause_s: float = 0.05,
    ) -> None:
        self.transport = transport
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self.retry_pause_s = retry_pause_s
        transport.on_replies = self._on_replies
        transport.on_lost = self._on_lost
        transport.on_restored = self._on_restored
        self._pending: dict[str, asyncio.Future[object | None]] = {}
        self._outboxes: dict[tuple[str, str], _Outbox] = {}
        self._declared: dict[str, asyncio.Future[None]] = {}
        self._consumers: set[Consumer] = set()
        self._restore_hooks: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_connected(self) -> bool:
        return self.transport.is_connected

    async def start(self) -> None:
        await self.transport.connect()

    async def close(self, *, drain_s: float = 10.0) -> None:
        """Stop every consumer (letting in-flight handlers finish), then disconnect."""
        await asyncio.gather(*(c.stop(drain_s=drain_s) for c in list(self._consumers)))
        for outbox in self._outboxes.values():
            await outbox.flushed(timeout_s=drain_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_pending(Unavailable("bus closed"))
        await self.transport.close()

    def on_restored(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` after every reconnect: events sent while we were away are lost to
        private subscriptions, so whoever keeps state from events re-reads it here."""
        self._restore_hooks.append(hook)

    # --- sending -------------------------------------------------------------------------

    async def call(
        self,
        queue: str,
        message: object,
        ctx: Context,
        *,
        timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
    ) -> Any:
        """Send `message` to `queue` and return the reply; raise the typed error replied."""
        if ctx.deadline > time.time() + timeout_s:  # else `within` would return the same context
            ctx = ctx.within(timeout_s)
        left = ctx.seconds_left()
        what = f"{name_of(message)} on {queue}"
        if left <= 0:
            raise Timeout(what)
        envelope_id = uuid.uuid4().hex
        body = encode_envelope(envelope_id, message, ctx)
        reply: asyncio.Future[object | None] = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = reply
        try:
            async with asyncio.timeout(left):
                await self._ensure_queue(queue)
                await self._outbox("request", queue).add(body, ctx.deadline)
                return await reply
        except TimeoutError:
            raise Timeout(what) from None
        finally:
            self._pending.pop(envelope_id, None)

    async def cast(
        self,
        queue: str,
        message: object,
        ctx: Context,
        *,
        ttl_s: float = DEFAULT_CAST_TTL_S,
        confirm: bool = True,
    ) -> None:
        """Send a command; return once the broker has it (publisher confirm). `confirm=False`:
        return once it is queued to be sent (see `_unconfirmed`)."""
        ctx = dataclasses.replace(ctx, deadline=time.time() + ttl_s)
        body = encode_envelope(uuid.uuid4().hex, message, ctx)
        await self._ensure_queue(queue)
        sent = self._outbox("command", queue).add(body, ctx.deadline)
        if confirm:
            await sent
        else:
            _unconfirmed(sent, message, queue)

    async def publish(
        self, event: object, ctx: Context, *, ttl_s: float = DEFAULT_CAST_TTL_S, confirm: bool = True
    ) -> None:
        """Send an event on the topic named by its type (e.g. `identity.TokensRevoked`); as
        `cast`, `confirm=False` returns once it is queued to be sent."""
        ctx = dataclasses.replace(ctx, deadline=time.time() + ttl_s)
        body = encode_envelope(uuid.uuid4().hex, event, ctx)
        sent = self._outbox("event", name_of(event)).add(body, ctx.deadline)
        if confirm:
            await sent
        else:
            _unconfirmed(sent, event, name_of(event))

    async def _ensure_queue(self, queue: str) -> None:
        # Declared by the sender too, so that commands sent before the service starts wait in
        # its queue instead of being dropped by the exchange.
        # One declaration per queue, however many calls arrive while it is under way.
        declared = self._declared.get(queue)
        if declared is not None and declared.done() and not declared.cancelled():
            if declared.exception() is None:
                return  # the common case, once per call: no shield, no extra future
        if declared is None:
            declared = self._declared[queue] = asyncio.ensure_future(self.transport.declare_queue(queue))
        try:
            await asyncio.shield(declared)
        except Exception:
            if self._declared.get(queue) is declared:
                del self._declared[queue]
            raise

    def _outbox(self, kind: str, target: str) -> "_Outbox":
        outbox = self._outboxes.get((kind, target))
        if outbox is None:
            send = {
                "request": self.transport.send_request,
                "command": self.transport.send_command,
                "event": self.transport.send_event,
            }[kind]
            outbox = self._outboxes[(kind, target)] = _Outbox(
                kind, target, send, self.max_batch, lambda: self.transport.is_connected
            )
        return outbox

    def _reply(self, reply_to: str, body: bytes) -> None:
        outbox = self._outboxes.get(("reply", reply_to))
        if outbox is None:
            outbox = self._outboxes[("reply", reply_to)] = _Outbox(
                "reply",
                reply_to,
                self.transport.send_reply,
                self.max_batch,
                lambda: self.transport.is_connected,
            )
        # A reply's only deadline is its caller's, which it does not know; a few seconds of
        # retry cover a reconnect, after which the caller has failed anyway.
        outbox.add(body, time.time() + 5.0)

    # --- replies and connection events -----------------------------------------------------

    def _on_replies(self, body: bytes) -> None:
        try:
            items = split_frame(body)
        except Invalid as exc:
            log.warning("dropped a malformed reply frame", extra={"reason": exc.reason})
            return
        for raw in items:
            try:
                envelope_id, result, error = decode_reply(raw)
            except Invalid as exc:
                log.warning("dropped a malformed reply", extra={"reason": exc.reason})
                continue
            future = self._pending.get(envelope_id)
            if future is None or future.done():
                metrics.LATE_REPLIES.inc()
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _fail_pending(self, error: FabricError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    def _on_lost(self) -> None:
        log.warning("bus connection lost; failing calls in flight")
        self._fail_pending(Unavailable("bus connection lost"))

    def _on_restored(self) -> None:
        log.info("bus connection restored")
        for hook in self._restore_hooks:
            task = asyncio.get_running_loop().create_task(_run_hook(hook))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- consuming -----------------------------------------------------------------------

    async def serve(self, queue: str, handler: Handler, *, prefetch: int = 64) -> "Consumer":
        """Handle envelopes from a service or agent queue (competing consumers)."""
        await self._ensure_queue(queue)
        return await self._consume(queue, handler, prefetch)

    async def subscribe(
        self,
        patterns: tuple[str, ...],
        handler: Handler,
        *,
        group: str | None = None,
        prefetch: int = 64,
    ) -> "Consumer":
        """Handle events whose type names match `patterns` (AMQP topic patterns)."""
        queue = await self.transport.declare_subscription(patterns, group)
        return await self._consume(queue, handler, prefetch)

    async def _consume(self, queue: str, handler: Handler, prefetch: int) -> "Consumer":
        consumer = Consumer(self, queue, handler, prefetch)
        await consumer.start()
        self._consumers.add(consumer)
        return consumer


def _unconfirmed(sent: "asyncio.Future[None]", message: object, target: str) -> None:
    """For a message whose loss something else repairs (a reaper drives a saga's step again,
    readers of an event keep a slow poll), sent from a path that answers people: waiting for
    the broker's confirm there only makes them wait. The outbox still retries it until its TTL,
    in order with what is sent after it to the same target; one it gives up on is logged."""

    def check(done: "asyncio.Future[None]") -> None:
        if not done.cancelled() and done.exception() is not None:
            log.warning("unconfirmed message lost", extra={"type": name_of(message), "target": target})

    sent.add_done_callback(check)


class _Outbox:
    """Envelopes waiting to be written to one target, coalesced into frames.

    The first envelope starts a writer task; everything added before that task runs, or while
    it waits on the broker, goes into the next frame. Idle, this adds no delay; under load, a
    frame carries everything that queued up during one broker round trip.
    """

    def __init__(
        self,
        kind: str,
        target: str,
        send: Callable[[str, bytes], Awaitable[None]],
        max_batch: int,
        is_connected: Callable[[], bool],
    ) -> None:
        self.kind, self.target, self.send, self.max_batch = kind, target, send, max_batch
        self.is_connected = is_connected
        # The metric children, found once: `labels()` costs as much as a small handler.
        self._frames, self._envelopes = metrics.FRAMES_SENT.labels(kind), metrics.ENVELOPES_SENT.labels(kind)
        self.items: list[tuple[bytes, float, asyncio.Future[None]]] = []
        self.writer: asyncio.Task[None] | None = None

    def add(self, body: bytes, deadline: float) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.items.append((body, deadline, done))
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return done

    async def flushed(self, *, timeout_s: float) -> None:
        if self.writer is not None:
            await asyncio.wait({self.writer}, timeout=timeout_s)

    async def _write(self) -> None:
        try:
            while self.items:
                batch = [item for item in self.items[: self.max_batch] if not item[2].done()]
                del self.items[: self.max_batch]
                if batch:
                    await self._write_batch(batch)
        finally:
            self.writer = None

    async def _write_batch(self, batch: list[tuple[bytes, float, asyncio.Future[None]]]) -> None:
        pause = 0.02
        while batch:
            try:
                async with asyncio.timeout(max(0.01, max(d for _, d, _ in batch) - time.time())):
                    await self.send(self.target, join_frame([body for body, _, _ in batch]))
            except Exception as exc:  # the broker refused, or the connection is gone
                now = time.time()
                for _, deadline, done in batch:
                    if deadline <= now and not done.done():
                        done.set_exception(Unavailable(f"could not send to {self.target}: {exc}"))
                batch = [item for item in batch if not item[2].done()]
                if batch:
                    log.warning("send failed; retrying", extra={"target": self.target, "error": repr(exc)})
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)
                continue
            self._frames.inc()
            self._envelopes.inc(len(batch))
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)
            return


class Consumer:
    """Takes frames from one queue and runs the handler on each envelope, at most `prefetch`
    at a time. `stop` stops taking frames and waits for the ones in hand."""

    def __init__(self, bus: Bus, queue: str, handler: Handler, prefetch: int) -> None:
        self.bus, self.queue, self.handler = bus, queue, handler
        self.prefetch = prefetch
        self._room = asyncio.Semaphore(prefetch)
        self._tasks: set[asyncio.Task[None]] = set()
        # The metric children of this queue, found once per type (and outcome): `labels()`
        # costs as much as a small handler. Type names are registered ones, so this is bounded.
        self._handled: dict[tuple[str, str], Any] = {}
        self._timed: dict[str, Any] = {}
        self._subscription: Subscription | None = None
        self._stopping = False

    async def start(self) -> None:
        # Frames, not envelopes, count against the broker's prefetch. Under light load a frame
        # carries one envelope, so the broker must let `prefetch` frames through for the
        # handlers to reach `prefetch` at once; under load the semaphore bounds the work and
        # frames are split to at most `prefetch` envelopes, so a replica holds a bounded amount.
        self._subscription = await self.bus.transport.consume(self.queue, self.prefetch, self._on_delivery)

    async def stop(self, *, drain_s: float = 10.0) -> None:
        """Take no new frames, let the handlers in flight finish (up to `drain_s`), and give
        back whatever is still unsettled after that."""
        if self._stopping:
            return
        self._stopping = True
        if self._subscription is not None:
            await self._subscription.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=drain_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._subscription is not None:
            await self._subscription.close()
        self.bus._consumers.discard(self)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._handle_frame(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_frame(self, delivery: Delivery) -> None:
        if self._stopping:
            await delivery.requeue()
            return
        try:
            items = split_frame(delivery.body)
        except Invalid as exc:
            log.error("dead-lettered a malformed frame", extra={"queue": self.queue, "reason": exc.reason})
            metrics.DEAD_LETTERED.labels(self.queue, "malformed").inc()
            await delivery.dead_letter()
            return
        if delivery.redelivered and delivery.reply_to is None:
            # Its last consumer died before acking: count one more attempt per envelope,
            # then handle the copies, so that a message that kills the process cannot loop.
            metrics.REDELIVERIES.labels(self.queue).inc(len(items))
            await self._retry(items, reason="redelivered", pause=False)
            await delivery.ack()
            return
        if len(items) > self.prefetch:
            # More than we may hold at once: the rest goes back to the queue, where another
            # consumer with room can take it, as RabbitMQ's prefetch would have arranged had the
            # envelopes travelled one per message.
            rest, items = items[self.prefetch :], items[: self.prefetch]
            await self.bus.transport.forward(
                self.queue, join_frame([orjson.dumps(raw) for raw in rest]), delivery.reply_to
            )
        outcomes = await asyncio.gather(*(self._handle_one(raw, delivery.reply_to) for raw in items))
        failed = [raw for raw, handled in zip(items, outcomes) if not handled]
        if failed:
            await self._retry(failed, reason="handler failed", pause=True)
        await delivery.ack()

    async def _handle_one(self, raw: Any, reply_to: str | None) -> bool:
        """Handle one envelope. False: it failed in a way worth another attempt."""
        try:
            envelope = decode_envelope(raw)
        except Invalid as exc:
            return await self._reject(raw, reply_to, exc)
        ctx = envelope.context
        if ctx.deadline <= time.time():
            if reply_to is None:
                await self._dead([raw], reason="expired")
            self._count(envelope.type, "expired")
            return True
        async with self._room:
            request_id_var.set(ctx.request_id)
            actor_var.set(self.queue)
            started = time.perf_counter()
            outcome = "ok"
            try:
                result = await self.handler(envelope.message, ctx)
            except FabricError as exc:
                outcome = type(exc).__name__
                if reply_to is not None:
                    self.bus._reply(reply_to, encode_error(envelope.id, exc))
                else:
                    log.warning("command refused", extra={"type": envelope.type, "error": exc.message})
                return True
            except Exception:
                outcome = "crashed"
                log.exception("handler crashed", extra={"type": envelope.type})
                if reply_to is not None:
                    self.bus._reply(reply_to, encode_error(envelope.id, Internal(ctx.request_id)))
                    return True
                return False
            finally:
                timed = self._timed.get(envelope.type)
                if timed is None:
                    timed = self._timed[envelope.type] = metrics.HANDLER_SECONDS.labels(
                        self.queue, envelope.type
                    )
                timed.observe(time.perf_counter() - started)
                self._count(envelope.type, outcome)
            if reply_to is not None:
                try:
                    self.bus._reply(reply_to, encode_reply(envelope.id, result))
                except TypeError:
                    log.exception("handler returned an unregistered type", extra={"type": envelope.type})
                    self.bus._reply(reply_to, encode_error(envelope.id, Internal(ctx.request_id)))
            return True

    def _count(self, type_name: str, outcome: str) -> None:
        handled = self._handled.get((type_name, outcome))
        if handled is None:
            handled = self._handled[(type_name, outcome)] = metrics.MESSAGES_HANDLED.labels(
                self.queue, type_name, outcome
            )
        handled.inc()

    async def _reject(self, raw: Any, reply_to: str | None, exc: Invalid) -> bool:
        envelope_id = raw.get("id") if isinstance(raw, dict) else None
        log.warning("rejected a malformed envelope", extra={"queue": self.queue, "reason": exc.message})
        if reply_to is not None and isinstance(envelope_id, str):
            self.bus._reply(reply_to, encode_error(envelope_id, exc))
        elif reply_to is None:
            await self._dead([raw], reason="malformed")
        return True

    async def _retry(self, items: list[Any], *, reason: str, pause: bool) -> None:
        again, dead = [], []
        for raw in items:
            previous = raw.get("attempt") if isinstance(raw, dict) else None
            attempt = (previous if type(previous) is int else 0) + 1
            if attempt >= self.bus.max_attempts or not isinstance(raw, dict):
                dead.append(raw)
            else:
                again.append((raw, attempt))
        if again:
            if pause:
                slowest = max(attempt for _, attempt in again)
                await asyncio.sleep(min(self.bus.retry_pause_s * 2 ** (slowest - 1), 2.0))
            metrics.REDELIVERIES.labels(self.queue).inc(len(again))
            frame = join_frame([with_attempt(raw, attempt) for raw, attempt in again])
            await self.bus.transport.send_command(self.queue, frame)
        if dead:
            await self._dead(dead, reason=f"{reason} {self.bus.max_attempts} times")

    async def _dead(self, items: list[Any], *, reason: str) -> None:
        metrics.DEAD_LETTERED.labels(self.queue, reason.split()[0]).inc(len(items))
        log.error("dead-lettered", extra={"queue": self.queue, "reason": reason, "count": len(items)})
        await self.bus.transport.send_dead(self.queue, orjson.dumps(items), reason)


async def _run_hook(hook: Callable[[], Awaitable[None]]) -> None:
    try:
        await hook()
    except Exception:
        log.exception("a reconnect hook failed")
