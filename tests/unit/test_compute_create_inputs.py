"""What compute keeps for creates: flavors per viewer and limits per project, aged out and
forgotten on a change (`actors/compute/create_inputs.py`, over `actors/compute/kept.py`)."""

import time

from actors.compute.create_inputs import CreateInputs
from actors.compute.kept import Kept
from protocol.compute import FlavorView
from protocol.envelope import Context

LIMITS = {"instances": 10, "cores": 20, "ram": 51200, "metadata_items": 128}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flavor(flavor_id: str = "1") -> FlavorView:
    return FlavorView(
        id=flavor_id, name=f"f{flavor_id}", vcpus=1, ram=512, disk=1, swap=0, ephemeral=0,
        is_public=False, rxtx_factor=1.0, disabled=False, description=None,
    )  # fmt: skip


def viewer(project: str, *roles: str) -> Context:
    return Context(request_id="req-1", user_id="u", project_id=project, roles=roles, deadline=time.time() + 5)


def test_values_age_out_and_the_oldest_go_first() -> None:
    clock = Clock()
    kept: Kept[str, int] = Kept(ttl_s=30, max_entries=2, clock=clock)
    kept.put("a", 1)
    kept.put("b", 2)
    clock.now += 29
    assert kept.get("a") == 1
    kept.put("c", 3)  # "a" is the oldest put
    assert kept.get("a") is None and kept.get("b") == 2 and kept.get("c") == 3
    clock.now += 2
    assert kept.get("b") is None and kept.get("c") == 3 and len(kept) == 1
    kept.forget(lambda key: key == "c")
    assert kept.get("c") is None


def test_a_create_reads_unless_both_flavor_and_limits_are_kept() -> None:
    inputs = CreateInputs()
    assert inputs.get("1", viewer("p1", "member")) is None
    inputs.keep(viewer("p1", "member"), flavor(), LIMITS)
    assert inputs.get("1", viewer("p1", "member")) == (flavor(), LIMITS)
    # Another project may not be given this private flavor; an admin sees every flavor.
    assert inputs.get("1", viewer("p2", "member")) is None
    assert inputs.get("1", viewer("p1", "admin")) is None
    inputs.keep(viewer("p1", "member"), flavor("2"), LIMITS)
    inputs.forget_limits("p1")
    assert inputs.get("1", viewer("p1", "member")) is None
    assert inputs.get("2", viewer("p1", "member")) is None


def test_a_changed_flavor_is_forgotten_for_every_viewer_and_only_it() -> None:
    inputs = CreateInputs()
    for project in ("p1", "p2"):
        inputs.keep(viewer(project, "member"), flavor("1"), LIMITS)
        inputs.keep(viewer(project, "member"), flavor("2"), LIMITS)
    inputs.forget_flavor("1")
    assert inputs.get("1", viewer("p1", "member")) is None
    assert inputs.get("1", viewer("p2", "member")) is None
    assert inputs.get("2", viewer("p2", "member")) == (flavor("2"), LIMITS)


def test_limits_age_out() -> None:
    clock = Clock()
    inputs = CreateInputs(ttl_s=30, clock=clock)
    inputs.keep(viewer("p1", "member"), flavor(), LIMITS)
    clock.now += 31
    assert inputs.get("1", viewer("p1", "member")) is None
