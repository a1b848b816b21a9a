"""Volumes hot-plugged into real guests through the libvirt driver, on qemu:///system.

The test guest (scripts/build-test-guest.sh) prints `DISK <name> serial=<serial>` for every disk
that appears, writes `written-by <its hostname>` at the start of a disk that has no marker, and
prints `DISK <name> found <marker>` on a disk that has one. So from outside, on the serial
console, a test sees that guest A got the volume (its id as serial, cut to virtio's 20
characters), that A wrote to it, and, after the volume moved, that guest B reads A's data.

Volumes are qcow2 files made with qemu-img in a directory libvirt's qemu user can reach, as the
file volume backend makes them. Every domain a test makes is removed by name in teardown and the
files with its directory, whatever happens; domains the tests did not make are never touched.
"""

import asyncio
import dataclasses
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fabric.virt import DetachFailed, GuestDisk, ImageFile, PowerState
from protocol.storage import Connection
from tests.system import test_libvirt_driver as booted
from tests.system.test_libvirt_driver import spec_for, virsh, wait_for_boot

if TYPE_CHECKING:
    from actors.compute_agent.libvirt_driver import LibvirtDriver

# Two TCG boots (~10-20 s each on 2 cores) and the hot-plugs; allowed far more.
pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

# The libvirt driver's own system test's fixtures: a connection (or the skip saying why there is
# none: not root, no libvirtd, no qemu), the built guest in a blob store, and a started driver.
conn = booted.conn
guest_files = booted.guest_files
state_root = booted.state_root
images = booted.images
driver = booted.driver
server_ids = booted.server_ids

#: The issue's measurements on this kind of machine (TCG): a disk in the guest ~0.5 s after the
#: attach, a detach done in ~0.2 s. The bounds here leave room for a loaded CI machine.
DISK_SEEN_WITHIN_S = 10.0
SERIAL_CHARS = 20
CONSOLE_BYTES = 256 * 1024


def disk_line(volume_id: str) -> re.Pattern[str]:
    return re.compile(rf"^DISK (\w+) serial={re.escape(volume_id[:SERIAL_CHARS])}\r?$", re.M)


async def wait_for(
    driver: "LibvirtDriver", server_id: str, pattern: re.Pattern[str], timeout_s: float, *, count: int = 1
) -> tuple[re.Match[str], float]:
    """The `count`-th match of `pattern` on the guest's console, and how long it took to come."""
    started = time.monotonic()
    text = ""
    while time.monotonic() - started < timeout_s:
        text = await driver.console_output(server_id, CONSOLE_BYTES)
        found = list(pattern.finditer(text))
        if len(found) >= count:
            return found[count - 1], time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"{pattern.pattern!r} not on {server_id}'s console in {timeout_s:.0f}s:\n{text[-3000:]}"
    )


@pytest.fixture
def volume_dir(state_root: Path) -> Iterator[Path]:
    """Under the fixture's /var/tmp directory (mode 755), which qemu's user can traverse."""
    directory = state_root / "volumes"
    directory.mkdir(mode=0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def make_volume(
    directory: Path, *, size: str = "1G", backing: Path | None = None, is_root: bool = False
) -> GuestDisk:
    volume_id = str(uuid.uuid4())
    path = directory / f"{volume_id}.qcow2"
    backing_args = ["-F", "qcow2", "-b", str(backing)] if backing else []
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *backing_args, str(path), size], check=True)
    return GuestDisk(
        volume_id=volume_id,
        attachment_id=str(uuid.uuid4()),
        connection=Connection(driver_volume_type="file", data={"path": str(path), "format": "qcow2"}),
        is_root=is_root,
    )


def first_bytes(volume: GuestDisk, count: int = 64) -> bytes:
    """What the volume's file holds at its start, read by qemu-img (not through any guest)."""
    path = Path(volume.connection.data["path"])
    out = path.with_name(path.name + ".head")
    subprocess.run(
        ["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1", f"if={path}", f"of={out}"],
        check=True,
    )
    try:
        return out.read_bytes()[:count]
    finally:
        out.unlink()


def disk_serials(conn: Any, server_id: str, *, inactive: bool) -> list[str]:
    import libvirt

    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return re.findall(r"<serial>([^<]+)</serial>", conn.lookupByName(f"fabric-{server_id}").XMLDesc(flags))


