"""`python -m bench webpage`: from `server create` to the guest's page answering through its
floating IP, beside what the guest itself needs to boot and answer.

Two measurements in one run, each repeated `--iterations` times:
- `guest_alone_s`: the test guest booted by qemu directly (same kernel, initramfs and
  accelerator, user-mode networking, a host port forwarded to the guest's port 80), from qemu's
  start to the first HTTP answer. This is the guest's own need: kernel boot, DHCP, httpd.
- `page_s`: through a fabric the harness starts (`fabric up` with the libvirt host and the network
  agent; `up` itself builds the public network, a tenant network and router and a group letting
  TCP 80 in), a user's `server create` on that network, then, once ACTIVE, a floating IP on its
  port, then the page fetched from the outside namespace every 100 ms until it names the guest.

`overhead_s` = median `page_s` - median `guest_alone_s`: what the cloud adds (scheduling, the
port, the spawn, plumbing, the floating IP). Needs root, libvirt and the built test guest.
Everything the run makes goes afterwards: the servers and floating IPs through the API, then
the plumbing by the agent's own names and the domains by their disks under the run's directory.
"""

import asyncio
import logging
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from actors.compute_agent.kvm_probe import probe_kvm
from actors.network_agent.converge import teardown_all
from bench.cloud import free_port, own_fabric
from fabric import seed
from fabric.client import Client
from fabric.compose import why_no_libvirt, why_no_network_agent
from fabric.config import Settings

log = logging.getLogger("bench")

HOST = "bench-web-host"
OUTSIDE = "fabric-outside-bench"
POLL_S = 0.1


def why_not(settings: Settings, guest_dir: Path) -> str | None:
    missing = [f for f in ("vmlinuz", "initrd.img", "root.qcow2") if not (guest_dir / f).exists()]
    if missing:
        return f"no test guest in {guest_dir} (run scripts/build-test-guest.sh)"
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (scripts/setup.sh installs it)"
    return why_no_network_agent() or why_no_libvirt(settings)


async def run(args: Any, settings: Settings) -> dict[str, Any]:
    guest_dir = Path(settings.test_guest_dir) if settings.test_guest_dir else seed.default_test_guest_dir()
    why = why_not(settings, guest_dir)
    if why is not None:
        raise SystemExit(f"bench webpage: {why}")
    accel = await accelerator(settings.libvirt_uri)
    alone = []
    for i in range(args.iterations):
        alone.append(await guest_alone(guest_dir, accel))
        log.info("guest alone #%d: %.2f s", i + 1, alone[-1])
    pages: list[dict[str, float]] = []
    async with networked_fabric(settings, guest_dir) as client:
        for i in range(args.iterations):
            pages.append(await through_the_cloud(client, f"bench-web-{i}"))
            log.info("through the cloud #%d: %s", i + 1, pages[-1])
    page_s = round(statistics.median(p["page_s"] for p in pages), 2)
    alone_s = round(statistics.median(alone), 2)
    return {
        "bench": "webpage",
        "accel": accel,
        "iterations": args.iterations,
        "guest_alone_s": alone_s,
        "page_s": page_s,
        "overhead_s": round(page_s - alone_s, 2),
        "active_s": round(statistics.median(p["active_s"] for p in pages), 2),
        "guest_alone_runs_s": [round(x, 2) for x in alone],
        "page_runs_s": [round(p["page_s"], 2) for p in pages],
        "errors": 0,
    }


def qemu_readable_dir(prefix: str) -> Path:
    """A new directory qemu's own user can reach (temporary directories are private to root)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    work.chmod(0o755)
    return work


async def accelerator(uri: str) -> str:
    """kvm or tcg, chosen as the libvirt driver chooses it for real guests (`kvm_probe`)."""
    import libvirt

    conn: Any = libvirt.open(uri)
    work = qemu_readable_dir("bench-kvm-probe-")
    try:
        virt_type, why = await probe_kvm(conn, uri, work)
    finally:
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    log.info("accelerator: %s", why)
    return "kvm" if virt_type == "kvm" else "tcg"


async def guest_alone(guest_dir: Path, accel: str, timeout_s: float = 120.0) -> float:
    """qemu start to the guest's first HTTP answer, through a forwarded loopback port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-guest-") as work:
        command = [
            "qemu-system-x86_64", "-machine", f"accel={accel}", "-m", "512", "-nographic",
            "-kernel", str(guest_dir / "vmlinuz"), "-initrd", str(guest_dir / "initrd.img"),
            "-append", "console=ttyS0 fabric.hostname=alone", "-serial", f"file:{work}/console.log",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80",
            "-device", "virtio-net-pci,netdev=n0", "-no-reboot",
        ]  # fmt: skip
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            while time.monotonic() - began < timeout_s:
                if await asyncio.to_thread(_answers, "127.0.0.1", port, b"hello from alone"):
                    return time.monotonic() - began
                if proc.returncode is not None:
                    raise RuntimeError(f"qemu exited with {proc.returncode}")
                await asyncio.sleep(POLL_S)
            raise TimeoutError(f"the guest alone did not answer HTTP within {timeout_s:.0f} s")
        finally:
            if proc.returncode is None:
                proc.kill()  # this qemu, by its PID
            await proc.wait()


