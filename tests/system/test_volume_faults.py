"""A compute agent dies mid-attach and mid-detach on real libvirt: after a new agent starts, the
volume ends `in-use` with the disk in the guest, or `available` without it, never stuck in
`attaching` or `detaching`, and libvirt and the database agree: the serials of the domain's
disks (live and persistent) are exactly the volumes the server's os-volume_attachments lists,
and the guest's console shows the disk come (or go).

The agent runs as its own process (`fabric service compute-agent --driver libvirt`) and is
killed with SIGKILL, qemu and libvirtd living on as they would on a real host: once the moment
the API call returns (the AttachDisk or DetachDisk it was just sent in flight), once the moment
libvirt shows the disk plugged or unplugged (the agent's answer likely not yet sent). At the
first the database must still say `attaching`/`detaching` (else nothing was tested); at both, a
redelivered command must neither plug the disk twice nor leave it half detached (gone from the
running guest, still in the persistent definition). The rest of the cloud, with the `file`
volume backend, runs in this process on its own database and vhost.

Skips (saying why) without root, libvirt or the test guest; the domain, the processes and the
files go in teardown whatever happens.
"""

import asyncio
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fabric import seed
from fabric.client import Client
from fabric.compose import Cloud, why_no_libvirt, why_no_volume_agent
from fabric.config import Settings
from tests.support import FABRIC, Processes, fabric_env, free_port, isolated
from tests.system.test_boot_through_api import (
    guest_dir,  # noqa: F401 - the fixture
    wait_for_marker,
)
from tests.system.test_libvirt_driver import URI, remove_domain

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

HOST = "volume-fault-host"
#: After the new agent starts, the attachment must have settled this long after.
SETTLED_WITHIN_S = 120.0
SERIAL_CHARS = 20


@dataclass
class Rig:
    cloud: Cloud
    client: Client
    settings: Settings
    processes: Processes
    db: asyncpg.Connection
    agent: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start_agent(self) -> None:
        self.starts += 1
        env = fabric_env(
            self.settings,
            FABRIC_LIBVIRT_URI=URI,
            FABRIC_COMPUTE_DIR=self.settings.compute_dir,
            FABRIC_VIRT_TYPE="auto",
            FABRIC_TEST_GUEST_DIR=self.settings.test_guest_dir,
            FABRIC_CAPACITY_REPORT_INTERVAL_S="1",
        )
        args = [str(FABRIC), "service", "compute-agent", "--host", HOST, "--driver", "libvirt"]
        self.agent = self.processes.start(f"compute-agent-{self.starts}", args, env)

    def kill_agent(self) -> None:
        assert self.agent is not None and self.agent.poll() is None, "the agent died on its own"
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait()

    def agent_log(self) -> str:
        return self.processes.log_of(f"compute-agent-{self.starts}")[-3000:]

    async def statuses(self, volume_id: str) -> tuple[str, list[str]]:
        """The volume's status, and the statuses of compute's attachment rows for it."""
        volume = await self.db.fetchval("SELECT status FROM volume.volumes WHERE id = $1", volume_id)
        rows = await self.db.fetch(
            "SELECT status FROM compute.volume_attachments WHERE volume_id = $1", volume_id
        )
        return str(volume), [r["status"] for r in rows]


