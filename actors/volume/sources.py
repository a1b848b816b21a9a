"""What a new volume takes from an image: its file for the agent, the size it needs, and the
metadata that boot from volume reads in place of the image (Cinder's `volume_image_metadata`).
Pure."""

import math

from protocol.errors import Invalid
from protocol.image import ImageView
from protocol.storage import ImageFile

GIB = 1024**3

#: The image's own fields kept in a volume's image metadata, under Cinder's names.
IMAGE_FIELDS = ("disk_format", "container_format", "size", "min_disk", "min_ram", "checksum")


def image_file(image: ImageView) -> ImageFile:
    """Only an active image has data to copy; anything else is the caller's bad `imageRef`."""
    if image.status != "active" or image.location is None:
        raise Invalid("imageRef", f"image {image.id} is not active (it is {image.status})")
    return ImageFile(
        image_id=image.id,
        location=image.location,
        checksum=image.checksum or "",
        size=image.size or 0,
        disk_format=image.disk_format or "raw",
    )


def size_for_image(image: ImageView, size_gb: int | None) -> int:
    """The volume's size: as asked, which must hold the image's data and its `min_disk`; not
    asked: the least that does (at least 1 GiB)."""
    need = max(1, math.ceil((image.size or 0) / GIB), image.min_disk)
    if size_gb is None:
        return need
    if size_gb * GIB < (image.size or 0):
        raise Invalid("size", f"{size_gb} GiB is smaller than image {image.id} ({image.size} bytes)")
    if size_gb < image.min_disk:
        raise Invalid(
            "size", f"{size_gb} GiB is smaller than image {image.id}'s min_disk ({image.min_disk} GiB)"
        )
    return size_gb


def image_metadata(image: ImageView) -> dict[str, str]:
    """Every property of the image (kernel_id, ramdisk_id, os_command_line...) and its own
    fields, as strings: what a server booting from the volume uses in place of the image."""
    fields: dict[str, object] = {
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "size": image.size,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "checksum": image.checksum,
    }
    shown = {k: str(v) for k, v in fields.items() if v is not None}
    return {**image.properties, **shown, "image_id": image.id, "image_name": image.name or ""}
