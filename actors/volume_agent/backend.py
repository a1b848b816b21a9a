"""The seam between a volume agent and its storage: what a backend must do.

A backend holds the volumes and snapshots of one storage host. Every operation is idempotent and
keyed by the volume or snapshot id, because the agent may be asked twice (a redelivered command,
a step the volume service re-drives after a crash): creating what exists, or deleting what is
gone, succeeds and does nothing. A failure a user should read is a `BackendError`; a failed or
cancelled operation leaves nothing half-made behind.

Two backends implement it: `file` (qcow2 files made with qemu-img, `file_backend.py`) and `fake`
(in memory, for scale tests and benchmarks, `fake_backend.py`). A network backend (NBD exports
from qemu-storage-daemon, iSCSI) would be a third: it answers `export` with its own
`Connection` type, and only the compute agent's mapping of connections to libvirt disks learns
the new type; the volume service and the agent do not change.
"""

from dataclasses import dataclass
from typing import Protocol

from protocol.storage import Connection, ImageFile

GiB = 2**30


@dataclass(frozen=True, slots=True)
class Capacity:
    total_gb: int
    free_gb: int


@dataclass(frozen=True, slots=True)
class Removed:
    """What a clean-up at start removed: ids of volumes and snapshots nobody expects, and the
    temporary files of operations a crash cut short."""

    volume_ids: tuple[str, ...] = ()
    snapshot_ids: tuple[str, ...] = ()
    temporary: tuple[str, ...] = ()


class BackendError(Exception):
    """The storage could not do what was asked; `reason` becomes the volume's (or snapshot's)
    error reason, so it says what went wrong in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoSuchVolume(BackendError):
    """An action on a volume this host does not hold."""

    def __init__(self, volume_id: str) -> None:
        super().__init__(f"volume {volume_id} does not exist on this host")
        self.volume_id = volume_id


class VolumeBackend(Protocol):
    #: Matched against a volume type's `volume_backend_name` (`file`, `fake`).
    name: str

    async def start(self) -> None:
        """Prepare the storage (directories, what exists) before the first command."""

    async def close(self) -> None: ...

    async def capacity(self) -> Capacity:
        """What the host's reports announce."""

    async def remove_unexpected(self, volume_ids: frozenset[str], snapshot_ids: frozenset[str]) -> Removed:
        """Remove every volume and snapshot not named (what a crash mid-create or mid-delete
        left), and every temporary file. Called once at start, before any command runs."""

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        image: ImageFile | None = None,
        snapshot_id: str | None = None,
        source_volume_id: str | None = None,
    ) -> int:
        """Make the volume: empty, or holding the image's, the snapshot's or the other volume's
        data (at most one source). Returns the bytes it takes on disk now. Exists: no-op."""

    async def resize_volume(self, volume_id: str, size_gb: int) -> None:
        """Grow the volume (never while attached: the volume service only extends available
        ones). Already that size: no-op."""

    async def delete_volume(self, volume_id: str) -> None:
        """Gone already: no-op."""

    async def create_snapshot(self, volume_id: str, snapshot_id: str, *, in_use: bool) -> None:
        """Keep the volume's data as it is now. `in_use`: a guest has it open, so it is read
        without taking the writer's lock (and is only crash-consistent). Exists: no-op."""

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Volumes made from the snapshot do not depend on it. Gone already: no-op."""

    async def export(self, volume_id: str, attachment_id: str, initiator_host: str) -> Connection:
        """How `initiator_host`'s hypervisor reaches the volume (Cinder's
        `initialize_connection`). Raises `NoSuchVolume` when it does not exist here."""

    async def unexport(self, volume_id: str, attachment_id: str) -> None:
        """The attachment is gone; not exported: no-op."""
