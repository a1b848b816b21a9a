"""Compute agents: one per hypervisor host, or one process for a fleet of simulated hosts.

An agent takes commands on the queue its capacity reports name (`compute.<host>` for a real
host; a simulated fleet shares one queue per process, because 10,000 queues cost the broker
far more than 10,000 bindings of one). Every command names its `host`.

Commands that take time are casts, persisted until the agent has done them, so an agent that
dies mid-spawn does the spawn again when it comes back (drivers are idempotent). The agent
answers them with casts to the `compute` queue: `GuestSpawned`, `GuestSpawnFailed`,
`GuestPowerChanged`, `GuestDestroyed`. Only console output is a call.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from protocol.codec import MaxLen, MinLen, Range
from protocol.storage import Connection
from protocol.storage import ImageFile as ImageFile  # re-exported: its home before volumes

HostName = Annotated[str, MinLen(1), MaxLen(255)]
ServerId = Annotated[str, MinLen(1), MaxLen(64)]
PowerState = Literal["running", "shutdown", "other", "missing"]


def host_queue(host: str) -> str:
    """The queue of a real host's own agent."""
    return f"compute.{host}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Nic:
    """A guest's NIC: the tap `tap<port id[:11]>` on the network's bridge `brq<network id[:11]>`."""

    port_id: Annotated[str, MinLen(1), MaxLen(64)]
    network_id: Annotated[str, MinLen(1), MaxLen(64)]
    mac: Annotated[str, MinLen(17), MaxLen(17)]
    mtu: Annotated[int, Range(68, 9000)] = 1500


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestDisk:
    """A volume as a guest's virtio disk: `<serial>` is the volume id (the guest sees its first
    20 characters), as Nova does."""

    volume_id: Annotated[str, MinLen(1), MaxLen(64)]
    attachment_id: Annotated[str, MinLen(1), MaxLen(64)]
    connection: Connection
    #: The target name asked for (`vdb`...); only a hint: the guest names disks in its own order.
    device: Annotated[str, MaxLen(64)] | None = None
    #: The guest boots from this disk (boot from volume): it replaces the image overlay.
    is_root: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SpawnGuest:
    """Create and start the guest. Answered by GuestSpawned or GuestSpawnFailed."""

    host: HostName
    server_id: ServerId
    name: Annotated[str, MaxLen(255)]
    vcpus: Annotated[int, Range(1, 2**31)]
    ram_mb: Annotated[int, Range(1, 2**40)]
    disk_gb: Annotated[int, Range(0, 2**31)]
    #: The image the root disk is an overlay of; None when a `disks` entry `is_root`.
    root_image: ImageFile | None = None
    kernel: ImageFile | None = None
    ramdisk: ImageFile | None = None
    cmdline: Annotated[str, MaxLen(4096)] | None = None
    nics: Annotated[tuple[Nic, ...], MaxLen(16)] = ()
    #: Volumes attached at creation (boot from volume), in order.
    disks: Annotated[tuple[GuestDisk, ...], MaxLen(26)] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SetGuestPower:
    """Start, stop or reboot. Answered by GuestPowerChanged."""

    host: HostName
    server_id: ServerId
    action: Literal["start", "stop", "soft-reboot", "hard-reboot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DestroyGuest:
    """Remove the guest and its disks. Answered by GuestDestroyed (also when it was gone)."""

    host: HostName
    server_id: ServerId


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachDisk:
    """Hot-plug a volume into the running (or stopped) guest, live and persistent. Answered by
    DiskAttached or DiskAttachFailed. Attached already: DiskAttached again."""

    host: HostName
    server_id: ServerId
    disk: GuestDisk


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachDisk:
    """Unplug a volume, waiting up to `timeout_s` for the guest to release it. Answered by
    DiskDetached (also when it was not attached) or DiskDetachFailed."""

    host: HostName
    server_id: ServerId
    volume_id: Annotated[str, MinLen(1), MaxLen(64)]
    attachment_id: Annotated[str, MinLen(1), MaxLen(64)]
    timeout_s: Annotated[float, Range(0.1, 600)] = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskAttached:
    host: str
    server_id: str
    volume_id: str
    attachment_id: str
    #: The target the hypervisor gave the disk (`vdb`).
    device: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskAttachFailed:
    host: str
    server_id: str
    volume_id: str
    attachment_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskDetached:
    host: str
    server_id: str
    volume_id: str
    attachment_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskDetachFailed:
    host: str
    server_id: str
    volume_id: str
    attachment_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetConsoleOutput:
    """Call. Reply: ConsoleOutput."""

    host: HostName
    server_id: ServerId
    max_bytes: Annotated[int, Range(1, 16 * 1024 * 1024)] = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleOutput:
    output: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestSpawned:
    host: str
    server_id: str
    power: PowerState


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestSpawnFailed:
    host: str
    server_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestPowerChanged:
    """After a power action, and when the agent finds a guest's power state differs from what it
    last said (the guest shut itself down, or the host rebooted). `missing`: the hypervisor has
    no such guest."""

    host: str
    server_id: str
    power: PowerState
    #: The action that failed, and why; None when it worked or nothing was asked.
    failed_action: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestDestroyed:
    host: str
    server_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncGuests:
    """Call to compute from an agent (re)starting: which servers the database puts on these
    hosts, so that the agent can reconcile them with what the hypervisor runs. Reply:
    ExpectedGuests."""

    hosts: Annotated[tuple[HostName, ...], MinLen(1), MaxLen(100000)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedGuest:
    host: str
    #: Whether it should be running (not stopped by its user).
    running: bool
    vcpus: int
    ram_mb: int
    disk_gb: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedGuests:
    #: By server id.
    guests: dict[str, ExpectedGuest]


MESSAGES = (
    Nic,
    GuestDisk,
    SpawnGuest,
    AttachDisk,
    DetachDisk,
    DiskAttached,
    DiskAttachFailed,
    DiskDetached,
    DiskDetachFailed,
    SetGuestPower,
    DestroyGuest,
    GetConsoleOutput,
    ConsoleOutput,
    GuestSpawned,
    GuestSpawnFailed,
    GuestPowerChanged,
    GuestDestroyed,
    SyncGuests,
    ExpectedGuest,
    ExpectedGuests,
)
