"""The volume service's pure parts: its sagas' moves, where a new volume goes, and what a volume
takes from an image."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.volume import sources, states
from actors.volume.hosts import HostView
from protocol.errors import Invalid
from protocol.image import ImageView
from protocol.volume import TRANSITIONAL
from protocol.volume_agent import VolumeHostReport

S = states.Status
STEPS = sorted(states.MOVES)
GIB = 1024**3


def test_the_transitional_statuses_are_the_protocols() -> None:
    assert set(states.TRANSITIONAL) == set(TRANSITIONAL)
    assert set(states.DEADLINE) == set(TRANSITIONAL)  # each one has an end


@given(st.lists(st.sampled_from(STEPS), max_size=40))
def test_a_volume_is_attached_only_through_attaching(steps: list[str]) -> None:
    status = S.CREATING
    for step in steps:
        new = states.move(status, step)
        if new == S.IN_USE and status != S.DETACHING:
            assert status == S.ATTACHING
        if new == S.DELETING:
            assert status in states.DELETABLE and status not in (S.IN_USE, S.ATTACHING, S.DETACHING)
        status = new or status


@given(st.sampled_from(STEPS))
def test_replaying_a_step_moves_nothing(step: str) -> None:
    """The same message twice: the second finds the volume where the first left it."""
    sources_, target = states.MOVES[step]
    for status in sources_:
        assert states.move(status, step) == target
        assert target in sources_ or states.move(target, step) is None


def test_every_deadline_leaves_the_transitional_statuses() -> None:
    for status, (step, _) in states.DEADLINE.items():
        new = states.move(status, step)
        assert new is not None and new not in TRANSITIONAL
    assert states.move(S.ATTACHING, states.DEADLINE[S.ATTACHING][0]) == S.AVAILABLE
    assert states.move(S.DETACHING, states.DEADLINE[S.DETACHING][0]) == S.IN_USE
    # An attach that completed meanwhile is not undone by the deadline.
    assert states.move(S.IN_USE, states.DEADLINE[S.ATTACHING][0]) is None
    for status, (step, _) in states.SNAPSHOT_DEADLINE.items():
        assert states.snapshot_move(status, step) not in states.SNAPSHOT_TRANSITIONAL


def test_an_attached_or_busy_volume_cannot_be_deleted() -> None:
    for status in (S.IN_USE, S.ATTACHING, S.DETACHING, S.CREATING, S.EXTENDING):
        assert states.move(status, "delete") is None
    for status in (S.AVAILABLE, S.ERROR, S.ERROR_EXTENDING, S.ERROR_DELETING):
        assert states.move(status, "delete") == S.DELETING


def test_failures_name_their_error_status() -> None:
    assert states.move(S.CREATING, states.FAILED_OPERATION["create"]) == S.ERROR
    assert states.move(S.EXTENDING, states.FAILED_OPERATION["resize"]) == S.ERROR_EXTENDING
    assert states.move(S.DELETING, states.FAILED_OPERATION["delete"]) == S.ERROR_DELETING
    # A late failure report changes nothing that moved on.
    assert states.move(S.AVAILABLE, states.FAILED_OPERATION["create"]) is None


# --- placement ---------------------------------------------------------------------------------


def report(host: str, *, backend: str = "file", zone: str = "nova", free_gb: int = 100) -> VolumeHostReport:
    return VolumeHostReport(
        host=host,
        backend=backend,
        queue=f"volume.{host}",
        total_gb=1000,
        free_gb=free_gb,
        availability_zone=zone,
        reported_at=0.0,
    )


def test_the_host_with_the_most_room_of_the_backend_and_zone_wins() -> None:
    view = HostView(ttl_s=30, over_subscription_ratio=1.0)
    view.heard(report("a", free_gb=50), now=0)
    view.heard(report("b", free_gb=80), now=0)
    view.heard(report("c", free_gb=500, backend="fake"), now=0)
    view.heard(report("d", free_gb=900, zone="other"), now=0)
    assert view.pick(10, backend="file", zone="nova", now=1).name == "b"  # type: ignore[union-attr]
    assert view.pick(10, backend=None, zone="nova", now=1).name == "c"  # type: ignore[union-attr]
    assert view.pick(10, backend=None, zone=None, now=1).name == "d"  # type: ignore[union-attr]
    assert view.pick(10, backend="lvm", zone=None, now=1) is None
    assert view.pick(81, backend="file", zone="nova", now=1) is None  # too large for either


def test_a_silent_host_drops_out_and_a_report_brings_it_back() -> None:
    view = HostView(ttl_s=30, over_subscription_ratio=1.0)
    view.heard(report("a"), now=0)
    assert view.pick(1, backend=None, zone=None, now=31) is None
    assert view.zones() == {"nova"}  # still a known zone, for checking a requested one
    view.heard(report("a"), now=31)
    assert view.pick(1, backend=None, zone=None, now=32) is not None


def test_placements_spread_until_the_next_report() -> None:
    view = HostView(ttl_s=30, over_subscription_ratio=2.0)
    view.heard(report("a", free_gb=10), now=0)
    view.heard(report("b", free_gb=10), now=0)
    picked = []
    for _ in range(4):
        host = view.pick(10, backend=None, zone=None, now=1)
        assert host is not None
        view.place(host, 10)
        picked.append(host.name)
    assert sorted(picked) == ["a", "a", "b", "b"]  # 10 GiB free, thin x2: two each
    assert view.pick(10, backend=None, zone=None, now=1) is None
    view.unplace("a", 10)
    assert view.pick(10, backend=None, zone=None, now=1).name == "a"  # type: ignore[union-attr]
    view.heard(report("b", free_gb=10), now=2)  # a report starts the count again
    assert view.pick(10, backend=None, zone=None, now=2).name == "b"  # type: ignore[union-attr]


# --- images ------------------------------------------------------------------------------------


def image(**fields: object) -> ImageView:
    base: dict[str, object] = {
        "id": "img-1",
        "name": "guest",
        "status": "active",
        "visibility": "public",
        "owner": "p",
        "disk_format": "qcow2",
        "container_format": "bare",
        "size": 3 * GIB // 2,
        "checksum": "abc",
        "os_hash_algo": None,
        "os_hash_value": None,
        "min_disk": 0,
        "min_ram": 128,
        "protected": False,
        "os_hidden": False,
        "tags": (),
        "properties": {"kernel_id": "k", "ramdisk_id": "r", "os_command_line": "console=ttyS0"},
        "created_at": 0.0,
        "updated_at": 0.0,
        "location": "file:///blobs/img-1",
    }
    return ImageView(**(base | fields))  # type: ignore[arg-type]


def test_a_volume_from_an_image_holds_it() -> None:
    assert sources.size_for_image(image(), None) == 2
    assert sources.size_for_image(image(min_disk=5), None) == 5
    assert sources.size_for_image(image(size=0), None) == 1
    assert sources.size_for_image(image(), 2) == 2
    with pytest.raises(Invalid) as err:
        sources.size_for_image(image(), 1)
    assert err.value.field == "size"
    with pytest.raises(Invalid):
        sources.size_for_image(image(min_disk=4), 3)


def test_only_an_active_image_is_a_source() -> None:
    assert sources.image_file(image()).location == "file:///blobs/img-1"
    with pytest.raises(Invalid) as err:
        sources.image_file(image(status="queued", location=None))
    assert err.value.field == "imageRef"


def test_the_image_metadata_is_what_boot_from_volume_needs() -> None:
    meta = sources.image_metadata(image())
    assert meta == {
        "image_id": "img-1",
        "image_name": "guest",
        "disk_format": "qcow2",
        "container_format": "bare",
        "size": str(3 * GIB // 2),
        "min_disk": "0",
        "min_ram": "128",
        "checksum": "abc",
        "kernel_id": "k",
        "ramdisk_id": "r",
        "os_command_line": "console=ttyS0",
    }
