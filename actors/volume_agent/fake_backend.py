"""The `fake` backend: volumes and snapshots as sizes in memory, for scale tests and benchmarks.

It keeps the contract of a real backend (idempotent operations, sources that must exist, sizes
that only grow, a clean-up of what is not expected) so the volume service's sagas run against it
unchanged, but stores nothing: thousands of volumes cost a few dictionary entries, and an
operation costs `latency_s` (0 by default) and no I/O. Its connections are of type `fake`, which
only the compute agent's fake driver accepts.
"""

import asyncio

from actors.volume_agent.backend import BackendError, Capacity, GiB, NoSuchVolume, Removed
from protocol.storage import Connection, ImageFile

#: What a fake host announces when no capacity is configured: room for any benchmark.
DEFAULT_CAPACITY_GB = 1_000_000


class FakeBackend:
    """`VolumeBackend` in memory; see the module docstring."""

    name = "fake"

    def __init__(self, *, capacity_gb: int = DEFAULT_CAPACITY_GB, latency_s: float = 0.0) -> None:
        self.capacity_gb = capacity_gb
        self.latency_s = latency_s
        #: Size in GiB by id.
        self.volumes: dict[str, int] = {}
        self.snapshots: dict[str, int] = {}
        #: (volume id, attachment id) exported now.
        self.exports: set[tuple[str, str]] = set()
        self._used_gb = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def capacity(self) -> Capacity:
        return Capacity(total_gb=self.capacity_gb, free_gb=max(0, self.capacity_gb - self._used_gb))

    async def remove_unexpected(self, volume_ids: frozenset[str], snapshot_ids: frozenset[str]) -> Removed:
        volumes = [v for v in self.volumes if v not in volume_ids]
        snapshots = [s for s in self.snapshots if s not in snapshot_ids]
        for v in volumes:
            self._used_gb -= self.volumes.pop(v)
        for s in snapshots:
            self._used_gb -= self.snapshots.pop(s)
        self.exports = {e for e in self.exports if e[0] in self.volumes}
        return Removed(volume_ids=tuple(volumes), snapshot_ids=tuple(snapshots))

    async def _pause(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        image: ImageFile | None = None,
        snapshot_id: str | None = None,
        source_volume_id: str | None = None,
    ) -> int:
        if volume_id in self.volumes:
            return 0
        if sum(source is not None for source in (image, snapshot_id, source_volume_id)) > 1:
            raise BackendError("a volume has at most one source: an image, a snapshot or a volume")
        needed = 0
        if image is not None:
            needed = -(-image.size // GiB)  # a fake image's virtual size is its byte size
        elif snapshot_id is not None:
            if snapshot_id not in self.snapshots:
                raise BackendError(f"snapshot {snapshot_id} does not exist on this host")
            needed = self.snapshots[snapshot_id]
        elif source_volume_id is not None:
            if source_volume_id not in self.volumes:
                raise BackendError(f"source volume {source_volume_id} does not exist on this host")
            needed = self.volumes[source_volume_id]
        if needed > size_gb:
            raise BackendError(f"the source is {needed} GiB: a volume of {size_gb} GiB cannot hold it")
        await self._pause()
        if volume_id not in self.volumes:  # made by a concurrent create while we paused
            self.volumes[volume_id] = size_gb
            self._used_gb += size_gb
        return 0

    async def resize_volume(self, volume_id: str, size_gb: int) -> None:
        current = self.volumes.get(volume_id)
        if current is None:
            raise NoSuchVolume(volume_id)
        if current > size_gb:
            raise BackendError(f"volume {volume_id} is {current} GiB already: a volume only grows")
        await self._pause()
        self._used_gb += size_gb - self.volumes[volume_id]
        self.volumes[volume_id] = size_gb

    async def delete_volume(self, volume_id: str) -> None:
        await self._pause()
        self._used_gb -= self.volumes.pop(volume_id, 0)
        self.exports = {e for e in self.exports if e[0] != volume_id}

    async def create_snapshot(self, volume_id: str, snapshot_id: str, *, in_use: bool) -> None:
        if snapshot_id in self.snapshots:
            return
        if volume_id not in self.volumes:
            raise NoSuchVolume(volume_id)
        await self._pause()
        if snapshot_id not in self.snapshots:
            self.snapshots[snapshot_id] = self.volumes[volume_id]
            self._used_gb += self.snapshots[snapshot_id]

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self._pause()
        self._used_gb -= self.snapshots.pop(snapshot_id, 0)

    async def export(self, volume_id: str, attachment_id: str, initiator_host: str) -> Connection:
        if volume_id not in self.volumes:
            raise NoSuchVolume(volume_id)
        self.exports.add((volume_id, attachment_id))
        return Connection(driver_volume_type="fake", data={"volume_id": volume_id})

    async def unexport(self, volume_id: str, attachment_id: str) -> None:
        self.exports.discard((volume_id, attachment_id))