async def boot(
    driver: "LibvirtDriver", images: dict[str, ImageFile], server_ids: list[str], name: str
) -> tuple[str, float]:
    server_id = str(uuid.uuid4())
    server_ids.append(server_id)
    started = time.monotonic()
    await driver.spawn(spec_for(images, server_id, name))
    return server_id, started


async def test_a_volume_moves_from_one_running_guest_to_another_with_its_data(
    driver: "LibvirtDriver", images: dict[str, ImageFile], server_ids: list[str], conn: Any, volume_dir: Path
) -> None:
    # Both guests boot together; the measurements start once both are idle.
    guest_a, started_a = await boot(driver, images, server_ids, "guest-a")
    guest_b, started_b = await boot(driver, images, server_ids, "guest-b")
    await wait_for_boot(driver, guest_a, 1, started_a)
    await wait_for_boot(driver, guest_b, 1, started_b)
    for guest, name in ((guest_a, "guest-a"), (guest_b, "guest-b")):  # their own root disks first
        await wait_for(driver, guest, re.compile(rf"^DISK vda wrote written-by {name}\r?$", re.M), 30)
    volume = make_volume(volume_dir)
    assert first_bytes(volume) == bytes(64)

    # Attach to A: the guest sees the disk with the volume id as serial, and marks it.
    started = time.monotonic()
    device = await driver.attach_disk(guest_a, volume)
    attach_call_s = time.monotonic() - started
    seen, _ = await wait_for(driver, guest_a, disk_line(volume.volume_id), DISK_SEEN_WITHIN_S)
    seen_a_s = time.monotonic() - started
    name_in_a = seen.group(1)
    await wait_for(driver, guest_a, re.compile(rf"^DISK {name_in_a} wrote written-by guest-a\r?$", re.M), 30)
    assert device == "vdb"
    assert disk_serials(conn, guest_a, inactive=False) == [volume.volume_id]  # live
    assert disk_serials(conn, guest_a, inactive=True) == [volume.volume_id]  # and persistent
    # Attached already: the same target, nothing more plugged.
    assert await driver.attach_disk(guest_a, volume) == device
    assert disk_serials(conn, guest_a, inactive=False) == [volume.volume_id]

    # Detach from A: the guest lets go (it says so), libvirt forgets the disk live and persistent.
    started = time.monotonic()
    await driver.detach_disk(guest_a, volume.volume_id, timeout_s=30)
    detach_s = time.monotonic() - started
    await wait_for(driver, guest_a, re.compile(rf"^DISK {name_in_a} removed\r?$", re.M), 10)
    assert disk_serials(conn, guest_a, inactive=False) == []
    assert disk_serials(conn, guest_a, inactive=True) == []
    await driver.detach_disk(guest_a, volume.volume_id, timeout_s=30)  # not attached: nothing to do
    assert first_bytes(volume).startswith(b"written-by guest-a\n\0"), "A's marker is not in the file"

    # Attach to B: B finds A's marker.
    started = time.monotonic()
    assert await driver.attach_disk(guest_b, volume) == "vdb"
    seen, _ = await wait_for(driver, guest_b, disk_line(volume.volume_id), DISK_SEEN_WITHIN_S)
    seen_b_s = time.monotonic() - started
    await wait_for(
        driver, guest_b, re.compile(rf"^DISK {seen.group(1)} found written-by guest-a\r?$", re.M), 30
    )
    console_b = await driver.console_output(guest_b, CONSOLE_BYTES)
    assert f"DISK {seen.group(1)} wrote" not in console_b, "B overwrote A's marker"

    print(
        f"\n{driver.hypervisor_type}: attach_disk() returned in {attach_call_s:.2f}s; the disk was on "
        f"A's console {seen_a_s:.2f}s after the call (B's: {seen_b_s:.2f}s); detach_disk() {detach_s:.2f}s"
    )
    assert seen_a_s < DISK_SEEN_WITHIN_S and detach_s < 10

    # Deleting a guest with the volume still attached leaves the volume's file alone.
    await driver.destroy(guest_b)
    await driver.destroy(guest_a)
    assert first_bytes(volume).startswith(b"written-by guest-a\n"), "the volume's file is gone or changed"


