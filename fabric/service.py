"""What every service actor shares: its database and settings, its health, and its place in
the catalog (announced to identity at each start, idempotently, so a moved gateway URL or a
new region takes effect on restart)."""

import time
import uuid

from fabric.actor import Actor
from fabric.bus import Bus
from fabric.config import Settings
from fabric.store import Store
from protocol.envelope import Context
from protocol.errors import Forbidden
from protocol.identity import QUEUE as IDENTITY
from protocol.identity import RegisterService


def require_admin(ctx: Context, action: str) -> None:
    """Admin-only operations name their policy rule in the 403, as OpenStack services do."""
    if not ctx.is_admin:
        raise Forbidden(action)


def service_context(request_id: str | None = None, *, timeout_s: float = 60.0) -> Context:
    """The context of a service acting on its own behalf (a saga step, a reaper), as Nova uses
    its service user with Neutron: admin on the bus, which only services reach."""
    return Context(
        request_id=request_id or f"req-{uuid.uuid4()}", roles=("admin",), deadline=time.time() + timeout_s
    )


def require_member(ctx: Context, action: str) -> None:
    """Creating and changing things takes the member role (admin implies it); a reader only
    reads."""
    if "member" not in ctx.roles and not ctx.is_admin:
        raise Forbidden(action)


class ServiceActor(Actor):
    def __init__(self, bus: Bus, store: Store, settings: Settings) -> None:
        super().__init__(bus)
        self.store = store
        self.settings = settings

    async def check_database(self) -> bool:
        return await self.store.is_healthy()

    async def register_endpoint(self, type: str, name: str, path: str) -> None:
        """Put `gateway_url + path` in the catalog as this service's public, internal and admin
        endpoint."""
        msg = RegisterService(
            type=type,
            name=name,
            url=f"{self.settings.gateway_url}{path}",
            region=self.settings.region,
            interfaces=("public", "internal", "admin"),
        )
        ctx = Context(request_id=f"req-{uuid.uuid4()}", deadline=time.time() + 30)
        await self.bus.call(IDENTITY, msg, ctx)
