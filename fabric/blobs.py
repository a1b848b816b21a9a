"""Where image bytes live: a driver interface and the filesystem driver (the default).

The gateway streams uploads into a store chunk by chunk, hashing as it goes, so an image is
never held whole in memory, and a quota is enforced on the bytes as they arrive rather than
after. A blob is written under a temporary name and renamed into place only when complete,
so a reader never sees half an image and a failed upload leaves nothing behind.
"""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from protocol.errors import Invalid, QuotaExceeded

CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Stored:
    size: int
    md5: str
    sha512: str


class BlobStore(Protocol):
    async def write(self, location: str, chunks: AsyncIterable[bytes], max_bytes: int) -> Stored: ...

    def read(self, location: str) -> AsyncIterator[bytes]: ...

    async def delete(self, location: str) -> None: ...


class FilesystemStore:
    """Blobs as files under one directory; file I/O runs in threads, off the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, location: str) -> Path:
        if not location or "/" in location or location.startswith("."):
            raise Invalid("location", "not a blob name")
        return self.root / location

    async def write(self, location: str, chunks: AsyncIterable[bytes], max_bytes: int) -> Stored:
        path = self._path(location)
        partial = path.with_name(f".{location}.partial")
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        md5, sha512, size = hashlib.md5(usedforsecurity=False), hashlib.sha512(), 0
        f = await asyncio.to_thread(open, partial, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise QuotaExceeded("image storage (bytes)", str(max_bytes))
                md5.update(chunk)
                sha512.update(chunk)
                await asyncio.to_thread(f.write, chunk)
            await asyncio.to_thread(_flush, f)
        except BaseException:
            f.close()
            partial.unlink(missing_ok=True)
            raise
        f.close()
        await asyncio.to_thread(os.replace, partial, path)
        return Stored(size, md5.hexdigest(), sha512.hexdigest())

    async def read(self, location: str) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, self._path(location), "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
                yield chunk
        finally:
            f.close()

    async def delete(self, location: str) -> None:
        await asyncio.to_thread(self._path(location).unlink, missing_ok=True)


def _flush(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())
