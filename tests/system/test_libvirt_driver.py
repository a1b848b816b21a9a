"""The libvirt driver boots the test guest for real, through qemu:///system.

The test guest (scripts/build-test-guest.sh) goes into a real blob store as the Image API holds
it: a root disk image (the empty qcow2), a kernel (aki) and a ramdisk (ari), with
`console=ttyS0` as its command line. The driver probes KVM (`virt_type="auto"`: on a machine
where KVM guests hang it must settle on TCG), copies the images into its cache, makes the
overlay, defines and starts the domain; the guest prints its boot marker, with the hostname the
driver put on the command line, on the serial console the driver logs. Then the power actions,
each checked by a new boot marker, and destroy, checked with virsh.

Domains are removed by name in the fixtures' teardown whatever happens, so a failing test
leaves nothing defined.
"""

import asyncio
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fabric.blobs import CHUNK_BYTES, FilesystemStore
from fabric.virt import GuestSpec, ImageFile, PowerState, SpawnFailed
from tests.system.test_test_guest import build, why_not_buildable

if TYPE_CHECKING:
    from actors.compute_agent.libvirt_driver import LibvirtDriver

# The first build of the guest installs packages; each TCG boot takes ~10 s, allowed 120 s.
pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

URI = "qemu:///system"
#: Per process: a suite running beside this one on the same libvirtd has its own guests.
HOST = f"system-test-host-{os.getpid()}"
BOOT_TIMEOUT_S = 120.0
CONSOLE_BYTES = 4 * 2**20
BOOTED = re.compile(r"^FABRIC-GUEST-BOOTED hostname=(\S+)", re.M)


def virsh(*args: str) -> str:
    done = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def remove_domain(conn: Any, name: str) -> None:
    """Destroy and undefine a domain by name, if it is there: the teardown's safety net."""
    import libvirt

    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    if dom.isPersistent():
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    """Our own connection to qemu:///system, or a skip that says why there is none."""
    why = why_not_buildable()
    if why:
        pytest.skip(why)
    try:
        import libvirt
    except ImportError:
        pytest.skip("libvirt-python is not installed (scripts/setup.sh installs it)")
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        pytest.skip("qemu-system-x86_64 or qemu-img is missing (scripts/setup.sh installs them)")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        connection = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.skip(f"libvirtd cannot be reached at {URI} (scripts/setup.sh starts it): {exc}")
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def guest_files(conn: Any) -> tuple[Path, Path, Path]:
    done, seconds = build()
    kernel, initrd, root = (Path(line) for line in done.stdout.decode().split())
    print(f"\ntest guest built or checked in {seconds:.1f}s")
    return kernel, initrd, root


