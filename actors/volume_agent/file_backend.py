"""The `file` backend: each volume a qcow2 file made with qemu-img, on this machine's disk.

Layout, under `root` (`volume_dir/<host>`), every directory traversable by qemu's own user:
  volumes/<volume_id>.qcow2      a volume (mode 0600: libvirt hands it to qemu when attaching)
  snapshots/<snapshot_id>.qcow2  a snapshot: the volume's data when it was taken
  images/<image_id>              the image cache (`fabric/image_cache.py`): verified copies,
                                 world-readable, never written once in place
  .<id>.<random>.tmp             a file being made; renamed into place only when complete

- A volume from an image is a copy-on-write overlay of the cached image (`qemu-img create -b
  <image> -F <its declared format>`): nothing is copied, so a volume of any size is made in
  milliseconds and takes a few hundred KiB until written. The format is the image's declared
  one, never probed, and an image that names a backing file or an external data file of its own
  is refused: either would let an uploaded image make the host open a file of its choosing.
- A snapshot, and a volume made from a snapshot or another volume, is a copy made with
  `qemu-img convert -B <the source's backing image>`: only clusters that differ from the image
  are written, and the copy depends on the image alone, never on the file it was copied from.
  So a snapshot may be deleted while volumes made from it live, and a volume while its
  snapshots do (the volume service forbids the latter anyway, as Cinder does).
- A snapshot of an attached volume (`in_use`, Cinder's `force`) reads the file under a running
  qemu's write lock (`-U`): the copy is crash-consistent only, like pulling the plug: what the
  guest had not flushed is missing, and a write racing the copy may be half in it. It is exact
  when the guest is idle (or its filesystem frozen).
- Every file is made under a temporary name and renamed into place when complete (after an
  fsync), so a crash or a cancellation leaves only a temporary file, which `remove_unexpected`
  removes at the next start; a file under its final name is always whole.
"""

import asyncio
import functools
import logging
import math
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from actors.volume_agent import qemu_img
from actors.volume_agent.backend import BackendError, Capacity, GiB, NoSuchVolume, Removed
from fabric.blobs import BlobStore
from fabric.image_cache import ImageCache, ImageUnavailable
from fabric.threads import finish_in_thread
from protocol.storage import Connection, ImageFile

log = logging.getLogger("fabric.volume_agent.file")

#: Ids become file names: no separators, no leading dot (Cinder's are UUIDs).
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: The formats an image may have to back a volume; qemu opens nothing else for us.
BACKING_FORMATS = ("qcow2", "raw")
_QCOW2_MAGIC = b"QFI\xfb"
_TEMPORARY = re.compile(r"\..+\.tmp")


