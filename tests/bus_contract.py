"""The bus's semantics, as one suite that runs against every transport.

`tests/unit/test_bus_memory.py` runs it on the in-memory broker and
`tests/integration/test_bus_amqp.py` on the real RabbitMQ; each provides a `buses` fixture
(a `Buses`) that makes buses as separate processes would have them, cuts their connections and
reads dead-letter queues.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
import pytest

from fabric import metrics
from fabric.bus import Bus
from protocol.envelope import Context
from protocol.errors import Internal, Invalid, NotFound, Timeout, Unavailable
from protocol.identity import TokensRevoked
from protocol.registry import type_name
from protocol.system import Echo, Echoed
from protocol.wire import join_frame


class Buses(Protocol):
    async def new(self) -> Bus: ...

    def cut(self, bus: Bus) -> None:
        """Drop the bus's connection as a network failure would; it reconnects by itself."""

    def kill(self, bus: Bus) -> None:
        """Drop it for good, as when its process dies."""

    async def dead_letters(self, queue: str) -> list[Any]: ...


def ctx(timeout_s: float = 5.0) -> Context:
    return Context(request_id=f"req-{uuid.uuid4()}", user_id="u", deadline=time.time() + timeout_s)


def fresh_queue() -> str:
    return f"test.{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def echo(msg: Echo, _: Context) -> Echoed:
    return Echoed(payload=msg.payload)


# --- call ----------------------------------------------------------------------------------


