"""`fabric.actor` on the in-memory bus: dispatch, per-key order, prefetch, supervision, drain."""

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from fabric.actor import Actor, Supervisor, handles, subscribes
from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.identity import GetDomain, Revocation, TokensRevoked
from protocol.system import Echo, Echoed, Ping, Pong


def ctx(timeout_s: float = 5.0) -> Context:
    return Context(request_id=f"req-{uuid.uuid4().hex[:8]}", deadline=time.time() + timeout_s)


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def settled() -> None:
    """Long enough for anything already runnable on the in-memory bus to have run."""
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)


class Cluster:
    """Buses on one in-memory broker, as separate processes would have them."""

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.buses: list[Bus] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def bus(self) -> Bus:
        bus = Bus(self.broker.transport(), retry_pause_s=0.01)
        await bus.start()
        self.buses.append(bus)
        return bus

    async def start(self, actor: "Recorder", *, drain_s: float = 2.0) -> asyncio.Task[None]:
        task = asyncio.create_task(actor.run(drain_s=drain_s))
        self.tasks.append(task)
        await asyncio.wait([task, asyncio.create_task(actor.serving.wait())], return_when="FIRST_COMPLETED")
        if task.done():
            task.result()
        return task

    def consumers_of(self, queue: str) -> int:
        q = self.broker.queues.get(queue)
        return len(q.consumers) if q else 0

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for bus in self.buses:
            await bus.close(drain_s=0.2)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    made = Cluster()
    yield made
    await made.close()


class Recorder(Actor):
    """Counts what runs at once, overall and per key; handlers wait for `gate` when it is set."""

    service = "recorder"

    def __init__(self, bus: Bus, *, queue: str = "recorder", gate: asyncio.Event | None = None) -> None:
        super().__init__(bus, queue=queue)
        self.gate = gate
        self.serving = asyncio.Event()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.torn_down = False

    async def background(self) -> list[Awaitable[None]]:
        self.serving.set()  # called once every consumer is in place
        return []

    async def teardown(self) -> None:
        self.torn_down = True

    async def work(self, key: str, payload: str) -> Echoed:
        self.started.append(payload)
        self.running[key] += 1
        self.peak[key] = max(self.peak[key], self.running[key])
        self.peak_total = max(self.peak_total, sum(self.running.values()))
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0.002)
        except asyncio.CancelledError:
            self.cancelled.append(payload)
            raise
        finally:
            self.running[key] -= 1
        self.finished.append(payload)
        return Echoed(payload=payload)


def key_of(payload: str) -> str:
    return payload.split(":")[0]


class Keyed(Recorder):
    @handles(Echo, key=lambda m: key_of(m.payload))
    async def echo(self, msg: Echo, ctx: Context) -> Echoed:
        if msg.payload.endswith(":fail"):
            raise NotFound("thing", msg.payload)
        return await self.work(key_of(msg.payload), msg.payload)


class Unkeyed(Recorder):
    prefetch = 3

    @handles(Echo)
    async def echo(self, msg: Echo, ctx: Context) -> Echoed:
        return await self.work("all", msg.payload)


# --- registration and dispatch -------------------------------------------------------------


def test_handlers_are_registered_by_message_type_and_inherited() -> None:
    class Loud(Unkeyed):
        @handles(Echo)
        async def shout(self, msg: Echo, ctx: Context) -> Echoed:
            return Echoed(payload=msg.payload.upper())

        @subscribes(TokensRevoked, group="loud")
        async def on_revoked(self, event: TokensRevoked, ctx: Context) -> None:
            pass

    assert Unkeyed._handlers[Echo] == ("echo", None)
    assert Unkeyed._handlers[Ping] == ("ping", None)  # every actor answers Ping
    assert Loud._handlers[Echo] == ("shout", None)  # the subclass's handler wins
    assert Keyed._handlers[Echo][1] is not None
    assert Loud._subscriptions == {"loud": {TokensRevoked: "on_revoked"}}
    assert Unkeyed._subscriptions == {}


