"""PENDING until served: a zone and its recordsets become ACTIVE once the nameserver answers the
zone's serial that carried their change, as Designate reports it once its pool's nameservers
have the new serial.

PowerDNS reads the database, so it answers a change as soon as it commits; what is confirmed
here is that it does. After each change the handler notes the zone's new serial (`changed`);
one job asks the nameserver for the SOA of every zone noted since it last looked (one query
per zone, however many changes) and marks what that serial covers ACTIVE with two UPDATEs. A
sweep picks up zones left PENDING by a replica that stopped before it confirmed them.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable

from actors.dns import sql
from fabric.bus import Bus
from fabric.config import Settings
from fabric.powerdns import soa_serial
from fabric.service import ServiceActor
from fabric.store import Store

log = logging.getLogger("fabric.dns")

#: A zone the nameserver does not answer yet is asked again this often, for this long; then it
#: is left to the sweep, which looks at zones PENDING for longer than SWEEP_IDLE_S.
RETRY_S = 0.05
RETRY_FOR_S = 5.0
SWEEP_IDLE_S = 5.0


class Served(ServiceActor):
    """Confirms changes served (mixed into `actor.Dns`)."""

    def __init__(self, bus: Bus, store: Store, settings: Settings) -> None:
        super().__init__(bus, store, settings)
        #: zone id → (zone name, the highest serial to see served, since when it waits)
        self._waiting: dict[str, tuple[str, int, float]] = {}
        self._wake = asyncio.Event()

    def changed(self, zone_id: str, name: str, serial: int) -> None:
        """After commit: `serial` of zone `name` is to be seen on the nameserver."""
        _, wanted, since = self._waiting.get(zone_id, (name, 0, time.monotonic()))
        self._waiting[zone_id] = (name, max(wanted, serial), since)
        self._wake.set()

    def served_jobs(self) -> list[Awaitable[None]]:
        return [self._confirm_forever(), self._sweep_forever()]

    async def _confirm_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, {}
            results = await asyncio.gather(
                *(self._confirm(zid, *entry) for zid, entry in batch.items()), return_exceptions=True
            )
            for (zone_id, (name, serial, since)), result in zip(batch.items(), results):
                if isinstance(result, Exception):
                    log.warning("cannot confirm zone %s served: %r", name, result)
                if result is True or time.monotonic() - since > RETRY_FOR_S:
                    continue
                if zone_id not in self._waiting:  # not served yet: ask again shortly
                    self._waiting[zone_id] = (name, serial, since)
                else:
                    _, newer, _ = self._waiting[zone_id]
                    self._waiting[zone_id] = (name, max(newer, serial), since)
            if self._waiting:
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def _confirm(self, zone_id: str, name: str, serial: int, _since: float) -> bool:
        """Whether the nameserver answers `serial` (or later) for the zone; marks it ACTIVE."""
        served = await soa_serial(self.settings.dns_address, self.settings.dns_port, name)
        if served is None or served < serial:
            return False
        async with self.store.connection() as conn:
            await sql.mark_served(conn, zone_id, served)
        return True

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_IDLE_S)
            try:
                async with self.store.connection() as conn:
                    rows = await sql.pending_zones(conn, SWEEP_IDLE_S)
            except Exception:
                log.exception("cannot list zones still pending")
                continue
            for row in rows:
                self.changed(row["id"], row["name"], row["serial"])
