"""Times as the OpenStack APIs print them, in UTC: Glance and Neutron to the second with a `Z`,
Nova's usage times, Cinder and Designate to the microsecond with no zone (Keystone adds a `Z`).
A listed server or volume carries several, so these are on every list's path."""

import time
from datetime import UTC, datetime


def seconds(ts: float) -> str:
    """`2026-11-26T18:02:00Z`"""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def micros(ts: float) -> str:
    """`2026-11-26T18:02:00.123456`"""
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat("T", "microseconds")


def micros_or_none(ts: float | None) -> str | None:
    return None if ts is None else micros(ts)