def _answers(host: str, port: int, marker: bytes) -> bool:
    """Whether http://host:port/ answers with a body holding `marker` (slirp accepts the
    connection before the guest listens, then resets it: that counts as not yet)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            conn.settimeout(1.0)
            got = b""
            while chunk := conn.recv(4096):
                got += chunk
            return marker in got
    except OSError:
        return False


@asynccontextmanager
async def networked_fabric(settings: Settings, guest_dir: Path) -> AsyncIterator[Client]:
    """`fabric up` with this machine's libvirt host and network agent, on private resources;
    yields the admin's client once `up` has seeded and built its demo (then removes the demo VM,
    so it does not share the cores with what is measured)."""
    work = qemu_readable_dir("bench-webpage-")
    extra = {
        "FABRIC_COMPUTE_DRIVER": "libvirt",
        "FABRIC_COMPUTE_HOST": HOST,
        "FABRIC_COMPUTE_DIR": str(work / "compute"),
        "FABRIC_NETWORK_DIR": str(work / "network"),
        "FABRIC_OUTSIDE_NAMESPACE": OUTSIDE,
        "FABRIC_TEST_GUEST_DIR": str(guest_dir),
        "FABRIC_LIBVIRT_URI": settings.libvirt_uri,
        "FABRIC_CAPACITY_REPORT_INTERVAL_S": "1.0",
        # The demo VM gets a volume: a real file one, where qemu can open it.
        "FABRIC_VOLUME_BACKEND": "file",
        "FABRIC_VOLUME_DIR": str(work / "volumes"),
    }
    try:
        async with own_fabric(settings, hash_cost="minimal", extra_env=extra) as creds:
            async with creds.client() as client:
                for demo in await client.compute.list_servers(name="demo-vm"):
                    await client.compute.delete_server(demo.id)
                    await client.compute.wait(demo.id, "DELETED", timeout_s=60)
                yield client
    finally:
        await asyncio.to_thread(_remove_domains_under, work, settings.libvirt_uri)
        await teardown_all(work / "network" / HOST, OUTSIDE)
        shutil.rmtree(work, ignore_errors=True)


def _remove_domains_under(work: Path, uri: str) -> None:
    import libvirt

    conn: Any = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains():
            if str(work) in dom.XMLDesc(0):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
    finally:
        conn.close()


async def through_the_cloud(client: Client, name: str, timeout_s: float = 180.0) -> dict[str, float]:
    """One server on the demo's network and group, timed from the create request to its page
    answering through a floating IP; then the floating IP and the server go."""
    url = f"{client.endpoint('network')}/v2.0"
    _, _, nets = await client.request("GET", f"{url}/networks?name=demo-net")
    _, _, public = await client.request("GET", f"{url}/networks?name=public")
    image = (await client.image.find("test-guest"))[0]["id"]
    began = time.monotonic()
    server = await client.compute.create_server(
        name,
        image=image,
        flavor="1",
        networks=[{"uuid": nets["networks"][0]["id"]}],
        security_groups=[{"name": "demo-web"}],
    )
    await client.compute.wait(server.id, "ACTIVE", timeout_s=timeout_s, max_pause_s=POLL_S)
    active = time.monotonic() - began
    _, _, ports = await client.request("GET", f"{url}/ports?device_id={server.id}")
    port_id, public_id = ports["ports"][0]["id"], public["networks"][0]["id"]
    body = {"floatingip": {"floating_network_id": public_id, "port_id": port_id}}
    _, _, fip = await client.request("POST", f"{url}/floatingips", body, expect=(201,))
    address = fip["floatingip"]["floating_ip_address"]
    while not await _answers_from_outside(address, f"hello from {name}"):
        if time.monotonic() - began > timeout_s:
            raise TimeoutError(f"{name}'s page did not answer through {address} within {timeout_s:.0f} s")
        await asyncio.sleep(POLL_S)
    page = time.monotonic() - began
    await client.request("DELETE", f"{url}/floatingips/{fip['floatingip']['id']}")
    await client.compute.delete_server(server.id)
    await client.compute.wait(server.id, "DELETED", timeout_s=60)
    return {"active_s": active, "page_s": page}


async def _answers_from_outside(address: str, marker: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", OUTSIDE, "curl", "-s", "-m", "1", f"http://{address}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return marker in out.decode(errors="replace")
