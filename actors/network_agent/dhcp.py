"""DHCP for a network: dnsmasq in `qdhcp-<network id>`, static leases only.

Each network's files live in `<state_dir>/dhcp/<network id>/`:

    dnsmasq.conf   interfaces, one static range per DHCP subnet, where the other files are
    hosts          one line per lease: `mac,ip,hostname`      (re-read on SIGHUP)
    opts           router, DNS servers, host routes, MTU     (re-read on SIGHUP)
    leases         dnsmasq's lease database
    dnsmasq.pid    the daemon's PID, written by dnsmasq
    dnsmasq.log    dnsmasq's log (there may be no syslog)

dnsmasq runs as a daemon (`ip netns exec qdhcp-… dnsmasq --conf-file=…`), not as the agent's
child, so that it outlives an agent restart and the next agent adopts it by its PID file. A PID
counts as ours only if /proc shows dnsmasq with this network's --conf-file, so a recycled PID is
never signalled. A change of leases or options is a SIGHUP; any other change (the conf, the leg)
restarts it. dnsmasq serves DHCP only (`port=0`: no DNS); it keeps root, since the state dir may
be private to root and it re-reads the hosts file on SIGHUP after it would have dropped privileges.
"""

import asyncio
import ipaddress
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from actors.network_agent import links
from actors.network_agent.commands import PlumbingFailed, run
from actors.network_agent.links import Leg
from actors.network_agent.names import bridge_name, dhcp_leg, dhcp_namespace
from protocol.network_agent import NetworkPlumbing, SubnetPlumbing

LEASE_TIME = "86400s"
STOP_TIMEOUT_S = 5.0


def dhcp_subnets(network: NetworkPlumbing) -> tuple[SubnetPlumbing, ...]:
    """The subnets dnsmasq serves: DHCP enabled and a DHCP port with an address."""
    return tuple(s for s in network.subnets if s.enable_dhcp and s.dhcp_port_id and s.dhcp_ip)


def needs_dhcp(network: NetworkPlumbing) -> bool:
    return bool(dhcp_subnets(network))


def dhcp_legs(network: NetworkPlumbing) -> tuple[Leg, ...]:
    """One leg per DHCP port (a port may serve several subnets: one address in each)."""
    by_port: dict[str, list[SubnetPlumbing]] = {}
    for subnet in dhcp_subnets(network):
        assert subnet.dhcp_port_id is not None
        by_port.setdefault(subnet.dhcp_port_id, []).append(subnet)
    return tuple(
        Leg(
            namespace=dhcp_namespace(network.network_id),
            name=dhcp_leg(port_id),
            bridge=bridge_name(network.network_id),
            mtu=network.mtu,
            mac=next((s.dhcp_mac for s in subnets if s.dhcp_mac), None),
            addresses=tuple(f"{s.dhcp_ip}/{ipaddress.ip_network(s.cidr).prefixlen}" for s in subnets),
        )
        for port_id, subnets in sorted(by_port.items())
    )


@dataclass(frozen=True, slots=True)
class Files:
    conf: str
    hosts: str
    opts: str


def _tag(subnet: SubnetPlumbing) -> str:
    return "subnet-" + re.sub(r"[^A-Za-z0-9_-]", "_", subnet.subnet_id)


HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _hostname(name: str) -> str:
    """The lease's hostname if it is a valid DNS label, else none: dnsmasq ignores a hosts line
    with a bad name, and the VM would get no address at all."""
    return name if HOSTNAME.match(name) else ""


def render(network: NetworkPlumbing, directory: Path) -> Files:
    """dnsmasq's three files for `network`, its files under `directory`. Pure."""
    conf = [
        f"# dnsmasq for network {network.network_id}, written by the network agent: edits are lost",
        "no-resolv",
        "no-hosts",
        "port=0",
        "bind-interfaces",
        *(f"interface={leg.name}" for leg in dhcp_legs(network)),
        "dhcp-authoritative",
        f"dhcp-hostsfile={directory / 'hosts'}",
        f"dhcp-optsfile={directory / 'opts'}",
        f"dhcp-leasefile={directory / 'leases'}",
        f"pid-file={directory / 'dnsmasq.pid'}",
        f"log-facility={directory / 'dnsmasq.log'}",
        "user=root",
        "group=root",
    ]
    opts = []
    for subnet in dhcp_subnets(network):
        net = ipaddress.ip_network(subnet.cidr)
        tag = _tag(subnet)
        conf.append(f"dhcp-range=set:{tag},{net.network_address},static,{net.netmask},{LEASE_TIME}")
        # With no gateway, an empty router option: dnsmasq would offer its own address otherwise.
        opts.append(f"tag:{tag},option:router" + (f",{subnet.gateway_ip}" if subnet.gateway_ip else ""))
        if subnet.dns_nameservers:
            opts.append(f"tag:{tag},option:dns-server,{','.join(subnet.dns_nameservers)}")
        if subnet.host_routes:
            # A client given classless routes (121) ignores the router option (RFC 3442), so the
            # default route goes in the list too.
            routes = [f"{dst},{hop}" for dst, hop in subnet.host_routes]
            if subnet.gateway_ip and not any(dst == "0.0.0.0/0" for dst, _ in subnet.host_routes):
                routes.append(f"0.0.0.0/0,{subnet.gateway_ip}")
            opts.append(f"tag:{tag},option:classless-static-route,{','.join(routes)}")
        opts.append(f"tag:{tag},option:mtu,{network.mtu}")
    hosts = [
        ",".join(part for part in (lease.mac.lower(), lease.ip, _hostname(lease.hostname)) if part)
        for lease in sorted(network.leases, key=lambda lease: lease.mac.lower())
    ]
    return Files(conf="\n".join(conf) + "\n", hosts="\n".join(hosts) + "\n", opts="\n".join(opts) + "\n")