async def test_a_call_reaches_the_handler_of_its_type(cluster: Cluster) -> None:
    actor = Keyed(await cluster.bus())
    await cluster.start(actor)
    client = await cluster.bus()
    assert await client.call("recorder", Echo(payload="a:1"), ctx()) == Echoed(payload="a:1")
    assert await client.call("recorder", Ping(), ctx()) == Pong(service="recorder", database_ok=None)
    assert actor.finished == ["a:1"]


async def test_an_unhandled_message_type_is_invalid(cluster: Cluster) -> None:
    actor = Keyed(await cluster.bus())
    await cluster.start(actor)
    client = await cluster.bus()
    with pytest.raises(Invalid) as caught:
        await client.call("recorder", GetDomain(domain_id="d"), ctx())
    assert caught.value.field == "type"
    assert "identity.GetDomain" in caught.value.reason
    with pytest.raises(Invalid):
        await actor.dispatch(GetDomain(domain_id="d"), ctx())
    # The actor is still serving after refusing it.
    assert await client.call("recorder", Echo(payload="a:1"), ctx()) == Echoed(payload="a:1")


async def test_a_typed_error_from_a_handler_reaches_the_caller(cluster: Cluster) -> None:
    actor = Keyed(await cluster.bus())
    await cluster.start(actor)
    client = await cluster.bus()
    with pytest.raises(NotFound):
        await client.call("recorder", Echo(payload="a:fail"), ctx())
    assert actor._locks == {}  # the key's lock went with the failed handler


async def test_events_reach_every_subscribed_replica(cluster: Cluster) -> None:
    class Listener(Recorder):
        def __init__(self, bus: Bus) -> None:
            super().__init__(bus)
            self.events: list[TokensRevoked] = []

        @subscribes(TokensRevoked)
        async def on_revoked(self, event: TokensRevoked, ctx: Context) -> None:
            self.events.append(event)

    replicas = [Listener(await cluster.bus()), Listener(await cluster.bus())]
    for replica in replicas:
        await cluster.start(replica)
    event = TokensRevoked(revocation=Revocation(user_id="u", issued_before=1.0, expires_at=2.0))
    await (await cluster.bus()).publish(event, ctx())
    await eventually(lambda: all(r.events for r in replicas))
    await settled()
    assert [r.events for r in replicas] == [[event], [event]]
    assert await replicas[0].dispatch_event(Echo(payload="not subscribed"), ctx()) is None


# --- concurrency ---------------------------------------------------------------------------


async def test_messages_with_one_key_never_overlap_and_other_keys_run_meanwhile(cluster: Cluster) -> None:
    actor = Keyed(await cluster.bus())
    await cluster.start(actor)
    client = await cluster.bus()
    payloads = [f"{key}:{i}" for i in range(8) for key in "abc"]
    replies = await asyncio.gather(*(client.call("recorder", Echo(payload=p), ctx()) for p in payloads))
    assert [r.payload for r in replies] == payloads
    assert actor.peak == {"a": 1, "b": 1, "c": 1}
    assert actor.peak_total > 1  # the three keys did run side by side
    assert actor._locks == {}  # no lock outlives its last user


async def test_the_second_message_of_a_key_waits_for_the_first(cluster: Cluster) -> None:
    gate = asyncio.Event()
    actor = Keyed(await cluster.bus(), gate=gate)
    await cluster.start(actor)
    client = await cluster.bus()
    first = asyncio.create_task(client.call("recorder", Echo(payload="a:1"), ctx()))
    await eventually(lambda: actor.started == ["a:1"])
    second = asyncio.create_task(client.call("recorder", Echo(payload="a:2"), ctx()))
    other = asyncio.create_task(client.call("recorder", Echo(payload="b:1"), ctx()))
    await eventually(lambda: "b:1" in actor.started)
    await settled()
    assert "a:2" not in actor.started  # queued behind a:1, while b:1 is already running
    gate.set()
    assert [r.payload for r in await asyncio.gather(first, second, other)] == ["a:1", "a:2", "b:1"]
    assert actor.finished.index("a:1") < actor.started.index("a:2")


