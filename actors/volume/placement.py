"""The storage hosts as this replica hears them, and the choice of one for a new volume.

Every replica subscribes to every `VolumeHostReport` (no group) and keeps `hosts.HostView` in
memory: a create reads no database to place its volume. Reports are also written to
`volume.hosts` (only when something changed, or every third of the TTL), which a replica reads
at start and again when its memory has no host for a volume, so that a replica that just
started places volumes at once instead of failing them until the next report interval. A cloud
that is just starting has no host anywhere yet: for its first STARTUP_GRACE_S, a create that
finds none waits for the first report instead of failing with "No valid backend".
"""

import asyncio
import time

from actors.volume import sql
from actors.volume.hosts import HostView, StorageHost
from fabric.actor import subscribes
from fabric.bus import Bus
from fabric.config import Settings
from fabric.service import ServiceActor
from fabric.store import Store
from protocol.envelope import Context
from protocol.volume_agent import VolumeHostReport

#: How long after this replica starts a create waits for the first storage host to report.
STARTUP_GRACE_S = 10.0


class Placement(ServiceActor):
    def __init__(self, bus: Bus, store: Store, settings: Settings) -> None:
        super().__init__(bus, store, settings)
        self.hosts = HostView(
            ttl_s=settings.volume_host_ttl_s, over_subscription_ratio=settings.volume_over_subscription_ratio
        )
        #: What was last written to volume.hosts for each host, and when (monotonic).
        self._written: dict[str, tuple[tuple[object, ...], float]] = {}
        self._started = time.monotonic()
        self._first_report = asyncio.Event()

    @subscribes(VolumeHostReport)
    async def on_host_report(self, report: VolumeHostReport, ctx: Context) -> None:
        now = time.monotonic()
        self.hosts.heard(report, now)
        self._first_report.set()
        facts = (
            report.host,
            report.backend,
            report.queue,
            report.availability_zone,
            report.total_gb,
            report.free_gb,
        )
        written = self._written.get(report.host)
        if written is None or written[0] != facts or now - written[1] > self.settings.volume_host_ttl_s / 3:
            async with self.store.connection() as conn:
                await sql.upsert_host(conn, (*facts, report.reported_at))
            self._written[report.host] = (facts, now)

    async def load_hosts(self) -> None:
        """Learn the hosts from the database, each as old as its last report."""
        async with self.store.connection() as conn:
            rows = await sql.all_hosts(conn)
        now = time.monotonic()
        for r in rows:
            self.hosts.learn(
                StorageHost(
                    name=r["host"],
                    backend=r["backend"],
                    queue=r["queue"],
                    availability_zone=r["availability_zone"],
                    total_gb=r["total_gb"],
                    free_gb=r["free_gb"],
                    seen_at=now - float(r["age_s"]),
                )
            )

    async def pick_host(self, size_gb: int, *, backend: str | None, zone: str | None) -> StorageHost | None:
        """The host for a new volume, counted as placed there; None: no valid backend."""
        host = self.hosts.pick(size_gb, backend=backend, zone=zone, now=time.monotonic())
        if host is None:
            await self.load_hosts()
            host = self.hosts.pick(size_gb, backend=backend, zone=zone, now=time.monotonic())
        grace = self._started + STARTUP_GRACE_S - time.monotonic()
        if host is None and not self._first_report.is_set() and grace > 0:
            try:
                await asyncio.wait_for(self._first_report.wait(), grace)
            except TimeoutError:
                return None
            host = self.hosts.pick(size_gb, backend=backend, zone=zone, now=time.monotonic())
        if host is not None:
            self.hosts.place(host, size_gb)
        return host

    async def known_zones(self) -> set[str]:
        zones = self.hosts.zones()
        if not zones:
            await self.load_hosts()
            zones = self.hosts.zones()
        return zones