# -- the dnsmasq process ------------------------------------------------------------------------


def _cmdline(pid: int) -> list[bytes] | None:
    """A live process's arguments; None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return None


def _is_our_dnsmasq(pid: int, conf: Path) -> bool:
    args = _cmdline(pid)
    if not args:
        return False
    return os.path.basename(args[0]) == b"dnsmasq" and f"--conf-file={conf}".encode() in args


def running_pid(directory: Path) -> int | None:
    """The PID of the dnsmasq serving from `directory`, if its PID file names one that runs."""
    try:
        pid = int((directory / "dnsmasq.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_dnsmasq(pid, directory / "dnsmasq.conf") else None


def dnsmasq_in_namespace(namespace: str) -> list[int]:
    """PIDs of every dnsmasq inside `namespace`, ours or orphaned (its PID file lost)."""
    inode = links.namespace_inode(namespace)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino != inode:
                continue
        except OSError:
            continue
        args = _cmdline(int(entry.name))
        if args and os.path.basename(args[0]) == b"dnsmasq":
            found.append(int(entry.name))
    return found


async def _stop_pid(pid: int) -> None:
    """SIGTERM, then SIGKILL if it has not gone within STOP_TIMEOUT_S."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            if _cmdline(pid) is None:
                return
            await asyncio.sleep(0.02)
    raise PlumbingFailed(f"dnsmasq {pid} did not stop")


async def _stop_all(directory: Path, namespace: str | None) -> list[str]:
    """Stop the dnsmasq of `directory`'s PID file, wherever it runs (its namespace may have been
    deleted under it), and any other dnsmasq in `namespace` (an orphan whose PID file is lost)."""
    pids = [pid] if (pid := running_pid(directory)) else []
    if namespace is not None and links.namespace_inode(namespace) is not None:
        pids += [other for other in dnsmasq_in_namespace(namespace) if other not in pids]
    for pid in pids:
        await _stop_pid(pid)
    return [f"stopped dnsmasq {pid}" + (f" in {namespace}" if namespace else "") for pid in pids]


async def stop(directory: Path, namespace: str | None) -> list[str]:
    """Stop the network's dnsmasq (see _stop_all) and forget its files."""
    actions = await _stop_all(directory, namespace)
    shutil.rmtree(directory, ignore_errors=True)
    return actions


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # dnsmasq never reads half a file
    return True


async def converge(network: NetworkPlumbing, state_dir: Path) -> list[str]:
    """Make `qdhcp-<network>` hold the DHCP legs and run one dnsmasq serving the leases."""
    namespace = dhcp_namespace(network.network_id)
    directory = state_dir / "dhcp" / network.network_id
    actions = await links.ensure_namespace(namespace)
    leg_actions = await links.ensure_legs(namespace, dhcp_legs(network))
    actions += leg_actions
    directory.mkdir(parents=True, exist_ok=True)
    files = render(network, directory)
    pid = running_pid(directory)
    conf_path = directory / "dnsmasq.conf"
    conf_same = conf_path.exists() and conf_path.read_text() == files.conf
    if pid is not None and conf_same and not leg_actions:
        hosts_changed = _write_if_changed(directory / "hosts", files.hosts)
        opts_changed = _write_if_changed(directory / "opts", files.opts)
        if hosts_changed or opts_changed:
            os.kill(pid, signal.SIGHUP)
            actions.append(f"reloaded dnsmasq {pid} in {namespace}")
        return actions
    # Start afresh: stop ours, and any orphan holding the DHCP port in this namespace.
    actions += await _stop_all(directory, namespace)
    _write_if_changed(directory / "hosts", files.hosts)
    _write_if_changed(directory / "opts", files.opts)
    _write_if_changed(conf_path, files.conf)
    (directory / "dnsmasq.pid").unlink(missing_ok=True)
    await run("dnsmasq", f"--conf-file={conf_path}", namespace=namespace)
    pid = running_pid(directory)
    if pid is None:
        raise PlumbingFailed(f"dnsmasq in {namespace} exited at once: see {directory / 'dnsmasq.log'}")
    actions.append(f"started dnsmasq {pid} in {namespace}")
    return actions
