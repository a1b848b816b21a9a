"""The scheduler service: the fleet as agents report it, and placements that stick.

Every replica hears every capacity report and keeps the whole fleet in memory (`fleet.Fleet`),
so picking a host needs no database read. Claiming one is a single conditional statement in
PostgreSQL (`sql.CLAIM`), which is what makes replicas safe side by side: when two race for
the last room on a host, one statement matches and the other does not, and the loser refreshes
that host and claims its next candidate.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from actors.scheduler import sql
from actors.scheduler.claims import Claim, ClaimBatcher
from actors.scheduler.fleet import Fleet, Host, Request, explain
from fabric.actor import handles, subscribes
from fabric.bus import Bus
from fabric.config import Settings
from fabric.service import ServiceActor, require_admin
from fabric.store import Store
from protocol.envelope import Context
from protocol.errors import NotFound, NoValidHost
from protocol.network_agent import NetworkAgentReport
from protocol.scheduler import (
    QUEUE,
    AvailabilityZones,
    CapacityReport,
    ExplainPlacement,
    GetHypervisor,
    GetHypervisorStatistics,
    HypervisorList,
    HypervisorStatistics,
    HypervisorView,
    ListAvailabilityZones,
    ListHypervisors,
    Placed,
    PlacementExplanation,
    PlaceServer,
    ReleaseAllocation,
)
from protocol.system import Done

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("fabric.scheduler")

#: How often reports are written to the database, and usage reread from it.
FLUSH_S = 0.1
REFRESH_S = 1.0
#: Rounds of picking before giving up with NoValidHost (each round after lost claims).
PICK_ROUNDS = 3


class Scheduler(ServiceActor):
    service = QUEUE

    def __init__(self, bus: Bus, store: Store, settings: Settings) -> None:
        super().__init__(bus, store, settings)
        s = settings
        self.fleet = Fleet(sample=s.scheduler_sample, weigher=s.scheduler_weigher, ttl_s=s.host_ttl_s)
        self.claims = ClaimBatcher(store)
        #: Host rows to write at the next flush, and when each host's row was last written.
        self._pending: dict[str, tuple[object, ...]] = {}
        self._written: dict[str, tuple[tuple[object, ...], float]] = {}

    async def setup(self) -> None:
        await self._refresh()

    async def background(self) -> list[Awaitable[None]]:
        return [self._flush_forever(), self._refresh_forever()]

    # --- the fleet view ----------------------------------------------------------------------

    def _limits(self, r: CapacityReport) -> tuple[int, int, int]:
        s = self.settings
        return (
            int(r.vcpus * s.cpu_allocation_ratio),
            int(r.ram_mb * s.ram_allocation_ratio),
            int(r.disk_gb * s.disk_allocation_ratio),
        )

    @subscribes(NetworkAgentReport)
    async def on_network_agent(self, report: NetworkAgentReport, ctx: Context) -> None:
        """Heard in memory only: a replica that starts learns the agents within one interval."""
        host = self.fleet.hosts.get(report.host)
        if host is not None:
            host.network_seen_at = time.monotonic()

    @subscribes(CapacityReport)
    async def on_capacity(self, report: CapacityReport, ctx: Context) -> None:
        vcpus_limit, ram_limit, disk_limit = self._limits(report)
        self.fleet.upsert(
            Host(
                name=report.host,
                queue=report.queue,
                hypervisor_type=report.hypervisor_type,
                availability_zone=report.availability_zone,
                vcpus_limit=vcpus_limit,
                ram_mb_limit=ram_limit,
                disk_gb_limit=disk_limit,
                seen_at=time.monotonic(),
            )
        )
        facts = (
            report.host, report.queue, report.hypervisor_type, report.availability_zone,
            report.vcpus, report.ram_mb, report.disk_gb, vcpus_limit, ram_limit, disk_limit,
            report.running,
        )  # fmt: skip
        written = self._written.get(report.host)
        now = time.monotonic()
        if written is None or written[0] != facts or now - written[1] > self.settings.host_ttl_s / 3:
            self._pending[report.host] = (*facts, datetime.fromtimestamp(report.sent_at, UTC))

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = list(self._pending.values()), {}
        rows.sort(key=lambda row: str(row[0]))  # one lock order for every replica
        try:
            async with self.store.connection() as tx:
                await sql.upsert_hosts(tx, rows)
        except BaseException:
            for row in rows:  # not written: keep them for the next flush
                self._pending.setdefault(str(row[0]), row)
            raise
        now = time.monotonic()
        for row in rows:
            self._written[str(row[0])] = (row[:11], now)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self._refresh()

    async def _refresh(self) -> None:
        """Reread every host's usage: other replicas' claims and releases land in the database,
        not in this view. Hosts this replica never heard from come in with their last report's
        age, so the TTL still applies to them."""
        async with self.store.connection() as tx:
            rows = await sql.all_hosts(tx)
        wall, mono = time.time(), time.monotonic()
        for r in rows:
            self._learn(r, seen_at=mono - (wall - float(r["reported"])))

    def _learn(self, r: asyncpg.Record, *, seen_at: float | None = None) -> None:
        host = self.fleet.hosts.get(r["host"])
        if host is None:
            if seen_at is None:  # a claim's or release's row, for a host we forgot: ignore
                return
            host = self.fleet.upsert(
                Host(
                    name=r["host"],
                    queue=r["queue"],
                    hypervisor_type=r["hypervisor_type"],
                    availability_zone=r["availability_zone"],
                    enabled=r["enabled"],
                    vcpus_limit=r["vcpus_limit"],
                    ram_mb_limit=r["ram_mb_limit"],
                    disk_gb_limit=r["disk_gb_limit"],
                    seen_at=seen_at,
                )
            )
        elif seen_at is not None:
            host.enabled = r["enabled"]
            host.seen_at = max(host.seen_at, seen_at)
        host.used_vcpus, host.used_ram_mb, host.used_disk_gb = (
            r["used_vcpus"],
            r["used_ram_mb"],
            r["used_disk_gb"],
        )

    # --- placing -----------------------------------------------------------------------------

    @handles(PlaceServer)
    async def place_server(self, msg: PlaceServer, ctx: Context) -> Placed:
        req = Request(
            resources=msg.resources,
            availability_zone=msg.availability_zone,
            exclude_hosts=frozenset(msg.exclude_hosts),
            group_policy=msg.group_policy,
            group_hosts=frozenset(msg.group_hosts),
            force_host=msg.force_host,
            needs_network=msg.needs_network,
        )
        for _ in range(PICK_ROUNDS):
            candidates = self.fleet.candidates(req, time.monotonic())
            if not candidates:
                break
            for host in candidates:
                placed = await self._claim(msg, host)
                if placed is not None:
                    return placed
        rejected, passing = self.fleet.rejections(req, time.monotonic())
        reason = explain(len(self.fleet), rejected)
        if passing:
            reason += (
                f" {len(passing)} host(s) passed the filters, but other placements took their room first."
            )
        raise NoValidHost(reason)

    async def _claim(self, msg: PlaceServer, host: Host) -> Placed | None:
        if host.name not in self._written:  # heard of, but maybe not in the database yet
            await self._flush()
        claim = Claim(
            server_id=msg.server_id, host=host.name, project_id=msg.project_id, resources=msg.resources
        )
        try:
            row = await self.claims.claim(claim)
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            # Another replica claimed for the same server at the same moment, or batches
            # crossed: this claim alone, as one statement, says which.
            async with self.store.connection() as conn:
                try:
                    row = await sql.claim(conn, msg.server_id, host.name, msg.project_id, msg.resources)
                except asyncpg.UniqueViolationError:
                    row = None
        if row is not None:
            self._learn(row)
            return Placed(
                server_id=msg.server_id,
                host=row["host"],
                queue=row["queue"],
                availability_zone=host.availability_zone,
            )
        async with self.store.connection() as conn:
            existing = await sql.allocation(conn, msg.server_id)
            if existing is not None:
                if existing["host"] not in msg.exclude_hosts:  # asked again: the answer it had
                    return Placed(
                        server_id=msg.server_id,
                        host=existing["host"],
                        queue=existing["queue"],
                        availability_zone=existing["availability_zone"],
                    )
                # Held on a host that failed to spawn it and never released: free it first.
                self._learn_if(await sql.release(conn, msg.server_id, existing["host"]))
            # Refused: this view of the host was stale. Learn its real usage.
            self._learn_if(await sql.host_usage(conn, host.name))
        return None

    def _learn_if(self, row: asyncpg.Record | None) -> None:
        if row is not None:
            self._learn(row)

    @handles(ReleaseAllocation, key=lambda m: m.server_id)
    async def release_allocation(self, msg: ReleaseAllocation, ctx: Context) -> Done:
        async with self.store.connection() as tx:
            self._learn_if(await sql.release(tx, msg.server_id, msg.host))
        return Done()

    @handles(ExplainPlacement)
    async def explain_placement(self, msg: ExplainPlacement, ctx: Context) -> PlacementExplanation:
        require_admin(ctx, "scheduler:explain")
        req = Request(resources=msg.resources, availability_zone=msg.availability_zone)
        rejected, passing = self.fleet.rejections(req, time.monotonic())
        summary = (
            f"{len(passing)} of {len(self.fleet)} host(s) can take it."
            if passing
            else f"No valid host was found. {explain(len(self.fleet), rejected)}"
        )
        return PlacementExplanation(
            hosts=len(self.fleet),
            rejected=rejected,
            candidates=tuple(h.name for h in passing[:10]),
            summary=summary,
        )

    # --- hypervisors and zones ---------------------------------------------------------------

    @handles(ListHypervisors)
    async def list_hypervisors(self, msg: ListHypervisors, ctx: Context) -> HypervisorList:
        require_admin(ctx, "os_compute_api:os-hypervisors")
        async with self.store.connection() as tx:
            rows = await sql.list_hypervisors(tx, host=msg.host, marker=msg.marker, limit=msg.limit + 1)
        now, ttl = time.time(), self.settings.host_ttl_s
        items = tuple(sql.hypervisor_view(r, now=now, ttl_s=ttl) for r in rows[: msg.limit])
        return HypervisorList(items=items, more=len(rows) > msg.limit)

    @handles(GetHypervisorStatistics)
    async def hypervisor_statistics(self, msg: GetHypervisorStatistics, ctx: Context) -> HypervisorStatistics:
        require_admin(ctx, "os_compute_api:os-hypervisors")
        async with self.store.connection() as conn:
            row = await sql.hypervisor_totals(conn)
        return HypervisorStatistics(**{k: int(row[k]) for k in row.keys()})

    @handles(GetHypervisor)
    async def get_hypervisor(self, msg: GetHypervisor, ctx: Context) -> HypervisorView:
        require_admin(ctx, "os_compute_api:os-hypervisors")
        async with self.store.connection() as tx:
            row = await sql.get_hypervisor(tx, msg.hypervisor_id)
        if row is None:
            raise NotFound("hypervisor", str(msg.hypervisor_id))
        return sql.hypervisor_view(row, now=time.time(), ttl_s=self.settings.host_ttl_s)

    @handles(ListAvailabilityZones)
    async def list_zones(self, msg: ListAvailabilityZones, ctx: Context) -> AvailabilityZones:
        async with self.store.connection() as tx:
            rows = await sql.zones(tx)
        zones: dict[str, list[str]] = {}
        available: set[str] = set()
        cutoff = time.time() - self.settings.host_ttl_s
        for r in rows:
            zones.setdefault(r["availability_zone"], []).append(r["host"])
            if r["enabled"] and float(r["reported"]) >= cutoff:
                available.add(r["availability_zone"])
        return AvailabilityZones(
            zones={z: tuple(hosts) for z, hosts in zones.items()}, available=tuple(sorted(available))
        )
