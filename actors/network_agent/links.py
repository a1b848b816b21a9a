"""Bridges, veth legs, taps, namespaces and routes, through pyroute2's netlink API.

pyroute2's synchronous `IPRoute` runs in a thread (`in_thread`); each public coroutine here is one
thread hop that looks at the kernel, changes only what differs, and returns what it changed, in
words, for the converge report. A namespace is reached with `IPRoute(netns=name, flags=0)`:
flags=0, because pyroute2's default would create a namespace that is missing.

Nothing here gives the root namespace an address: bridges and the bridge ends of veths are
stripped of any IPv4 address and have IPv6 disabled before they come up (no link-local either).
"""

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns

from actors.network_agent.commands import PlumbingFailed, ensure_sysctls, in_thread
from actors.network_agent.names import bridge_end

IFF_UP = 0x1
MAIN_TABLE = 254


@dataclass(frozen=True, slots=True, kw_only=True)
class Leg:
    """A veth pair joining a namespace to a network's bridge: `name` inside the namespace (with
    `mac` and `addresses`), `t<name>` in the root namespace, enslaved to `bridge`."""

    namespace: str
    name: str
    bridge: str
    mtu: int
    mac: str | None
    addresses: tuple[str, ...]  # "10.0.0.2/24"

    @property
    def bridge_end(self) -> str:
        return bridge_end(self.name)


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    kind: str | None
    mac: str
    mtu: int
    master: int  # 0: none
    peer: int  # a veth's peer's index (in the peer's namespace); 0: none
    is_up: bool
    nf_call_iptables: int | None  # bridges only


def _link(msg: Any) -> Link:
    nf = msg.get(("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_NF_CALL_IPTABLES"))
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("IFLA_IFNAME")),
        kind=msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")),
        mac=str(msg.get("IFLA_ADDRESS") or ""),
        mtu=int(msg.get("IFLA_MTU") or 0),
        master=int(msg.get("IFLA_MASTER") or 0),
        peer=int(msg.get("IFLA_LINK") or 0),
        is_up=bool(msg["flags"] & IFF_UP),
        nf_call_iptables=None if nf is None else int(nf),
    )


def _links(ipr: Any) -> dict[str, Link]:
    return {link.name: link for link in map(_link, ipr.get_links())}


def _addresses(ipr: Any, index: int) -> set[str]:
    return {
        f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=socket.AF_INET, index=index)
    }


def _set_addresses(ipr: Any, link: Link, wanted: tuple[str, ...], where: str, actions: list[str]) -> None:
    have = _addresses(ipr, link.index)
    for extra in sorted(have - set(wanted)):
        address, _, prefix = extra.partition("/")
        ipr.addr("del", index=link.index, address=address, prefixlen=int(prefix))
        actions.append(f"removed address {extra} from {where}")
    for missing in wanted:
        if missing not in have:
            address, _, prefix = missing.partition("/")
            ipr.addr("add", index=link.index, address=address, prefixlen=int(prefix))
            actions.append(f"added address {missing} to {where}")


def _disable_ipv6(name: str) -> None:
    """In the root namespace only (this process's): no link-local address on our links there."""
    knob = Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6")
    if knob.exists() and knob.read_text().strip() != "1":
        knob.write_text("1")


def _fix_link(
    ipr: Any, link: Link, *, mtu: int, master: Link | None, mac: str | None, where: str
) -> list[str]:
    actions = []
    if mac is not None and link.mac.lower() != mac.lower():
        if link.is_up:  # not every driver changes a live address
            ipr.link("set", index=link.index, state="down")
            link = dataclasses.replace(link, is_up=False)
        ipr.link("set", index=link.index, address=mac)
        actions.append(f"set {where} address {mac}")
    if link.mtu != mtu:
        ipr.link("set", index=link.index, mtu=mtu)
        actions.append(f"set {where} mtu {mtu}")
    if master is not None and link.master != master.index:
        ipr.link("set", index=link.index, master=master.index)
        actions.append(f"attached {where} to {master.name}")
    if not link.is_up:
        ipr.link("set", index=link.index, state="up")
        actions.append(f"set {where} up")
    return actions


# -- namespaces --------------------------------------------------------------------------------