async def test_a_guest_that_does_not_let_go_keeps_the_disk_until_it_does(
    driver: "LibvirtDriver", images: dict[str, ImageFile], server_ids: list[str], conn: Any, volume_dir: Path
) -> None:
    guest, started = await boot(driver, images, server_ids, "stubborn")
    await wait_for_boot(driver, guest, 1, started)
    volume = make_volume(volume_dir, size="64M")
    await driver.attach_disk(guest, volume)
    await wait_for(driver, guest, disk_line(volume.volume_id), DISK_SEEN_WITHIN_S)

    # A paused guest cannot answer the ACPI eject request.
    dom = conn.lookupByName(f"fabric-{guest}")
    dom.suspend()
    started = time.monotonic()
    with pytest.raises(DetachFailed, match=r"^the guest did not release the disk within 1 s") as failed:
        await driver.detach_disk(guest, volume.volume_id, timeout_s=1)
    waited_s = time.monotonic() - started
    print(f"\ndetach from a paused guest: {failed.value.reason} (after {waited_s:.2f}s)")
    assert waited_s < 3
    # Still the guest's, live and persistent: what the database will say too (still attached).
    assert disk_serials(conn, guest, inactive=False) == [volume.volume_id]
    assert disk_serials(conn, guest, inactive=True) == [volume.volume_id]

    dom.resume()
    await driver.detach_disk(guest, volume.volume_id, timeout_s=30)  # the retry completes it
    assert disk_serials(conn, guest, inactive=False) == []
    assert disk_serials(conn, guest, inactive=True) == []
    await wait_for(driver, guest, re.compile(r"^DISK vdb removed\r?$", re.M), 10)


async def test_a_stopped_guest_gets_the_disk_in_its_definition_and_sees_it_at_boot(
    driver: "LibvirtDriver", images: dict[str, ImageFile], server_ids: list[str], conn: Any, volume_dir: Path
) -> None:
    guest, _ = await boot(driver, images, server_ids, "stopped")
    await driver.power_off(guest)
    assert await driver.guests() == {guest: PowerState.SHUTDOWN}
    volume = make_volume(volume_dir, size="64M")

    assert await driver.attach_disk(guest, volume) == "vdb"
    assert await driver.attach_disk(guest, volume) == "vdb"
    assert disk_serials(conn, guest, inactive=True) == [volume.volume_id]
    started = time.monotonic()
    await driver.power_on(guest)
    await wait_for(driver, guest, disk_line(volume.volume_id), 120)
    await wait_for(driver, guest, re.compile(r"^DISK vdb wrote written-by stopped\r?$", re.M), 30)
    print(
        f"\nthe disk attached while stopped was on the console {time.monotonic() - started:.1f}s "
        "after power on"
    )

    await driver.power_off(guest)
    await driver.detach_disk(guest, volume.volume_id, timeout_s=5)
    assert disk_serials(conn, guest, inactive=True) == []
    assert volume.connection.data["path"] not in virsh("domblklist", f"fabric-{guest}", "--inactive")


async def test_a_guest_boots_from_a_volume_made_of_the_test_guest_image(
    driver: "LibvirtDriver",
    images: dict[str, ImageFile],
    server_ids: list[str],
    conn: Any,
    volume_dir: Path,
    guest_files: tuple[Path, Path, Path],
) -> None:
    # A volume made of the image as the file backend makes it: an overlay on its cached copy.
    base = volume_dir / "test-guest-image.qcow2"
    shutil.copyfile(guest_files[2], base)
    base.chmod(0o644)
    root = make_volume(volume_dir, backing=base, is_root=True)
    server_id = str(uuid.uuid4())
    server_ids.append(server_id)
    spec = spec_for(images, server_id, "from-volume")
    started = time.monotonic()
    await driver.spawn(dataclasses.replace(spec, root_image=None, disks=(root,)))

    await wait_for_boot(driver, server_id, 1, started)
    seen, _ = await wait_for(driver, server_id, disk_line(root.volume_id), 30)
    assert seen.group(1) == "vda", "the root disk is the volume"
    await wait_for(driver, server_id, re.compile(r"^DISK vda wrote written-by from-volume\r?$", re.M), 30)
    assert disk_serials(conn, server_id, inactive=False) == [root.volume_id]
    await driver.destroy(server_id)
    assert first_bytes(root).startswith(b"written-by from-volume\n")
    assert first_bytes(make_volume(volume_dir, backing=base)) == bytes(64), "the image itself stays unmarked"
