"""What a gateway knows of identity, kept current by events instead of per-request lookups.

- the token keys, fetched once from the identity service;
- the revocation list: loaded at start-up and after every reconnect, and kept current by the
  `TokensRevoked` events every gateway receives on its own subscription;
- the catalog, cached until a `CatalogChanged` event.

So checking a token costs one AES-GCM open and a few dictionary lookups, and no round trip.
The subscription is made before the first load, so no revocation can slip between the two.
"""

import asyncio
import logging
import time
import uuid

from fabric.bus import Bus, Consumer
from fabric.tokens import RevocationList, TokenSealer, check
from protocol.envelope import Context
from protocol.errors import FabricError, Unavailable
from protocol.identity import (
    QUEUE,
    Catalog,
    CatalogChanged,
    GetCatalog,
    GetTokenKeys,
    ListRevocations,
    TokenData,
    TokenKeys,
    TokensRevoked,
)
from protocol.registry import type_name

log = logging.getLogger("fabric.gateway.auth")

REQUEST_TIMEOUT_S = 60.0
PRUNE_EVERY_S = 600.0


def service_context(request_id: str | None = None) -> Context:
    """The context of the gateway acting for itself (no user), e.g. loading keys."""
    return Context(request_id=request_id or f"req-{uuid.uuid4()}", deadline=time.time() + 10)


class Auth:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.sealer: TokenSealer | None = None
        self.revocations = RevocationList()
        self._catalog: Catalog | None = None
        self._catalog_generation = 0  # bumped by CatalogChanged: a load begun before is stale
        self._catalog_loading: asyncio.Future[Catalog] | None = None
        self._subscription: Consumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(
            (type_name(TokensRevoked), type_name(CatalogChanged)), self._on_event
        )
        self.bus.on_restored(self.reload)
        self._spawn(self._load_until_ready())
        self._spawn(self._prune())

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop(drain_s=1.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: "asyncio._CoroutineLike[None]") -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load_until_ready(self) -> None:
        pause = 0.2
        while True:
            try:
                await self.reload()
                return
            except FabricError as exc:
                log.warning("identity not answering yet; retrying", extra={"error": exc.message})
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def reload(self) -> None:
        ctx = service_context()
        keys: TokenKeys = await self.bus.call(QUEUE, GetTokenKeys(), ctx, timeout_s=5)
        self.sealer = TokenSealer(keys.keys)
        revocations = await self.bus.call(QUEUE, ListRevocations(), ctx, timeout_s=5)
        self.revocations.add_all(revocations.items)
        self._catalog = None
        self._catalog_generation += 1
        self.ready.set()
        log.info("identity state loaded", extra={"revocations": len(self.revocations)})

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            self.revocations.prune()

    async def _on_event(self, event: object, ctx: Context) -> None:
        if isinstance(event, TokensRevoked):
            self.revocations.add(event.revocation)
        elif isinstance(event, CatalogChanged):
            self._catalog = None
            self._catalog_generation += 1

    def anonymous(self, request_id: str) -> Context:
        """The context of a request that carries no token (asking for one)."""
        return Context(request_id=request_id, deadline=time.time() + REQUEST_TIMEOUT_S)

    def check(self, token: str) -> TokenData:
        """The token's data if it is valid now; Unauthorized otherwise."""
        if self.sealer is None:
            raise Unavailable("identity service (token keys not loaded yet)")
        return check(self.sealer, self.revocations, token)

    async def catalog(self) -> Catalog:
        if self._catalog is not None:
            return self._catalog
        if self._catalog_loading is None:
            # One load for every request that needs the catalog while it is missing.
            self._catalog_loading = asyncio.get_running_loop().create_future()
            loading = self._catalog_loading
            generation = self._catalog_generation
            try:
                catalog: Catalog = await self.bus.call(QUEUE, GetCatalog(), service_context(), timeout_s=10)
                if generation == self._catalog_generation:
                    self._catalog = catalog
                loading.set_result(catalog)
            except BaseException as exc:
                loading.set_exception(exc)
                loading.exception()  # retrieved here, so a failure with no waiters is not logged twice
                raise
            finally:
                self._catalog_loading = None
            return catalog
        return await asyncio.shield(self._catalog_loading)


def context_for(data: TokenData, request_id: str) -> Context:
    return Context(
        request_id=request_id,
        user_id=data.user_id,
        project_id=data.project_id,
        domain_id=data.domain_id,
        roles=tuple(r.name for r in data.roles),
        deadline=time.time() + REQUEST_TIMEOUT_S,
    )
