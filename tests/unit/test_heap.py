"""`heap.settle`: what a started process holds leaves the collector's sight; cycles still go."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from fabric import heap


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.me = self


def test_settle_freezes_what_is_held_and_collects_young_objects_less_often(restored: None) -> None:
    held = [Node() for _ in range(100)]
    heap.settle()
    assert gc.get_freeze_count() >= len(held)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, heap.OLDER_THRESHOLD, heap.OLDER_THRESHOLD)


def test_garbage_left_by_starting_is_collected_not_frozen(restored: None) -> None:
    dropped = Node()
    gone = weakref.ref(dropped)
    del dropped
    heap.settle()
    assert gone() is None


def test_cycles_made_after_settling_are_still_collected(restored: None) -> None:
    heap.settle()
    cycle = Node()
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None
