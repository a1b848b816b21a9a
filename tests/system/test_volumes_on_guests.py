"""Volumes on real guests, through the APIs only: a volume's data moves from one guest to
another, survives a snapshot, and a guest boots from a volume made of its image.

The test guest prints `DISK <name> serial=<id[:20]>` for each disk it sees (hot-plugged ones
too) and leaves `written-by <hostname>` on a disk that has no marker, or prints `DISK <name>
found written-by <host>` when one is there: the console is how this test sees inside.

Skips (saying why) where libvirt or the test guest cannot be had; everything it made goes in
its teardown.
"""

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fabric import seed
from fabric.client import Client
from fabric.compose import Cloud
from fabric.config import Settings
from tests.system.test_boot_through_api import (
    guest_dir,  # noqa: F401 - the fixture
    libvirt_cloud,
    wait_for_marker,
)
from tests.system.test_libvirt_driver import URI, remove_domain

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

HOST = "volume-system-host"


@pytest.fixture
async def cloud(
    settings: Settings,
    guest_dir: Path,  # noqa: F811
    compute_dir: Path,
    tmp_path: Path,
) -> AsyncIterator[Cloud]:
    async with libvirt_cloud(
        settings,
        guest_dir,
        tmp_path,
        name="volume-system",
        host=HOST,
        compute_dir=str(compute_dir / "compute"),
        volume_backend="file",
        volume_dir=str(compute_dir / "volumes"),
        volume_host=HOST,
    ) as running:
        yield running


