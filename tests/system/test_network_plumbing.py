"""The network agent's plumbing for real: bridges, namespaces, dnsmasq and nftables on this host.

VMs are namespaces `fabric-test-vm-<n>` whose veth's root end is named as libvirt would name the
port's tap (`tap<port id[:11]>`) and left unattached, as converge must attach it. Inside them
busybox's udhcpc takes the DHCP lease and Python stands in for a web server and its clients, each
started with `ip netns exec` and stopped by PID. "The internet" is the outside namespace.

    network A  10.61.0.0/24   vm1 .11, vm2 .12, DHCP .2, router .1
    network B  10.62.0.0/24   vm3 .13, DHCP .2 (no router)
    external   203.0.113.0/24 outside .1, router gateway .10, floating IP .20 -> vm2

All ids start with `fab7e570` so that every name made here is recognisably this test's; the
fixture removes everything (`teardown_all`, then the VMs and their taps by name, then anything
left with the test's names) whatever the test did. Converge owns every fabric-made object on the
host, so no other network agent may run on this machine while these tests do.
"""

import asyncio
import contextlib
import dataclasses
import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.network_agent.converge import Report, converge, teardown_all
from actors.network_agent.dhcp import running_pid
from protocol.network_agent import (
    FloatingIp,
    HostNetworking,
    Lease,
    NetworkPlumbing,
    PortPlumbing,
    RouterLeg,
    RouterPlumbing,
    Rule,
    SubnetPlumbing,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
MARK = "fab7e570"
OUTSIDE = "fabric-test-outside"
NET_A = f"{MARK}-aaaa-4000-8000-00000000000a"
NET_B = f"{MARK}-bbbb-4000-8000-00000000000b"
EXT = f"{MARK}-eeee-4000-8000-00000000000e"
ROUTER = f"{MARK}-7777-4000-8000-000000000007"
EXT_GATEWAY = "203.0.113.1"
ROUTER_GATEWAY = "203.0.113.10"
FLOATING_IP = "203.0.113.20"
FAIL_TIMEOUT_S = 1.5  # how long a connection that must fail is given


@dataclass(frozen=True)
class Vm:
    n: int
    port_id: str
    network_id: str
    mac: str
    ip: str
    hostname: str

    @property
    def namespace(self) -> str:
        return f"fabric-test-vm-{self.n}"

    @property
    def tap(self) -> str:
        return f"tap{self.port_id[:11]}"


VM1 = Vm(1, f"{MARK}-v100-4000-8000-000000000101", NET_A, "fa:16:3e:61:00:11", "10.61.0.11", "vm-one")
VM2 = Vm(2, f"{MARK}-v200-4000-8000-000000000102", NET_A, "fa:16:3e:61:00:12", "10.61.0.12", "vm-two")
VM3 = Vm(3, f"{MARK}-v300-4000-8000-000000000103", NET_B, "fa:16:3e:62:00:13", "10.62.0.13", "vm-three")
VMS = (VM1, VM2, VM3)

ANY_EGRESS = Rule(direction="egress", protocol=None, port_min=None, port_max=None, remote_cidr=None)
HTTP_IN = Rule(direction="ingress", protocol="tcp", port_min=80, port_max=80, remote_cidr=None)
PING_FROM_A = Rule(
    direction="ingress", protocol="icmp", port_min=None, port_max=None, remote_cidr="10.61.0.0/24"
)


def tenant(network_id: str, prefix: str, vms: tuple[Vm, ...]) -> NetworkPlumbing:
    subnet = SubnetPlumbing(
        subnet_id=f"{network_id}-subnet",
        cidr=f"{prefix}.0/24",
        gateway_ip=f"{prefix}.1",
        enable_dhcp=True,
        dhcp_port_id=f"{MARK}-d{network_id[9]}00-4000-8000-0000000000d0",
        dhcp_ip=f"{prefix}.2",
        dhcp_mac=f"fa:16:3e:{prefix.split('.')[1]}:00:02",
    )
    leases = tuple(
        Lease(mac=vm.mac, ip=vm.ip, hostname=vm.hostname) for vm in vms if vm.network_id == network_id
    )
    return NetworkPlumbing(network_id=network_id, mtu=1450, external=False, subnets=(subnet,), leases=leases)


def build_state(
    *,
    router: bool = True,
    port_security: bool = False,
    http_allowed: bool = True,
    generation: int = 1,
) -> HostNetworking:
    """The test's host: networks A and B with DHCP, the external network, the router (optional)
    and the three VMs' ports."""
    external = NetworkPlumbing(
        network_id=EXT,
        mtu=1500,
        external=True,
        subnets=(
            SubnetPlumbing(subnet_id="ext", cidr="203.0.113.0/24", gateway_ip=EXT_GATEWAY, enable_dhcp=False),
        ),
        leases=(),
    )
    routers: tuple[RouterPlumbing, ...] = ()
    if router:
        routers = (
            RouterPlumbing(
                router_id=ROUTER,
                interfaces=(
                    RouterLeg(
                        port_id=f"{MARK}-ra00-4000",
                        network_id=NET_A,
                        mac="fa:16:3e:61:00:01",
                        address="10.61.0.1/24",
                    ),
                ),
                gateway=RouterLeg(
                    port_id=f"{MARK}-rg00-4000",
                    network_id=EXT,
                    mac="fa:16:3e:cb:00:0a",
                    address=f"{ROUTER_GATEWAY}/24",
                ),
                gateway_next_hop=EXT_GATEWAY,
                snat=True,
                floating_ips=(FloatingIp(floating_ip=FLOATING_IP, fixed_ip=VM2.ip),),
            ),
        )
    rules = (ANY_EGRESS, PING_FROM_A, *((HTTP_IN,) if http_allowed else ()))
    ports = tuple(
        PortPlumbing(
            port_id=vm.port_id,
            network_id=vm.network_id,
            mac=vm.mac,
            ips=(vm.ip,),
            port_security=port_security,
            rules=rules,
        )
        for vm in VMS
    )
    return HostNetworking(
        host="plumbing-test",
        generation=generation,
        outside_namespace=OUTSIDE,
        networks=(tenant(NET_A, "10.61.0", VMS), tenant(NET_B, "10.62.0", VMS), external),
        routers=routers,
        ports=ports,
    )


def why_not_runnable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, nftables)"
    for tool in ("ip", "nft", "dnsmasq", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    probe = f"fabric-test-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*argv: str, check: bool = True, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr}")
    return done


