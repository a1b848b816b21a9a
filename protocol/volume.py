"""Block storage (Cinder's core): volumes, snapshots, volume types, quotas, and the attachment
calls compute makes. The queue is `volume`.

A volume's life, in Cinder's statuses:

    creating ──file made──► available ──reserve──► attaching ──disk attached──► in-use
        │                     │  ▲  ▲                 │ attach failed: back to available
        └─► error (reason)    │  │  └── detached ── detaching ◄──begin detach── in-use
                              │  └── extended ◄── extending
                              └──delete──► deleting ──file removed──► (gone)
                                               └──► error_deleting (reason)

Every step is one conditional UPDATE naming the status it expects, so a replayed message
changes nothing; a reaper drives again any step idle too long. The storage itself is a volume
agent's (`protocol/volume_agent.py`).
"""

from dataclasses import dataclass, field
from typing import Annotated

from protocol.codec import MaxLen, MinLen, Range
from protocol.storage import Connection

QUEUE = "volume"

Id = Annotated[str, MinLen(1), MaxLen(64)]
NewId = Annotated[str, MinLen(36), MaxLen(36)]
Name = Annotated[str, MaxLen(255)]
Description = Annotated[str, MaxLen(1024)]
Metadata = Annotated[dict[str, Annotated[str, MaxLen(255)]], MaxLen(128)]
SizeGb = Annotated[int, Range(1, 2**20)]
QuotaLimit = Annotated[int, Range(-1, 2**31)]

#: Cinder's quota defaults for the quotas this service enforces (-1: unlimited).
DEFAULT_QUOTAS: dict[str, int] = {
    "volumes": 10,
    "gigabytes": 1000,
    "snapshots": 10,
    "per_volume_gigabytes": -1,
}

#: The statuses a volume passes through on its way somewhere: none may last past a deadline.
TRANSITIONAL = frozenset({"creating", "attaching", "detaching", "extending", "deleting"})