@pytest.fixture
def state_root() -> Iterator[Path]:
    """Not pytest's tmp_path: qemu runs as its own user and must traverse every directory above
    the guest's files, and pytest's are private to root."""
    root = Path(tempfile.mkdtemp(prefix="fabric-libvirt-test-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def file_md5(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), len(data)


async def store_file(store: FilesystemStore, path: Path, disk_format: str) -> ImageFile:
    """Upload a file as the image service would, streaming it, with its md5."""
    md5, size = await asyncio.to_thread(file_md5, path)
    image_id = str(uuid.uuid4())

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk

    stored = await store.write(image_id, chunks(), max_bytes=size)
    assert stored.md5 == md5
    return ImageFile(
        image_id=image_id, location=image_id, checksum=md5, size=stored.size, disk_format=disk_format
    )


@pytest.fixture
async def images(guest_files: tuple[Path, Path, Path], state_root: Path) -> dict[str, ImageFile]:
    store = FilesystemStore(state_root / "blobs")
    kernel, initrd, root = guest_files
    return {
        "root": await store_file(store, root, "qcow2"),
        "kernel": await store_file(store, kernel, "aki"),
        "ramdisk": await store_file(store, initrd, "ari"),
    }


@pytest.fixture
async def driver(conn: Any, state_root: Path) -> AsyncIterator["LibvirtDriver"]:
    from actors.compute_agent import libvirt_driver

    before = set(virsh("list", "--all", "--name").split())
    driver = libvirt_driver.LibvirtDriver(
        uri=URI,
        virt_type="auto",
        blobs=FilesystemStore(state_root / "blobs"),
        state_dir=state_root / "state",
        host=HOST,
    )
    started = time.monotonic()
    await driver.start()
    seconds = time.monotonic() - started
    print(f"\nlibvirt driver started in {seconds:.1f}s: {driver.hypervisor_type} ({driver.virt_type_reason})")
    probes = {name for name in virsh("list", "--all", "--name").split() if "kvm-probe" in name}
    assert not probes - before, f"the KVM probe left domains behind: {probes}"
    assert not list((state_root / "state").glob("kvm-probe-*")), "the KVM probe left files behind"
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
def server_ids(conn: Any) -> Iterator[list[str]]:
    """Server ids a test boots; their domains are removed by name afterwards, whatever happened."""
    ids: list[str] = []
    yield ids
    for server_id in ids:
        remove_domain(conn, f"fabric-{server_id}")


def spec_for(images: dict[str, ImageFile], server_id: str, name: str) -> GuestSpec:
    return GuestSpec(
        server_id=server_id,
        name=name,
        vcpus=1,
        ram_mb=256,
        disk_gb=1,
        root_image=images["root"],
        kernel=images["kernel"],
        ramdisk=images["ramdisk"],
        cmdline="console=ttyS0",
    )


async def wait_for_boot(driver: "LibvirtDriver", server_id: str, boots: int, since: float) -> float:
    """Seconds from `since` until the console shows the `boots`-th boot marker."""
    text = ""
    while time.monotonic() - since < BOOT_TIMEOUT_S:
        text = await driver.console_output(server_id, CONSOLE_BYTES)
        if len(BOOTED.findall(text)) >= boots:
            return time.monotonic() - since
        assert "Kernel panic" not in text, text[-3000:]
        await asyncio.sleep(0.25)
    raise AssertionError(f"boot {boots}: no marker within {BOOT_TIMEOUT_S:.0f}s; console:\n{text[-3000:]}")


async def test_a_guest_boots_and_goes_through_its_power_actions(
    driver: "LibvirtDriver", images: dict[str, ImageFile], server_ids: list[str], conn: Any, state_root: Path
) -> None:
    server_id = str(uuid.uuid4())
    server_ids.append(server_id)
    name = f"fabric-vm-{server_id[:6]}"
    instance = state_root / "state" / "instances" / server_id

    started = time.monotonic()
    await driver.spawn(spec_for(images, server_id, name))
    spawned = time.monotonic() - started
    to_marker = await wait_for_boot(driver, server_id, 1, started)
    print(
        f"\n{driver.hypervisor_type}: spawn() returned after {spawned:.1f}s, "
        f"boot marker {to_marker:.1f}s after the spawn() call"
    )
    console = await driver.console_output(server_id, CONSOLE_BYTES)
    assert BOOTED.findall(console) == [name], console[-3000:]
    assert await driver.guests() == {server_id: PowerState.RUNNING}
    domain_type = "kvm" if driver.hypervisor_type == "KVM" else "qemu"
    assert f"<domain type='{domain_type}'" in conn.lookupByName(f"fabric-{server_id}").XMLDesc(0)
    await driver.spawn(spec_for(images, server_id, name))  # redelivered: the guest is left as it is
    assert len(BOOTED.findall(await driver.console_output(server_id, CONSOLE_BYTES))) == 1

    await driver.power_off(server_id)
    assert await driver.guests() == {server_id: PowerState.SHUTDOWN}
    assert virsh("domstate", f"fabric-{server_id}").strip() == "shut off"

    started = time.monotonic()
    await driver.power_on(server_id)
    assert await driver.guests() == {server_id: PowerState.RUNNING}
    print(f"power on: boot marker after {await wait_for_boot(driver, server_id, 2, started):.1f}s")

    started = time.monotonic()
    await driver.reboot(server_id, hard=True)
    print(f"hard reboot: boot marker after {await wait_for_boot(driver, server_id, 3, started):.1f}s")

    started = time.monotonic()
    await driver.reboot(server_id, hard=False)  # the guest ignores ACPI: reset after the grace period
    print(f"soft reboot: boot marker after {await wait_for_boot(driver, server_id, 4, started):.1f}s")
    assert await driver.guests() == {server_id: PowerState.RUNNING}

    await driver.destroy(server_id)
    await driver.destroy(server_id)
    assert f"fabric-{server_id}" not in virsh("list", "--all", "--name").split()
    assert not instance.exists()
    assert await driver.guests() == {}


async def test_a_guest_qemu_cannot_start_fails_and_leaves_nothing(
    driver: "LibvirtDriver", images: dict[str, ImageFile], server_ids: list[str], state_root: Path
) -> None:
    server_id = str(uuid.uuid4())
    server_ids.append(server_id)
    # A "kernel" that is the empty disk image: qemu refuses to load it, so the domain is
    # defined but cannot start.
    spec = dataclasses.replace(spec_for(images, server_id, "not-a-kernel"), kernel=images["root"])
    with pytest.raises(SpawnFailed) as failed:
        await driver.spawn(spec)
    print(f"\nspawn failed as it should: {failed.value.reason}")
    assert failed.value.reason.startswith("libvirt: ")
    assert f"fabric-{server_id}" not in virsh("list", "--all", "--name").split()
    assert not (state_root / "state" / "instances" / server_id).exists()
    assert os.listdir(state_root / "state" / "instances") == []


async def test_resources_are_the_hosts(driver: "LibvirtDriver", state_root: Path) -> None:
    resources = driver.resources()
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    fs = os.statvfs(state_root)
    assert resources.vcpus == os.cpu_count()
    assert abs(resources.ram_mb - ram_mb) <= 1, (resources, ram_mb)
    assert resources.disk_gb == fs.f_blocks * fs.f_frsize // 2**30