def _namespaces() -> set[str]:
    return set(netns.listnetns())


def _ensure_namespace(name: str) -> list[str]:
    actions = []
    if name not in netns.listnetns():
        netns.create(name)
        actions.append(f"created namespace {name}")
    with IPRoute(netns=name, flags=0) as ipr:
        lo = _links(ipr)["lo"]
        if not lo.is_up:
            ipr.link("set", index=lo.index, state="up")
            actions.append(f"set {name}/lo up")
    return actions


def _remove_namespace(name: str) -> list[str]:
    """Delete the namespace's links first (so the veths' root ends go now, even if some process
    still holds the namespace), then the namespace."""
    if name not in netns.listnetns():
        return []
    with IPRoute(netns=name, flags=0) as ipr:
        for link in _links(ipr).values():
            if link.name != "lo":
                ipr.link("del", index=link.index)
    netns.remove(name)
    return [f"removed namespace {name}"]


async def namespaces() -> set[str]:
    return await in_thread(_namespaces)


#: Every namespace the agent makes is IPv4 only: no IPv6 link-local addresses, no neighbour
#: discovery from its legs onto tenant networks.
IPV4_ONLY = {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1"}


async def ensure_namespace(name: str, sysctls: dict[str, str] | None = None) -> list[str]:
    """The namespace, with lo up and IPv6 off (before any leg is made), and `sysctls`."""
    actions = await in_thread(_ensure_namespace, name)
    return actions + await ensure_sysctls(name, IPV4_ONLY | (sysctls or {}))


async def remove_namespace(name: str) -> list[str]:
    return await in_thread(_remove_namespace, name)


# -- the root namespace: bridges, taps, stale links --------------------------------------------


def _root_links() -> dict[str, Link]:
    with IPRoute() as ipr:
        return _links(ipr)


def _ensure_bridge(name: str, mtu: int) -> list[str]:
    actions = []
    with IPRoute() as ipr:
        link = _links(ipr).get(name)
        if link is not None and link.kind != "bridge":
            ipr.link("del", index=link.index)
            actions.append(f"removed {link.kind} {name} (not a bridge)")
            link = None
        if link is None:
            # No STP (each bridge is one network's flat segment) and no forwarding delay: a port
            # forwards as soon as it is up. nf_call_iptables: bridged IPv4 goes through the ip
            # family's hooks, where security groups find connection tracking (security.py).
            ipr.link(
                "add",
                ifname=name,
                kind="bridge",
                br_stp_state=0,
                br_forward_delay=0,
                br_nf_call_iptables=1,
                mtu=mtu,
            )
            actions.append(f"created bridge {name}")
            link = _links(ipr)[name]
        _disable_ipv6(name)
        if link.nf_call_iptables != 1:
            ipr.link("set", index=link.index, kind="bridge", br_nf_call_iptables=1)
            actions.append(f"set bridge {name} nf_call_iptables")
        _set_addresses(ipr, link, (), name, actions)
        actions += _fix_link(ipr, link, mtu=mtu, master=None, mac=None, where=name)
    return actions


def _ensure_tap(tap: str, bridge: str, mtu: int) -> list[str]:
    """Attach a VM's tap to its network's bridge. A tap libvirt has not made yet is no error."""
    with IPRoute() as ipr:
        links = _links(ipr)
        link = links.get(tap)
        if link is None:
            return []
        if bridge not in links:
            raise PlumbingFailed(f"tap {tap}: bridge {bridge} is missing")
        _disable_ipv6(tap)
        return _fix_link(ipr, link, mtu=mtu, master=links[bridge], mac=None, where=tap)


def _detach(name: str) -> list[str]:
    with IPRoute() as ipr:
        link = _links(ipr).get(name)
        if link is None or link.master == 0:
            return []
        ipr.link("set", index=link.index, master=0)
        return [f"detached {name} from its bridge"]


def _delete_link(name: str) -> list[str]:
    with IPRoute() as ipr:
        link = _links(ipr).get(name)
        if link is None:
            return []
        ipr.link("del", index=link.index)
        return [f"removed {link.kind or 'link'} {name}"]


async def root_links() -> dict[str, Link]:
    return await in_thread(_root_links)


async def ensure_bridge(name: str, mtu: int) -> list[str]:
    return await in_thread(_ensure_bridge, name, mtu)


async def ensure_tap(tap: str, bridge: str, mtu: int) -> list[str]:
    return await in_thread(_ensure_tap, tap, bridge, mtu)


async def detach(name: str) -> list[str]:
    return await in_thread(_detach, name)


async def delete_link(name: str) -> list[str]:
    return await in_thread(_delete_link, name)


# -- legs: veth pairs from a namespace to a bridge ---------------------------------------------


def _ensure_legs(namespace: str, legs: tuple[Leg, ...]) -> list[str]:
    """Make the namespace's links exactly `legs` (and lo): each a veth whose peer is its bridge
    end, with the leg's MAC, MTU and IPv4 addresses. A pair that is half there, or whose ends are
    not each other's peers, is made again."""
    actions: list[str] = []
    with IPRoute() as root, IPRoute(netns=namespace, flags=0) as inside:
        wanted = {leg.name for leg in legs}
        for link in _links(inside).values():
            if link.name != "lo" and link.name not in wanted:
                inside.link("del", index=link.index)
                actions.append(f"removed {namespace}/{link.name}")
        for leg in legs:
            actions += _ensure_leg(root, inside, leg)
    return actions


def _ensure_leg(root: Any, inside: Any, leg: Leg) -> list[str]:
    actions = []
    where = f"{leg.namespace}/{leg.name}"
    root_links = _links(root)
    bridge = root_links.get(leg.bridge)
    if bridge is None:
        raise PlumbingFailed(f"{where}: bridge {leg.bridge} is missing")
    outer, inner = root_links.get(leg.bridge_end), _links(inside).get(leg.name)
    paired = (
        outer is not None
        and inner is not None
        and outer.kind == "veth"
        and inner.kind == "veth"
        and outer.peer == inner.index
        and inner.peer == outer.index
    )
    if not paired:
        if outer is not None:
            root.link("del", index=outer.index)
        inner = _links(inside).get(leg.name)  # gone with `outer` if they were a pair
        if inner is not None:
            inside.link("del", index=inner.index)
        peer: dict[str, object] = {"ifname": leg.name, "net_ns_fd": leg.namespace}
        root.link("add", ifname=leg.bridge_end, kind="veth", mtu=leg.mtu, peer=peer)
        actions.append(f"created veth {leg.bridge_end} to {where}")
        outer, inner = _links(root)[leg.bridge_end], _links(inside)[leg.name]
    assert outer is not None and inner is not None
    _disable_ipv6(leg.bridge_end)
    _set_addresses(root, outer, (), leg.bridge_end, actions)
    actions += _fix_link(root, outer, mtu=leg.mtu, master=bridge, mac=None, where=leg.bridge_end)
    _set_addresses(inside, inner, leg.addresses, where, actions)
    actions += _fix_link(inside, inner, mtu=leg.mtu, master=None, mac=leg.mac, where=where)
    return actions


def _ensure_default_route(namespace: str, gateway: str | None) -> list[str]:
    with IPRoute(netns=namespace, flags=0) as ipr:
        defaults = [
            r
            for r in ipr.get_routes(family=socket.AF_INET)
            if r.get("RTA_TABLE") == MAIN_TABLE and r["dst_len"] == 0
        ]
        have = {r.get("RTA_GATEWAY") for r in defaults}
        if have == ({gateway} if gateway else set()):
            return []
        if gateway is None:
            for route in defaults:
                ipr.route("del", dst="0.0.0.0/0", gateway=route.get("RTA_GATEWAY"))
            return [f"removed the default route of {namespace}"]
        ipr.route("replace", dst="0.0.0.0/0", gateway=gateway)
        return [f"set the default route of {namespace} via {gateway}"]


async def ensure_legs(namespace: str, legs: tuple[Leg, ...]) -> list[str]:
    return await in_thread(_ensure_legs, namespace, legs)


async def ensure_default_route(namespace: str, gateway: str | None) -> list[str]:
    return await in_thread(_ensure_default_route, namespace, gateway)


def namespace_inode(name: str) -> int | None:
    """The inode of a named namespace, to find the processes inside it (/proc/<pid>/ns/net)."""
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return None
