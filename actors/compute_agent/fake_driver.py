"""A hypervisor in memory: for scale tests and benchmarks, thousands of hosts in one process.

It keeps the same rules a real driver keeps (idempotent spawn and destroy, GuestNotFound for
unknown guests, power states) and costs a few hundred bytes per guest. Spawning takes
`spawn_latency_s` and fails for a share `failure_rate` of servers; which servers fail depends
only on the seed and the server id, so a run's injected failures replay exactly whatever the
order in which requests arrive.

Volumes are plugged in as the libvirt driver plugs them (targets `vdb`, `vdc`... found again by
the volume id, so attaching twice changes nothing) and the console shows what the test guest
prints for a disk (`DISK vdb serial=<volume id[:20]>`, `DISK vdb removed`). It takes the
connections of the `fake` storage backend and file ones, whose files it never opens.
"""

import asyncio
import hashlib
from dataclasses import dataclass, field

from actors.compute_agent.domain_xml import ROOT_TARGET, BadDisk, choose_target, spawn_volumes
from fabric.virt import (
    AttachFailed,
    GuestDisk,
    GuestNotFound,
    GuestSpec,
    HostResources,
    PowerState,
    SpawnFailed,
)

#: The connection types a fake host accepts.
CONNECTION_TYPES = ("fake", "file")
#: virtio hands the guest at most this much of a disk's serial.
SERIAL_CHARS = 20


@dataclass(slots=True)
class FakeGuest:
    spec: GuestSpec
    power: PowerState = PowerState.RUNNING
    console: list[str] = field(default_factory=list)
    #: Target by volume id; the root disk (an image's or a volume's) holds `vda`.
    disks: dict[str, str] = field(default_factory=dict)


def fails(seed: int, server_id: str, rate: float) -> bool:
    """The same answer for the same seed and server, in any process."""
    if rate <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}:{server_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 < rate


class FakeDriver:
    hypervisor_type = "fake"

    def __init__(
        self,
        *,
        host: str,
        resources: HostResources,
        spawn_latency_s: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.host = host
        self._resources = resources
        self.spawn_latency_s, self.failure_rate, self.seed = spawn_latency_s, failure_rate, seed
        self._guests: dict[str, FakeGuest] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def resources(self) -> HostResources:
        return self._resources

    def _guest(self, server_id: str) -> FakeGuest:
        guest = self._guests.get(server_id)
        if guest is None:
            raise GuestNotFound(server_id)
        return guest

    async def spawn(self, spec: GuestSpec) -> None:
        if spec.server_id in self._guests:
            return
        if self.spawn_latency_s:
            await asyncio.sleep(self.spawn_latency_s)
        if fails(self.seed, spec.server_id, self.failure_rate):
            raise SpawnFailed(f"injected failure on fake host {self.host} (seed {self.seed})")
        guest = FakeGuest(spec, console=[f"FABRIC-GUEST-BOOTED hostname={spec.name}"])
        try:
            volumes = spawn_volumes(spec, [None] * len(spec.disks))
            for volume in sorted(volumes, key=lambda v: not v.disk.is_root):
                self._plug(guest, volume.disk, volume.target)
        except (BadDisk, AttachFailed) as exc:
            raise SpawnFailed(exc.reason) from exc
        self._guests[spec.server_id] = guest

    async def destroy(self, server_id: str) -> None:
        self._guests.pop(server_id, None)

    async def power_on(self, server_id: str) -> None:
        guest = self._guest(server_id)
        if guest.power is not PowerState.RUNNING:
            guest.power = PowerState.RUNNING
            guest.console.append(f"FABRIC-GUEST-BOOTED hostname={guest.spec.name}")

    async def power_off(self, server_id: str) -> None:
        self._guest(server_id).power = PowerState.SHUTDOWN

    async def reboot(self, server_id: str, *, hard: bool) -> None:
        guest = self._guest(server_id)
        guest.power = PowerState.RUNNING
        guest.console.append(f"FABRIC-GUEST-BOOTED hostname={guest.spec.name}")

    async def console_output(self, server_id: str, max_bytes: int) -> str:
        text = "\n".join(self._guest(server_id).console) + "\n"
        return text[-max_bytes:]

    async def guests(self) -> dict[str, PowerState]:
        return {server_id: guest.power for server_id, guest in self._guests.items()}

    async def attach_disk(self, server_id: str, disk: GuestDisk) -> str:
        guest = self._guest(server_id)
        if disk.volume_id in guest.disks:
            return guest.disks[disk.volume_id]
        return self._plug(guest, disk, None)

    async def detach_disk(self, server_id: str, volume_id: str, timeout_s: float) -> None:
        guest = self._guest(server_id)
        target = guest.disks.pop(volume_id, None)
        if target is not None and guest.power is PowerState.RUNNING:
            guest.console.append(f"DISK {target} removed")

    def _plug(self, guest: FakeGuest, disk: GuestDisk, target: str | None) -> str:
        _check_connection(disk)
        if target is None:
            used = set(guest.disks.values()) | ({ROOT_TARGET} if guest.spec.root_image is not None else set())
            try:
                target = choose_target(disk.device, used)
            except BadDisk as exc:
                raise AttachFailed(exc.reason) from exc
        guest.disks[disk.volume_id] = target
        if guest.power is PowerState.RUNNING:
            guest.console.append(f"DISK {target} serial={disk.volume_id[:SERIAL_CHARS]}")
        return target


def _check_connection(disk: GuestDisk) -> None:
    kind = disk.connection.driver_volume_type
    if kind not in CONNECTION_TYPES:
        raise AttachFailed(
            f"volume {disk.volume_id}: connection type {kind!r} is not supported by this hypervisor "
            f"(only {', '.join(map(repr, CONNECTION_TYPES))})"
        )
