"""What compute keeps in memory from reads every create would otherwise repeat: entries that age
out after `ttl_s` and are forgotten at once when their owner announces a change. The
announcement makes a change visible within a broker hop; the age limit covers one that was lost.
"""

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """At most `max_entries` values, each for `ttl_s` after it was put; the oldest go first."""

    def __init__(
        self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._kept: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept[0] <= self.clock():
            del self._kept[key]
            return None
        return kept[1]

    def put(self, key: K, value: V) -> None:
        self._kept[key] = (self.clock() + self.ttl_s, value)
        self._kept.move_to_end(key)
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)

    def forget(self, match: Callable[[K], bool]) -> None:
        for key in [k for k in self._kept if match(k)]:
            del self._kept[key]

    def __len__(self) -> int:
        return len(self._kept)
