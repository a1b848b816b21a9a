"""The seam between a compute agent and a hypervisor: what a virt driver must do.

A driver manages the guests of one host. Every operation is idempotent and keyed by the server
id, because the agent may be asked twice (a redelivered message, a saga resumed after a crash):
spawning a guest that already runs, or destroying one that is gone, succeeds and does nothing.
Drivers that wrap blocking libraries (libvirt) do their blocking inside `asyncio.to_thread`.

Three drivers implement it: `libvirt` (qemu:///system, KVM or TCG), the same on libvirt's
`test:///default` for fast tests (which cannot hot-plug disks), and `fake` (in memory, thousands
per process).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from protocol.compute_agent import GuestDisk as GuestDisk  # re-exported: drivers take them
from protocol.compute_agent import Nic as Nic
from protocol.storage import ImageFile as ImageFile


class PowerState(StrEnum):
    RUNNING = "running"
    SHUTDOWN = "shutdown"
    #: The hypervisor knows the guest but it is neither running nor cleanly off (crashed, paused).
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestSpec:
    """Everything a driver needs to create one guest."""

    server_id: str
    #: The server's name, given to the guest as its hostname.
    name: str
    vcpus: int
    ram_mb: int
    #: Root disk size; 0: the size of the image.
    disk_gb: int
    #: The root disk's image (the base of a copy-on-write overlay). A driver that needs the bytes
    #: copies them into its per-host image cache once (streamed from the blob store, md5 verified).
    #: None when a disk `is_root` (boot from volume).
    root_image: ImageFile | None
    #: Direct kernel boot (Glance's `kernel_id`/`ramdisk_id`/`os_command_line`): all None for
    #: an image that boots from its own disk.
    kernel: ImageFile | None = None
    ramdisk: ImageFile | None = None
    cmdline: str | None = None
    nics: tuple[Nic, ...] = ()
    #: Volumes attached from the start, in order; one `is_root` replaces the image overlay.
    disks: tuple[GuestDisk, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostResources:
    """What the host offers guests, before over-commit ratios (the scheduler applies those)."""

    vcpus: int
    ram_mb: int
    disk_gb: int


class VirtDriver(Protocol):
    #: The hypervisor type shown in os-hypervisors (`QEMU`, `KVM`, `fake`).
    hypervisor_type: str

    async def start(self) -> None:
        """Connect to the hypervisor (and, for libvirt `auto`, probe which virt type works)."""

    async def close(self) -> None: ...

    def resources(self) -> HostResources: ...

    async def spawn(self, spec: GuestSpec) -> None:
        """Create and start the guest. Raises `SpawnFailed` with a reason a user may read; a
        failed spawn leaves nothing behind. A guest with this id that exists already: no-op."""

    async def destroy(self, server_id: str) -> None:
        """Stop the guest hard and remove it and its disks. Gone already: no-op."""

    async def power_on(self, server_id: str) -> None: ...

    async def power_off(self, server_id: str) -> None:
        """Shut the guest off (hard, as Nova's stop does after its grace period)."""

    async def reboot(self, server_id: str, *, hard: bool) -> None: ...

    async def console_output(self, server_id: str, max_bytes: int) -> str:
        """The tail of what the guest wrote on its serial console (at most `max_bytes`)."""

    async def guests(self) -> dict[str, PowerState]:
        """Every guest this driver manages on the host, by server id, with its power state: what
        the agent reconciles with the database on restart. Domains the fabric did not make are
        not included."""

    async def attach_disk(self, server_id: str, disk: GuestDisk) -> str:
        """Plug a volume into the guest as a virtio disk whose serial is the volume id: live and
        persistent when it runs, persistent only when it is off. Returns the target the disk got
        (`vdb`; `disk.device` is a hint). Attached already (a disk with that serial): returns its
        target and changes nothing. Raises `AttachFailed` with a reason a user may read, and
        `GuestNotFound`."""

    async def detach_disk(self, server_id: str, volume_id: str, timeout_s: float) -> None:
        """Unplug the volume's disk and wait, up to `timeout_s`, until the guest has released it
        (a running guest must let go of a hot-plugged disk: ACPI eject). Not attached: no-op.
        Raises `DetachFailed` (the guest did not let go in time, or the hypervisor refused) and
        `GuestNotFound`."""


class SpawnFailed(Exception):
    """The hypervisor could not create the guest; `reason` is shown in the server's fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AttachFailed(Exception):
    """The hypervisor could not give the guest the disk; `reason` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DetachFailed(Exception):
    """The disk is still the guest's: the hypervisor refused, or the guest did not release it in
    time. `reason` is shown to the user; the volume stays attached."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GuestNotFound(Exception):
    """An action on a guest the hypervisor does not have."""

    def __init__(self, server_id: str) -> None:
        super().__init__(f"no guest for server {server_id} on this host")
        self.server_id = server_id
