"""An exact latency record: every sample kept, in whole microseconds.

A benchmark's tail is the figure people quote and the one an approximate histogram gets wrong,
so nothing here is bucketed or sampled: each latency is stored as an integer number of
microseconds (8 bytes; a million operations cost 8 MB), and percentiles are read from the
sorted record by nearest rank, so `p99` is a latency some request really had.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

#: The percentiles every report carries, by their name in the report.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50_ms", 50.0),
    ("p90_ms", 90.0),
    ("p99_ms", 99.0),
    ("p999_ms", 99.9),
)


@dataclass
class Record:
    """Latencies of successful operations, and failures counted by kind."""

    latencies_us: array[int] = field(default_factory=lambda: array("q"))
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, latency_s: float) -> None:
        self.latencies_us.append(round(latency_s * 1_000_000))

    def fail(self, kind: str) -> None:
        self.errors[kind] += 1

    def merge(self, other: Record) -> None:
        self.latencies_us.extend(other.latencies_us)
        self.errors.update(other.errors)

    @property
    def ops(self) -> int:
        return len(self.latencies_us)

    def summary(self) -> dict[str, float]:
        """Percentiles, min, mean and max in milliseconds (0.0 for an empty record)."""
        ordered = sorted(self.latencies_us)
        out = {name: _ms(nearest_rank(ordered, q)) for name, q in PERCENTILES}
        out["min_ms"] = _ms(ordered[0] if ordered else 0)
        out["max_ms"] = _ms(ordered[-1] if ordered else 0)
        out["mean_ms"] = round(sum(ordered) / len(ordered) / 1000, 3) if ordered else 0.0
        return out


def nearest_rank(ordered: list[int], q: float) -> int:
    """The q-th percentile of sorted samples by nearest rank: the smallest sample such that at
    least q% of all samples are no larger. 0 for no samples."""
    if not ordered:
        return 0
    # In whole tenths of a percent and integers, so that float rounding never moves a rank
    # (99.9 / 100 * 1000 is 999.0000000000001, whose ceiling would be the maximum).
    permille = round(q * 10)
    rank = max(1, -(-permille * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(us: int) -> float:
    return round(us / 1000, 3)
