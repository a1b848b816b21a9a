"""The reaper: nothing stays in a transitional status for ever.

Every replica runs it. Each round claims, with `FOR UPDATE SKIP LOCKED`, the volumes and
snapshots whose step has not moved for `volume_step_timeout_s`, touching their step time so
that no other replica takes them in the same round. A step still within its deadline is sent
again (agents are idempotent: a file made twice is made once); past it, it ends:

- creating, extending, deleting past `volume_step_deadline_s` → error, error_extending,
  error_deleting, with a reason saying what did not finish (snapshots alike);
- attaching past `volume_attach_deadline_s` → available (the attachment that never completed
  is dropped and the export undone, best effort); detaching → in-use. Before that deadline,
  attaching and detaching are compute's to drive, and the reaper leaves them alone.
"""

import asyncio
import logging
from collections.abc import Awaitable

import asyncpg

from actors.volume import snapshot_sql, sql, states
from actors.volume.attachments import Attachments
from actors.volume.snapshots import Snapshots
from fabric.service import service_context
from protocol.envelope import Context
from protocol.errors import FabricError

log = logging.getLogger("fabric.volume")

REAP_BATCH = 200
S, SS = states.Status, states.SnapshotStatus


class Reaper(Snapshots, Attachments):
    def saga_jobs(self) -> list[Awaitable[None]]:
        return [self._reap_forever()]

    async def _reap_forever(self) -> None:
        every = max(0.5, self.settings.volume_step_timeout_s / 4)
        while True:
            await asyncio.sleep(every)
            try:
                await self.reap()
            except (FabricError, OSError, asyncpg.PostgresError) as exc:
                log.warning("reaping failed; trying again later", extra={"error": str(exc)})

    async def reap(self) -> int:
        """One round; returns how many volumes and snapshots it drove or ended."""
        async with self.store.transaction() as tx:
            volumes = await sql.stale(tx, self.settings.volume_step_timeout_s, REAP_BATCH)
            snapshots = await snapshot_sql.stale(tx, self.settings.volume_step_timeout_s, REAP_BATCH)
        ctx = service_context()
        for row in volumes:
            await self._redrive_volume(row, ctx)
        for row in snapshots:
            await self._redrive_snapshot(row, ctx)
        return len(volumes) + len(snapshots)

    async def _redrive_volume(self, row: asyncpg.Record, ctx: Context) -> None:
        status, volume_id = S(row["status"]), row["id"]
        attach = status in (S.ATTACHING, S.DETACHING)
        deadline = self.settings.volume_attach_deadline_s if attach else self.settings.volume_step_deadline_s
        if float(row["status_age_s"]) > deadline:
            step, reason = states.DEADLINE[status]
            log.warning(
                "a volume step outlived its deadline", extra={"volume_id": volume_id, "status": status}
            )
            if step == "abandon_attach":
                await self.abandon_attach(volume_id, ctx)
            elif step == "abort_detach":
                async with self.store.connection() as conn:
                    moved = await sql.move(conn, volume_id, step)
                await self._announce([moved], ctx)
            else:
                assert reason is not None
                await self._fail(
                    volume_id, step, reason.format(deadline=f"{deadline:.0f} s"), row["host"], ctx
                )
            return
        log.info("driving a stale volume step again", extra={"volume_id": volume_id, "status": status})
        if status == S.CREATING:
            await self._send_create(row, ctx)
        elif status == S.EXTENDING:
            await self._send_resize(row["host"], row["agent_queue"], volume_id, row["new_size_gb"], ctx)
        elif status == S.DELETING:
            async with self.store.connection() as conn:
                waits_for_snapshots = bool(await snapshot_sql.of_volume(conn, volume_id))
            if not waits_for_snapshots:  # else their own steps are driven, and it follows them
                await self._send_delete(row, ctx)

    async def _redrive_snapshot(self, row: asyncpg.Record, ctx: Context) -> None:
        status, snapshot_id = SS(row["status"]), row["id"]
        deadline = self.settings.volume_step_deadline_s
        if float(row["status_age_s"]) > deadline:
            step, reason = states.SNAPSHOT_DEADLINE[status]
            log.warning("a snapshot step outlived its deadline", extra={"snapshot_id": snapshot_id})
            await self._fail_snapshot(
                snapshot_id, step, reason.format(deadline=f"{deadline:.0f} s"), None, ctx
            )
            return
        if status == SS.CREATING:
            await self._send_snapshot_create(row, ctx)
        else:
            await self._send_snapshot_delete(row, ctx)
