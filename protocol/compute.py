"""Compute: flavors, servers, keypairs, server groups and quotas. The queue is `compute`.

A flavor is a size of server. Public flavors are for every project; a private one only for the
projects given access. Only admins create, delete and grant flavors.

A server is created by a saga whose state lives in PostgreSQL (`actors/compute/boot.py`):
accepted (BUILD/scheduling) → scheduled (spawning, on a host) → ACTIVE, or ERROR with a fault.
The compute service drives it with casts to itself and to the host's agent, so a crash at any
step leaves a row that says what to do next, and every step is keyed by the server id.
"""

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from protocol.codec import MaxLen, MinLen, Pattern, Range

QUEUE = "compute"

FlavorId = Annotated[str, MinLen(1), MaxLen(255), Pattern(r"[A-Za-z0-9_.\- ]+")]
ProjectId = Annotated[str, MinLen(1), MaxLen(64)]
Count = Annotated[int, Range(0, 2**31 - 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorView:
    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    swap: int
    ephemeral: int
    is_public: bool
    rxtx_factor: float
    disabled: bool
    description: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorList:
    items: tuple[FlavorView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateFlavor:
    """Admins only. Reply: FlavorView; Conflict when the id or name is taken."""

    flavor_id: FlavorId
    name: Annotated[str, MinLen(1), MaxLen(255)]
    vcpus: Annotated[int, Range(1, 2**31 - 1)]
    ram: Annotated[int, Range(1, 2**31 - 1)]
    disk: Count = 0
    swap: Count = 0
    ephemeral: Count = 0
    is_public: bool = True
    rxtx_factor: Annotated[float, Range(0.0, 1e6)] = 1.0
    description: Annotated[str, MaxLen(65535)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetFlavor:
    """Reply: FlavorView; NotFound when the caller may not use it."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFlavors:
    """Flavors the caller may use, by id. `is_public` None: admins see every flavor. Reply:
    FlavorList."""

    is_public: bool | None = True
    min_ram: Count = 0
    min_disk: Count = 0
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Annotated[str, MinLen(1), MaxLen(255)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteFlavor:
    """Admins only. Servers keep what they were built with. Reply: Done."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetFlavorAccess:
    """Admins only: give (`allowed`) or take a project's use of a private flavor. Reply:
    FlavorAccess."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]
    project_id: ProjectId
    allowed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFlavorAccess:
    """Admins only. Reply: FlavorAccess."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorAccess:
    flavor_id: str
    project_ids: tuple[str, ...]


SpecKey = Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtraSpecs:
    flavor_id: str
    specs: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetExtraSpecs:
    """Reply: ExtraSpecs; NotFound when the caller may not use the flavor."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetExtraSpecs:
    """Admins only: add or overwrite these keys. Reply: ExtraSpecs (all of them)."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]
    #: Keys of 1 to 255 characters (checked by the service: the codec types keys as plain str).
    specs: Annotated[dict[str, Annotated[str, MaxLen(255)]], MinLen(1), MaxLen(128)]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteExtraSpec:
    """Admins only. Reply: ExtraSpecs (the ones left); NotFound for a key not set."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]
    key: SpecKey


# --- servers -----------------------------------------------------------------------------------


def hostname_of(name: str) -> str:
    """The guest's hostname: a DNS label made from the server's name, as Nova derives it."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "server"


ServerId = Annotated[str, MinLen(1), MaxLen(64)]
ServerName = Annotated[str, MinLen(1), MaxLen(255)]
Metadata = Annotated[dict[str, Annotated[str, MaxLen(255)]], MaxLen(128)]
PowerAction = Literal["start", "stop", "soft-reboot", "hard-reboot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFault:
    code: int
    message: str
    details: str
    created: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerAddress:
    addr: str
    mac: str
    #: "fixed" (a port's own address) or "floating".
    type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedVolume:
    id: str
    delete_on_termination: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerView:
    id: str
    name: str
    description: str | None
    project_id: str
    user_id: str
    #: Nova's `status`, derived from vm_state and task_state.
    status: str
    vm_state: str
    task_state: str | None
    #: Nova's numbers: 0 no state, 1 running, 4 shutdown.
    power_state: int
    host: str | None
    availability_zone: str | None
    #: The flavor as it was when the server was built (flavors may be deleted later).
    flavor: FlavorView
    image_id: str
    #: The kernel and ramdisk images of a direct kernel boot (from the image's properties).
    kernel_id: str | None
    ramdisk_id: str | None
    key_name: str | None
    metadata: dict[str, str]
    group_id: str | None
    created_at: float
    updated_at: float
    launched_at: float | None
    fault: ServerFault | None
    #: By network name, as Nova shows them.
    addresses: dict[str, tuple[ServerAddress, ...]]
    #: Volumes attached (or being attached), the root volume first when booted from one.
    volumes_attached: tuple[AttachedVolume, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerList:
    items: tuple[ServerView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateServer:
    """Boot a server. Reply: ServerView (BUILD). The caller picks the id, which makes a retried
    create return the same server instead of booting a second one."""

    server_id: Annotated[str, MinLen(36), MaxLen(36)]
    name: ServerName
    description: Annotated[str, MaxLen(255)] | None = None
    #: Empty when booting from a volume.
    image_id: Annotated[str, MaxLen(64)]
    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]
    key_name: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    availability_zone: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    metadata: Metadata = field(default_factory=dict)
    #: The server group to join (its policy constrains placement).
    group_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    #: NICs: a port made on a network (with an address asked for, or any), or an existing port.
    networks: Annotated[tuple["NetworkRequest", ...], MaxLen(16)] = ()
    #: Nova's `networks: "auto"`: the project's one usable network, if it has exactly one.
    auto_network: bool = False
    #: Security groups (names or ids) of the ports made for the server; empty: `default`.
    security_groups: Annotated[tuple[Annotated[str, MinLen(1), MaxLen(255)], ...], MaxLen(16)] = ()
    #: Boot from volume: a volume to boot from (or an image to make one of) as `root_volume`;
    #: `image_id` is then empty.
    root_volume: "RootVolume | None" = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RootVolume:
    """Nova's block_device_mapping_v2 entry with boot_index 0 and destination_type volume."""

    #: An existing volume to boot from, or None to make one from `image_id`.
    volume_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    image_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    #: The size of the volume made from the image; None: the flavor's disk.
    size_gb: Annotated[int, Range(1, 2**20)] | None = None
    delete_on_termination: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkRequest:
    network_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    port_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    fixed_ip: Annotated[str, MinLen(7), MaxLen(15)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetServer:
    """Reply: ServerView; NotFound for another project's server (unless admin)."""

    server_id: ServerId


@dataclass(frozen=True, slots=True, kw_only=True)
class ListServers:
    """The caller's project's servers, newest first. Admins may ask for every project's
    (`all_projects`) or one project's. Reply: ServerList."""

    name: Annotated[str, MaxLen(255)] | None = None
    status: Annotated[str, MaxLen(32)] | None = None
    host: Annotated[str, MaxLen(255)] | None = None
    image_id: Annotated[str, MaxLen(64)] | None = None
    flavor_id: Annotated[str, MaxLen(255)] | None = None
    all_projects: bool = False
    project_id: Annotated[str, MaxLen(64)] | None = None
    #: Only servers changed at or after this time (seconds since the epoch), as Nova's
    #: `changes-since`: how a client watches many servers with one cheap poll.
    changes_since: float | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: ServerId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteServer:
    """Reply: Done at once; the server disappears once its host has removed the guest."""

    server_id: ServerId


@dataclass(frozen=True, slots=True, kw_only=True)
class SetServerPower:
    """os-start / os-stop / reboot. Reply: Done at once (202); Conflict when the server's state
    does not allow it (as Nova's 409)."""

    server_id: ServerId
    action: PowerAction


@dataclass(frozen=True, slots=True, kw_only=True)
class GetServerConsole:
    """Reply: compute_agent.ConsoleOutput, the last `lines` lines (all when None)."""

    server_id: ServerId
    lines: Annotated[int, Range(0, 100000)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleServer:
    """Saga step, cast by compute to itself: place the server and tell its host to spawn it."""

    server_id: ServerId


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatusChanged:
    """Event (topic `compute.ServerStatusChanged`) after every committed change of a server's
    status or task state: accepted, placed, spawning again elsewhere, ACTIVE, ERROR, each power
    task and its end, deleting, DELETED. What a dashboard shows live without asking the API.

    Published after the commit and before the saga's next step is sent, so one server's events
    arrive in the order of its changes; one that could not be sent is lost (readers keep a slow
    poll of the API as a safety net), never announced before it is true."""

    server_id: str
    project_id: str
    name: str
    #: Nova's API status (BUILD, ACTIVE, SHUTOFF, REBOOT, HARD_REBOOT, ERROR, DELETED).
    status: str
    #: Nova's task_state (scheduling, spawning, powering-off, deleting...) or None.
    task_state: str | None
    #: The host it is on or placed on; internal (Nova shows it to admins only).
    host: str | None = None


# --- keypairs ----------------------------------------------------------------------------------

KeyName = Annotated[str, MinLen(1), MaxLen(255), Pattern(r"[A-Za-z0-9_. @-]+")]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypairView:
    name: str
    user_id: str
    public_key: str
    fingerprint: str
    type: str
    created_at: float
    #: Only in the reply to a create that generated the key: it is not kept.
    private_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypairList:
    items: tuple[KeypairView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateKeypair:
    """Import `public_key` (OpenSSH format), or generate a pair when it is None. Keypairs belong
    to the calling user. Reply: KeypairView; Conflict when the name is taken."""

    name: KeyName
    public_key: Annotated[str, MinLen(1), MaxLen(16384)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetKeypair:
    name: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListKeypairs:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteKeypair:
    name: Annotated[str, MinLen(1), MaxLen(255)]


# --- quotas ------------------------------------------------------------------------------------

QuotaLimit = Annotated[int, Range(-1, 2**31 - 1)]

#: Every compute quota and its default (Nova's); -1 means unlimited.
QUOTA_DEFAULTS: dict[str, int] = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "key_pairs": 100,
    "server_groups": 10,
    "server_group_members": 10,
    "metadata_items": 128,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaSet:
    """Limits (-1: unlimited) and, when asked, what the project uses now."""

    project_id: str
    limits: dict[str, int]
    in_use: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetQuotas:
    """A project's own quotas, or any project's for admins. Reply: QuotaSet."""

    project_id: Annotated[str, MinLen(1), MaxLen(64)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetQuotas:
    """Admins only. Keys among instances, cores, ram, key_pairs, server_groups,
    server_group_members, metadata_items. Reply: QuotaSet."""

    project_id: Annotated[str, MinLen(1), MaxLen(64)]
    limits: Annotated[dict[str, QuotaLimit], MaxLen(32)]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaLimitsChanged:
    """Event (topic `compute.QuotaLimitsChanged`) after an admin set a project's limits: compute
    replicas keep limits for creates (`actors/compute/create_inputs.py`) and forget these."""

    project_id: Annotated[str, MinLen(1), MaxLen(64)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorChanged:
    """Event (topic `compute.FlavorChanged`) after a flavor was deleted or a project's access to
    it granted or revoked: compute replicas keep flavors for creates and forget this one."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


# --- server groups -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerGroupView:
    id: str
    name: str
    policy: Literal["affinity", "anti-affinity"]
    project_id: str
    user_id: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerGroupList:
    items: tuple[ServerGroupView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateServerGroup:
    name: Annotated[str, MinLen(1), MaxLen(255)]
    policy: Literal["affinity", "anti-affinity"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetServerGroup:
    group_id: Annotated[str, MinLen(1), MaxLen(64)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListServerGroups:
    all_projects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteServerGroup:
    group_id: Annotated[str, MinLen(1), MaxLen(64)]


# --- volume attachments ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeAttachmentView:
    server_id: str
    volume_id: str
    #: The device name given to the guest (`/dev/vdb`): a hint, the guest names disks itself.
    device: str | None
    #: `attaching`, `attached` or `detaching`.
    status: str
    delete_on_termination: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeAttachmentList:
    items: tuple[VolumeAttachmentView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachVolume:
    """Attach a volume to an active or stopped server. Reply: VolumeAttachmentView (the disk
    reaches the guest shortly after; the volume turns `in-use` then). NotFound for a server or
    volume the caller cannot see; Invalid when the volume is not available; Conflict when the
    server's state forbids it."""

    server_id: ServerId
    volume_id: Annotated[str, MinLen(1), MaxLen(64)]
    device: Annotated[str, MinLen(1), MaxLen(64)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListVolumeAttachments:
    """Reply: VolumeAttachmentList."""

    server_id: ServerId


@dataclass(frozen=True, slots=True, kw_only=True)
class GetVolumeAttachment:
    """Reply: VolumeAttachmentView; NotFound when that volume is not attached to the server."""

    server_id: ServerId
    volume_id: Annotated[str, MinLen(1), MaxLen(64)]


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachVolume:
    """Reply: Done at once; the volume is `available` again once the guest let go. NotFound when
    not attached; Invalid for the root volume; Conflict while the attachment is still moving."""

    server_id: ServerId
    volume_id: Annotated[str, MinLen(1), MaxLen(64)]


MESSAGES = (
    AttachedVolume,
    VolumeAttachmentView,
    VolumeAttachmentList,
    AttachVolume,
    ListVolumeAttachments,
    GetVolumeAttachment,
    DetachVolume,
    ServerFault,
    ServerAddress,
    ServerView,
    ServerList,
    NetworkRequest,
    CreateServer,
    RootVolume,
    GetServer,
    ListServers,
    DeleteServer,
    SetServerPower,
    GetServerConsole,
    ScheduleServer,
    ServerStatusChanged,
    KeypairView,
    KeypairList,
    CreateKeypair,
    GetKeypair,
    ListKeypairs,
    DeleteKeypair,
    QuotaSet,
    GetQuotas,
    SetQuotas,
    QuotaLimitsChanged,
    FlavorChanged,
    ServerGroupView,
    ServerGroupList,
    CreateServerGroup,
    GetServerGroup,
    ListServerGroups,
    DeleteServerGroup,
    FlavorView,
    FlavorList,
    CreateFlavor,
    GetFlavor,
    ListFlavors,
    DeleteFlavor,
    SetFlavorAccess,
    ListFlavorAccess,
    FlavorAccess,
    ExtraSpecs,
    GetExtraSpecs,
    SetExtraSpecs,
    DeleteExtraSpec,
)
