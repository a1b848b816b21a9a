"""What a spawn takes from images: the root image's file, and for a direct kernel boot the
kernel and ramdisk images with the command line (Glance's `kernel_id`, `ramdisk_id`,
`os_command_line` properties, read from the image or, booting from a volume, from the volume's
`volume_image_metadata`).

A boot asks the image service for its image: one bus round trip in every create, the largest
part of a create's answer under load (34 of ~120 ms at 64 in flight). `Images` keeps what it
was told for a while, per image and per viewer (the project, and whether an admin asked, which
is all the image service's visibility depends on), and forgets an image the moment the image
service announces a change to it (`ImageChanged`); only active images are kept, so an upload
finishing or a share being added is seen at once. An announcement lost on the way is covered
by the entries' age limit.
"""

import time
from collections.abc import Callable
from typing import Any

from actors.compute.kept import Kept
from fabric.bus import Bus
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.image import QUEUE as IMAGE
from protocol.image import GetImage, ImageView

#: How long an image is kept without being asked for again.
TTL_S = 30.0
#: How many (image, viewer) entries are kept; the oldest go first.
MAX_ENTRIES = 4096


class Images:
    """The images boots take, as each viewer sees them, kept for TTL_S (see the module's text)."""

    def __init__(
        self, bus: Bus, *, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.bus = bus
        self._kept: Kept[tuple[str, str | None, bool], ImageView] = Kept(
            ttl_s=ttl_s, max_entries=max_entries, clock=clock
        )

    async def get(self, image_id: str, field: str, ctx: Context) -> ImageView:
        """The image as the caller sees it; one they cannot see is a 400 naming `field`."""
        key = (image_id, ctx.project_id, ctx.is_admin)
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        try:
            image: ImageView = await self.bus.call(IMAGE, GetImage(image_id=image_id), ctx)
        except NotFound:
            raise Invalid(field, f"image {image_id} could not be found") from None
        if image.status == "active":
            self._kept.put(key, image)
        return image

    def forget(self, image_id: str) -> None:
        """The image changed: every viewer asks again."""
        self._kept.forget(lambda key: key[0] == image_id)

    async def kernel_boot(self, properties: dict[str, str], field: str, ctx: Context) -> dict[str, Any]:
        """`kernel`, `ramdisk` (ImageFile facts or None) and `cmdline` (None without a kernel;
        the driver adds the guest's hostname to it)."""
        parts: dict[str, Any] = {"kernel": None, "ramdisk": None, "cmdline": None}
        for prop in ("kernel_id", "ramdisk_id"):
            ref = properties.get(prop)
            if ref:
                part = await self.get(ref, f"{field}.{prop}", ctx)
                parts[prop.removesuffix("_id")] = image_file(part, f"{field}.{prop}")
        if parts["kernel"] is not None:
            parts["cmdline"] = properties.get("os_command_line", "console=ttyS0")
        return parts


def image_file(image: ImageView, field: str) -> dict[str, Any]:
    """The agent's `ImageFile` of an active image, as stored in the server's spawn facts."""
    if image.status != "active" or image.location is None:
        raise Invalid(field, f"image {image.id} is not active (it is {image.status})")
    return {
        "image_id": image.id,
        "location": image.location,
        "checksum": image.checksum or "",
        "size": image.size or 0,
        "disk_format": image.disk_format or "raw",
    }