class FileBackend:
    """`VolumeBackend` over qcow2 files; see the module docstring."""

    name = "file"

    def __init__(self, root: Path, blobs: BlobStore, *, capacity_gb: int = 0) -> None:
        """`capacity_gb` 0: announce the filesystem's size and free space; otherwise announce
        this much, less the virtual sizes of the volumes and snapshots held (thin files may
        promise more than the disk has: this is the operator's limit on that)."""
        self.root = root.absolute()
        self.volumes_dir = self.root / "volumes"
        self.snapshots_dir = self.root / "snapshots"
        self.images = ImageCache(self.root / "images", blobs)
        self.capacity_gb = capacity_gb
        #: Virtual size in bytes of every file held, by path: the "used" of a set capacity.
        self._sizes: dict[Path, int] = {}
        #: Cached images checked already (their files never change): virtual size by image id.
        self._image_sizes: dict[str, int] = {}

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._sizes = await asyncio.to_thread(self._prepare)

    def _prepare(self) -> dict[Path, int]:
        """Make the directories; the virtual size of every file held."""
        for directory in (self.root, self.volumes_dir, self.snapshots_dir, self.images.root):
            directory.mkdir(parents=True, exist_ok=True)
            # qemu runs as its own user and must reach the files (the umask may be stricter).
            directory.chmod(0o755)
        closed = _closed_to_others(self.root)
        if closed is not None:
            log.warning(
                "%s is closed to other users: qemu, which libvirt runs as its own user, will fail "
                "to open volumes under %s unless it runs as root",
                closed,
                self.root,
            )
        sizes: dict[Path, int] = {}
        for directory in (self.volumes_dir, self.snapshots_dir):
            for path in directory.iterdir():
                if path.suffix == ".qcow2" and not path.name.startswith("."):
                    try:
                        sizes[path] = _virtual_size(path)
                    except BackendError as exc:  # counted as nothing; reading it will fail
                        log.warning("%s", exc.reason)
                        sizes[path] = 0
        return sizes

    async def close(self) -> None:
        return None

    async def capacity(self) -> Capacity:
        if self.capacity_gb:
            used_gb = math.ceil(sum(self._sizes.values()) / GiB)
            return Capacity(total_gb=self.capacity_gb, free_gb=max(0, self.capacity_gb - used_gb))
        fs = await asyncio.to_thread(os.statvfs, self.root)
        return Capacity(total_gb=fs.f_blocks * fs.f_frsize // GiB, free_gb=fs.f_bavail * fs.f_frsize // GiB)

    async def remove_unexpected(self, volume_ids: frozenset[str], snapshot_ids: frozenset[str]) -> Removed:
        volumes, temporary = await asyncio.to_thread(_remove_unexpected, self.volumes_dir, volume_ids)
        snapshots, temporary2 = await asyncio.to_thread(_remove_unexpected, self.snapshots_dir, snapshot_ids)
        for volume_id in volumes:
            self._sizes.pop(self.volumes_dir / f"{volume_id}.qcow2", None)
        for snapshot_id in snapshots:
            self._sizes.pop(self.snapshots_dir / f"{snapshot_id}.qcow2", None)
        partials = [p.name for p in await self.images.remove_partial_downloads()]
        return Removed(
            volume_ids=tuple(volumes),
            snapshot_ids=tuple(snapshots),
            temporary=(*temporary, *temporary2, *partials),
        )

    # --- volumes ---------------------------------------------------------------------------

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        image: ImageFile | None = None,
        snapshot_id: str | None = None,
        source_volume_id: str | None = None,
    ) -> int:
        path = self._volume_path(volume_id)
        if await asyncio.to_thread(path.is_file):
            return await _allocated(path)
        if sum(source is not None for source in (image, snapshot_id, source_volume_id)) > 1:
            raise BackendError("a volume has at most one source: an image, a snapshot or a volume")
        if image is not None:
            base, image_size = await self._cached(image)
            if image_size > size_gb * GiB:
                raise BackendError(
                    f"image {image.image_id} is {_gib(image_size)} (its virtual size): "
                    f"a volume of {size_gb} GiB cannot hold it"
                )
            await self._make(path, functools.partial(_overlay, base, image.disk_format, size_gb))
        elif snapshot_id is not None:
            source = self._snapshot_path(snapshot_id)
            if not await asyncio.to_thread(source.is_file):
                raise BackendError(f"snapshot {snapshot_id} does not exist on this host")
            await self._copy(source, path, size_gb)
        elif source_volume_id is not None:
            source = self._volume_path(source_volume_id)
            if not await asyncio.to_thread(source.is_file):
                raise BackendError(f"source volume {source_volume_id} does not exist on this host")
            await self._copy(source, path, size_gb)
        else:
            await self._make(path, functools.partial(_empty, size_gb))
        return await _allocated(path)

    async def _cached(self, image: ImageFile) -> tuple[Path, int]:
        """The image's local copy and its virtual size; checked once per image (a cached file
        never changes): a format qemu may open, no backing file or external data file."""
        if image.disk_format not in BACKING_FORMATS:
            raise BackendError(
                f"image {image.image_id}: disk format {image.disk_format!r} cannot back a volume "
                f"(only {' or '.join(BACKING_FORMATS)})"
            )
        try:
            base = await self.images.fetch(image)
        except ImageUnavailable as exc:
            raise BackendError(exc.reason) from exc
        if image.image_id not in self._image_sizes:
            info = await qemu_img.info(base, image.disk_format)
            if info.get("backing-filename"):
                raise BackendError(f"image {image.image_id}: an image with a backing file is not accepted")
            if (info.get("format-specific") or {}).get("data", {}).get("data-file"):
                raise BackendError(
                    f"image {image.image_id}: an image with an external data file is not accepted"
                )
            self._image_sizes[image.image_id] = int(info["virtual-size"])
        return base, self._image_sizes[image.image_id]

    async def resize_volume(self, volume_id: str, size_gb: int) -> None:
        path = self._volume_path(volume_id)
        try:
            current = await asyncio.to_thread(_virtual_size, path)
        except FileNotFoundError:
            raise NoSuchVolume(volume_id) from None
        if current == size_gb * GiB:
            return
        if current > size_gb * GiB:
            raise BackendError(f"volume {volume_id} is {_gib(current)} already: a volume only grows")
        await qemu_img.qemu_img("resize", "-q", "-f", "qcow2", str(path), f"{size_gb}G")
        self._sizes[path] = size_gb * GiB

    async def delete_volume(self, volume_id: str) -> None:
        await self._remove(self._volume_path(volume_id))

    # --- snapshots -------------------------------------------------------------------------

    async def create_snapshot(self, volume_id: str, snapshot_id: str, *, in_use: bool) -> None:
        path = self._snapshot_path(snapshot_id)
        if await asyncio.to_thread(path.is_file):
            return
        source = self._volume_path(volume_id)
        if not await asyncio.to_thread(source.is_file):
            raise NoSuchVolume(volume_id)
        await self._copy(source, path, None, force_share=in_use)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self._remove(self._snapshot_path(snapshot_id))

    # --- attachments -----------------------------------------------------------------------

    async def export(self, volume_id: str, attachment_id: str, initiator_host: str) -> Connection:
        """The file's path: this backend serves hypervisors on this machine only."""
        path = self._volume_path(volume_id)
        if not await asyncio.to_thread(path.is_file):
            raise NoSuchVolume(volume_id)
        return Connection(driver_volume_type="file", data={"path": str(path), "format": "qcow2"})

    async def unexport(self, volume_id: str, attachment_id: str) -> None:
        return None  # nothing was set up for a local file

    # --- files -----------------------------------------------------------------------------

    def _volume_path(self, volume_id: str) -> Path:
        if not _SAFE_ID.fullmatch(volume_id):
            raise BackendError(f"volume id {volume_id!r} cannot name a file")
        return self.volumes_dir / f"{volume_id}.qcow2"

    def _snapshot_path(self, snapshot_id: str) -> Path:
        if not _SAFE_ID.fullmatch(snapshot_id):
            raise BackendError(f"snapshot id {snapshot_id!r} cannot name a file")
        return self.snapshots_dir / f"{snapshot_id}.qcow2"

    async def _copy(
        self, source: Path, path: Path, size_gb: int | None, *, force_share: bool = False
    ) -> None:
        """`path`: the data of `source` (a qcow2 file of ours) on the same backing image, grown
        to `size_gb` (None: the source's size)."""
        info = await qemu_img.info(source, "qcow2", force_share=force_share)
        virtual = int(info["virtual-size"])
        if size_gb is not None and size_gb * GiB < virtual:
            raise BackendError(f"the source is {_gib(virtual)}: a copy of it needs at least that size")
        rebase = _backing_args(info)

        async def build(tmp: Path) -> None:
            await qemu_img.qemu_img(
                "convert", "-q", "-f", "qcow2", "-O", "qcow2", *(["-U"] if force_share else []), *rebase,
                str(source), str(tmp), timeout_s=qemu_img.COPY_TIMEOUT_S,
            )  # fmt: skip
            if size_gb is not None and size_gb * GiB > virtual:
                await qemu_img.qemu_img("resize", "-q", "-f", "qcow2", str(tmp), f"{size_gb}G")

        await self._make(path, build)

    async def _make(self, path: Path, build: Callable[[Path], Awaitable[object]]) -> None:
        """Build the file under a temporary name beside `path`, then make it durable and rename
        it into place; on any failure or cancellation, remove the temporary file."""
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp")
        try:
            await build(tmp)
            await finish_in_thread(_seal, tmp, path)
        except BaseException:
            await finish_in_thread(_unlink, tmp)
            raise
        self._sizes[path] = await asyncio.to_thread(_virtual_size, path)

    async def _remove(self, path: Path) -> None:
        await asyncio.to_thread(_unlink, path)
        self._sizes.pop(path, None)


