"""What compute and volume agents both take: an image in the blob store, and how a hypervisor
reaches a volume."""

from dataclasses import dataclass
from typing import Annotated

from protocol.codec import MaxLen, MinLen, Range


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageFile:
    image_id: Annotated[str, MinLen(1), MaxLen(64)]
    location: Annotated[str, MinLen(1), MaxLen(1024)]
    checksum: Annotated[str, MaxLen(64)]
    size: Annotated[int, Range(0, 2**62)]
    disk_format: Annotated[str, MaxLen(32)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """How a hypervisor reaches a volume (Cinder's `connection_info`).

    `driver_volume_type` "file": `data` has `path` (an absolute path on the storage host, which
    for now is the compute host too) and `format` ("qcow2" or "raw")."""

    driver_volume_type: Annotated[str, MinLen(1), MaxLen(32)]
    data: Annotated[dict[str, Annotated[str, MaxLen(4096)]], MaxLen(32)]


MESSAGES = (ImageFile, Connection)
