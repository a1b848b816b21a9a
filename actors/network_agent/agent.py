"""The network agent: keeps one host's kernel plumbing equal to what the network service says.

It owns nothing durable. On start, on every `NetworkingChanged` event and every `resync_s`
anyway, it fetches its host's whole desired state and converges (`converge.converge`): so a
restart rebuilds what is missing and removes what no longer belongs, and a lost event only
delays a change until the next resync. Events that arrive while a convergence runs collapse into
one more run. Its reports tell the scheduler the host can take servers with NICs.

Before a guest with NICs starts, the host's compute agent asks `PlugPorts`: the answer waits
for a convergence that fetched its state after the question. Without that, a convergence
already under way with an older state (say, from just before the port was bound, when the
network had no guest here) could remove the bridge the new guest is about to join.

Given the cloud's nameserver, it also relays DNS from the outside namespace to it
(`dns_relay.py`), so that `ip netns exec <outside> curl http://<name>/` resolves.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from actors.network_agent import outside
from actors.network_agent.converge import Report, converge
from actors.network_agent.dns_relay import DnsRelay
from fabric.actor import Actor, handles, subscribes
from fabric.bus import Bus
from fabric.service import require_admin, service_context
from protocol.envelope import Context
from protocol.errors import FabricError
from protocol.network import QUEUE as NETWORK
from protocol.network_agent import (
    GetHostNetworking,
    HostNetworking,
    NetworkAgentReport,
    NetworkingChanged,
    PlugPorts,
    PortsPlugged,
    network_agent_queue,
)

log = logging.getLogger("fabric.network_agent")

#: After a failed convergence, try again this soon.
RETRY_S = 2.0

Converge = Callable[[HostNetworking, Path], Awaitable[Report]]


async def converge_kernel(state: HostNetworking, state_dir: Path) -> Report:
    return await converge(state, state_dir=state_dir)


class NetworkAgent(Actor):
    service = "network-agent"

    def __init__(
        self,
        bus: Bus,
        *,
        host: str,
        state_dir: Path,
        report_interval_s: float = 10.0,
        resync_s: float = 30.0,
        nameserver: tuple[str, int] | None = None,
        converge: Converge = converge_kernel,
    ) -> None:
        """`nameserver`: the cloud's PowerDNS (address, port), to relay to from the outside
        namespace; None when the cloud runs none. `converge` is the kernel's (unit tests give
        one that records)."""
        super().__init__(bus, queue=network_agent_queue(host))
        self.host, self.state_dir = host, state_dir
        self.report_interval_s, self.resync_s = report_interval_s, resync_s
        self.relay = DnsRelay(nameserver) if nameserver is not None else None
        #: The generation of the last state applied; -1: none yet.
        self.applied = -1
        self._converge = converge
        self._wanted = asyncio.Event()
        #: Convergences begun; the number of the last one that fetched its state and ended, and
        #: that state.
        self._begun = 0
        self._converged: tuple[int, HostNetworking] | None = None
        #: Notified after each convergence, done or failed.
        self._ended = asyncio.Condition()

    async def background(self) -> list[Awaitable[None]]:
        self._wanted.set()  # converge at once on start
        return [self._converge_forever(), self._report_forever()]

    async def teardown(self) -> None:
        # The plumbing stays for the next agent to adopt; the relay cannot (its sockets are this
        # process's), so a resolv.conf pointing at it must not stay either.
        if self.relay is not None:
            await self.relay.close()

    @subscribes(NetworkingChanged)
    async def on_changed(self, event: NetworkingChanged, ctx: Context) -> None:
        if event.generation > self.applied:
            self._wanted.set()

    @handles(PlugPorts)
    async def plug_ports(self, msg: PlugPorts, ctx: Context) -> PortsPlugged:
        require_admin(ctx, "plug_ports")  # the host's compute agent, on the service's behalf
        wanted = self._begun + 1  # not one under way: its state may predate the ports' binding
        self._wanted.set()
        async with asyncio.timeout(ctx.seconds_left()), self._ended:
            await self._ended.wait_for(lambda: self._converged is not None and self._converged[0] >= wanted)
        assert self._converged is not None
        plumbed = {port.port_id for port in self._converged[1].ports}
        return PortsPlugged(missing=tuple(p for p in msg.port_ids if p not in plumbed))

    async def _converge_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wanted.wait(), timeout=self.resync_s)
            except TimeoutError:
                pass
            self._wanted.clear()
            try:
                await self.converge_once()
            except (FabricError, OSError, RuntimeError) as exc:
                log.warning("convergence failed; trying again", extra={"host": self.host, "error": str(exc)})
                await asyncio.sleep(RETRY_S)
                self._wanted.set()

    async def converge_once(self) -> HostNetworking:
        """Fetch the host's state and converge to it. A convergence that fetched its state counts
        as converged for `PlugPorts` even when some object failed: the failure is reported, and
        the objects that matter to a spawn (the ports' bridges) are checked by the driver."""
        self._begun += 1
        number, state = self._begun, None
        try:
            ctx = service_context(f"req-{uuid.uuid4()}")
            state = await self.bus.call(NETWORK, GetHostNetworking(host=self.host), ctx)
            assert isinstance(state, HostNetworking)
            report = await self._converge(state, self.state_dir)
        finally:
            async with self._ended:
                if state is not None:
                    self._converged = (number, state)
                self._ended.notify_all()
        if self.relay is not None:
            await self._relay_names(self.relay, state)
        if report.errors:
            raise RuntimeError(
                f"{len(report.errors)} object(s) not plumbed: {'; '.join(report.errors)[:500]}"
            )
        self.applied = state.generation
        return state

    async def _relay_names(self, relay: DnsRelay, state: HostNetworking) -> None:
        """Relay DNS from the outside namespace while there is one. A relay that cannot start
        (port 53 taken there) is logged and tried again at the next converge: names are a
        convenience for people in that namespace, and must not keep the host from plumbing."""
        namespace = state.outside_namespace if outside.needs_outside(state) else None
        try:
            actions = await relay.ensure(namespace)
        except OSError as exc:
            log.warning(
                "dns relay failed", extra={"host": self.host, "namespace": namespace, "error": str(exc)}
            )
            return
        for action in actions:
            log.info("network plumbing: %s", action, extra={"host": self.host})

    async def _report_forever(self) -> None:
        while True:
            event = NetworkAgentReport(host=self.host, generation=self.applied, sent_at=time.time())
            await self.bus.publish(event, service_context(), ttl_s=self.report_interval_s * 3)
            await asyncio.sleep(self.report_interval_s)
