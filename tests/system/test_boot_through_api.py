"""The whole path for real: the test guest uploaded through the Image API, booted through the
Compute API, placed by the scheduler on this machine's libvirt host, and driven through its
life with the API's actions, as `openstack server create/stop/start/reboot/delete` drive it.

Skips (saying why) where libvirt cannot run; everything it made goes in its teardown.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fabric import seed
from fabric.client import Client
from fabric.compose import Cloud, why_no_libvirt
from fabric.config import Settings
from tests.support import can_manage_rabbitmq, free_port, isolated
from tests.system.test_libvirt_driver import URI, remove_domain, virsh
from tests.system.test_test_guest import build, why_not_buildable

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

HOST = "api-system-host"
MARKER = "FABRIC-GUEST-BOOTED hostname="


@pytest.fixture(scope="module")
def guest_dir() -> Path:
    why = why_not_buildable() or can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    done, _ = build()
    return Path(done.stdout.decode().split()[0]).parent


@asynccontextmanager
async def libvirt_cloud(
    settings: Settings, guest_dir: Path, state: Path, *, name: str, host: str, **more: Any
) -> AsyncIterator[Cloud]:
    """A whole cloud in this process whose one compute host is this machine's libvirt, on a
    database and vhost of its own (skips saying why where libvirt cannot run). `more`: other
    settings (`compute_dir`, volumes...)."""
    why = why_no_libvirt(replace(settings, compute_driver="libvirt", libvirt_uri=URI))
    if why:
        pytest.skip(why)
    async with isolated(settings, name, state / "state") as own:
        own = replace(
            own,
            gateway_port=free_port(),
            compute_driver="libvirt",
            compute_host=host,
            libvirt_uri=URI,
            virt_type="auto",
            fake_hosts=0,
            test_guest_dir=str(guest_dir),
            image_quota_bytes=2**30,  # the suite's 8 MiB is too small for a kernel and initramfs
            **more,
        )
        async with Cloud(own) as running:
            yield running


@pytest.fixture
async def cloud(
    settings: Settings, guest_dir: Path, compute_dir: Path, tmp_path: Path
) -> AsyncIterator[Cloud]:
    async with libvirt_cloud(
        settings, guest_dir, tmp_path, name="api-system", host=HOST, compute_dir=str(compute_dir)
    ) as running:
        yield running


def console_has_marker(text: str, name: str) -> bool:
    return f"{MARKER}{name}" in text


async def wait_for_marker(client: Client, server_id: str, name: str, count: int = 1) -> float:
    began = time.monotonic()
    while time.monotonic() - began < 120:
        if (await client.compute.console(server_id)).count(f"{MARKER}{name}") >= count:
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    raise AssertionError(f"no boot marker #{count} for {name} in 120 s")


async def test_boot_the_test_guest_through_the_api(cloud: Cloud, compute_dir: Path) -> None:
    s = cloud.settings
    async with Client.for_admin(s) as client:
        await seed.seed_flavors(client)
        image = await seed.seed_test_guest(client, Path(s.test_guest_dir))
        assert image is not None
        for _ in range(300):  # the agent reports once its driver has probed KVM
            if any(h["hypervisor_hostname"] == HOST for h in await client.compute.hypervisors()):
                break
            await asyncio.sleep(0.1)
        name = f"sysvm-{uuid.uuid4().hex[:6]}"
        server_id = ""
        try:
            began = time.monotonic()
            created = await client.compute.create_server(name, image=image, flavor="1")
            server_id = created.id
            active = await client.compute.wait(server_id, "ACTIVE", timeout_s=120)
            to_active = time.monotonic() - began
            assert active is not None and active.host == HOST
            to_marker = await wait_for_marker(client, server_id, name) + to_active
            print(f"\nrequest -> ACTIVE {to_active:.2f}s, request -> boot marker {to_marker:.2f}s")
            domain = f"fabric-{server_id}"
            assert domain in virsh("list", "--name").split()

            await client.compute.action(server_id, {"os-stop": None})
            await client.compute.wait(server_id, "SHUTOFF", timeout_s=60)
            assert domain not in virsh("list", "--name").split()
            await client.compute.action(server_id, {"os-start": None})
            await client.compute.wait(server_id, "ACTIVE", timeout_s=60)
            await wait_for_marker(client, server_id, name, count=2)
            await client.compute.action(server_id, {"reboot": {"type": "HARD"}})
            await client.compute.wait(server_id, "ACTIVE", timeout_s=60)
            await wait_for_marker(client, server_id, name, count=3)

            await client.compute.delete_server(server_id)
            await client.compute.wait(server_id, "DELETED", timeout_s=60)
            assert domain not in virsh("list", "--all", "--name").split()
            left = await asyncio.to_thread(lambda: list(compute_dir.glob(f"**/{server_id}")))
            assert not left, "the guest's disk is left behind"
        finally:
            if server_id:
                import libvirt

                conn: Any = libvirt.open(URI)
                try:
                    remove_domain(conn, f"fabric-{server_id}")
                finally:
                    conn.close()
