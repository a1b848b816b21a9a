"""The libvirt driver on libvirt's in-memory test driver (`test:///default`), and its image cache.

The test driver keeps domains in this process and boots nothing, so these tests are fast and
need no qemu guest, yet every call goes through libvirt's real API and domain XML parser. The
images are real files in a real `FilesystemStore`, and the root disks real qcow2 overlays made
with qemu-img. `test:///default` is shared by every connection in the process (it also holds
libvirt's own domain `test`), so each test uses server ids of its own and removes what it made.
"""

import asyncio
import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fabric.blobs import FilesystemStore
from fabric.image_cache import ImageCache, ImageUnavailable
from fabric.virt import (
    AttachFailed,
    DetachFailed,
    GuestDisk,
    GuestNotFound,
    GuestSpec,
    ImageFile,
    PowerState,
    SpawnFailed,
)
from protocol.storage import Connection

if TYPE_CHECKING:
    from actors.compute_agent.libvirt_driver import LibvirtDriver

TEST_URI = "test:///default"
HOST = "host-a"
MiB = 2**20


# -- helpers shared by the driver and cache tests --------------------------------------------


async def store_image(store: FilesystemStore, data: bytes, disk_format: str) -> ImageFile:
    """Put `data` in the blob store as an image, with the md5 the image service would record."""
    image_id = str(uuid.uuid4())

    async def one_chunk() -> AsyncIterator[bytes]:
        yield data

    await store.write(image_id, one_chunk(), max_bytes=len(data))
    return ImageFile(
        image_id=image_id,
        location=image_id,
        checksum=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        size=len(data),
        disk_format=disk_format,
    )


def libvirt_module() -> Any:
    libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (scripts/setup.sh)")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


@pytest.fixture
def blobs(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "blobs")


@pytest.fixture
def conn() -> Iterator[Any]:
    """A connection of the test's own to test:///default, to look behind the driver's back."""
    libvirt = libvirt_module()
    try:
        connection = libvirt.open(TEST_URI)
    except libvirt.libvirtError as exc:
        pytest.skip(f"libvirt cannot open {TEST_URI}: {exc}")
    yield connection
    connection.close()


@pytest.fixture
async def driver(conn: Any, blobs: FilesystemStore, tmp_path: Path) -> AsyncIterator["LibvirtDriver"]:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed (scripts/setup.sh installs qemu-utils)")
    from actors.compute_agent.libvirt_driver import LibvirtDriver

    driver = LibvirtDriver(uri=TEST_URI, blobs=blobs, state_dir=tmp_path / "state", host=HOST)
    await driver.start()
    try:
        yield driver
    finally:
        for server_id in await driver.guests():
            await driver.destroy(server_id)
        await driver.close()


@pytest.fixture
async def images(blobs: FilesystemStore) -> dict[str, ImageFile]:
    """The shape of the test guest: an empty 1 MiB raw root disk, a kernel and a ramdisk (the
    test driver boots nothing, so their bytes do not matter)."""
    return {
        "root": await store_image(blobs, bytes(MiB), "raw"),
        "kernel": await store_image(blobs, b"not really a kernel", "aki"),
        "ramdisk": await store_image(blobs, b"not really an initramfs", "ari"),
    }


def guest_spec(images: dict[str, ImageFile], **fields: Any) -> GuestSpec:
    values: dict[str, Any] = {
        "server_id": str(uuid.uuid4()),
        "name": "web 1",
        "vcpus": 1,
        "ram_mb": 64,
        "disk_gb": 1,
        "root_image": images["root"],
        "kernel": images["kernel"],
        "ramdisk": images["ramdisk"],
        "cmdline": "console=ttyS0",
    }
    values.update(fields)
    return GuestSpec(**values)


def domain_names(conn: Any) -> set[str]:
    return {dom.name() for dom in conn.listAllDomains(0)}


def disk_info(path: Path) -> dict[str, Any]:
    done = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, check=True)
    return dict(json.loads(done.stdout))


# -- the driver ------------------------------------------------------------------------------


async def test_start_reports_the_test_hypervisor(driver: "LibvirtDriver") -> None:
    assert driver.hypervisor_type == "test"
    resources = driver.resources()
    assert resources.vcpus > 0 and resources.ram_mb > 0 and resources.disk_gb > 0


