"""Converge the host's kernel to a `HostNetworking` state, idempotently.

`converge` keeps nothing in memory between calls: it reads the kernel (links, namespaces,
nftables) and the state dir (dnsmasq's PID files), so a fresh agent process adopts what an
earlier one made, and a state applied twice changes nothing the second time. It first removes
every fabric-made object the state does not name (so that names are free again), then makes or
fixes, in order: bridges, the outside namespace, DHCP, routers, VM taps, security groups.

A failure in one object (a router whose network is missing, a dnsmasq that will not start) is
reported in `Report.errors` and does not stop the others; the next converge tries it again.
Calls must not overlap: the caller (the agent) runs one converge at a time.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from actors.network_agent import dhcp, dns_relay, links, outside, routers, security
from actors.network_agent.commands import PlumbingFailed, run
from actors.network_agent.names import (
    BRIDGE_PREFIX,
    CONNTRACK_TABLE,
    DHCP_NAMESPACE_PREFIX,
    SECURITY_TABLE,
    TAP_PREFIX,
    VETH_BRIDGE_END,
    bridge_end,
    bridge_name,
    dhcp_leg,
    dhcp_namespace,
    is_fabric_namespace,
    outside_leg,
    router_gateway_leg,
    router_interface_leg,
    router_namespace,
    tap_name,
)
from actors.network_agent.nftables import ensure_tables
from protocol.network_agent import HostNetworking, NetworkPlumbing

log = logging.getLogger("fabric.network_agent")

BR_NETFILTER = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


@dataclass(frozen=True, slots=True)
class Report:
    """What one converge did: every change in words, every object it could not make."""

    generation: int
    actions: tuple[str, ...]
    errors: tuple[str, ...]
    duration_s: float

    @property
    def changed(self) -> bool:
        return bool(self.actions)


class _Run:
    """One converge's running record: each step's changes, or its failure."""

    def __init__(self) -> None:
        self.actions: list[str] = []
        self.errors: list[str] = []

    async def step(self, what: str, fn: Callable[..., Awaitable[list[str]]], *args: object) -> None:
        try:
            self.actions += await fn(*args)
        except Exception as exc:  # one object's failure must not stop the others
            unexpected = not isinstance(exc, PlumbingFailed)
            log.warning("network plumbing: %s failed: %s", what, exc, exc_info=unexpected)
            self.errors.append(f"{what}: {exc}")


def desired_namespaces(state: HostNetworking) -> set[str]:
    wanted = {dhcp_namespace(n.network_id) for n in state.networks if dhcp.needs_dhcp(n)}
    wanted |= {router_namespace(r.router_id) for r in state.routers}
    if outside.needs_outside(state):
        wanted.add(state.outside_namespace)
    return wanted


def desired_bridge_ends(state: HostNetworking) -> set[str]:
    """The root-namespace ends of every leg the state asks for."""
    names = {dhcp_leg(leg_port) for n in state.networks for leg_port in _dhcp_ports(n)}
    for router in state.routers:
        names |= {router_interface_leg(leg.port_id) for leg in router.interfaces}
        if router.gateway is not None:
            names.add(router_gateway_leg(router.gateway.port_id))
    names |= {outside_leg(n.network_id) for n in state.networks if n.external}
    return {bridge_end(name) for name in names}


def _dhcp_ports(network: NetworkPlumbing) -> set[str]:
    return {s.dhcp_port_id for s in dhcp.dhcp_subnets(network) if s.dhcp_port_id}


async def _remove_namespace(namespace: str, state_dir: Path) -> list[str]:
    actions = []
    if namespace.startswith(DHCP_NAMESPACE_PREFIX):
        network_id = namespace.removeprefix(DHCP_NAMESPACE_PREFIX)
        actions += await dhcp.stop(state_dir / "dhcp" / network_id, namespace)
    return actions + await links.remove_namespace(namespace)


async def _remove_resolv_conf(namespace: str) -> list[str]:
    return dns_relay.remove_resolv_conf(namespace)


def _dhcp_dirs(state_dir: Path) -> list[Path]:
    parent = state_dir / "dhcp"
    return sorted(parent.iterdir()) if parent.is_dir() else []


async def _remove_stale(run_: _Run, state: HostNetworking, state_dir: Path) -> list[str]:
    """Each stale object is its own step: one that cannot be removed does not keep the others."""
    wanted = desired_namespaces(state)
    for namespace in sorted(await links.namespaces()):
        if namespace not in wanted and is_fabric_namespace(namespace, state.outside_namespace):
            await run_.step(f"removing namespace {namespace}", _remove_namespace, namespace, state_dir)
    if not outside.needs_outside(state):
        # The agent's DNS relay made it (dns_relay.py); with no outside namespace, it is stale.
        await run_.step("outside resolv.conf", _remove_resolv_conf, state.outside_namespace)
    for directory in _dhcp_dirs(state_dir):
        if dhcp_namespace(directory.name) not in wanted:
            await run_.step(f"stopping DHCP in {directory}", dhcp.stop, directory, None)
    ends = desired_bridge_ends(state)
    bridges = {bridge_name(n.network_id) for n in state.networks}
    for name, link in sorted((await links.root_links()).items()):
        stale_leg = VETH_BRIDGE_END.match(name) and link.kind == "veth" and name not in ends
        stale_bridge = name.startswith(BRIDGE_PREFIX) and link.kind == "bridge" and name not in bridges
        if stale_leg or stale_bridge:
            await run_.step(f"removing {name}", links.delete_link, name)
    return []


async def _attach_taps(state: HostNetworking) -> list[str]:
    """Each port's tap on its network's bridge; taps on a fabric bridge that no port of the state
    owns are detached (a deleted port's VM must not stay on the network unfiltered)."""
    actions: list[str] = []
    mtus = {n.network_id: n.mtu for n in state.networks}
    errors = []
    for port in state.ports:
        if port.network_id not in mtus:
            errors.append(f"port {port.port_id}: network {port.network_id} is not in the state")
            continue
        tap, bridge = tap_name(port.port_id), bridge_name(port.network_id)
        actions += await links.ensure_tap(tap, bridge, mtus[port.network_id])
    known = {tap_name(p.port_id) for p in state.ports}
    root = await links.root_links()
    fabric_bridges = {link.index for name, link in root.items() if name.startswith(BRIDGE_PREFIX)}
    for name, link in sorted(root.items()):
        if name.startswith(TAP_PREFIX) and link.master in fabric_bridges and name not in known:
            actions += await links.detach(name)
    if errors:
        raise PlumbingFailed("; ".join(errors))
    return actions


def _has_br_netfilter() -> bool:
    return BR_NETFILTER.exists()


async def _ensure_br_netfilter() -> list[str]:
    """Security groups need bridged IPv4 to reach the ip family's hooks (see security.py)."""
    if _has_br_netfilter():
        return []
    await run("modprobe", "br_netfilter")
    if not _has_br_netfilter():
        raise PlumbingFailed("br_netfilter is not available: security groups cannot track connections")
    return ["loaded br_netfilter"]


async def _security(state: HostNetworking) -> list[str]:
    bridge_table, conntrack_table = security.tables(state)
    actions = await _ensure_br_netfilter() if bridge_table is not None else []
    wanted = {SECURITY_TABLE: bridge_table, CONNTRACK_TABLE: conntrack_table}
    return actions + await ensure_tables(None, wanted)


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


async def converge(state: HostNetworking, *, state_dir: Path) -> Report:
    """Make the kernel match `state`; remove every fabric-made object it does not name."""
    started = time.monotonic()
    _make_dir(state_dir)
    run_ = _Run()
    await run_.step("listing stale objects", _remove_stale, run_, state, state_dir)
    for network in state.networks:
        bridge = bridge_name(network.network_id)
        await run_.step(f"bridge of network {network.network_id}", links.ensure_bridge, bridge, network.mtu)
    if outside.needs_outside(state):
        await run_.step(f"outside namespace {state.outside_namespace}", outside.converge, state)
    for network in state.networks:
        if dhcp.needs_dhcp(network):
            await run_.step(f"DHCP of network {network.network_id}", dhcp.converge, network, state_dir)
    for router in state.routers:
        await run_.step(f"router {router.router_id}", routers.converge, router, state.networks)
    await run_.step("taps", _attach_taps, state)
    await run_.step("security groups", _security, state)
    report = Report(
        generation=state.generation,
        actions=tuple(run_.actions),
        errors=tuple(run_.errors),
        duration_s=time.monotonic() - started,
    )
    # A run that changed nothing (most of them: every event and every resync) is not news.
    log.log(
        logging.INFO if report.actions or report.errors else logging.DEBUG,
        "network plumbing converged to generation %d in %.3f s: %d changes, %d errors",
        state.generation,
        report.duration_s,
        len(report.actions),
        len(report.errors),
    )
    for action in report.actions:
        log.debug("network plumbing: %s", action)
    return report


async def teardown_all(state_dir: Path, outside_namespace: str) -> Report:
    """Remove everything fabric-made from this host: converge to a state with nothing in it."""
    empty = HostNetworking(
        host="teardown", generation=0, outside_namespace=outside_namespace, networks=(), routers=(), ports=()
    )
    return await converge(empty, state_dir=state_dir)
