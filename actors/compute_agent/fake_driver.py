"""A hypervisor in memory: for scale tests and benchmarks, thousands of hosts in one process.

It keeps the same rules a real driver keeps (idempotent spawn and destroy, GuestNotFound for
unknown guests, power states) and costs a few hundred bytes per guest. Spawning takes
`spawn_latency_s` and fails for a share `failure_rate` of servers; which servers fail depends
only on the seed and the server id, so a run's injected failures replay exactly whatever the
order in which requests arrive.
"""

import asyncio
import hashlib
from dataclasses import dataclass, field

from fabric.virt import GuestNotFound, GuestSpec, HostResources, PowerState, SpawnFailed


@dataclass(slots=True)
class FakeGuest:
    spec: GuestSpec
    power: PowerState = PowerState.RUNNING
    console: list[str] = field(default_factory=list)


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
        self._guests[spec.server_id] = FakeGuest(spec, console=[f"FABRIC-GUEST-BOOTED hostname={spec.name}"])

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