async def _empty(size_gb: int, tmp: Path) -> None:
    await qemu_img.qemu_img("create", "-q", "-f", "qcow2", str(tmp), f"{size_gb}G")


async def _overlay(base: Path, fmt: str, size_gb: int, tmp: Path) -> None:
    """A copy-on-write overlay of the cached image: reads fall through to it until written."""
    await qemu_img.qemu_img(
        "create", "-q", "-f", "qcow2", "-b", str(base), "-F", fmt, str(tmp), f"{size_gb}G"
    )


def _remove_unexpected(directory: Path, expected: frozenset[str]) -> tuple[list[str], list[str]]:
    """(ids of the files removed, temporary files removed)."""
    removed: list[str] = []
    temporary: list[str] = []
    for path in directory.iterdir():
        if _TEMPORARY.fullmatch(path.name):
            path.unlink(missing_ok=True)
            temporary.append(path.name)
        elif path.suffix == ".qcow2" and path.stem not in expected:
            path.unlink(missing_ok=True)
            removed.append(path.stem)
    return removed, temporary


def _backing_args(info: dict[str, Any]) -> list[str]:
    """`-B <backing> -F <format>` for a copy that keeps the source's backing image, from the
    source's header (the format recorded when we made it, so never probed)."""
    backing = info.get("backing-filename")
    if not backing:
        return []
    fmt = info.get("backing-filename-format")
    if fmt not in BACKING_FORMATS:
        raise BackendError(f"the source's backing file has format {fmt!r}, not one this host accepts")
    return ["-B", str(backing), "-F", str(fmt)]


def _virtual_size(path: Path) -> int:
    """From the qcow2 header (big-endian size at byte 24), without a subprocess."""
    with path.open("rb") as f:
        header = f.read(32)
    if len(header) < 32 or header[:4] != _QCOW2_MAGIC:
        raise BackendError(f"{path.name} is not a qcow2 file")
    return int.from_bytes(header[24:32], "big")


async def _allocated(path: Path) -> int:
    return (await asyncio.to_thread(path.stat)).st_blocks * 512


def _seal(tmp: Path, path: Path) -> None:
    """Private to root until libvirt hands it to qemu (it relabels a disk when attaching it),
    flushed to disk, then under its final name."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _gib(size_bytes: int) -> str:
    return f"{size_bytes / GiB:g} GiB"


def _closed_to_others(path: Path) -> Path | None:
    """The first directory from / down to `path` that other users may not traverse, if any."""
    for directory in (*reversed(path.parents), path):
        if not directory.stat().st_mode & 0o001:
            return directory
    return None
