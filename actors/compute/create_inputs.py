"""The flavor and the quota limits every create reads, kept per replica.

Each create needs its flavor (as the caller may use it: public, or private and given to the
project) and its project's quota limits before it makes anything. Read each time, that is one
more statement and one more wait for a pooled connection in the create's answer (under 64
creates in flight, 10–20% of it). They change rarely and only through compute itself, so every
replica keeps what it read, per flavor and viewer (project, admin or not) and per project, and
forgets an entry the moment a replica announces a change (`FlavorChanged` after a delete or an
access change, `QuotaLimitsChanged` after limits are set). An announcement lost on the way is
covered by the entries' age limit. Only found flavors are kept, never a refusal.

Limits are only the ceiling a create checks: the count itself is taken atomically in the
create's statement (migration 006), so two replicas never pass a limit together.
"""

import logging
import time
from collections.abc import Callable

from actors.compute.kept import Kept
from fabric.bus import Bus
from protocol.compute import FlavorChanged, FlavorView, QuotaLimitsChanged
from protocol.envelope import Context
from protocol.errors import FabricError

log = logging.getLogger("fabric.compute")

#: How long an entry is kept without being announced changed.
TTL_S = 30.0
#: How many flavor entries (flavor, viewer) and how many projects' limits are kept.
MAX_ENTRIES = 4096


class CreateInputs:
    """The flavors and limits creates read, kept for TTL_S (see the module's text)."""

    def __init__(
        self, *, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._flavors: Kept[tuple[str, str | None, bool], FlavorView] = Kept(
            ttl_s=ttl_s, max_entries=max_entries, clock=clock
        )
        self._limits: Kept[str | None, dict[str, int]] = Kept(
            ttl_s=ttl_s, max_entries=max_entries, clock=clock
        )

    def get(self, flavor_id: str, ctx: Context) -> tuple[FlavorView, dict[str, int]] | None:
        """The flavor as the caller may use it, and its project's limits; None unless both are
        kept (then the create reads them, with `keep` after)."""
        flavor = self._flavors.get((flavor_id, ctx.project_id, ctx.is_admin))
        limits = self._limits.get(ctx.project_id)
        return None if flavor is None or limits is None else (flavor, limits)

    def keep(self, ctx: Context, flavor: FlavorView, limits: dict[str, int]) -> None:
        self._flavors.put((flavor.id, ctx.project_id, ctx.is_admin), flavor)
        self._limits.put(ctx.project_id, limits)

    def forget_flavor(self, flavor_id: str) -> None:
        self._flavors.forget(lambda key: key[0] == flavor_id)

    def forget_limits(self, project_id: str) -> None:
        self._limits.forget(lambda key: key == project_id)


async def announce(bus: Bus, event: FlavorChanged | QuotaLimitsChanged, ctx: Context) -> None:
    """Tell every compute replica, after the commit. Best effort: the entries also age out, so
    a broker that cannot take the event fails nothing."""
    try:
        await bus.publish(event, ctx, ttl_s=TTL_S)
    except FabricError as exc:
        log.warning("compute change not announced", extra={"event": repr(event), "error": exc.message})
