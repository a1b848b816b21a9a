"""Garbage collection for a long-running server process.

CPython's full collection walks every object the process holds. A started fabric holds
hundreds of thousands that live as long as it does (modules, the bus's codecs, templates,
caches), and under the dashboard's load a full collection ran every second or so, a 50 ms pause
each time and the p99 of every request (`bench dashboard`: p99 100 ms at p90 53 ms). Once a
process has started, what it holds is there to stay: `settle` takes those objects out of the
collector's sight, and young collections run every 10,000 allocations instead of every 700, so
a request's short-lived objects mostly die before the collector promotes them. Cycles are still
collected, only less often.
"""

import gc

#: Net allocations between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000
#: Young collections between middle ones, and middle ones between full ones (defaults: 10, 10).
OLDER_THRESHOLD = 20


def settle() -> None:
    """Call once the process has started: collect what starting left behind, then freeze the
    rest out of every later collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
