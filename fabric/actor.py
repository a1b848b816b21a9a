"""Actors: a service's handlers, registered by message type, behind one queue.

    class Identity(Actor):
        service = "identity"

        @handles(CreateProject)
        async def create_project(self, msg: CreateProject, ctx: Context) -> ProjectView: ...

        @handles(StopServer, key=lambda m: m.server_id)     # one at a time per server
        async def stop_server(self, msg: StopServer, ctx: Context) -> Done: ...

        @subscribes(TokensRevoked)                           # events, to every replica
        async def on_revoked(self, event: TokensRevoked, ctx: Context) -> None: ...

Up to `prefetch` messages are handled at once; handlers declared with a `key` run one at a time
per key within this process (across replicas, order and correctness come from conditional
updates in PostgreSQL, never from these locks). `Supervisor` restarts a crashed actor with
backoff; `request_stop` lets in-flight messages finish before `run` returns.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ClassVar, TypeVar

from fabric.bus import Bus, Consumer
from protocol.envelope import Context
from protocol.errors import Invalid
from protocol.registry import type_name
from protocol.system import Ping, Pong

log = logging.getLogger("fabric.actor")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
KeyOf = Callable[[Any], Hashable]


def handles(message_type: type, *, key: KeyOf | None = None) -> Callable[[F], F]:
    """Mark a method as the handler of `message_type` on the actor's queue."""

    def mark(fn: F) -> F:
        fn.__fabric_handles__ = (message_type, key)  # type: ignore[attr-defined]
        return fn

    return mark


def subscribes(event_type: type, *, group: str | None = None) -> Callable[[F], F]:
    """Mark a method as a subscriber to `event_type`. `group` None: every process gets every
    event; a group name: the group's members share the events between them."""

    def mark(fn: F) -> F:
        fn.__fabric_subscribes__ = (event_type, group)  # type: ignore[attr-defined]
        return fn

    return mark


class Actor:
    service: ClassVar[str]
    prefetch: ClassVar[int] = 64
    _handlers: ClassVar[dict[type, tuple[str, KeyOf | None]]] = {}
    _subscriptions: ClassVar[dict[str | None, dict[type, str]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type, tuple[str, KeyOf | None]] = {}
        subscriptions: dict[str | None, dict[type, str]] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if hasattr(attr, "__fabric_handles__"):
                    message_type, key = attr.__fabric_handles__
                    handlers[message_type] = (name, key)
                if hasattr(attr, "__fabric_subscribes__"):
                    event_type, group = attr.__fabric_subscribes__
                    subscriptions.setdefault(group, {})[event_type] = name
        cls._handlers = handlers
        cls._subscriptions = subscriptions

    def __init__(self, bus: Bus, *, queue: str | None = None) -> None:
        self.bus = bus
        self.queue = queue or self.service
        self._consumers: list[Consumer] = []
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        self._stop = asyncio.Event()

    # --- life cycle ------------------------------------------------------------------------

    async def setup(self) -> None:
        """Before serving: migrations, caches, catalog registration."""

    async def teardown(self) -> None:
        """After the last message was handled."""

    async def background(self) -> list[Awaitable[None]]:
        """Long-running jobs of this actor (capacity reports, reapers); one crashing crashes
        the actor, which its supervisor then restarts."""
        return []

    async def check_database(self) -> bool | None:
        """For health checks: None when the actor has no database."""
        return None

    async def run(self, *, drain_s: float = 10.0) -> None:
        """Serve until `request_stop`, then drain; raise if a background job fails."""
        await self.setup()
        try:
            self._consumers.append(await self.bus.serve(self.queue, self.dispatch, prefetch=self.prefetch))
            for group, by_type in self._subscriptions.items():
                patterns = tuple(type_name(t) for t in by_type)
                self._consumers.append(
                    await self.bus.subscribe(
                        patterns, self.dispatch_event, group=group, prefetch=self.prefetch
                    )
                )
            stop = asyncio.create_task(self._stop.wait())
            jobs = [asyncio.create_task(_as_coroutine(job)) for job in await self.background()]
            try:
                done, _ = await asyncio.wait([stop, *jobs], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stop, *jobs):
                    task.cancel()
                await asyncio.gather(stop, *jobs, return_exceptions=True)
            for task in done:
                if task is not stop:
                    task.result()  # raises what the job raised
                    raise RuntimeError(f"background job of {self.queue} ended")
        finally:
            await asyncio.gather(*(c.stop(drain_s=drain_s) for c in self._consumers))
            self._consumers.clear()
            await self.teardown()

    def request_stop(self) -> None:
        self._stop.set()

    # --- dispatch --------------------------------------------------------------------------

    async def dispatch(self, message: Any, ctx: Context) -> object | None:
        entry = self._handlers.get(type(message))
        if entry is None:
            raise Invalid("type", f"{self.queue} does not handle {type_name(type(message))}")
        method, key_of = entry
        handler = getattr(self, method)
        if key_of is None:
            result: object | None = await handler(message, ctx)
            return result
        key = key_of(message)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                result = await handler(message, ctx)
                return result
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def dispatch_event(self, event: Any, ctx: Context) -> None:
        for by_type in self._subscriptions.values():
            method = by_type.get(type(event))
            if method is not None:
                await getattr(self, method)(event, ctx)
                return

    @handles(Ping)
    async def ping(self, msg: Ping, ctx: Context) -> Pong:
        return Pong(service=self.queue, database_ok=await self.check_database())


async def _as_coroutine(job: Awaitable[None]) -> None:
    await job


class Supervisor:
    """Runs one actor, restarting it with exponential backoff when it crashes."""

    def __init__(
        self,
        make: Callable[[], Actor],
        *,
        name: str,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
    ) -> None:
        self.make, self.name = make, name
        self.min_backoff_s, self.max_backoff_s, self.stable_s = min_backoff_s, max_backoff_s, stable_s
        self.restarts = 0
        self.actor: Actor | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        backoff = self.min_backoff_s
        while not self._stopping.is_set():
            self.actor = self.make()
            began = time.monotonic()
            try:
                await self.actor.run()
                if self._stopping.is_set():
                    return
                raise RuntimeError("the actor returned without being asked to stop")
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("actor crashed; restarting", extra={"actor": self.name, "backoff_s": backoff})
            if time.monotonic() - began > self.stable_s:
                backoff = self.min_backoff_s
            self.restarts += 1
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, self.max_backoff_s)

    def stop(self) -> None:
        self._stopping.set()
        if self.actor is not None:
            self.actor.request_stop()
