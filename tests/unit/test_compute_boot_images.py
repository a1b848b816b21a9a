"""Compute's kept images: a boot asks the image service once per image and viewer, forgets an
image when the image service says it changed, and never keeps what the viewer may not boot."""

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from actors.compute.boot_images import Images
from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.image import QUEUE, GetImage, ImageView


def image(image_id: str, **fields: Any) -> ImageView:
    base: dict[str, Any] = {
        "id": image_id, "name": image_id, "status": "active", "visibility": "private", "owner": "p1",
        "disk_format": "qcow2", "container_format": "bare", "size": 1024, "checksum": "c",
        "os_hash_algo": None, "os_hash_value": None, "min_disk": 0, "min_ram": 0, "protected": False,
        "os_hidden": False, "tags": (), "properties": {}, "created_at": 0.0, "updated_at": 0.0,
        "location": f"file:///blobs/{image_id}",
    }  # fmt: skip
    return ImageView(**(base | fields))


class ImageService:
    """The image queue's answers, from a dict; counts what it was asked."""

    def __init__(self) -> None:
        self.images: dict[str, ImageView] = {}
        self.asked: list[tuple[str, str | None]] = []

    async def handle(self, message: Any, ctx: Context) -> ImageView:
        assert isinstance(message, GetImage)
        self.asked.append((message.image_id, ctx.project_id))
        found = self.images.get(message.image_id)
        if found is None or (found.owner != ctx.project_id and not ctx.is_admin):
            raise NotFound("image", message.image_id)
        return found


def viewer(project: str, *roles: str) -> Context:
    return Context(request_id="req-1", user_id="u", project_id=project, roles=roles, deadline=time.time() + 5)


@pytest.fixture
async def service() -> AsyncIterator[tuple[ImageService, Bus]]:
    broker = MemoryBroker()
    server, client = Bus(broker.transport()), Bus(broker.transport())
    await server.start()
    await client.start()
    images = ImageService()
    await server.serve(QUEUE, images.handle)
    yield images, client
    await client.close(drain_s=0.5)
    await server.close(drain_s=0.5)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_an_image_is_asked_for_once_per_viewer(service: tuple[ImageService, Bus]) -> None:
    images, bus = service
    images.images["i1"] = image("i1")
    kept = Images(bus)
    assert (await kept.get("i1", "imageRef", viewer("p1"))).id == "i1"
    assert (await kept.get("i1", "imageRef", viewer("p1"))).id == "i1"
    assert images.asked == [("i1", "p1")]
    # Another project's view is its own question, and the answer may differ.
    with pytest.raises(Invalid) as refused:
        await kept.get("i1", "imageRef", viewer("p2"))
    assert refused.value.field == "imageRef" and "could not be found" in refused.value.reason
    # An admin of the same project is another viewer too (the service's answer depends on it).
    await kept.get("i1", "imageRef", viewer("p1", "admin"))
    assert images.asked == [("i1", "p1"), ("i1", "p2"), ("i1", "p1")]


async def test_a_refusal_is_never_kept(service: tuple[ImageService, Bus]) -> None:
    images, bus = service
    kept = Images(bus)
    with pytest.raises(Invalid):
        await kept.get("i1", "imageRef", viewer("p1"))
    images.images["i1"] = image("i1")  # uploaded since
    assert (await kept.get("i1", "imageRef", viewer("p1"))).id == "i1"


async def test_an_image_that_is_not_active_is_asked_for_again(service: tuple[ImageService, Bus]) -> None:
    images, bus = service
    images.images["i1"] = image("i1", status="saving", location=None)
    kept = Images(bus)
    assert (await kept.get("i1", "imageRef", viewer("p1"))).status == "saving"
    images.images["i1"] = image("i1")
    assert (await kept.get("i1", "imageRef", viewer("p1"))).status == "active"
    assert len(images.asked) == 2


async def test_a_changed_image_is_forgotten_by_every_viewer(service: tuple[ImageService, Bus]) -> None:
    images, bus = service
    images.images["i1"] = image("i1")
    kept = Images(bus)
    await kept.get("i1", "imageRef", viewer("p1"))
    await kept.get("i1", "imageRef", viewer("p1", "admin"))
    images.images["i1"] = replace(images.images["i1"], min_ram=2048)
    kept.forget("i1")
    assert (await kept.get("i1", "imageRef", viewer("p1"))).min_ram == 2048
    assert (await kept.get("i1", "imageRef", viewer("p1", "admin"))).min_ram == 2048
    assert len(images.asked) == 4


async def test_kept_images_age_out_and_the_oldest_go_first(service: tuple[ImageService, Bus]) -> None:
    images, bus = service
    for name in ("i1", "i2", "i3"):
        images.images[name] = image(name)
    clock = Clock()
    kept = Images(bus, ttl_s=30, max_entries=2, clock=clock)
    await kept.get("i1", "imageRef", viewer("p1"))
    clock.now += 31
    await kept.get("i1", "imageRef", viewer("p1"))  # aged out: asked again
    await kept.get("i2", "imageRef", viewer("p1"))
    await kept.get("i3", "imageRef", viewer("p1"))  # i1 is the oldest of three: it goes
    await kept.get("i3", "imageRef", viewer("p1"))
    await kept.get("i1", "imageRef", viewer("p1"))
    assert [i for i, _ in images.asked] == ["i1", "i1", "i2", "i3", "i1"]


async def test_a_kernel_boot_takes_its_parts_through_the_same_images(
    service: tuple[ImageService, Bus],
) -> None:
    images, bus = service
    images.images["k"] = image("k", disk_format="aki")
    kept = Images(bus)
    parts = await kept.kernel_boot({"kernel_id": "k"}, "imageRef", viewer("p1"))
    assert parts["kernel"]["image_id"] == "k" and parts["ramdisk"] is None
    assert parts["cmdline"] == "console=ttyS0"
    with pytest.raises(Invalid) as missing:
        await kept.kernel_boot({"ramdisk_id": "nope"}, "imageRef", viewer("p1"))
    assert missing.value.field == "imageRef.ramdisk_id"
