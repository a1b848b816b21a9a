"""What `fabric up` puts in a new cloud so that it can boot a server at once: the usual public
flavors and, when it has been built (scripts/build-test-guest.sh), the test guest as the public
image `test-guest`. Idempotent: what exists already is left as it is.

The test guest boots the way Glance describes direct kernel boot: the image `test-guest` is a
small empty qcow2 root disk whose `kernel_id` and `ramdisk_id` properties name two more images
(`test-guest-kernel`, disk format aki; `test-guest-ramdisk`, ari) and whose `os_command_line`
is the kernel's command line; the compute service adds `fabric.hostname=<server name>`.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fabric.client import Client

#: Nova's classic flavors and ids: (id, name, vCPUs, RAM MiB, disk GiB).
FLAVORS = (
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
)
TEST_GUEST_FILES = ("vmlinuz", "initrd.img", "root.qcow2")
CHUNK = 1024 * 1024


def default_test_guest_dir() -> Path:
    """Where scripts/build-test-guest.sh leaves its build in this checkout."""
    return Path(__file__).resolve().parent.parent / ".cache" / "test-guest"


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


async def seed_flavors(client: Client) -> list[str]:
    have = {f["name"] for f in await client.compute.list_flavors()}
    made = []
    for flavor_id, name, vcpus, ram, disk in FLAVORS:
        if name not in have:
            await client.compute.create_flavor(name, vcpus=vcpus, ram=ram, disk=disk, flavor_id=flavor_id)
            made.append(name)
    return made


async def _image(client: Client, name: str, path: Path, **fields: Any) -> str:
    """The id of the active public image `name`, uploading `path` as it when there is none."""
    for image in await client.image.find(name):
        if image["status"] == "active":
            return str(image["id"])
        await client.image.delete(image["id"])  # a half-made one from an interrupted seed
    image = await client.image.create(name, visibility="public", **fields)
    await client.image.upload(image["id"], file_chunks(path))
    return str(image["id"])


async def seed_test_guest(client: Client, directory: Path) -> str | None:
    """The test guest's image id; None when it has not been built."""
    if not all((directory / name).is_file() for name in TEST_GUEST_FILES):
        return None
    kernel = await _image(
        client, "test-guest-kernel", directory / "vmlinuz", disk_format="aki", container_format="aki"
    )
    ramdisk = await _image(
        client, "test-guest-ramdisk", directory / "initrd.img", disk_format="ari", container_format="ari"
    )
    return await _image(
        client,
        "test-guest",
        directory / "root.qcow2",
        disk_format="qcow2",
        container_format="bare",
        kernel_id=kernel,
        ramdisk_id=ramdisk,
        os_command_line="console=ttyS0",
    )