async def test_call_returns_the_typed_reply(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    await server.serve(queue, echo)
    assert await client.call(queue, Echo(payload="hello"), ctx()) == Echoed(payload="hello")


async def test_call_raises_the_typed_error_the_handler_raised(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()

    async def missing(msg: Echo, _: Context) -> None:
        raise NotFound("thing", msg.payload)

    await server.serve(queue, missing)
    with pytest.raises(NotFound) as err:
        await client.call(queue, Echo(payload="t-1"), ctx())
    assert (err.value.kind, err.value.id) == ("thing", "t-1")


async def test_a_crashing_handler_yields_internal_with_the_request_id(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()

    async def crash(msg: Echo, _: Context) -> None:
        raise ZeroDivisionError

    await server.serve(queue, crash)
    request = ctx()
    with pytest.raises(Internal) as err:
        await client.call(queue, Echo(payload="x"), request)
    assert err.value.request_id == request.request_id


async def test_a_handler_sees_the_callers_context(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    seen: list[Context] = []

    async def record(msg: Echo, c: Context) -> Echoed:
        seen.append(c)
        return Echoed(payload="")

    await server.serve(queue, record)
    sent = Context(
        request_id="req-abc", user_id="u1", project_id="p1", roles=("member",), deadline=time.time() + 5
    )
    await client.call(queue, Echo(payload=""), sent)
    assert (seen[0].request_id, seen[0].user_id, seen[0].project_id, seen[0].roles) == (
        "req-abc",
        "u1",
        "p1",
        ("member",),
    )
    assert abs(seen[0].deadline - sent.deadline) < 0.001


async def test_call_times_out_at_its_deadline_and_the_late_reply_is_dropped(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    release = asyncio.Event()

    async def slow(msg: Echo, _: Context) -> Echoed:
        await release.wait()
        return Echoed(payload="late")

    await server.serve(queue, slow)
    late_before = metrics.LATE_REPLIES._value.get()
    started = time.monotonic()
    with pytest.raises(Timeout):
        await client.call(queue, Echo(payload=""), ctx(timeout_s=0.3))
    assert 0.25 < time.monotonic() - started < 2.0
    release.set()
    await eventually(lambda: metrics.LATE_REPLIES._value.get() > late_before)
    # The client is still healthy after dropping it.
    release.clear()
    server2_queue = fresh_queue()
    await server.serve(server2_queue, echo)
    assert await client.call(server2_queue, Echo(payload="ok"), ctx()) == Echoed(payload="ok")


async def test_a_call_nobody_serves_times_out_and_is_not_handled_after_its_deadline(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    with pytest.raises(Timeout):
        await client.call(queue, Echo(payload="expired"), ctx(timeout_s=0.2))
    handled: list[str] = []

    async def record(msg: Echo, _: Context) -> Echoed:
        handled.append(msg.payload)
        return Echoed(payload=msg.payload)

    await server.serve(queue, record)
    assert await client.call(queue, Echo(payload="fresh"), ctx()) == Echoed(payload="fresh")
    assert handled == ["fresh"]


async def test_handlers_run_concurrently_up_to_prefetch(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    running, peak = 0, 0

    async def slow(msg: Echo, _: Context) -> Echoed:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return Echoed(payload=msg.payload)

    await server.serve(queue, slow, prefetch=4)
    replies = await asyncio.gather(*(client.call(queue, Echo(payload=str(i)), ctx()) for i in range(20)))
    assert [r.payload for r in replies] == [str(i) for i in range(20)]
    assert peak == 4, peak


async def test_concurrent_calls_are_coalesced_into_fewer_frames(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    await server.serve(queue, echo, prefetch=256)
    frames = metrics.FRAMES_SENT.labels("request")._value.get()
    envelopes = metrics.ENVELOPES_SENT.labels("request")._value.get()
    replies = await asyncio.gather(*(client.call(queue, Echo(payload=str(i)), ctx()) for i in range(200)))
    assert [r.payload for r in replies] == [str(i) for i in range(200)]
    sent_frames = metrics.FRAMES_SENT.labels("request")._value.get() - frames
    sent_envelopes = metrics.ENVELOPES_SENT.labels("request")._value.get() - envelopes
    assert sent_envelopes == 200
    assert sent_frames < 50, sent_frames


async def test_competing_consumers_share_a_queue(buses: Buses) -> None:
    client, queue = await buses.new(), fresh_queue()
    seen: dict[str, int] = {"a": 0, "b": 0}

    def named(name: str) -> Callable[[Echo, Context], Awaitable[Echoed]]:
        async def handle(msg: Echo, _: Context) -> Echoed:
            seen[name] += 1
            await asyncio.sleep(0.01)
            return Echoed(payload=name)

        return handle

    await (await buses.new()).serve(queue, named("a"), prefetch=2)
    await (await buses.new()).serve(queue, named("b"), prefetch=2)
    await asyncio.gather(*(client.call(queue, Echo(payload=""), ctx()) for _ in range(40)))
    assert seen["a"] > 0 and seen["b"] > 0 and seen["a"] + seen["b"] == 40


async def test_a_malformed_call_body_is_answered_with_invalid(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    await server.serve(queue, echo)
    await client._ensure_queue(queue)
    envelope_id = uuid.uuid4().hex
    reply: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    client._pending[envelope_id] = reply
    bad = {
        "id": envelope_id,
        "type": type_name(Echo),
        "schema": 1,
        "deadline": time.time() + 5,
        "attempt": 0,
        "ctx": {"request_id": "req-x"},
        "body": {"payload": 42},
    }
    await client.transport.send_request(queue, join_frame([orjson.dumps(bad)]))
    with pytest.raises(Invalid) as err:
        await asyncio.wait_for(reply, 5)
    assert err.value.field == "body.payload"


# --- cast ----------------------------------------------------------------------------------


async def test_cast_is_handled_once(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    handled: list[str] = []

    async def record(msg: Echo, _: Context) -> None:
        handled.append(msg.payload)

    await server.serve(queue, record)
    for i in range(5):
        await client.cast(queue, Echo(payload=str(i)), ctx())
    await eventually(lambda: len(handled) == 5)
    await asyncio.sleep(0.2)
    assert sorted(handled) == ["0", "1", "2", "3", "4"]


async def test_a_cast_sent_before_its_service_starts_waits_in_the_queue(buses: Buses) -> None:
    client, queue = await buses.new(), fresh_queue()
    await client.cast(queue, Echo(payload="early"), ctx())
    handled: list[str] = []

    async def record(msg: Echo, _: Context) -> None:
        handled.append(msg.payload)

    await (await buses.new()).serve(queue, record)
    await eventually(lambda: handled == ["early"])


async def test_unconfirmed_casts_and_events_return_at_once_and_still_arrive(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    handled: list[str] = []
    got: list[str] = []

    async def record(msg: Echo, _: Context) -> None:
        handled.append(msg.payload)

    async def on(event: TokensRevoked, _: Context) -> None:
        got.append(str(event.revocation.user_id))

    await server.serve(queue, record)
    await server.subscribe((type_name(TokensRevoked),), on)
    await client.cast(queue, Echo(payload="first"), ctx())  # the client knows the queue now
    await eventually(lambda: handled == ["first"])
    buses.cut(client)
    # With the connection down no confirm can come, yet these return: they wait in the outbox.
    for i in range(3):
        await asyncio.wait_for(client.cast(queue, Echo(payload=str(i)), ctx(), confirm=False), 1)
    await asyncio.wait_for(client.publish(revoked("soon"), ctx(), confirm=False), 1)
    assert handled == ["first"] and got == []  # none of them could have reached the broker yet
    await eventually(lambda: sorted(handled) == ["0", "1", "2", "first"] and got == ["soon"], timeout_s=15)


async def test_a_failing_cast_is_retried_until_it_succeeds(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    attempts: list[int] = []

    async def flaky(msg: Echo, _: Context) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("database blinked")

    await server.serve(queue, flaky)
    await client.cast(queue, Echo(payload="x"), ctx())
    await eventually(lambda: len(attempts) == 3)
    await asyncio.sleep(0.3)
    assert len(attempts) == 3
    assert await buses.dead_letters(queue) == []


async def test_a_poison_cast_is_dead_lettered_after_bounded_attempts(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    attempts: list[str] = []

    async def poison(msg: Echo, _: Context) -> None:
        attempts.append(msg.payload)
        raise RuntimeError("always")

    await server.serve(queue, poison)
    await client.cast(queue, Echo(payload="poison"), ctx())
    await eventually(lambda: len(attempts) == server.max_attempts, timeout_s=10)

    async def dead_lettered() -> bool:
        return len(await buses.dead_letters(queue)) == 1

    await eventually(dead_lettered, timeout_s=10)
    assert len(attempts) == server.max_attempts


async def test_a_typed_error_from_a_cast_is_final(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    attempts: list[str] = []

    async def refuse(msg: Echo, _: Context) -> None:
        attempts.append(msg.payload)
        raise NotFound("server", msg.payload)

    await server.serve(queue, refuse)
    await client.cast(queue, Echo(payload="gone"), ctx())
    await eventually(lambda: attempts == ["gone"])
    await asyncio.sleep(0.3)
    assert attempts == ["gone"]


async def test_a_cast_is_acked_only_after_its_handler_so_a_dying_consumer_loses_nothing(buses: Buses) -> None:
    client, queue = await buses.new(), fresh_queue()
    dying, survivor = await buses.new(), await buses.new()
    started, handled = asyncio.Event(), []

    async def stuck(msg: Echo, _: Context) -> None:
        started.set()
        await asyncio.Event().wait()

    async def record(msg: Echo, _: Context) -> None:
        handled.append(msg.payload)

    await dying.serve(queue, stuck)
    await client.cast(queue, Echo(payload="precious"), ctx())
    await asyncio.wait_for(started.wait(), 5)
    await survivor.serve(queue, record)
    buses.kill(dying)  # the consumer's process dies mid-handler, before acking
    await eventually(lambda: handled == ["precious"], timeout_s=10)


async def test_graceful_stop_drains_in_flight_handlers(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    started, finished = asyncio.Event(), []

    async def slow(msg: Echo, _: Context) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(msg.payload)

    consumer = await server.serve(queue, slow)
    await client.cast(queue, Echo(payload="in-flight"), ctx())
    await asyncio.wait_for(started.wait(), 5)
    await consumer.stop(drain_s=5)
    assert finished == ["in-flight"]
    # Acked after the handler: a new consumer gets nothing again.
    again: list[str] = []

    async def record(msg: Echo, _: Context) -> None:
        again.append(msg.payload)

    await (await buses.new()).serve(queue, record)
    await asyncio.sleep(0.3)
    assert again == []


# --- publish and subscribe -----------------------------------------------------------------


def revoked(user_id: str) -> TokensRevoked:
    from protocol.identity import Revocation

    return TokensRevoked(revocation=Revocation(user_id=user_id, issued_before=1.0, expires_at=2.0))


async def test_every_private_subscriber_gets_every_event(buses: Buses) -> None:
    publisher, a, b = await buses.new(), await buses.new(), await buses.new()
    got: dict[str, list[str]] = {"a": [], "b": []}

    def collect(name: str) -> Callable[[TokensRevoked, Context], Awaitable[None]]:
        async def on(event: TokensRevoked, _: Context) -> None:
            got[name].append(str(event.revocation.user_id))

        return on

    await a.subscribe((type_name(TokensRevoked),), collect("a"))
    await b.subscribe(("identity.*",), collect("b"))
    user = uuid.uuid4().hex
    await publisher.publish(revoked(user), ctx())
    await eventually(lambda: got["a"] == [user] and got["b"] == [user])


async def test_a_group_shares_events_between_its_members(buses: Buses) -> None:
    publisher, group = await buses.new(), f"g{uuid.uuid4().hex[:8]}"
    got: list[str] = []

    async def on(event: TokensRevoked, _: Context) -> None:
        got.append(str(event.revocation.user_id))

    await (await buses.new()).subscribe((type_name(TokensRevoked),), on, group=group)
    await (await buses.new()).subscribe((type_name(TokensRevoked),), on, group=group)
    users = [uuid.uuid4().hex for _ in range(10)]
    for user in users:
        await publisher.publish(revoked(user), ctx())
    await eventually(lambda: sorted(got) == sorted(users))
    await asyncio.sleep(0.2)
    assert len(got) == 10


async def test_a_subscriber_does_not_get_other_topics(buses: Buses) -> None:
    publisher, sub = await buses.new(), await buses.new()
    got: list[object] = []

    async def on(event: object, _: Context) -> None:
        got.append(event)

    await sub.subscribe(("compute.*",), on)
    await publisher.publish(revoked("u"), ctx())
    await asyncio.sleep(0.3)
    assert got == []


# --- losing the connection -----------------------------------------------------------------


async def test_a_call_in_flight_when_the_connection_drops_fails_fast(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    started = asyncio.Event()

    async def stuck(msg: Echo, _: Context) -> Echoed:
        started.set()
        await asyncio.sleep(3)
        return Echoed(payload="")

    await server.serve(queue, stuck)
    call = asyncio.create_task(client.call(queue, Echo(payload=""), ctx(timeout_s=30)))
    await asyncio.wait_for(started.wait(), 5)
    began = time.monotonic()
    buses.cut(client)
    with pytest.raises(Unavailable):
        await call
    assert time.monotonic() - began < 2


async def test_the_bus_works_again_after_reconnecting(buses: Buses) -> None:
    client, server, queue = await buses.new(), await buses.new(), fresh_queue()
    await server.serve(queue, echo)
    assert await client.call(queue, Echo(payload="before"), ctx()) == Echoed(payload="before")
    restored = asyncio.Event()

    async def on_restored() -> None:
        restored.set()

    client.on_restored(on_restored)
    buses.cut(client)
    buses.cut(server)
    await asyncio.wait_for(restored.wait(), 15)

    async def answers() -> bool:
        try:
            return await client.call(queue, Echo(payload="after"), ctx(timeout_s=1)) == Echoed(
                payload="after"
            )
        except (Timeout, Unavailable):
            return False

    await eventually(answers, timeout_s=15)
    # Subscriptions come back too.
    got: list[str] = []

    async def on(event: TokensRevoked, _: Context) -> None:
        got.append(str(event.revocation.user_id))

    await server.subscribe((type_name(TokensRevoked),), on)
    buses.cut(server)

    async def delivered() -> bool:
        await client.publish(revoked("after-cut"), ctx())
        await asyncio.sleep(0.2)
        return "after-cut" in got

    await eventually(delivered, timeout_s=15)