async def test_a_guest_through_its_whole_life(
    driver: "LibvirtDriver", images: dict[str, ImageFile], conn: Any, tmp_path: Path
) -> None:
    spec = guest_spec(images)
    sid = spec.server_id
    instance = tmp_path / "state" / "instances" / sid

    await driver.spawn(spec)
    await driver.spawn(spec)  # a redelivered spawn: nothing more happens
    assert await driver.guests() == {sid: PowerState.RUNNING}
    assert sorted(p.name for p in instance.iterdir()) == ["disk.qcow2"]

    await driver.power_off(sid)
    assert await driver.guests() == {sid: PowerState.SHUTDOWN}
    await driver.power_off(sid)  # off already
    await driver.power_on(sid)
    assert await driver.guests() == {sid: PowerState.RUNNING}
    await driver.reboot(sid, hard=True)
    assert await driver.guests() == {sid: PowerState.RUNNING}
    await driver.reboot(sid, hard=False)
    assert await driver.guests() == {sid: PowerState.RUNNING}
    assert await driver.console_output(sid, 1000) == ""

    await driver.destroy(sid)
    await driver.destroy(sid)  # gone already: nothing to do
    assert await driver.guests() == {}
    assert f"fabric-{sid}" not in domain_names(conn)
    assert not instance.exists()


async def test_the_domain_is_defined_as_the_spec_says(
    driver: "LibvirtDriver", images: dict[str, ImageFile], conn: Any, tmp_path: Path
) -> None:
    spec = guest_spec(images, name="Web_Server 1", vcpus=2, ram_mb=96)
    await driver.spawn(spec)
    dom = conn.lookupByName(f"fabric-{spec.server_id}")
    xml = dom.XMLDesc(0)
    cache = tmp_path / "state" / "images"
    instance = tmp_path / "state" / "instances" / spec.server_id

    assert dom.UUIDString() == spec.server_id
    assert dom.maxMemory() == 96 * 1024 and dom.info()[3] == 2
    assert f"<kernel>{cache / images['kernel'].image_id}</kernel>" in xml
    assert f"<initrd>{cache / images['ramdisk'].image_id}</initrd>" in xml
    assert "<cmdline>console=ttyS0 fabric.hostname=web-server-1</cmdline>" in xml
    assert f"<source file='{instance / 'disk.qcow2'}'" in xml
    assert f"<log file='{instance / 'console.log'}' append='on'/>" in xml
    assert "<on_poweroff>destroy</on_poweroff>" in xml
    assert "<interface" not in xml
    assert 'xmlns:fabric="urn:x-cloud-fabric:instance:1"' in xml.replace("'", '"')


async def test_the_root_disk_is_an_overlay_of_the_cached_image(
    driver: "LibvirtDriver", images: dict[str, ImageFile], tmp_path: Path
) -> None:
    sized = guest_spec(images, disk_gb=1)
    image_sized = guest_spec(images, disk_gb=0)
    await driver.spawn(sized)
    await driver.spawn(image_sized)
    base = tmp_path / "state" / "images" / images["root"].image_id

    info = disk_info(tmp_path / "state" / "instances" / sized.server_id / "disk.qcow2")
    assert info["format"] == "qcow2" and info["virtual-size"] == 2**30
    assert info["backing-filename"] == str(base) and info["backing-filename-format"] == "raw"
    info = disk_info(tmp_path / "state" / "instances" / image_sized.server_id / "disk.qcow2")
    assert info["virtual-size"] == MiB  # disk_gb 0: the image's own size


async def test_spawn_starts_a_guest_that_is_defined_but_off(
    driver: "LibvirtDriver", images: dict[str, ImageFile]
) -> None:
    spec = guest_spec(images)
    await driver.spawn(spec)
    await driver.power_off(spec.server_id)
    await driver.spawn(spec)
    assert await driver.guests() == {spec.server_id: PowerState.RUNNING}


async def test_actions_on_an_unknown_guest_raise_guest_not_found(driver: "LibvirtDriver") -> None:
    for sid in (str(uuid.uuid4()), "../../etc"):
        with pytest.raises(GuestNotFound):
            await driver.power_on(sid)
        with pytest.raises(GuestNotFound):
            await driver.power_off(sid)
        with pytest.raises(GuestNotFound):
            await driver.reboot(sid, hard=True)
        with pytest.raises(GuestNotFound):
            await driver.reboot(sid, hard=False)
        with pytest.raises(GuestNotFound):
            await driver.console_output(sid, 100)
        await driver.destroy(sid)  # nothing to destroy: not an error


