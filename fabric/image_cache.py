"""The per-host image cache: each image's bytes copied once from the blob store to a local file.

Shared by the agents that need images on their host: guests' root disks (compute agent) and
volumes made from images (volume agent, `file` backend) are copy-on-write overlays of these
files, and kernels boot from them, so a file here is never written again once in place, and many
disks share it. A copy is streamed
(an image is never held whole in memory), checked against the md5 the image service recorded,
written under a temporary name and renamed into place only when complete and verified: a file
named after an image id is always that image, whole. Concurrent fetches of one image in this
process wait for the one download; a second agent process on the same host (there should be
none) would at worst download the same bytes again, and the rename keeps that harmless.
"""

import asyncio
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO

from fabric.blobs import BlobStore
from fabric.threads import finish_in_thread
from protocol.errors import Invalid
from protocol.storage import ImageFile

#: Image ids become file names: no separators, no leading dot (Glance's are UUIDs).
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class ImageUnavailable(Exception):
    """The image cannot be made local (missing from the store, not matching its checksum, a bad
    id); `reason` is for the user, and each agent turns it into its own failure (a spawn fault,
    a volume's error reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageCache:
    """Local copies of images under `root`, named by image id."""

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self.root = root
        self.blobs = blobs
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, image_id: str) -> Path:
        if not _SAFE_ID.fullmatch(image_id):
            raise ImageUnavailable(f"image id {image_id!r} is not a valid image id")
        return self.root / image_id

    async def fetch(self, image: ImageFile) -> Path:
        """The local file of `image`, copied from the blob store first if it is not here yet.
        Raises `ImageUnavailable` when the data is missing or does not match its checksum or size."""
        path = self.path(image.image_id)
        lock = self._locks.setdefault(image.image_id, asyncio.Lock())
        async with lock:
            if await asyncio.to_thread(path.is_file):
                return path
            await self._download(image, path)
            return path

    async def remove_partial_downloads(self) -> list[Path]:
        """Remove what downloads cut short by a crash left (a cancelled one removes its own);
        call it before any fetch starts. Returns what was removed."""
        return await asyncio.to_thread(_remove_partials, self.root)

    async def _download(self, image: ImageFile, path: Path) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            f = await finish_in_thread(_create, partial)
            try:
                await self._copy(image, f)
            finally:
                f.close()
        except BaseException:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise
        await asyncio.to_thread(os.replace, partial, path)

    async def _copy(self, image: ImageFile, f: BinaryIO) -> None:
        """Stream the image's blob into `f`, then check it is the image's data."""
        md5, size = hashlib.md5(usedforsecurity=False), 0
        try:
            async for chunk in self.blobs.read(image.location):
                md5.update(chunk)
                size += len(chunk)
                await finish_in_thread(f.write, chunk)
        except (FileNotFoundError, Invalid) as exc:
            raise ImageUnavailable(
                f"image {image.image_id}: its data is missing from the image store"
            ) from exc
        if size != image.size or md5.hexdigest() != image.checksum:
            raise ImageUnavailable(
                f"image {image.image_id}: the stored data does not match its checksum "
                f"({size} bytes, md5 {md5.hexdigest()}; "
                f"expected {image.size} bytes, md5 {image.checksum})"
            )
        await finish_in_thread(_flush_readable, f)


def _create(path: Path) -> BinaryIO:
    return path.open("xb")


def _flush_readable(f: BinaryIO) -> None:
    # Readable by all: qemu runs as its own user (libvirt-qemu) and opens these files, read-only,
    # as backing files and kernels.
    f.flush()
    os.fchmod(f.fileno(), 0o644)
    os.fsync(f.fileno())


def _remove_partials(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    removed = []
    for path in root.glob(".*.partial"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
