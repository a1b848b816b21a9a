"""The compute agent: the hands of the cloud on a hypervisor host (or on a fleet of fake ones).

It keeps nothing durable; the hypervisor is its truth. It does what the compute service casts
to it through a virt driver and answers with casts back, reports each host's capacity as an
event (periodically, and at once after any change), and when it starts it reconciles what the
hypervisor runs with what the database says: a guest that stopped on its own is reported so
that the database follows, a guest the database expects but the hypervisor lacks is reported
missing, and a guest nobody owns is logged, never silently kept or removed.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from fabric.actor import Actor, handles
from fabric.bus import Bus
from fabric.service import service_context
from fabric.virt import (
    AttachFailed,
    DetachFailed,
    GuestNotFound,
    GuestSpec,
    PowerState,
    SpawnFailed,
    VirtDriver,
)
from protocol import compute_agent as wire
from protocol.compute import QUEUE as COMPUTE
from protocol.envelope import Context
from protocol.errors import FabricError, Invalid, NotFound, Timeout
from protocol.network_agent import NetworkAgentReport, PlugPorts, PortsPlugged, network_agent_queue
from protocol.scheduler import CapacityReport

log = logging.getLogger("fabric.compute_agent")

#: Reconciling waits for the compute service this long per try, and retries until it answers.
SYNC_TIMEOUT_S = 30.0
#: A spawn waits this long for the host's network agent to plug the guest's ports.
PLUG_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class HostConfig:
    name: str
    driver: VirtDriver
    availability_zone: str = "nova"
    #: A simulated host's networking is simulated too: its agent answers for a network agent
    #: (NetworkAgentReport) so that servers with NICs can be placed on it.
    simulated_network: bool = False


def _context() -> Context:
    return Context(request_id=f"req-{uuid.uuid4()}", deadline=time.time() + SYNC_TIMEOUT_S)


#: How many parts a fleet's periodic reports are spread over, evenly across the interval.
REPORT_SLICES = 100


class ComputeAgent(Actor):
    service = "compute-agent"
    #: Spawns take seconds on real hosts; a fleet of fake hosts wants many at once.
    prefetch = 256

    def __init__(
        self,
        bus: Bus,
        hosts: list[HostConfig],
        *,
        queue: str,
        report_interval_s: float = 10.0,
    ) -> None:
        super().__init__(bus, queue=queue)
        self.hosts: Mapping[str, HostConfig] = {h.name: h for h in hosts}
        self.report_interval_s = report_interval_s
        #: What each guest uses, by host and server: the "used" of the capacity reports.
        self._sizes: dict[str, dict[str, tuple[int, int, int]]] = {h.name: {} for h in hosts}

    def _host(self, name: str) -> HostConfig:
        host = self.hosts.get(name)
        if host is None:
            raise Invalid("host", f"{name} is not served by agent queue {self.queue}")
        return host

    # --- life cycle ----------------------------------------------------------------------------

    async def setup(self) -> None:
        await asyncio.gather(*(h.driver.start() for h in self.hosts.values()))

    async def teardown(self) -> None:
        await asyncio.gather(*(h.driver.close() for h in self.hosts.values()), return_exceptions=True)

    async def background(self) -> list[Awaitable[None]]:
        return [self._report_forever(), self._reconcile()]

    # --- capacity ------------------------------------------------------------------------------

    def _report(self, host: HostConfig) -> CapacityReport:
        total = host.driver.resources()
        sizes = self._sizes[host.name].values()
        return CapacityReport(
            host=host.name,
            queue=self.queue,
            hypervisor_type=host.driver.hypervisor_type,
            availability_zone=host.availability_zone,
            vcpus=total.vcpus,
            ram_mb=total.ram_mb,
            disk_gb=total.disk_gb,
            used_vcpus=sum(s[0] for s in sizes),
            used_ram_mb=sum(s[1] for s in sizes),
            used_disk_gb=sum(s[2] for s in sizes),
            running=len(sizes),
            sent_at=time.time(),
        )

    async def report(self, host: HostConfig) -> None:
        """The host's capacity now: periodically, and at once after a guest comes or goes."""
        await self.bus.publish(self._report(host), _context(), ttl_s=self.report_interval_s * 3)

    async def _report_all(self, host: HostConfig) -> None:
        """Everything about the host, as on the interval: a simulated host's network agent says
        it is alive here only, as a real one does (a guest coming or going changes nothing it
        reports)."""
        await self.report(host)
        if host.simulated_network:
            event = NetworkAgentReport(host=host.name, generation=0, sent_at=time.time())
            await self.bus.publish(event, _context(), ttl_s=self.report_interval_s * 3)

    async def _report_forever(self) -> None:
        """Every host at once when the agent starts, so they are placeable soon; then each slice
        of them at its own phase of the interval, as agents started at different moments report.
        A fleet of thousands behind one agent would otherwise land on the scheduler as one
        burst per interval, stalling placements while it is absorbed."""
        hosts = list(self.hosts.values())
        await asyncio.gather(*(self._report_all(h) for h in hosts))
        slices = [hosts[i::REPORT_SLICES] for i in range(min(REPORT_SLICES, len(hosts)))]
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            for i, part in enumerate(slices):
                await asyncio.sleep(
                    max(0.0, began + (i + 1) * self.report_interval_s / len(slices) - loop.time())
                )
                await asyncio.gather(*(self._report_all(h) for h in part))

    # --- reconciling ---------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Once, at start: make the database's power states follow the hypervisor's. Then
        idle, so the job does not end (an ended background job would restart the actor)."""
        while True:
            try:
                expected = await self.bus.call(
                    COMPUTE, wire.SyncGuests(hosts=tuple(self.hosts)), _context(), timeout_s=SYNC_TIMEOUT_S
                )
                break
            except FabricError as exc:
                log.warning("cannot reconcile yet: %s", exc.message)
                await asyncio.sleep(5)
        ctx = _context()
        for host in self.hosts.values():
            actual = await host.driver.guests()
            for server_id, power in actual.items():
                owner = expected.guests.get(server_id)
                if owner is None or owner.host != host.name:
                    log.warning(
                        "guest owned by no server on this host: left alone",
                        extra={"host": host.name, "server_id": server_id, "power": str(power)},
                    )
                    continue
                self._sizes[host.name][server_id] = (owner.vcpus, owner.ram_mb, owner.disk_gb)
                if (power is PowerState.RUNNING) != owner.running:
                    await self._tell(ctx, host.name, server_id, power.value)
            for server_id, owner in expected.guests.items():
                if owner.host == host.name and server_id not in actual:
                    await self._tell(ctx, host.name, server_id, "missing")
            # The compute service answered, so the cloud is up: all of the host's reports again,
            # for schedulers that subscribed after the first ones were sent.
            await self._report_all(host)
        await asyncio.Event().wait()

    async def _tell(self, ctx: Context, host: str, server_id: str, power: wire.PowerState) -> None:
        await self.bus.cast(COMPUTE, wire.GuestPowerChanged(host=host, server_id=server_id, power=power), ctx)

    # --- commands ------------------------------------------------------------------------------

    @handles(wire.SpawnGuest, key=lambda m: m.server_id)
    async def spawn(self, msg: wire.SpawnGuest, ctx: Context) -> None:
        host = self._host(msg.host)
        spec = GuestSpec(
            server_id=msg.server_id,
            name=msg.name,
            vcpus=msg.vcpus,
            ram_mb=msg.ram_mb,
            disk_gb=msg.disk_gb,
            root_image=msg.root_image,
            kernel=msg.kernel,
            ramdisk=msg.ramdisk,
            cmdline=msg.cmdline,
            nics=msg.nics,
            disks=msg.disks,
        )
        try:
            if spec.nics and not host.simulated_network:
                await self._plug(host.name, spec, ctx)
            await host.driver.spawn(spec)
        except SpawnFailed as exc:
            log.warning(
                "spawn failed", extra={"host": msg.host, "server_id": msg.server_id, "reason": exc.reason}
            )
            await self.bus.cast(
                COMPUTE, wire.GuestSpawnFailed(host=msg.host, server_id=msg.server_id, reason=exc.reason), ctx
            )
            return
        self._sizes[msg.host][msg.server_id] = (msg.vcpus, msg.ram_mb, msg.disk_gb)
        await self.bus.cast(
            COMPUTE, wire.GuestSpawned(host=msg.host, server_id=msg.server_id, power="running"), ctx
        )
        await self.report(host)

    async def _plug(self, host: str, spec: GuestSpec, ctx: Context) -> None:
        """Wait for the host's network agent to have plumbed the guest's ports (PlugPorts)."""
        ask = PlugPorts(port_ids=tuple(nic.port_id for nic in spec.nics))
        plug_ctx = service_context(ctx.request_id, timeout_s=PLUG_TIMEOUT_S)
        try:
            plugged: PortsPlugged = await self.bus.call(network_agent_queue(host), ask, plug_ctx)
        except Timeout:
            waited = f"{PLUG_TIMEOUT_S:.0f} s"
            raise SpawnFailed(
                f"the network agent of host {host} did not plug the ports in {waited}: is it running?"
            ) from None
        if plugged.missing:
            raise SpawnFailed(f"port(s) {', '.join(plugged.missing)} are not bound to host {host}")

    @handles(wire.SetGuestPower, key=lambda m: m.server_id)
    async def set_power(self, msg: wire.SetGuestPower, ctx: Context) -> None:
        host = self._host(msg.host)
        driver = host.driver
        try:
            if msg.action == "start":
                await driver.power_on(msg.server_id)
            elif msg.action == "stop":
                await driver.power_off(msg.server_id)
            else:
                await driver.reboot(msg.server_id, hard=msg.action == "hard-reboot")
        except GuestNotFound:
            changed = wire.GuestPowerChanged(
                host=msg.host, server_id=msg.server_id, power="missing", failed_action=msg.action,
                reason="the hypervisor has no such guest",
            )  # fmt: skip
            await self.bus.cast(COMPUTE, changed, ctx)
            return
        except Exception as exc:  # the hypervisor refused (a libvirt error): say so, keep the state
            log.warning("power action failed", extra={"server_id": msg.server_id, "action": msg.action})
            power = (await driver.guests()).get(msg.server_id, PowerState.OTHER)
            changed = wire.GuestPowerChanged(
                host=msg.host, server_id=msg.server_id, power=power.value, failed_action=msg.action,
                reason=f"{type(exc).__name__}: {exc}"[:500],
            )  # fmt: skip
            await self.bus.cast(COMPUTE, changed, ctx)
            return
        power = (await driver.guests()).get(msg.server_id, PowerState.OTHER)
        await self.bus.cast(
            COMPUTE, wire.GuestPowerChanged(host=msg.host, server_id=msg.server_id, power=power.value), ctx
        )

    @handles(wire.DestroyGuest, key=lambda m: m.server_id)
    async def destroy(self, msg: wire.DestroyGuest, ctx: Context) -> None:
        host = self._host(msg.host)
        await host.driver.destroy(msg.server_id)
        self._sizes[msg.host].pop(msg.server_id, None)
        await self.bus.cast(COMPUTE, wire.GuestDestroyed(host=msg.host, server_id=msg.server_id), ctx)
        await self.report(host)

    @handles(wire.AttachDisk, key=lambda m: m.server_id)
    async def attach_disk(self, msg: wire.AttachDisk, ctx: Context) -> None:
        host = self._host(msg.host)
        disk = msg.disk
        ids = {"host": msg.host, "server_id": msg.server_id, "volume_id": disk.volume_id}
        try:
            device = await host.driver.attach_disk(msg.server_id, disk)
        except (AttachFailed, GuestNotFound) as exc:
            reason = exc.reason if isinstance(exc, AttachFailed) else "the hypervisor has no such guest"
            log.warning("attach failed", extra=ids | {"reason": reason})
            failed = wire.DiskAttachFailed(**ids, attachment_id=disk.attachment_id, reason=reason)
            await self.bus.cast(COMPUTE, failed, ctx)
            return
        attached = wire.DiskAttached(**ids, attachment_id=disk.attachment_id, device=device)
        await self.bus.cast(COMPUTE, attached, ctx)

    @handles(wire.DetachDisk, key=lambda m: m.server_id)
    async def detach_disk(self, msg: wire.DetachDisk, ctx: Context) -> None:
        host = self._host(msg.host)
        ids = {"host": msg.host, "server_id": msg.server_id, "volume_id": msg.volume_id}
        try:
            await host.driver.detach_disk(msg.server_id, msg.volume_id, msg.timeout_s)
        except GuestNotFound:
            # No guest holds the disk any more (it was deleted): detached is the truth.
            log.info("detach from a guest the hypervisor does not have", extra=ids)
        except DetachFailed as exc:
            log.warning("detach failed", extra=ids | {"reason": exc.reason})
            failed = wire.DiskDetachFailed(**ids, attachment_id=msg.attachment_id, reason=exc.reason)
            await self.bus.cast(COMPUTE, failed, ctx)
            return
        await self.bus.cast(COMPUTE, wire.DiskDetached(**ids, attachment_id=msg.attachment_id), ctx)

    @handles(wire.GetConsoleOutput)
    async def console_output(self, msg: wire.GetConsoleOutput, ctx: Context) -> wire.ConsoleOutput:
        host = self._host(msg.host)
        try:
            return wire.ConsoleOutput(output=await host.driver.console_output(msg.server_id, msg.max_bytes))
        except GuestNotFound:
            raise NotFound("server console", msg.server_id) from None
