"""Claims in batches: one statement claims every placement waiting at that moment.

A claim is a conditional update of the host's usage plus an allocation row. Sent one by one,
each costs a commit (a WAL flush), and commits are what PostgreSQL does fewest of per second.
So claims queue here, and whenever no batch is in flight, everything queued goes in one
statement: group commit, with no waiting added when the load is light (a lone claim is a batch
of one) and ever larger batches as it grows.

The statement sums each host's claims and updates the host once, only if the sum fits; a host
that would overflow refuses every claim of that batch on it, and those claims come back as
refused, to be tried on the next candidate. A server that holds an allocation already is left
out (a repeated request), so a batch never claims twice for one server.
"""

import asyncio
from dataclasses import dataclass

import asyncpg

from fabric.store import Store
from protocol.scheduler import Resources

#: At most this many claims per statement.
MAX_BATCH = 512

CLAIM_BATCH = """
WITH req AS (
    SELECT r.* FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::int[], $6::text[])
                 AS r(server_id, host, vcpus, ram_mb, disk_gb, project_id)
     WHERE NOT EXISTS (SELECT 1 FROM scheduler.allocations a WHERE a.server_id = r.server_id)
), per_host AS (
    SELECT host, sum(vcpus)::int AS v, sum(ram_mb)::bigint AS r, sum(disk_gb)::int AS d, count(*)::int AS n
      FROM req GROUP BY host
), locked AS MATERIALIZED (
    -- One lock order (by host) for every replica's batches, so that two never deadlock.
    SELECT h.host FROM scheduler.hosts h WHERE h.host IN (SELECT host FROM per_host)
     ORDER BY h.host FOR UPDATE
), claimed AS (
    UPDATE scheduler.hosts h
       SET used_vcpus = used_vcpus + p.v, used_ram_mb = used_ram_mb + p.r,
           used_disk_gb = used_disk_gb + p.d, allocations = allocations + p.n
      FROM per_host p JOIN locked l USING (host)
     WHERE h.host = p.host AND h.enabled
       AND h.used_vcpus + p.v <= h.vcpus_limit AND h.used_ram_mb + p.r <= h.ram_mb_limit
       AND h.used_disk_gb + p.d <= h.disk_gb_limit
    RETURNING h.host, h.queue, h.used_vcpus, h.used_ram_mb, h.used_disk_gb
), allocated AS (
    INSERT INTO scheduler.allocations (server_id, host, project_id, vcpus, ram_mb, disk_gb)
    SELECT r.server_id, r.host, r.project_id, r.vcpus, r.ram_mb, r.disk_gb
      FROM req r JOIN claimed USING (host)
    RETURNING server_id
)
SELECT a.server_id, c.host, c.queue, c.used_vcpus, c.used_ram_mb, c.used_disk_gb
  FROM allocated a JOIN req r USING (server_id) JOIN claimed c ON c.host = r.host
"""


@dataclass(frozen=True, slots=True)
class Claim:
    server_id: str
    host: str
    project_id: str
    resources: Resources


class ClaimBatcher:
    """`claim()` answers the host's row (queue and new usage) when the claim stuck, None when
    it was refused. Errors of a batch (a deadlock, a lost connection) reach every claim in it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: list[tuple[Claim, asyncio.Future[asyncpg.Record | None]]] = []
        #: The task sending batches while claims keep coming; None when idle.
        self._sender: asyncio.Task[None] | None = None

    async def claim(self, claim: Claim) -> asyncpg.Record | None:
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._queue.append((claim, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="scheduler:claims")
        return await future

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[Claim, "asyncio.Future[asyncpg.Record | None]"]]) -> None:
        # One claim per server in a statement: a second one (the same request twice in flight)
        # is answered as refused, and its caller then finds the allocation the first one made.
        seen: set[str] = set()
        claims = []
        for claim, _ in batch:
            if claim.server_id not in seen:
                seen.add(claim.server_id)
                claims.append(claim)
        try:
            async with self.store.connection() as conn:
                rows = await conn.fetch(
                    CLAIM_BATCH,
                    [c.server_id for c in claims],
                    [c.host for c in claims],
                    [c.resources.vcpus for c in claims],
                    [c.resources.ram_mb for c in claims],
                    [c.resources.disk_gb for c in claims],
                    [c.project_id for c in claims],
                )
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        by_server = {r["server_id"]: r for r in rows}
        for claim, future in batch:
            if not future.done():
                future.set_result(by_server.pop(claim.server_id, None))