async def test_domains_the_fabric_did_not_make_are_neither_listed_nor_touched(
    driver: "LibvirtDriver", images: dict[str, ImageFile], conn: Any
) -> None:
    libvirt = libvirt_module()
    sid, other_hosts = str(uuid.uuid4()), str(uuid.uuid4())
    foreign = conn.defineXML(
        f"<domain type='test'><name>fabric-{sid}</name><memory unit='MiB'>32</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    # Ours in form, but another agent's: two agents may share one libvirtd (in tests).
    elsewhere = conn.defineXML(
        f"<domain type='test'><name>fabric-{other_hosts}</name><memory unit='MiB'>32</memory>"
        "<metadata><fabric:instance xmlns:fabric='urn:x-cloud-fabric:instance:1'>"
        f"<fabric:server-id>{other_hosts}</fabric:server-id><fabric:host>host-b</fabric:host>"
        "</fabric:instance></metadata><os><type>hvm</type></os></domain>"
    )
    try:
        foreign.create()
        elsewhere.create()
        mine = guest_spec(images)
        await driver.spawn(mine)

        assert await driver.guests() == {mine.server_id: PowerState.RUNNING}  # not `test` either
        for server_id in (sid, other_hosts):
            with pytest.raises(GuestNotFound):
                await driver.power_off(server_id)
            await driver.destroy(server_id)
            with pytest.raises(SpawnFailed, match="did not make"):
                await driver.spawn(guest_spec(images, server_id=server_id))
        assert foreign.isActive() and elsewhere.isActive()
        assert foreign.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        for dom in (foreign, elsewhere):
            if dom.isActive():
                dom.destroy()
            dom.undefine()


async def test_a_failed_spawn_leaves_nothing_behind(
    driver: "LibvirtDriver", images: dict[str, ImageFile], conn: Any, tmp_path: Path
) -> None:
    # libvirt refuses the definition: another domain already has the server's uuid.
    spec = guest_spec(images)
    squatter = conn.defineXML(
        f"<domain type='test'><name>squatter-{spec.server_id[:8]}</name><uuid>{spec.server_id}</uuid>"
        "<memory unit='MiB'>32</memory><os><type>hvm</type></os></domain>"
    )
    try:
        with pytest.raises(SpawnFailed, match="libvirt: ") as failed:
            await driver.spawn(spec)
        print(f"\nspawn failed as it should: {failed.value.reason}")
        assert await driver.guests() == {}
        assert f"fabric-{spec.server_id}" not in domain_names(conn)
        assert not (tmp_path / "state" / "instances" / spec.server_id).exists()
        assert squatter.name() in domain_names(conn)
    finally:
        squatter.undefine()


async def test_a_spawn_cancelled_at_any_point_leaves_nothing(
    driver: "LibvirtDriver", images: dict[str, ImageFile], blobs: FilesystemStore, conn: Any, tmp_path: Path
) -> None:
    outcomes = []
    for delay_s in (0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 1.0):
        # A new root image each time, so that cancellation also lands in the image download.
        spec = guest_spec(images, root_image=await store_image(blobs, bytes(MiB), "raw"))
        spawning = asyncio.create_task(driver.spawn(spec))
        await asyncio.sleep(delay_s)
        spawning.cancel()
        try:
            await spawning
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            assert await driver.guests() == {}, f"cancelled after {delay_s}s"
            assert f"fabric-{spec.server_id}" not in domain_names(conn)
            assert not (tmp_path / "state" / "instances" / spec.server_id).exists()
        else:
            outcomes.append("spawned")
            assert await driver.guests() == {spec.server_id: PowerState.RUNNING}
            await driver.destroy(spec.server_id)
        partials = [p.name for p in (tmp_path / "state" / "images").glob(".*")]
        assert partials == [], f"cancelled after {delay_s}s: partial images left: {partials}"
    print(f"\nspawns cancelled after growing delays: {outcomes}")
    assert "cancelled" in outcomes and outcomes[-1] == "spawned"


async def test_a_spawn_with_a_corrupt_image_fails_cleanly(
    driver: "LibvirtDriver", images: dict[str, ImageFile], blobs: FilesystemStore, tmp_path: Path
) -> None:
    bad = await store_image(blobs, b"\x01" * 4096, "raw")
    (blobs.root / bad.location).write_bytes(b"\x02" * 4096)  # the bytes rotted in the store
    spec = guest_spec(images, root_image=bad)
    with pytest.raises(SpawnFailed, match="checksum"):
        await driver.spawn(spec)
    assert await driver.guests() == {}
    assert not (tmp_path / "state" / "instances" / spec.server_id).exists()
    assert not (tmp_path / "state" / "images" / bad.image_id).exists()


async def test_a_root_image_that_cannot_be_a_disk_is_refused(
    driver: "LibvirtDriver", images: dict[str, ImageFile]
) -> None:
    with pytest.raises(SpawnFailed, match="cannot be a root disk"):
        await driver.spawn(guest_spec(images, root_image=images["kernel"]))
    assert await driver.guests() == {}


# -- volumes ---------------------------------------------------------------------------------
# The test driver cannot hot-plug (attachDeviceFlags and detachDeviceFlags are "not supported by
# the connection driver"), so live attach and detach are covered on qemu:///system
# (tests/system/test_volume_hotplug.py). Here: volumes given at spawn, boot from a volume, what
# an attach or detach finds already done, and how the test driver's refusal is reported.


def make_volume(
    directory: Path, *, kind: str = "file", device: str | None = None, is_root: bool = False
) -> GuestDisk:
    """A real qcow2 file, as the file volume backend makes them, and the disk naming it."""
    volume_id = str(uuid.uuid4())
    path = directory / f"{volume_id}.qcow2"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return GuestDisk(
        volume_id=volume_id,
        attachment_id=str(uuid.uuid4()),
        connection=Connection(driver_volume_type=kind, data={"path": str(path), "format": "qcow2"}),
        device=device,
        is_root=is_root,
    )


def file_of(disk: GuestDisk) -> Path:
    return Path(disk.connection.data["path"])


def volume_disks(conn: Any, server_id: str) -> dict[str, tuple[str, str, str]]:
    """{serial: (target, source file, driver attributes)} of the domain's disks with a serial."""
    import xml.etree.ElementTree as ET

    domain = ET.fromstring(conn.lookupByName(f"fabric-{server_id}").XMLDesc(0))
    found = {}
    for disk in domain.iterfind("devices/disk"):
        serial = disk.findtext("serial")
        if serial:
            driver = " ".join(f"{k}={v}" for k, v in sorted(disk.find("driver").attrib.items()))
            found[serial] = (disk.find("target").get("dev"), disk.find("source").get("file"), driver)
    return found


async def test_volumes_given_at_spawn_are_disks_that_outlive_the_guest(
    driver: "LibvirtDriver", images: dict[str, ImageFile], conn: Any, tmp_path: Path
) -> None:
    volumes = tmp_path / "volumes"
    data, hinted = make_volume(volumes), make_volume(volumes, device="/dev/vdd")
    spec = guest_spec(images, disks=(data, hinted))
    await driver.spawn(spec)

    path = data.connection.data["path"]
    assert volume_disks(conn, spec.server_id) == {
        data.volume_id: ("vdb", path, "cache=none name=qemu type=qcow2"),
        hinted.volume_id: ("vdd", hinted.connection.data["path"], "cache=none name=qemu type=qcow2"),
    }
    # Asked again, both are found where they are: the same targets, nothing plugged twice.
    assert await driver.attach_disk(spec.server_id, data) == "vdb"
    assert await driver.attach_disk(spec.server_id, hinted) == "vdd"
    assert len(volume_disks(conn, spec.server_id)) == 2

    before = {p.name: p.read_bytes() for p in volumes.iterdir()}
    await driver.destroy(spec.server_id)
    assert f"fabric-{spec.server_id}" not in domain_names(conn)
    assert {p.name: p.read_bytes() for p in volumes.iterdir()} == before, "destroy touched the volumes"


async def test_a_guest_boots_from_a_volume(
    driver: "LibvirtDriver", images: dict[str, ImageFile], conn: Any, tmp_path: Path
) -> None:
    root = make_volume(tmp_path / "volumes", is_root=True)
    spec = guest_spec(images, root_image=None, disks=(make_volume(tmp_path / "volumes"), root))
    await driver.spawn(spec)

    xml = conn.lookupByName(f"fabric-{spec.server_id}").XMLDesc(0)
    assert volume_disks(conn, spec.server_id)[root.volume_id][:2] == ("vda", root.connection.data["path"])
    assert xml.index(root.volume_id) < xml.index(spec.disks[0].volume_id), "the root disk comes first"
    assert f"<kernel>{tmp_path / 'state' / 'images' / images['kernel'].image_id}</kernel>" in xml
    instance = tmp_path / "state" / "instances" / spec.server_id
    assert list(instance.iterdir()) == [], "no image overlay when the root disk is a volume"
    await driver.destroy(spec.server_id)
    assert file_of(root).is_file()


async def test_a_spawn_with_a_disk_it_cannot_use_fails_and_leaves_nothing(
    driver: "LibvirtDriver", images: dict[str, ImageFile], conn: Any, tmp_path: Path
) -> None:
    good = make_volume(tmp_path / "volumes")
    gone = make_volume(tmp_path / "volumes")
    file_of(gone).unlink()
    cases = {
        "connection type 'iscsi' is not supported": (make_volume(tmp_path / "volumes", kind="iscsi"),),
        "is not on this host": (good, gone),
        "neither an image nor a root volume": (good,),
    }
    for reason, disks in cases.items():
        root_image = None if reason.startswith("neither") else images["root"]
        spec = guest_spec(images, root_image=root_image, disks=disks)
        with pytest.raises(SpawnFailed, match=reason):
            await driver.spawn(spec)
        assert f"fabric-{spec.server_id}" not in domain_names(conn)
        assert not (tmp_path / "state" / "instances" / spec.server_id).exists()
    assert file_of(good).is_file()


async def test_attach_and_detach_say_what_the_test_driver_cannot_do(
    driver: "LibvirtDriver", images: dict[str, ImageFile], tmp_path: Path
) -> None:
    held = make_volume(tmp_path / "volumes")
    spec = guest_spec(images, disks=(held,))
    await driver.spawn(spec)
    sid = spec.server_id

    with pytest.raises(AttachFailed, match=r"^libvirt: .*not supported"):
        await driver.attach_disk(sid, make_volume(tmp_path / "volumes"))
    with pytest.raises(AttachFailed, match="'iscsi' is not supported"):
        await driver.attach_disk(sid, make_volume(tmp_path / "volumes", kind="iscsi"))
    with pytest.raises(DetachFailed, match=r"^libvirt: .*not supported"):
        await driver.detach_disk(sid, held.volume_id, timeout_s=1)
    await driver.detach_disk(sid, str(uuid.uuid4()), timeout_s=1)  # not attached: nothing to do
    await driver.power_off(sid)
    with pytest.raises(AttachFailed, match=r"^libvirt: .*not supported"):  # the persistent definition
        await driver.attach_disk(sid, make_volume(tmp_path / "volumes"))
    assert await driver.attach_disk(sid, held) == "vdb"

    for missing in (str(uuid.uuid4()), "../../etc"):
        with pytest.raises(GuestNotFound):
            await driver.attach_disk(missing, held)
        with pytest.raises(GuestNotFound):
            await driver.detach_disk(missing, held.volume_id, timeout_s=1)


# -- the image cache -------------------------------------------------------------------------


class CountingStore(FilesystemStore):
    """The real store, counting how often an image's bytes are read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0

    def read(self, location: str) -> AsyncIterator[bytes]:
        self.reads += 1
        return super().read(location)


async def test_the_cache_copies_an_image_once(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "blobs")
    data = bytes(range(256)) * 4096  # 1 MiB, several chunks
    image = await store_image(store, data, "raw")
    cache = ImageCache(tmp_path / "cache", store)

    paths = await asyncio.gather(*(cache.fetch(image) for _ in range(5)))
    assert set(paths) == {tmp_path / "cache" / image.image_id}
    assert store.reads == 1, "concurrent fetches of one image should share one download"
    assert paths[0].read_bytes() == data
    assert paths[0].stat().st_mode & 0o777 == 0o644
    assert await cache.fetch(image) == paths[0] and store.reads == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [image.image_id]  # no partials


async def test_the_cache_refuses_data_that_does_not_match_the_checksum(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "blobs")
    image = await store_image(store, b"good bytes" * 1000, "raw")
    cache = ImageCache(tmp_path / "cache", store)
    (store.root / image.location).write_bytes(b"evil bytes" * 1000)  # same size, other bytes

    with pytest.raises(ImageUnavailable, match="checksum"):
        await cache.fetch(image)
    assert list((tmp_path / "cache").iterdir()) == []


async def test_the_cache_reports_missing_data(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "blobs")
    image = await store_image(store, b"bytes", "raw")
    await store.delete(image.location)
    with pytest.raises(ImageUnavailable, match="missing"):
        await ImageCache(tmp_path / "cache", store).fetch(image)
    assert list((tmp_path / "cache").iterdir()) == []