async def test_concurrency_is_bounded_by_prefetch(cluster: Cluster) -> None:
    gate = asyncio.Event()
    actor = Unkeyed(await cluster.bus(), gate=gate)
    await cluster.start(actor)
    client = await cluster.bus()
    calls = [asyncio.create_task(client.call("recorder", Echo(payload=str(i)), ctx())) for i in range(10)]
    await eventually(lambda: actor.running["all"] == Unkeyed.prefetch)
    await settled()
    assert actor.running["all"] == Unkeyed.prefetch == 3
    gate.set()
    assert sorted(r.payload for r in await asyncio.gather(*calls)) == sorted(str(i) for i in range(10))
    assert actor.peak_total == 3


# --- shutdown ------------------------------------------------------------------------------


async def test_stopping_lets_in_flight_handlers_finish_and_takes_nothing_new(cluster: Cluster) -> None:
    gate = asyncio.Event()
    actor = Unkeyed(await cluster.bus(), gate=gate)
    run = await cluster.start(actor)
    client = await cluster.bus()
    in_flight = asyncio.create_task(client.call("recorder", Echo(payload="in-flight"), ctx()))
    await eventually(lambda: actor.started == ["in-flight"])

    actor.request_stop()
    await eventually(lambda: cluster.consumers_of("recorder") == 0)  # stopped taking frames
    late = asyncio.create_task(client.call("recorder", Echo(payload="late"), ctx()))
    await settled()
    assert not run.done() and not in_flight.done()
    assert actor.started == ["in-flight"]

    gate.set()
    assert await in_flight == Echoed(payload="in-flight")
    await asyncio.wait_for(run, timeout=2)
    assert actor.torn_down and actor.cancelled == []
    assert not late.done() and len(cluster.broker.frames_in("recorder")) == 1  # waits for a replica

    successor = Unkeyed(await cluster.bus())
    await cluster.start(successor)
    assert await late == Echoed(payload="late")
    assert successor.finished == ["late"]


async def test_a_handler_that_outlives_the_drain_is_cancelled(cluster: Cluster) -> None:
    actor = Unkeyed(await cluster.bus(), gate=asyncio.Event())  # never opened
    run = await cluster.start(actor, drain_s=0.05)
    client = await cluster.bus()
    stuck = asyncio.create_task(client.call("recorder", Echo(payload="stuck"), ctx(timeout_s=0.5)))
    await eventually(lambda: actor.started == ["stuck"])
    began = time.monotonic()
    actor.request_stop()
    await asyncio.wait_for(run, timeout=2)
    assert time.monotonic() - began < 1.0
    assert actor.cancelled == ["stuck"] and actor.torn_down
    stuck.cancel()
    await asyncio.gather(stuck, return_exceptions=True)


# --- supervision ---------------------------------------------------------------------------


class Crashing(Recorder):
    """Crashes `after_s` after it starts serving."""

    def __init__(self, bus: Bus, after_s: float = 0.0) -> None:
        super().__init__(bus)
        self.after_s = after_s

    async def background(self) -> list[Awaitable[None]]:
        await super().background()
        return [self.crash()]

    async def crash(self) -> None:
        await asyncio.sleep(self.after_s)
        raise RuntimeError("boom")


class Makes:
    """An actor factory that remembers when it was asked for each actor."""

    def __init__(self, make: Callable[[], Recorder]) -> None:
        self.make = make
        self.times: list[float] = []
        self.actors: list[Recorder] = []

    def __call__(self) -> Recorder:
        self.times.append(time.monotonic())
        self.actors.append(self.make())
        return self.actors[-1]

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


