"""The `file` volume backend with the real qemu-img: qcow2 files, overlays on cached images,
snapshots and copies that keep the data written into a volume, and a clean start after a crash.

Data is written into volumes and read back with qemu-io (qemu's own disk exerciser), as a guest
would write through qemu: a pattern byte over a range, then `read -P` checks every byte of it.
"""

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.volume_agent.backend import BackendError, GiB, NoSuchVolume
from actors.volume_agent.file_backend import FileBackend
from fabric.blobs import FilesystemStore
from protocol.storage import ImageFile

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
    reason="qemu-img and qemu-io are not installed (scripts/setup.sh installs qemu-utils)",
)

MiB = 2**20


class CountingStore(FilesystemStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0

    def read(self, location: str) -> AsyncIterator[bytes]:
        self.reads += 1
        return super().read(location)


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


def info(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(qemu_img("info", "-f", "qcow2", "-U", "--output=json", str(path)))
    return found


def write(path: Path, pattern: int, offset: str, length: str) -> None:
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {pattern:#x} {offset} {length}", str(path)],
        check=True,
        capture_output=True,
    )


def holds(path: Path, pattern: int, offset: str, length: str) -> bool:
    """Does every byte of the range read `pattern` (through the backing chain)?"""
    done = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-r", "-U", "-c", f"read -P {pattern:#x} {offset} {length}", str(path)],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout + done.stderr


def vid() -> str:
    return str(uuid.uuid4())


async def store_image(
    store: FilesystemStore, path: Path, disk_format: str, *, checksum: str = ""
) -> ImageFile:
    data = await asyncio.to_thread(path.read_bytes)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    location = f"blob-{uuid.uuid4().hex}"
    stored = await store.write(location, chunks(), max_bytes=len(data))
    return ImageFile(
        image_id=str(uuid.uuid4()),
        location=location,
        checksum=checksum or stored.md5,
        size=stored.size,
        disk_format=disk_format,
    )


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "blobs")


@pytest.fixture
async def image(tmp_path: Path, store: CountingStore) -> ImageFile:
    """Like the test guest's root disk: a 64 MiB qcow2, here with 1 MiB of 0xaa at its start."""
    path = tmp_path / "image.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(path), "64M")
    write(path, 0xAA, "0", "1M")
    return await store_image(store, path, "qcow2")


@pytest.fixture
async def backend(tmp_path: Path, store: CountingStore) -> AsyncIterator[FileBackend]:
    made = FileBackend(tmp_path / "volumes" / "host-a", store)
    await made.start()
    yield made
    await made.close()


def leftovers(backend: FileBackend) -> list[str]:
    """Temporary files anywhere under the backend's root."""
    return [p.name for p in backend.root.rglob(".*")]


async def test_an_empty_volume_is_a_qcow2_file_made_once(backend: FileBackend) -> None:
    volume = vid()
    allocated = await backend.create_volume(volume, 2)
    path = backend.volumes_dir / f"{volume}.qcow2"
    shown = info(path)
    assert shown["format"] == "qcow2" and shown["virtual-size"] == 2 * GiB
    assert "backing-filename" not in shown
    assert allocated == path.stat().st_blocks * 512 and allocated < MiB
    assert path.stat().st_mode & 0o777 == 0o600  # libvirt hands it to qemu when attaching
    inode = path.stat().st_ino
    assert await backend.create_volume(volume, 2) == allocated  # a redelivered create
    assert path.stat().st_ino == inode, "an existing volume must not be made again"

    connection = await backend.export(volume, "attachment-1", "host-a")
    assert connection.driver_volume_type == "file"
    assert (
        connection.data == {"path": str(path), "format": "qcow2"}
        and Path(connection.data["path"]).is_absolute()
    )
    await backend.unexport(volume, "attachment-1")

    await backend.delete_volume(volume)
    assert not path.exists()
    await backend.delete_volume(volume)  # gone already: done
    with pytest.raises(NoSuchVolume):
        await backend.export(volume, "attachment-2", "host-a")
    assert leftovers(backend) == []


async def test_a_volume_from_an_image_is_an_overlay_made_at_once(
    backend: FileBackend, image: ImageFile, store: CountingStore
) -> None:
    await backend.create_volume(vid(), 1, image=image)  # the first one fetches the image
    assert store.reads == 1
    cached = backend.images.root / image.image_id

    volume = vid()
    began = time.monotonic()
    allocated = await backend.create_volume(volume, 10, image=image)
    took = time.monotonic() - began
    path = backend.volumes_dir / f"{volume}.qcow2"
    assert took < 0.5, f"a 10 GiB volume from a cached image took {took:.2f}s"
    assert allocated < MiB, f"the overlay takes {allocated} bytes: the image was copied"
    assert path.stat().st_blocks * 512 < MiB
    shown = info(path)
    assert shown["virtual-size"] == 10 * GiB
    assert shown["backing-filename"] == str(cached) and shown["backing-filename-format"] == "qcow2"
    assert store.reads == 1, "the cached image must be fetched once"
    assert holds(path, 0xAA, "0", "1M") and holds(path, 0, "1M", "1M")  # the image's data, read through

    # qemu runs as its own user: it must reach the volume's directory and read the image.
    assert cached.stat().st_mode & 0o777 == 0o644
    for directory in (backend.root, backend.volumes_dir, backend.images.root):
        assert directory.stat().st_mode & 0o005 == 0o005, directory


async def test_an_image_that_does_not_match_its_checksum_is_refused(
    backend: FileBackend, image: ImageFile
) -> None:
    bad = ImageFile(
        image_id=image.image_id, location=image.location, checksum=hashlib.md5(b"other").hexdigest(),
        size=image.size, disk_format=image.disk_format,
    )  # fmt: skip
    volume = vid()
    with pytest.raises(BackendError, match="checksum"):
        await backend.create_volume(volume, 1, image=bad)
    assert list(backend.volumes_dir.iterdir()) == [] and list(backend.images.root.iterdir()) == []


async def test_images_that_would_open_other_files_are_refused(
    backend: FileBackend, tmp_path: Path, store: CountingStore
) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "16M")
    chained = tmp_path / "chained.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(chained))
    with pytest.raises(BackendError, match="backing file"):
        await backend.create_volume(vid(), 1, image=await store_image(store, chained, "qcow2"))

    with pytest.raises(BackendError, match="cannot back a volume"):
        await backend.create_volume(vid(), 1, image=await store_image(store, base, "vmdk"))
    assert list(backend.volumes_dir.iterdir()) == []


async def test_a_volume_smaller_than_its_image_is_refused(
    backend: FileBackend, tmp_path: Path, store: CountingStore
) -> None:
    big = tmp_path / "big.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(big), "3G")
    image = await store_image(store, big, "qcow2")
    with pytest.raises(BackendError, match="virtual size"):
        await backend.create_volume(vid(), 2, image=image)
    await backend.create_volume(vid(), 3, image=image)


async def test_a_raw_image_backs_a_volume_as_raw(
    backend: FileBackend, tmp_path: Path, store: CountingStore
) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\x5a" * MiB)
    volume = vid()
    await backend.create_volume(volume, 1, image=await store_image(store, raw, "raw"))
    path = backend.volumes_dir / f"{volume}.qcow2"
    assert info(path)["backing-filename-format"] == "raw"
    assert holds(path, 0x5A, "0", "1M")


async def test_a_volume_grows_and_never_shrinks(backend: FileBackend, image: ImageFile) -> None:
    volume = vid()
    await backend.create_volume(volume, 1, image=image)
    write(backend.volumes_dir / f"{volume}.qcow2", 0x55, "2M", "64k")
    await backend.resize_volume(volume, 3)
    path = backend.volumes_dir / f"{volume}.qcow2"
    assert info(path)["virtual-size"] == 3 * GiB
    assert holds(path, 0x55, "2M", "64k") and holds(path, 0xAA, "0", "1M")
    await backend.resize_volume(volume, 3)  # a redelivered resize
    with pytest.raises(BackendError, match="only grows"):
        await backend.resize_volume(volume, 2)
    with pytest.raises(NoSuchVolume):
        await backend.resize_volume(vid(), 2)


async def test_snapshots_and_copies_keep_the_data_written_into_the_volume(
    backend: FileBackend, image: ImageFile
) -> None:
    volume, snapshot = vid(), vid()
    await backend.create_volume(volume, 1, image=image)
    volume_path = backend.volumes_dir / f"{volume}.qcow2"
    write(volume_path, 0x55, "2M", "64k")

    await backend.create_snapshot(volume, snapshot, in_use=False)
    snapshot_path = backend.snapshots_dir / f"{snapshot}.qcow2"
    write(volume_path, 0x77, "2M", "64k")  # the volume moves on; the snapshot must not
    await backend.create_snapshot(volume, snapshot, in_use=False)  # a redelivered create: kept as it was
    assert holds(snapshot_path, 0x55, "2M", "64k") and holds(snapshot_path, 0xAA, "0", "1M")
    # Only what differs from the image was written: the snapshot depends on the image alone.
    assert info(snapshot_path)["backing-filename"] == str(backend.images.root / image.image_id)
    assert snapshot_path.stat().st_blocks * 512 < MiB

    restored = vid()
    await backend.create_volume(restored, 2, snapshot_id=snapshot)
    restored_path = backend.volumes_dir / f"{restored}.qcow2"
    assert info(restored_path)["virtual-size"] == 2 * GiB
    assert holds(restored_path, 0x55, "2M", "64k") and holds(restored_path, 0xAA, "0", "1M")

    cloned = vid()
    await backend.create_volume(cloned, 1, source_volume_id=volume)
    assert holds(backend.volumes_dir / f"{cloned}.qcow2", 0x77, "2M", "64k")

    # Deleting the snapshot, then the volume, breaks none of the copies.
    await backend.delete_snapshot(snapshot)
    await backend.delete_snapshot(snapshot)
    await backend.delete_volume(volume)
    assert holds(restored_path, 0x55, "2M", "64k")
    assert holds(backend.volumes_dir / f"{cloned}.qcow2", 0x77, "2M", "64k")
    with pytest.raises(BackendError, match="does not exist"):
        await backend.create_volume(vid(), 1, snapshot_id=snapshot)
    with pytest.raises(BackendError, match="at least"):
        await backend.create_volume(vid(), 1, source_volume_id=restored)  # 2 GiB into 1
    assert leftovers(backend) == []


async def test_a_snapshot_of_a_volume_in_use_reads_past_the_writers_lock(backend: FileBackend) -> None:
    volume = vid()
    await backend.create_volume(volume, 1)
    path = backend.volumes_dir / f"{volume}.qcow2"
    write(path, 0x33, "0", "64k")
    # qemu-io holds the image open read-write, with qemu's locks, as a running guest's qemu does.
    holder = await asyncio.create_subprocess_exec(
        "qemu-io", "-f", "qcow2", str(path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.3)
        with pytest.raises(BackendError, match="lock"):
            await backend.create_snapshot(volume, vid(), in_use=False)
        snapshot = vid()
        await backend.create_snapshot(volume, snapshot, in_use=True)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        await holder.wait()
    assert holds(backend.snapshots_dir / f"{snapshot}.qcow2", 0x33, "0", "64k")
    assert leftovers(backend) == []


async def test_qemu_img_failures_become_the_reason(backend: FileBackend) -> None:
    snapshot = vid()
    (backend.snapshots_dir / f"{snapshot}.qcow2").write_bytes(b"not a disk image" * 100)
    with pytest.raises(BackendError, match=r"qemu-img info: .*qcow2"):
        await backend.create_volume(vid(), 1, snapshot_id=snapshot)
    with pytest.raises(BackendError, match="cannot name a file"):
        await backend.create_volume("../escape", 1)
    assert list(backend.volumes_dir.iterdir()) == []


async def test_a_cancelled_create_leaves_nothing(backend: FileBackend) -> None:
    path = backend.volumes_dir / "cancelled.qcow2"
    made: list[Path] = []
    half_made = asyncio.Event()

    async def build(tmp: Path) -> None:
        await asyncio.to_thread(tmp.write_bytes, b"half")
        made.append(tmp)
        half_made.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(backend._make(path, build))
    await half_made.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not made[0].exists() and not path.exists()


async def test_start_removes_orphans_and_temporary_files(
    backend: FileBackend, image: ImageFile, tmp_path: Path, store: CountingStore
) -> None:
    kept, orphan, kept_snapshot, orphan_snapshot = vid(), vid(), vid(), vid()
    await backend.create_volume(kept, 2, image=image)
    await backend.create_volume(orphan, 1)
    await backend.create_snapshot(kept, kept_snapshot, in_use=False)
    await backend.create_snapshot(orphan, orphan_snapshot, in_use=False)
    # What a crash mid-create leaves: temporary files, and a download cut short.
    (backend.volumes_dir / f".{vid()}.0badf00d.tmp").write_bytes(b"half a volume")
    (backend.snapshots_dir / f".{vid()}.0badf00d.tmp").write_bytes(b"half a snapshot")
    (backend.images.root / f".{uuid.uuid4()}.0badf00d.partial").write_bytes(b"half an image")

    again = FileBackend(backend.root, store, capacity_gb=100)  # the agent, restarted
    await again.start()
    assert (await again.capacity()).free_gb == 100 - (2 + 1 + 2 + 1)
    removed = await again.remove_unexpected(frozenset({kept}), frozenset({kept_snapshot}))
    assert removed.volume_ids == (orphan,) and removed.snapshot_ids == (orphan_snapshot,)
    assert len(removed.temporary) == 3
    assert sorted(p.name for p in again.volumes_dir.iterdir()) == [f"{kept}.qcow2"]
    assert sorted(p.name for p in again.snapshots_dir.iterdir()) == [f"{kept_snapshot}.qcow2"]
    assert sorted(p.name for p in again.images.root.iterdir()) == [image.image_id]
    assert (await again.capacity()).free_gb == 100 - (2 + 2)
    assert holds(again.volumes_dir / f"{kept}.qcow2", 0xAA, "0", "1M")


async def test_capacity_is_the_filesystems_unless_configured(backend: FileBackend) -> None:
    fs = os.statvfs(backend.root)
    capacity = await backend.capacity()
    assert capacity.total_gb == fs.f_blocks * fs.f_frsize // GiB
    assert 0 <= capacity.free_gb <= capacity.total_gb
