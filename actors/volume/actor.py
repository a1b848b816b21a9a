"""The volume service (Cinder's core), behind the `volume` queue: one actor class made of
mixins, one per concern: volumes and their sagas (`volumes.py`), snapshots (`snapshots.py`),
attachments (`attachments.py`), the reaper (`reaper.py`), volume types (`volume_types.py`),
quotas (`quotas.py`), and where new volumes go (`placement.py`, `hosts.py`).

The storage itself is the volume agents' (`protocol/volume_agent.py`): this service decides and
records, in schema `volume`, and tells the agent of a volume's host what to do.
"""

from collections.abc import Awaitable
from pathlib import Path

from actors.volume import sql
from actors.volume.quotas import Quotas
from actors.volume.reaper import Reaper
from actors.volume.volume_types import VolumeTypes
from fabric.actor import handles
from fabric.service import require_admin
from protocol.envelope import Context
from protocol.volume import QUEUE
from protocol.volume_agent import ExpectedFiles, ListExpectedFiles

MIGRATIONS = Path(__file__).parent / "migrations"


class Volume(Reaper, VolumeTypes, Quotas):
    service = QUEUE

    async def setup(self) -> None:
        await self.register_endpoint("block-storage", "cinderv3", "/volume/v3/$(project_id)s")
        await self.load_hosts()

    async def background(self) -> list[Awaitable[None]]:
        return self.saga_jobs()

    @handles(ListExpectedFiles)
    async def list_expected_files(self, msg: ListExpectedFiles, ctx: Context) -> ExpectedFiles:
        """What an agent (re)starting may keep: every volume and snapshot the database puts on
        its host, whatever the status. `creating` ones included, so that a create driven again
        is not undone; `deleting` ones too, whose delete the agent is about to be told of."""
        require_admin(ctx, "volume:list_expected_files")  # agents, on the service's behalf
        async with self.store.connection() as conn:
            volumes, snapshots = await sql.on_host(conn, msg.host)
        return ExpectedFiles(volume_ids=tuple(volumes), snapshot_ids=tuple(snapshots))