@pytest.fixture
async def rig(
    settings: Settings,
    guest_dir: Path,  # noqa: F811
    compute_dir: Path,
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    why = why_no_libvirt(replace(settings, compute_driver="libvirt", libvirt_uri=URI)) or why_no_volume_agent(
        replace(settings, volume_backend="file")
    )
    if why:
        pytest.skip(why)
    async with isolated(settings, "volume-fault-system", tmp_path / "state") as own:
        own = replace(
            own,
            gateway_port=free_port(),
            # No compute host in this process: the one the test kills runs as its own process.
            compute_driver="none",
            fake_hosts=0,
            compute_dir=str(compute_dir / "compute"),
            libvirt_uri=URI,
            virt_type="auto",
            test_guest_dir=str(guest_dir),
            image_quota_bytes=2**30,
            # The storage host, here, on qcow2 files qemu's own user can reach.
            volume_agent=True,
            volume_backend="file",
            volume_dir=str(compute_dir / "volumes"),
            volume_host=HOST,
            # An attach or detach whose answer never came is driven again soon.
            saga_step_timeout_s=10.0,
            capacity_report_interval_s=1.0,
        )
        processes = Processes(tmp_path)
        async with Cloud(own) as cloud:
            try:
                async with Client.for_admin(own) as client:
                    db = await asyncpg.connect(own.database_url)
                    try:
                        yield Rig(cloud, client, own, processes, db)
                    finally:
                        await db.close()
            finally:
                processes.stop_all()


def disk_serials(server_id: str) -> tuple[list[str], list[str]]:
    """The `<serial>`s of the domain's disks: (live, persistent). The root disk, the image's
    overlay, has none: every serial is a volume's."""
    import libvirt

    conn: Any = libvirt.open(URI)
    try:
        dom = conn.lookupByName(f"fabric-{server_id}")
        live = dom.XMLDesc(0)
        persistent = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    return re.findall(r"<serial>([^<]+)</serial>", live), re.findall(r"<serial>([^<]+)</serial>", persistent)


def disk_line(volume_id: str) -> str:
    """The guest's line for a disk that appeared: its name, and the serial as virtio cuts it."""
    return rf"^DISK (\w+) serial={volume_id[:SERIAL_CHARS]}\r?$"


async def console_line(
    client: Client, server_id: str, pattern: str, *, count: int = 1, timeout_s: float = 60
) -> re.Match[str]:
    """The `count`-th line of the guest's console matching `pattern`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = list(re.finditer(pattern, await client.compute.console(server_id), re.M))
        if len(found) >= count:
            return found[count - 1]
        await asyncio.sleep(0.1)
    text = await client.compute.console(server_id)
    raise AssertionError(f"no {pattern!r} #{count} on {server_id}'s console in {timeout_s}s:\n{text[-2000:]}")


async def lines(client: Client, server_id: str, pattern: str) -> int:
    return len(re.findall(pattern, await client.compute.console(server_id), re.M))


async def host_up(client: Client) -> None:
    """Until the agent's host has reported."""
    for _ in range(600):
        hosts = await client.compute.hypervisors()
        if any(h["hypervisor_hostname"] == HOST and h["state"] == "up" for h in hosts):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{HOST} never reported")


async def until_libvirt(server_id: str, volume_id: str, *, present: bool, timeout_s: float = 30) -> None:
    """Until the running domain has the volume's disk (`present`) or no longer has it."""
    deadline = time.monotonic() + timeout_s
    while (volume_id in (await asyncio.to_thread(disk_serials, server_id))[0]) is not present:
        if time.monotonic() > deadline:
            raise AssertionError(f"libvirt never {'plugged' if present else 'unplugged'} {volume_id}")
        await asyncio.sleep(0.005)


async def settle(rig: Rig, volume_id: str) -> str:
    """The volume's status once neither it nor compute's row for it is on its way anywhere;
    fails, with the agent's log, if that takes longer than SETTLED_WITHIN_S."""
    deadline = time.monotonic() + SETTLED_WITHIN_S
    while True:
        volume, rows = await rig.statuses(volume_id)
        if volume in ("in-use", "available") and all(r == "attached" for r in rows):
            return volume
        if time.monotonic() > deadline:
            raise AssertionError(
                f"volume {volume_id} still {volume} (compute: {rows}) {SETTLED_WITHIN_S:.0f}s after "
                f"the agent came back; its log:\n{rig.agent_log()}"
            )
        await asyncio.sleep(0.1)


async def assert_agreement(rig: Rig, server_id: str, volume_id: str) -> str:
    """libvirt and both services say the same thing about the volume; the status they agree on."""
    status = await settle(rig, volume_id)
    listed = [a["volumeId"] for a in await rig.client.volume.attachments(server_id)]
    live, persistent = await asyncio.to_thread(disk_serials, server_id)
    shown = await rig.client.volume.get_volume(volume_id)
    assert shown is not None and shown.status == status
    assert live == listed, f"live domain disks {live}, attachments {listed}"
    assert persistent == listed, f"persistent domain disks {persistent}, attachments {listed}"
    if status == "in-use":
        assert listed == [volume_id]
        assert [a["server_id"] for a in shown.attachments] == [server_id]
    else:
        assert listed == [] and shown.attachments == ()
    return status


#: When the agent dies: the moment the API call returns (its command just sent), or the moment
#: libvirt shows the disk plugged or unplugged (the agent's answer not yet heard, or just).
KILL_POINTS = ("api-answered", "libvirt-done")


async def attach_killing_the_agent(
    rig: Rig, server_id: str, guest_host: str, volume_id: str, kill_at: str
) -> str:
    """Attach with the agent killed at `kill_at` and a new one started; the guest's name of the
    disk once the volume is in-use (attached again when the first attach was given back)."""
    client = rig.client
    marker = rf"^DISK \w+ (wrote|found) written-by {guest_host}\r?$"
    seen_before = await lines(client, server_id, disk_line(volume_id))
    marked_before = await lines(client, server_id, marker)
    await client.volume.attach(server_id, volume_id)
    if kill_at == "libvirt-done":
        await until_libvirt(server_id, volume_id, present=True)
    rig.kill_agent()
    at_kill = await rig.statuses(volume_id)
    if kill_at == "api-answered":
        assert at_kill == ("attaching", ["attaching"]), f"the kill did not land mid-attach: {at_kill}"
    rig.start_agent()
    ended = await assert_agreement(rig, server_id, volume_id)
    print(f"agent killed mid-attach ({kill_at}) with {at_kill}: the volume ended {ended}")
    if ended == "available":  # given back: attached again, so that a detach can be tested
        await client.volume.attach(server_id, volume_id)
        await client.volume.wait(volume_id, "in-use", timeout_s=60)
        assert await assert_agreement(rig, server_id, volume_id) == "in-use"
    # The guest saw the disk (once: a redelivered attach plugs nothing twice).
    seen = await console_line(client, server_id, disk_line(volume_id), count=seen_before + 1)
    await asyncio.sleep(1)
    assert await lines(client, server_id, disk_line(volume_id)) == seen_before + 1
    # And it reads and writes it: its marker (written by it in the first round, found after).
    await console_line(client, server_id, marker, count=marked_before + 1)
    return seen[1]


async def detach_killing_the_agent(
    rig: Rig, server_id: str, volume_id: str, guest_name: str, kill_at: str
) -> str:
    """Detach with the agent killed at `kill_at` and a new one started; the status it ends in
    (available once again, if the guest kept the disk at first)."""
    client = rig.client
    removed = rf"^DISK {guest_name} removed\r?$"
    removed_before = await lines(client, server_id, removed)
    await client.volume.detach(server_id, volume_id)
    if kill_at == "libvirt-done":
        await until_libvirt(server_id, volume_id, present=False)
    rig.kill_agent()
    at_kill = await rig.statuses(volume_id)
    if kill_at == "api-answered":
        assert at_kill == ("detaching", ["detaching"]), f"the kill did not land mid-detach: {at_kill}"
    rig.start_agent()
    ended = await assert_agreement(rig, server_id, volume_id)
    print(f"agent killed mid-detach ({kill_at}) with {at_kill}: the volume ended {ended}")
    if ended == "available":
        await console_line(client, server_id, removed, count=removed_before + 1)
    else:  # the guest kept it, as libvirt says: then a detach with the agent alive must work
        assert await lines(client, server_id, removed) == removed_before
        await client.volume.detach(server_id, volume_id)
        await client.volume.wait(volume_id, "available", timeout_s=60)
        assert await assert_agreement(rig, server_id, volume_id) == "available"
    return ended


async def test_a_compute_agent_killed_mid_attach_and_mid_detach_leaves_libvirt_and_the_database_agreeing(
    rig: Rig,
) -> None:
    client = rig.client
    await seed.seed_flavors(client)
    image = await seed.seed_test_guest(client, Path(rig.settings.test_guest_dir))
    assert image is not None
    rig.start_agent()
    await host_up(client)
    name = f"volfault-{uuid.uuid4().hex[:6]}"
    server_id = ""
    volume_id = ""
    try:
        server_id = (await client.compute.create_server(name, image=image, flavor="1")).id
        await client.compute.wait(server_id, "ACTIVE", timeout_s=180)
        await wait_for_marker(client, server_id, name)
        # Its init is through (its root disk marked): it now hears hot-plug and unplug.
        await console_line(client, server_id, r"^DISK vda (wrote|found) ")
        volume_id = (await client.volume.create_volume(1, name=f"{name}-data")).id
        await client.volume.wait(volume_id, "available", timeout_s=60)

        for kill_at in KILL_POINTS:
            guest_name = await attach_killing_the_agent(rig, server_id, name, volume_id, kill_at)
            await detach_killing_the_agent(rig, server_id, volume_id, guest_name, kill_at)

        # The volume is whole and usable: it goes when asked, with its file.
        await client.volume.delete_volume(volume_id)
        await client.volume.wait(volume_id, "deleted", timeout_s=60)
        files = Path(rig.settings.volume_dir) / HOST / "volumes"
        assert not list(files.iterdir()), f"left in {files}: {list(files.iterdir())}"
        volume_id = ""
    finally:
        await cleanup(rig, server_id, volume_id)


async def cleanup(rig: Rig, server_id: str, volume_id: str) -> None:
    """Through the API while the agent lives; the domain by name whatever happened."""
    if server_id:
        try:
            await rig.client.compute.delete_server(server_id)
            await rig.client.compute.wait(server_id, "DELETED", timeout_s=60)
        except Exception:  # the agent is down or the API failed: the safety net below
            pass
        import libvirt

        conn: Any = libvirt.open(URI)
        try:
            if f"fabric-{server_id}" in {dom.name() for dom in conn.listAllDomains()}:
                remove_domain(conn, f"fabric-{server_id}")
        finally:
            conn.close()
    if volume_id:
        try:
            await rig.client.volume.delete_volume(volume_id, cascade=True)
        except Exception:  # left to the fixture: the directory and the database go with it
            pass
