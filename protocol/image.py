"""Images: metadata and lifecycle (Glance v2). The queue is `image`.

The bytes never travel on the bus: the gateway streams them between the client and the blob
store (`fabric.blobs`), and tells the image service where it put them. The image service owns
the record and its states: `queued` (no data yet) → `saving` (an upload holds it) → `active`,
or `killed` when an upload failed in a way that cannot be retried; `deleted` rows are gone.
"""

from dataclasses import dataclass, field
from typing import Annotated, Literal

from protocol.codec import MaxLen, MinLen, Range

QUEUE = "image"

Id = Annotated[str, MinLen(1), MaxLen(64)]
Name = Annotated[str, MaxLen(255)]
DiskFormat = Literal["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]
ContainerFormat = Literal["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]
Visibility = Literal["public", "private", "shared", "community"]
Status = Literal["queued", "saving", "active", "killed", "deactivated"]
Tags = Annotated[tuple[Annotated[str, MinLen(1), MaxLen(255)], ...], MaxLen(128)]
Properties = Annotated[dict[str, Annotated[str, MaxLen(65535)]], MaxLen(128)]
Size = Annotated[int, Range(0, 2**62)]
MemberStatus = Literal["pending", "accepted", "rejected"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageView:
    id: str
    name: str | None
    status: Status
    visibility: Visibility
    owner: str
    disk_format: DiskFormat | None
    container_format: ContainerFormat | None
    size: int | None
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None
    min_disk: int
    min_ram: int
    protected: bool
    os_hidden: bool
    tags: tuple[str, ...]
    properties: dict[str, str]
    created_at: float
    updated_at: float
    #: Where the blob store keeps the data (for the gateway; never shown to users).
    location: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageList:
    items: tuple[ImageView, ...]
    #: True when more images follow the last one (the caller pages with `marker`).
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageFields:
    """What a user may set on an image, at creation or by update."""

    name: Name | None = None
    disk_format: DiskFormat | None = None
    container_format: ContainerFormat | None = None
    visibility: Visibility = "shared"
    min_disk: Annotated[int, Range(0, 2**31 - 1)] = 0
    min_ram: Annotated[int, Range(0, 2**31 - 1)] = 0
    protected: bool = False
    os_hidden: bool = False
    tags: Tags = ()
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateImage:
    """Record a new image, `queued`. Reply: ImageView."""

    image_id: Id
    fields: ImageFields


@dataclass(frozen=True, slots=True, kw_only=True)
class GetImage:
    """Reply: ImageView; NotFound when the caller may not see it."""

    image_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListImages:
    """The images the caller may see, by `created_at` then id, newest first. Reply: ImageList."""

    name: Name | None = None
    status: Status | None = None
    visibility: Visibility | None = None
    owner: Id | None = None
    ids: tuple[Id, ...] | None = None
    os_hidden: bool = False
    #: Shared images are listed when the caller's membership has this status.
    member_status: MemberStatus = "accepted"
    limit: Annotated[int, Range(1, 1000)] = 25
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateImage:
    """Replace the settable fields with `fields` (the gateway applies the JSON patch to the
    current view and sends the result). Reply: ImageView. With `expected_updated_at`, the
    `updated_at` of the view the patch was applied to: Conflict when the image changed since,
    so that two patches at once never lose one (the gateway then patches the new view)."""

    image_id: Id
    fields: ImageFields
    expected_updated_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteImage:
    """Reply: ImageDeleted with the blob to remove; Forbidden when protected."""

    image_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDeleted:
    location: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageChanged:
    """Event (topic `image.ImageChanged`) after a committed change that may narrow who sees an
    image or what a boot takes from it: an update, a delete, a member removed. Compute keeps
    the images it boots from for a while (`actors/compute/boot_images.py`) and forgets this
    one on it. Best effort: one that could not be sent ages out of those caches instead."""

    image_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginUpload:
    """Take a `queued` image into `saving` for one upload. Reply: UploadGranted; Conflict when
    it is not `queued`."""

    image_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadGranted:
    #: Where the blob store keeps it.
    location: str
    #: How many bytes the owner's quota leaves for this image.
    max_bytes: int
    #: The md5 the owner declared (`owner_specified.openstack.md5`), which the data must match.
    expected_md5: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishUpload:
    """The bytes are stored: make the image `active`. Reply: ImageView."""

    image_id: Id
    size: Size
    checksum: Annotated[str, MinLen(32), MaxLen(32)]
    os_hash_value: Annotated[str, MinLen(128), MaxLen(128)]


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortUpload:
    """The upload failed: back to `queued`, so it may be tried again. Reply: ImageView."""

    image_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberView:
    image_id: str
    member_id: str
    status: MemberStatus
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberList:
    items: tuple[MemberView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AddMember:
    """The owner shares a `shared` image with a project, `pending` its acceptance. Reply:
    MemberView; Conflict when already a member."""

    image_id: Id
    member_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListMembers:
    """The owner sees every member; a member sees itself. Reply: MemberList."""

    image_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class GetMember:
    """Reply: MemberView."""

    image_id: Id
    member_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMemberStatus:
    """The member project accepts or rejects (or reconsiders) the share. Reply: MemberView."""

    image_id: Id
    member_id: Id
    status: MemberStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveMember:
    """The owner stops sharing with a project. Reply: MemberList (the ones left)."""

    image_id: Id
    member_id: Id


MESSAGES = (
    ImageView,
    ImageList,
    ImageFields,
    CreateImage,
    GetImage,
    ListImages,
    UpdateImage,
    DeleteImage,
    ImageDeleted,
    ImageChanged,
    BeginUpload,
    UploadGranted,
    FinishUpload,
    AbortUpload,
    MemberView,
    MemberList,
    AddMember,
    ListMembers,
    GetMember,
    SetMemberStatus,
    RemoveMember,
)
