"""What a spawn takes from images: the root image's file, and for a direct kernel boot the
kernel and ramdisk images with the command line (Glance's `kernel_id`, `ramdisk_id`,
`os_command_line` properties, read from the image or, booting from a volume, from the volume's
`volume_image_metadata`)."""

from typing import Any

from fabric.bus import Bus
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.image import QUEUE as IMAGE
from protocol.image import GetImage, ImageView


async def get_image(bus: Bus, image_id: str, field: str, ctx: Context) -> ImageView:
    """The image as the caller sees it; one they cannot see is a 400 naming `field`."""
    try:
        image: ImageView = await bus.call(IMAGE, GetImage(image_id=image_id), ctx)
    except NotFound:
        raise Invalid(field, f"image {image_id} could not be found") from None
    return image


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


async def kernel_boot(bus: Bus, properties: dict[str, str], field: str, ctx: Context) -> dict[str, Any]:
    """`kernel`, `ramdisk` (ImageFile facts or None) and `cmdline` (None without a kernel; the
    driver adds the guest's hostname to it)."""
    parts: dict[str, Any] = {"kernel": None, "ramdisk": None, "cmdline": None}
    for prop in ("kernel_id", "ramdisk_id"):
        ref = properties.get(prop)
        if ref:
            part = await get_image(bus, ref, f"{field}.{prop}", ctx)
            parts[prop.removesuffix("_id")] = image_file(part, f"{field}.{prop}")
    if parts["kernel"] is not None:
        parts["cmdline"] = properties.get("os_command_line", "console=ttyS0")
    return parts