async def test_the_supervisor_restarts_a_crashed_actor_with_growing_backoff(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await cluster.bus()
    makes = Makes(lambda: Crashing(bus))
    supervisor = Supervisor(makes, name="crashing", min_backoff_s=0.02, max_backoff_s=0.08)
    task = asyncio.create_task(supervisor.run())
    await eventually(lambda: len(makes.times) >= 6)
    supervisor.stop()
    await asyncio.wait_for(task, timeout=2)

    gaps = makes.gaps()[:5]
    expected = [0.02, 0.04, 0.08, 0.08, 0.08]  # doubling, up to max_backoff_s
    assert all(gap >= want * 0.9 for gap, want in zip(gaps, expected)), gaps
    assert gaps[3] < 0.16 and gaps[4] < 0.16, gaps  # capped: 0.16 and 0.32 had it kept doubling
    assert supervisor.restarts >= 5
    assert all(a.torn_down for a in makes.actors[:-1])
    assert "actor crashed; restarting" in caplog.text


async def test_the_backoff_starts_over_after_a_stable_run(cluster: Cluster) -> None:
    bus = await cluster.bus()
    makes = Makes(lambda: Crashing(bus, after_s=0.04))
    supervisor = Supervisor(makes, name="flaky", min_backoff_s=0.02, max_backoff_s=5.0, stable_s=0.03)
    task = asyncio.create_task(supervisor.run())
    await eventually(lambda: len(makes.times) >= 6)
    supervisor.stop()
    await asyncio.wait_for(task, timeout=2)
    # Each run lasted past stable_s, so each wait is min_backoff_s again: about 0.04 + 0.02,
    # where a backoff that kept growing would reach 0.04 + 0.32 by the fifth.
    assert max(makes.gaps()[:5]) < 0.25, makes.gaps()


async def test_stop_during_a_backoff_returns_at_once(cluster: Cluster) -> None:
    bus = await cluster.bus()
    makes = Makes(lambda: Crashing(bus))
    supervisor = Supervisor(makes, name="crashing", min_backoff_s=30.0)
    task = asyncio.create_task(supervisor.run())
    await eventually(lambda: supervisor.restarts == 1)  # crashed once, now waiting 30 s
    began = time.monotonic()
    supervisor.stop()
    await asyncio.wait_for(task, timeout=2)
    assert time.monotonic() - began < 0.5
    assert len(makes.times) == 1


async def test_stop_ends_a_healthy_actor_without_a_restart(cluster: Cluster) -> None:
    bus = await cluster.bus()
    makes = Makes(lambda: Unkeyed(bus))
    supervisor = Supervisor(makes, name="healthy", min_backoff_s=0.01)
    task = asyncio.create_task(supervisor.run())
    await eventually(lambda: bool(makes.actors) and makes.actors[0].serving.is_set())
    client = await cluster.bus()
    assert await client.call("recorder", Echo(payload="x"), ctx()) == Echoed(payload="x")
    supervisor.stop()
    await asyncio.wait_for(task, timeout=2)
    assert (len(makes.times), supervisor.restarts) == (1, 0)
    assert makes.actors[0].torn_down


async def test_an_actor_that_returns_unasked_is_restarted(cluster: Cluster) -> None:
    class Quitter(Recorder):
        async def background(self) -> list[Awaitable[None]]:
            await super().background()
            return [asyncio.sleep(0)]  # a background job that ends: the actor is broken

    bus = await cluster.bus()
    makes = Makes(lambda: Quitter(bus))
    supervisor = Supervisor(makes, name="quitter", min_backoff_s=0.01)
    task = asyncio.create_task(supervisor.run())
    await eventually(lambda: len(makes.times) >= 3)
    supervisor.stop()
    await asyncio.wait_for(task, timeout=2)
    assert supervisor.restarts >= 2