# --- volumes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentView:
    attachment_id: str
    volume_id: str
    server_id: str
    #: The compute host of the server.
    host: str | None
    #: The device name compute gave (a hint to the guest, as in Nova).
    device: str | None
    attached_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeView:
    id: str
    name: str
    description: str | None
    project_id: str
    user_id: str
    size_gb: int
    status: str
    #: Why the volume is in `error` / `error_deleting` / `error_extending`; None otherwise.
    error_reason: str | None
    availability_zone: str
    #: The volume type's name.
    volume_type: str
    bootable: bool
    #: For a volume made from an image: the image's id, name, formats and properties (Cinder's
    #: `volume_image_metadata`), what boot from volume uses in place of the image.
    image_metadata: dict[str, str]
    snapshot_id: str | None
    source_volume_id: str | None
    metadata: dict[str, str]
    #: The storage host (admins see it as `os-vol-host-attr:host`).
    host: str | None
    attachments: tuple[AttachmentView, ...]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeList:
    items: tuple[VolumeView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateVolume:
    """Reply: VolumeView (`creating`). The caller picks the id, so a retried create returns the
    same volume. At most one source; `size_gb` None takes the source's size (required without
    one). QuotaExceeded for volumes, gigabytes or per_volume_gigabytes."""

    volume_id: NewId
    size_gb: SizeGb | None = None
    name: Name = ""
    description: Description | None = None
    #: A type's name or id; None: the default type.
    volume_type: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    image_id: Id | None = None
    snapshot_id: Id | None = None
    source_volume_id: Id | None = None
    availability_zone: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetVolume:
    """Reply: VolumeView; NotFound for another project's volume (unless admin)."""

    volume_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListVolumes:
    """The caller's project's volumes, newest first; admins may ask for all projects' or one's.
    Equality filters; `metadata`: every pair must match. Reply: VolumeList."""

    name: Name | None = None
    status: Annotated[str, MaxLen(32)] | None = None
    metadata: Metadata | None = None
    bootable: bool | None = None
    all_projects: bool = False
    project_id: Id | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateVolume:
    """Name, description, metadata (replaced whole); None: unchanged. Reply: VolumeView."""

    volume_id: Id
    name: Name | None = None
    description: Description | None = None
    metadata: Metadata | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetVolumeBootable:
    """Cinder's os-set_bootable. Reply: Done."""

    volume_id: Id
    bootable: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendVolume:
    """os-extend: an `available` volume grows to `new_size_gb` (`extending` until the agent is
    done). Invalid when not larger; Conflict-free 400 (as Cinder) when not available;
    QuotaExceeded for gigabytes. Reply: Done."""

    volume_id: Id
    new_size_gb: SizeGb


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteVolume:
    """Reply: Done (`deleting`; gone once its file is). Invalid (400, as Cinder) while attached
    or in a transitional status, or with snapshots unless `cascade` (which deletes them
    first)."""

    volume_id: Id
    cascade: bool = False


# --- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotView:
    id: str
    volume_id: str
    project_id: str
    user_id: str
    name: str
    description: str | None
    size_gb: int
    status: str
    error_reason: str | None
    metadata: dict[str, str]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotList:
    items: tuple[SnapshotView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSnapshot:
    """Of an `available` volume, or an `in-use` one with `force`. Reply: SnapshotView
    (`creating`). QuotaExceeded for snapshots."""

    snapshot_id: NewId
    volume_id: Id
    name: Name = ""
    description: Description | None = None
    force: bool = False
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSnapshot:
    snapshot_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListSnapshots:
    name: Name | None = None
    status: Annotated[str, MaxLen(32)] | None = None
    volume_id: Id | None = None
    all_projects: bool = False
    project_id: Id | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSnapshot:
    snapshot_id: Id
    name: Name | None = None
    description: Description | None = None
    metadata: Metadata | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSnapshot:
    """Reply: Done (`deleting`). Invalid while volumes made from it are being created."""

    snapshot_id: Id


# --- volume types ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeTypeView:
    id: str
    name: str
    description: str | None
    is_public: bool
    #: `volume_backend_name` picks the backend of the hosts that may hold the type's volumes.
    extra_specs: dict[str, str]
    is_default: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeTypeList:
    items: tuple[VolumeTypeView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateVolumeType:
    """Admins only. Conflict for a taken name. Reply: VolumeTypeView."""

    type_id: NewId
    name: Annotated[str, MinLen(1), MaxLen(255)]
    description: Description | None = None
    is_public: bool = True
    extra_specs: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetVolumeType:
    """By id or name; `default` (Cinder's `/types/default`) is the default type. Reply:
    VolumeTypeView."""

    type_ref: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListVolumeTypes:
    """Public types, and every type for admins. Reply: VolumeTypeList."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateVolumeType:
    """Admins only. Reply: VolumeTypeView."""

    type_id: Id
    name: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    description: Description | None = None
    is_public: bool | None = None
    extra_specs: Metadata | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteVolumeType:
    """Admins only. Invalid while volumes use it, or for the default type. Reply: Done."""

    type_id: Id


# --- quotas ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeQuotaSet:
    project_id: str
    limits: dict[str, int]
    in_use: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetVolumeQuotas:
    """A project's own quotas, or any project's for admins. Reply: VolumeQuotaSet."""

    project_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class SetVolumeQuotas:
    """Admins only. Keys among DEFAULT_QUOTAS. Reply: VolumeQuotaSet."""

    project_id: Id
    limits: Annotated[dict[str, QuotaLimit], MaxLen(16)]


# --- attachments: called by compute, on the user's context -------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveAttachment:
    """`available` → `attaching` for this server, and export the volume to the server's host.
    Reply: AttachmentReserved. NotFound when the caller cannot see the volume; Invalid (400, as
    Cinder and Nova answer) when it is not available: a volume is never attached read-write to
    two servers. Idempotent for the same attachment id."""

    attachment_id: NewId
    volume_id: Id
    server_id: Id
    #: The compute host the volume must reach.
    host: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentReserved:
    attachment_id: str
    volume: VolumeView
    connection: Connection


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteAttachment:
    """The disk is in the guest: `attaching` → `in-use`. Reply: Done. Idempotent."""

    attachment_id: Id
    volume_id: Id
    device: Annotated[str, MaxLen(64)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginDetach:
    """`in-use` → `detaching`. Reply: Done. Invalid unless attached by this attachment."""

    attachment_id: Id
    volume_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortDetach:
    """The guest did not let go: `detaching` → `in-use`. Reply: Done."""

    attachment_id: Id
    volume_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveAttachment:
    """The attachment is over (detached, attach failed, or the server deleted): unexport, drop
    it, and the volume is `available` again. Reply: Done. Idempotent (gone already: Done)."""

    attachment_id: Id
    volume_id: Id


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeStatusChanged:
    """Event (topic `volume.VolumeStatusChanged`) after every committed status change: what a
    server booting from the volume waits for, and what a dashboard shows live."""

    volume_id: str
    project_id: str
    status: str
    error_reason: str | None = None
    #: Made from an image: what a server booting from a volume it asked for waits on (the
    #: only volumes compute waits for), so compute looks up nothing for the others.
    bootable: bool = False


MESSAGES = (
    VolumeStatusChanged,
    AttachmentView,
    VolumeView,
    VolumeList,
    CreateVolume,
    GetVolume,
    ListVolumes,
    UpdateVolume,
    SetVolumeBootable,
    ExtendVolume,
    DeleteVolume,
    SnapshotView,
    SnapshotList,
    CreateSnapshot,
    GetSnapshot,
    ListSnapshots,
    UpdateSnapshot,
    DeleteSnapshot,
    VolumeTypeView,
    VolumeTypeList,
    CreateVolumeType,
    GetVolumeType,
    ListVolumeTypes,
    UpdateVolumeType,
    DeleteVolumeType,
    VolumeQuotaSet,
    GetVolumeQuotas,
    SetVolumeQuotas,
    ReserveAttachment,
    AttachmentReserved,
    CompleteAttachment,
    BeginDetach,
    AbortDetach,
    RemoveAttachment,
)
