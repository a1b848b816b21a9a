"""Volume agents: one per storage host, each with one backend (`file`: qcow2 files made with
qemu-img; `fake`: nothing on disk, for scale tests). The queue is `volume.<host>`.

Every agent publishes a `VolumeHostReport` at start and periodically; the volume service keeps
the hosts it heard from and picks one for each new volume. Commands that take time are casts,
persisted until done and answered with casts to the `volume` queue; the backend is idempotent
(creating a volume that exists, or deleting one that is gone, succeeds and does nothing), so a
redelivered or re-driven command is harmless. Exporting is a call.

The seam for network backends: `ExportVolume` answers a `Connection`, as Cinder's
`initialize_connection` answers `connection_info`. The compute agent turns it into a libvirt
disk. `file` gives a path on this machine; a network backend (NBD from qemu-storage-daemon,
iSCSI) would answer its own `driver_volume_type` and `data`, and only the compute agent's
mapping of connections to disk XML learns the new type.
"""

from dataclasses import dataclass
from typing import Annotated

from protocol.codec import MaxLen, MinLen, Range
from protocol.storage import Connection as Connection  # re-exported: ExportVolume answers it
from protocol.storage import ImageFile

HostName = Annotated[str, MinLen(1), MaxLen(255)]
Id = Annotated[str, MinLen(1), MaxLen(64)]
SizeGb = Annotated[int, Range(1, 2**20)]


def host_queue(host: str) -> str:
    """The queue of a storage host's volume agent."""
    return f"volume.{host}"


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeHostReport:
    """Event (`volume_agent.VolumeHostReport` on the topic exchange), at start and every report
    interval."""

    host: str
    #: The backend's name, matched against a volume type's `volume_backend_name` extra spec.
    backend: str
    #: Where commands for this host go (`volume.<host>`).
    queue: str
    total_gb: int
    free_gb: int
    availability_zone: str
    reported_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateVolumeFile:
    """Make the volume's storage. At most one source: an image (a copy-on-write overlay on the
    host's cached copy of it), a snapshot, or another volume (both on this host); none: empty.
    Answered by VolumeFileCreated or VolumeFileFailed."""

    host: HostName
    volume_id: Id
    size_gb: SizeGb
    image: ImageFile | None = None
    snapshot_id: Id | None = None
    source_volume_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteVolumeFile:
    """Answered by VolumeFileDeleted (also when it was gone) or VolumeFileFailed."""

    host: HostName
    volume_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ResizeVolumeFile:
    """Grow the volume to `size_gb`. Answered by VolumeFileResized or VolumeFileFailed."""

    host: HostName
    volume_id: Id
    size_gb: SizeGb


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSnapshotFile:
    """Keep the volume's content as it is now under the snapshot's id. `in_use`: the volume is
    attached (a forced snapshot): the backend must read it without taking the writer's lock.
    Answered by SnapshotFileCreated or SnapshotFileFailed."""

    host: HostName
    volume_id: Id
    snapshot_id: Id
    in_use: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSnapshotFile:
    """Answered by SnapshotFileDeleted (also when it was gone) or SnapshotFileFailed."""

    host: HostName
    snapshot_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportVolume:
    """Call: make the volume reachable from `initiator_host` for this attachment. Reply:
    Connection. Idempotent."""

    host: HostName
    volume_id: Id
    attachment_id: Id
    initiator_host: HostName


@dataclass(frozen=True, slots=True, kw_only=True)
class UnexportVolume:
    """Call: the attachment is gone. Reply: system.Done. Idempotent."""

    host: HostName
    volume_id: Id
    attachment_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedFiles:
    """The reply to ListExpectedFiles: what the database says this host holds. The agent
    removes every other volume or snapshot file it finds (what a crash mid-create or mid-delete
    left behind)."""

    volume_ids: tuple[str, ...]
    snapshot_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListExpectedFiles:
    """Call to `volume` from an agent (re)starting. Reply: ExpectedFiles."""

    host: HostName


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeFileCreated:
    host: str
    volume_id: str
    #: Bytes the file takes on disk now (allocated, not apparent).
    allocated_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeFileResized:
    host: str
    volume_id: str
    size_gb: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeFileDeleted:
    host: str
    volume_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeFileFailed:
    """A create, resize or delete failed; `reason` becomes the volume's error reason."""

    host: str
    volume_id: str
    operation: Annotated[str, MaxLen(16)]  # "create", "resize" or "delete"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFileCreated:
    host: str
    snapshot_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFileDeleted:
    host: str
    snapshot_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFileFailed:
    host: str
    snapshot_id: str
    operation: Annotated[str, MaxLen(16)]  # "create" or "delete"
    reason: str


MESSAGES = (
    VolumeHostReport,
    CreateVolumeFile,
    DeleteVolumeFile,
    ResizeVolumeFile,
    CreateSnapshotFile,
    DeleteSnapshotFile,
    ExportVolume,
    UnexportVolume,
    ExpectedFiles,
    ListExpectedFiles,
    VolumeFileCreated,
    VolumeFileResized,
    VolumeFileDeleted,
    VolumeFileFailed,
    SnapshotFileCreated,
    SnapshotFileDeleted,
    SnapshotFileFailed,
)