class Rig:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.cinder = client.endpoint("block-storage")
        self.nova = client.endpoint("compute")
        self.servers: list[str] = []
        self.volumes: list[str] = []
        self.snapshots: list[str] = []

    async def call(self, method: str, url: str, body: Any = None) -> Any:
        _, _, answer = await self.client.request(method, url, body)
        return answer

    async def volume(self, **fields: Any) -> str:
        made = await self.call("POST", f"{self.cinder}/volumes", {"volume": fields})
        self.volumes.append(made["volume"]["id"])
        return str(made["volume"]["id"])

    async def wait_volume(self, volume_id: str, status: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            shown = (await self.call("GET", f"{self.cinder}/volumes/{volume_id}"))["volume"]
            if shown["status"] == status:
                return dict(shown)
            assert shown["status"] != "error", shown
            await asyncio.sleep(0.02)
        raise AssertionError(f"volume {volume_id} not {status} in {timeout_s}s")

    async def attach(self, server_id: str, volume_id: str) -> None:
        body = {"volumeAttachment": {"volumeId": volume_id, "device": None}}
        await self.call("POST", f"{self.nova}/servers/{server_id}/os-volume_attachments", body)

    async def detach(self, server_id: str, volume_id: str) -> None:
        await self.call("DELETE", f"{self.nova}/servers/{server_id}/os-volume_attachments/{volume_id}")
        await self.wait_volume(volume_id, "available")

    async def console_line(self, server_id: str, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, await self.client.compute.console(server_id))
            if found:
                return found
            await asyncio.sleep(0.05)
        text = await self.client.compute.console(server_id)
        raise AssertionError(f"no {pattern!r} on {server_id}'s console in {timeout_s}s:\n{text[-2000:]}")


async def test_a_volume_moves_between_guests_keeps_its_data_and_boots_one(cloud: Cloud) -> None:
    s = cloud.settings
    async with Client.for_admin(s) as client:
        await seed.seed_flavors(client)
        image = await seed.seed_test_guest(client, Path(s.test_guest_dir))
        assert image is not None
        for _ in range(300):
            if any(h["hypervisor_hostname"] == HOST for h in await client.compute.hypervisors()):
                break
            await asyncio.sleep(0.1)
        rig = Rig(client)
        suffix = uuid.uuid4().hex[:6]
        try:
            names = (f"vol-a-{suffix}", f"vol-b-{suffix}")
            for name in names:
                rig.servers.append((await client.compute.create_server(name, image=image, flavor="1")).id)
            a, b = rig.servers
            for server_id, name in zip(rig.servers, names, strict=True):
                await client.compute.wait(server_id, "ACTIVE", timeout_s=120)
                await wait_for_marker(client, server_id, name)

            # A 1 GiB volume into guest A: it sees the disk by the volume's id, and marks it.
            data = await rig.volume(size=1, name="data")
            await rig.wait_volume(data, "available")
            began = time.monotonic()
            await rig.attach(a, data)
            seen = await rig.console_line(a, rf"DISK (\w+) serial={data[:20]}")
            visible_s = time.monotonic() - began
            await rig.console_line(a, rf"DISK {seen[1]} wrote written-by {names[0]}")
            attached = await rig.wait_volume(data, "in-use")
            assert attached["attachments"][0]["server_id"] == a
            began = time.monotonic()
            await rig.detach(a, data)
            detach_s = time.monotonic() - began
            await rig.console_line(a, rf"DISK {seen[1]} removed")

            # Into guest B: A's marker is there.
            await rig.attach(b, data)
            await rig.console_line(b, rf"DISK (\w+) found written-by {names[0]}")
            await rig.wait_volume(data, "in-use")
            await rig.detach(b, data)

            # A snapshot, and a volume made from it, carry the marker too.
            snap = await rig.call("POST", f"{rig.cinder}/snapshots", {"snapshot": {"volume_id": data}})
            snapshot_id = snap["snapshot"]["id"]
            rig.snapshots.append(snapshot_id)
            for _ in range(600):
                shown = await rig.call("GET", f"{rig.cinder}/snapshots/{snapshot_id}")
                if shown["snapshot"]["status"] == "available":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"snapshot {snapshot_id} never available")
            copy = await rig.volume(snapshot_id=snapshot_id)
            await rig.wait_volume(copy, "available")
            await rig.attach(b, copy)
            await rig.console_line(b, rf"DISK (\w+) serial={copy[:20]}")
            await rig.console_line(b, rf"DISK \w+ found written-by {names[0]}")
            await rig.wait_volume(copy, "in-use")
            await rig.detach(b, copy)

            # A 10 GiB volume from the image: copy-on-write over the host's cached image.
            began = time.monotonic()
            root = await rig.volume(size=10, imageRef=image)
            made = await rig.wait_volume(root, "available")
            available_s = time.monotonic() - began
            assert made["bootable"] == "true"
            path = Path(s.volume_dir) / HOST / "volumes" / f"{root}.qcow2"
            allocated = path.stat().st_blocks * 512
            assert allocated < 4 * 2**20, f"{allocated} bytes allocated: the image was copied"

            # Boot from it: the guest's root disk is the volume.
            name = f"vol-c-{suffix}"
            mapping = {"uuid": root, "boot_index": 0, "source_type": "volume", "destination_type": "volume"}
            body = {"server": {"name": name, "flavorRef": "1", "block_device_mapping_v2": [mapping]}}
            booted = await rig.call("POST", f"{rig.nova}/servers", body)
            c = booted["server"]["id"]
            rig.servers.append(c)
            await client.compute.wait(c, "ACTIVE", timeout_s=120)
            await wait_for_marker(client, c, name)
            await rig.console_line(c, rf"DISK vda serial={root[:20]}")
            await rig.wait_volume(root, "in-use")
            print(
                f"\nattach -> visible in the guest {visible_s:.2f}s, detach {detach_s:.2f}s, "
                f"10 GiB from image -> available {available_s * 1000:.0f} ms ({allocated} bytes on disk)"
            )
        finally:
            await cleanup(cloud, rig)


async def cleanup(cloud: Cloud, rig: Rig) -> None:
    for server_id in rig.servers:
        try:
            await rig.client.compute.delete_server(server_id)
            await rig.client.compute.wait(server_id, "DELETED", timeout_s=60)
        except Exception:
            import libvirt

            conn: Any = libvirt.open(URI)
            try:
                remove_domain(conn, f"fabric-{server_id}")
            finally:
                conn.close()
    for volume_id in rig.volumes:  # volumes made from the snapshot go before it
        await rig.client.request("DELETE", f"{rig.cinder}/volumes/{volume_id}", expect=(202, 400, 404))
    for snapshot_id in rig.snapshots:
        await rig.client.request("DELETE", f"{rig.cinder}/snapshots/{snapshot_id}", expect=(202, 400, 404))
    for volume_id in rig.volumes:
        await rig.client.request(
            "DELETE", f"{rig.cinder}/volumes/{volume_id}?cascade=True", expect=(202, 400, 404)
        )