def in_ns(
    namespace: str, *argv: str, check: bool = True, timeout_s: float = 30
) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", namespace, *argv, check=check, timeout_s=timeout_s)


UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$router" ]; then ip route replace default via "${router%% *}" dev "$interface"; fi
    env > "$UDHCPC_OUT"
    ;;
esac
exit 0
"""

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
open(sys.argv[2], "w").close()
while True:
    c, peer = s.accept()
    c.sendall(f"local={c.getsockname()[0]} peer={peer[0]}".encode())
    c.close()
"""

CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
    print(s.recv(200).decode())
"""


class Lab:
    """This test's VMs and servers, and the converges it runs; `close` removes everything."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state_dir = tmp / "network-state"
        self.servers: list[subprocess.Popen[bytes]] = []
        (tmp / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
        (tmp / "udhcpc.sh").chmod(0o755)

    async def converge(self, state: HostNetworking) -> Report:
        report = await converge(state, state_dir=self.state_dir)
        assert report.errors == (), report.errors
        return report

    def plug(self, vm: Vm) -> None:
        """What libvirt does for a VM's port, less attaching the tap (converge's job here)."""
        sh("ip", "netns", "add", vm.namespace)
        sh("ip", "link", "add", vm.tap, "type", "veth", "peer", "name", "eth0", "netns", vm.namespace)
        Path(f"/proc/sys/net/ipv6/conf/{vm.tap}/disable_ipv6").write_text("1")
        sh("ip", "link", "set", vm.tap, "up")
        in_ns(vm.namespace, "ip", "link", "set", "lo", "up")
        in_ns(vm.namespace, "ip", "link", "set", "eth0", "address", vm.mac, "mtu", "1450", "up")

    def dhcp(self, vm: Vm) -> dict[str, str]:
        """The VM takes its lease with udhcpc; returns what the DHCP server told it."""
        out = self.tmp / f"udhcpc-{vm.n}.env"
        argv = ["busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1"]
        done = subprocess.run(
            ["ip", "netns", "exec", vm.namespace, *argv, "-s", str(self.tmp / "udhcpc.sh")],
            env={**os.environ, "UDHCPC_OUT": str(out)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)

    def serve(self, namespace: str, port: int) -> None:
        """A TCP server in `namespace` that answers with the addresses it sees."""
        ready = self.tmp / f"ready-{namespace}-{port}"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", SERVER, str(port), str(ready)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.servers.append(proc)
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, f"server in {namespace} did not start"
            time.sleep(0.02)

    def connect(self, namespace: str, ip: str, port: int, timeout_s: float = 5.0) -> str | None:
        """The server's answer, or None if no connection could be made within `timeout_s`."""
        done = in_ns(namespace, sys.executable, "-c", CLIENT, ip, str(port), str(timeout_s), check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def ping(self, namespace: str, ip: str) -> bool:
        return in_ns(namespace, "busybox", "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0

    async def up(self, state: HostNetworking, vms: tuple[Vm, ...] = VMS) -> None:
        for vm in vms:
            self.plug(vm)
        await self.converge(state)
        for vm in vms:
            assert self.dhcp(vm)["ip"] == vm.ip

    async def close(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()
        kill_test_processes()
        try:
            await teardown_all(self.state_dir, OUTSIDE)
        finally:
            remove_test_objects()


def namespaces_of_the_test() -> list[str]:
    names = (OUTSIDE, *(vm.namespace for vm in VMS))
    return [n for n in sh("ip", "netns", "list").stdout.split() if MARK in n or n in names]


def kill_test_processes() -> None:
    """Whatever runs in the VMs' and the outside namespace: the test's servers, also those of a
    run killed before its teardown. (dnsmasq, in qdhcp namespaces, is teardown_all's to stop.)"""
    for namespace in set(namespaces_of_the_test()) & {OUTSIDE, *(vm.namespace for vm in VMS)}:
        for pid in sh("ip", "netns", "pids", namespace, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def remove_test_objects() -> None:
    """Everything with this test's names, by name: the safety net under teardown_all."""
    for link in json.loads(sh("ip", "-j", "link").stdout):
        if MARK in link["ifname"]:
            sh("ip", "link", "del", link["ifname"], check=False)
    for namespace in namespaces_of_the_test():
        sh("ip", "netns", "del", namespace, check=False)
    for family, table in (("bridge", "fabric_sg"), ("ip", "fabric_sg_ct")):
        sh("nft", "delete", "table", family, table, check=False)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    why = why_not_runnable()
    if why:
        pytest.skip(why)
    made = Lab(tmp_path)
    await made.close()  # what a run killed before its teardown left
    try:
        yield made
    finally:
        await made.close()


def dnsmasq_pids(state_dir: Path) -> dict[str, int | None]:
    return {net: running_pid(state_dir / "dhcp" / net) for net in (NET_A, NET_B)}


def _table_of(item: dict[str, dict[str, object]]) -> object:
    body = next(iter(item.values()))
    return body.get("table", body.get("name"))


def snapshot(state_dir: Path) -> dict[str, object]:
    """What converge made, as the kernel shows it: links, namespaces and their insides, tables."""
    namespaces = sorted(n for n in sh("ip", "netns", "list").stdout.split() if MARK in n or n == OUTSIDE)
    ruleset = json.loads(sh("nft", "-j", "list", "ruleset").stdout)["nftables"]
    return {
        # Without operstate: the kernel derives it (a veth's follows its peer, in its own time);
        # what converge sets is the admin state, in `flags`.
        "links": [
            {k: v for k, v in link.items() if k != "operstate"}
            for link in json.loads(sh("ip", "-j", "link").stdout)
            if MARK in link["ifname"]
        ],
        "namespaces": namespaces,
        "inside": {
            ns: [
                in_ns(ns, *cmd).stdout
                for cmd in (("ip", "-j", "addr"), ("ip", "-j", "route"), ("nft", "-j", "list", "ruleset"))
            ]
            for ns in namespaces
        },
        "nft": [item for item in ruleset if _table_of(item) in ("fabric_sg", "fabric_sg_ct")],
        "dnsmasq": dnsmasq_pids(state_dir),
    }


def settled_snapshot(state_dir: Path) -> dict[str, object]:
    """A snapshot once the kernel has finished on its own (a bridge's operstate follows its ports
    within a second or so): two in a row, a moment apart, are the same."""
    last = snapshot(state_dir)
    for _ in range(20):
        time.sleep(0.25)
        now = snapshot(state_dir)
        if now == last:
            return now
        last = now
    raise AssertionError("the kernel's view of the test's objects kept changing")


def assert_unchanged(before: dict[str, object], after: dict[str, object]) -> None:
    """Equal snapshots, or the lines that differ."""
    if before != after:
        a, b = (json.dumps(snap, indent=1, sort_keys=True).splitlines() for snap in (before, after))
        raise AssertionError("\n".join(difflib.unified_diff(a, b, "before", "after", lineterm="", n=2)))


async def test_dhcp_gives_each_vm_its_lease_and_hostname(lab: Lab) -> None:
    for vm in VMS:
        lab.plug(vm)
    await lab.converge(build_state())
    for vm in VMS:
        told = lab.dhcp(vm)
        prefix = vm.ip.rsplit(".", 1)[0]
        assert (told["ip"], told["mask"], told["hostname"]) == (vm.ip, "24", vm.hostname)
        assert told["router"] == f"{prefix}.1" and told["serverid"] == f"{prefix}.2"


async def test_dhcp_reloads_changed_leases_without_restarting(lab: Lab) -> None:
    await lab.up(build_state(), (VM1,))
    before = dnsmasq_pids(lab.state_dir)
    moved = Lease(mac=VM2.mac, ip="10.61.0.42", hostname="vm-moved")
    report = await lab.converge(with_lease(build_state(), moved))
    assert [a for a in report.actions if "dnsmasq" in a] == [
        f"reloaded dnsmasq {before[NET_A]} in qdhcp-{NET_A}"
    ]
    assert dnsmasq_pids(lab.state_dir) == before
    lab.plug(VM2)
    await lab.converge(with_lease(build_state(), moved))
    told = lab.dhcp(VM2)
    assert (told["ip"], told["hostname"]) == ("10.61.0.42", "vm-moved")


def with_lease(state: HostNetworking, lease: Lease) -> HostNetworking:
    """`state` with `lease` in place of network A's lease for the same MAC."""
    networks = tuple(
        dataclasses.replace(n, leases=(*(old for old in n.leases if old.mac != lease.mac), lease))
        if n.network_id == NET_A
        else n
        for n in state.networks
    )
    return dataclasses.replace(state, networks=networks)


async def test_vms_reach_their_network_and_not_another(lab: Lab) -> None:
    await lab.up(build_state(router=False))
    assert lab.ping(VM1.namespace, VM2.ip)
    assert lab.ping(VM2.namespace, VM1.ip)
    assert not lab.ping(VM1.namespace, VM3.ip)
    assert not lab.ping(VM3.namespace, VM1.ip)


async def test_router_masquerades_to_its_gateway_address(lab: Lab) -> None:
    await lab.up(build_state())
    lab.serve(OUTSIDE, 8080)
    # vm1 has no floating IP: the outside sees the router's gateway address.
    assert lab.connect(VM1.namespace, EXT_GATEWAY, 8080) == f"local={EXT_GATEWAY} peer={ROUTER_GATEWAY}"
    # vm2 has one: it leaves as its floating IP. vm3's network has no router: no way out.
    assert lab.connect(VM2.namespace, EXT_GATEWAY, 8080) == f"local={EXT_GATEWAY} peer={FLOATING_IP}"
    assert lab.connect(VM3.namespace, EXT_GATEWAY, 8080, timeout_s=FAIL_TIMEOUT_S) is None


async def test_floating_ip_reaches_the_vm_at_its_fixed_ip(lab: Lab) -> None:
    await lab.up(build_state())
    lab.serve(VM2.namespace, 80)
    assert lab.connect(OUTSIDE, FLOATING_IP, 80) == f"local={VM2.ip} peer={EXT_GATEWAY}"
    assert lab.connect(OUTSIDE, VM2.ip, 80, timeout_s=FAIL_TIMEOUT_S) is None  # no route to tenants


async def test_security_groups_decide_what_reaches_the_vm(lab: Lab) -> None:
    await lab.up(build_state(port_security=True, http_allowed=False))
    lab.serve(VM2.namespace, 80)
    lab.serve(OUTSIDE, 8080)
    assert lab.connect(OUTSIDE, FLOATING_IP, 80, timeout_s=FAIL_TIMEOUT_S) is None
    assert lab.connect(VM1.namespace, VM2.ip, 80, timeout_s=FAIL_TIMEOUT_S) is None
    # Egress is open and replies come back through connection tracking, with no ingress rule.
    assert lab.connect(VM1.namespace, EXT_GATEWAY, 8080) == f"local={EXT_GATEWAY} peer={ROUTER_GATEWAY}"
    # ICMP only from network A: vm1 may ping vm2, the outside may not ping the floating IP.
    assert lab.ping(VM1.namespace, VM2.ip)
    assert not lab.ping(OUTSIDE, FLOATING_IP)

    report = await lab.converge(build_state(port_security=True, http_allowed=True))
    assert report.actions == ("replaced nft table bridge fabric_sg",)
    assert lab.connect(OUTSIDE, FLOATING_IP, 80) == f"local={VM2.ip} peer={EXT_GATEWAY}"
    assert lab.connect(VM1.namespace, VM2.ip, 80) == f"local={VM2.ip} peer={VM1.ip}"


async def test_a_port_cannot_spoof_its_addresses(lab: Lab) -> None:
    await lab.up(build_state(port_security=True, router=False))
    assert lab.ping(VM1.namespace, VM2.ip)
    in_ns(VM1.namespace, "ip", "addr", "replace", "10.61.0.99/24", "dev", "eth0")
    in_ns(VM1.namespace, "ip", "addr", "del", f"{VM1.ip}/24", "dev", "eth0")
    assert not lab.ping(VM1.namespace, VM2.ip)  # another IP
    in_ns(VM1.namespace, "ip", "addr", "replace", f"{VM1.ip}/24", "dev", "eth0")
    in_ns(VM1.namespace, "ip", "link", "set", "eth0", "down")
    in_ns(VM1.namespace, "ip", "link", "set", "eth0", "address", "fa:16:3e:61:00:99", "up")
    assert not lab.ping(VM1.namespace, VM2.ip)  # another MAC


async def test_converging_twice_changes_nothing(lab: Lab) -> None:
    state = build_state(port_security=True)
    await lab.up(state)
    before = settled_snapshot(lab.state_dir)
    report = await lab.converge(state)
    assert report.actions == ()
    assert_unchanged(before, snapshot(lab.state_dir))
    print(f"converge of an unchanged host: {report.duration_s:.3f} s")


async def test_converge_repairs_what_was_broken(lab: Lab) -> None:
    state = build_state(port_security=True)
    await lab.up(state)
    before = settled_snapshot(lab.state_dir)
    old = dnsmasq_pids(lab.state_dir)
    pid_a = old[NET_A]
    assert pid_a is not None and old[NET_B] is not None
    os.kill(pid_a, signal.SIGKILL)
    # Network B's namespace deleted under its dnsmasq, which lives on in the nameless namespace.
    sh("ip", "netns", "del", f"qdhcp-{NET_B}")
    sh("ip", "link", "del", f"tqr-{MARK}-ra")
    sh("nft", "delete", "table", "ip", "fabric_sg_ct")
    sh("ip", "link", "set", VM1.tap, "nomaster")
    report = await lab.converge(state)
    assert report.changed
    assert settled_snapshot(lab.state_dir)["namespaces"] == before["namespaces"]
    new = dnsmasq_pids(lab.state_dir)
    assert None not in new.values() and not set(new.values()) & set(old.values())
    assert_not_running([pid for pid in old.values() if pid])  # the orphan was stopped too
    assert (await lab.converge(state)).actions == ()
    assert lab.dhcp(VM3)["ip"] == VM3.ip
    assert lab.ping(VM1.namespace, VM2.ip)
    lab.serve(OUTSIDE, 8080)
    assert lab.connect(VM1.namespace, EXT_GATEWAY, 8080) == f"local={EXT_GATEWAY} peer={ROUTER_GATEWAY}"


async def test_converging_to_nothing_removes_everything(lab: Lab) -> None:
    state = build_state(port_security=True)
    await lab.up(state)
    pids = [pid for pid in dnsmasq_pids(lab.state_dir).values() if pid]
    assert len(pids) == 2
    empty = HostNetworking(
        host="plumbing-test", generation=2, outside_namespace=OUTSIDE, networks=(), routers=(), ports=()
    )
    report = await lab.converge(empty)
    assert report.changed
    assert_nothing_left(pids)
    # The VMs' taps are libvirt's: left alone, and detached with their bridges gone.
    assert all(
        json.loads(sh("ip", "-j", "link", "show", vm.tap).stdout)[0].get("master") is None for vm in VMS
    )

    await lab.converge(state)
    pids = [pid for pid in dnsmasq_pids(lab.state_dir).values() if pid]
    report = await teardown_all(lab.state_dir, OUTSIDE)
    assert report.errors == ()
    assert_nothing_left(pids)


def assert_not_running(pids: list[int]) -> None:
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z", (
            f"dnsmasq {pid} runs"
        )


def assert_nothing_left(pids: list[int]) -> None:
    """No fabric-made object on the host, and none of the dnsmasq `pids` running."""
    assert_not_running(pids)
    namespaces = sh("ip", "netns", "list").stdout.split()
    assert [n for n in namespaces if n.startswith(("qdhcp-", "qrouter-")) or n == OUTSIDE] == []
    names = [link["ifname"] for link in json.loads(sh("ip", "-j", "link").stdout)]
    assert [n for n in names if n.startswith(("brq", "tns-", "tqr-", "tqg-", "tog-"))] == []
    assert "fabric_sg" not in sh("nft", "list", "tables").stdout


ADOPT = """
import asyncio, json, sys
from pathlib import Path
from actors.network_agent.converge import converge
from tests.system.test_network_plumbing import build_state
report = asyncio.run(converge(build_state(port_security=True), state_dir=Path(sys.argv[1])))
print(json.dumps({"actions": report.actions, "errors": report.errors}))
"""


async def test_a_restarted_agent_adopts_what_exists(lab: Lab) -> None:
    state = build_state(port_security=True)
    await lab.up(state)
    before = settled_snapshot(lab.state_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ADOPT, str(lab.state_dir), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert json.loads(out) == {"actions": [], "errors": []}
    assert_unchanged(before, snapshot(lab.state_dir))
    lab.serve(VM2.namespace, 80)
    assert lab.connect(OUTSIDE, FLOATING_IP, 80) == f"local={VM2.ip} peer={EXT_GATEWAY}"
