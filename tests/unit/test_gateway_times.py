"""Times as the OpenStack APIs print them (`fabric/gateway/times.py`)."""

from fabric.gateway import times

NOON = 1795694520.25  # 2026-11-26T12:02:00.25Z


def test_glance_and_neutron_print_seconds_with_a_zone() -> None:
    assert times.seconds(NOON) == "2026-11-26T12:02:00Z"
    assert times.seconds(0) == "1970-01-01T00:00:00Z"


def test_nova_cinder_and_designate_print_microseconds_without_a_zone() -> None:
    assert times.micros(NOON) == "2026-11-26T12:02:00.250000"
    assert times.micros(1795694520.0) == "2026-11-26T12:02:00.000000"
    assert times.micros_or_none(None) is None
    assert times.micros_or_none(NOON) == "2026-11-26T12:02:00.250000"
