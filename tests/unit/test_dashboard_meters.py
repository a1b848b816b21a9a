"""The fleet's bars: the markup `live.js` updates in place, with the host's name escaped."""

from typing import Any

from fabric.dashboard.meters import host_bars, level


def host(name: str = "h1", **figures: int) -> dict[str, Any]:
    base = {
        "vcpus_used": 1,
        "vcpus": 4,
        "memory_mb_used": 0,
        "memory_mb": 0,
        "local_gb_used": 6,
        "local_gb": 8,
    }
    return {"hypervisor_hostname": name, **base, **figures}


def test_a_bar_carries_its_figures_for_screen_readers_and_the_live_script() -> None:
    html = str(host_bars(host())[2])
    assert 'class="bar high"' in html and 'role="meter" aria-label="disk of h1"' in html
    assert 'aria-valuenow="6"' in html and 'aria-valuemax="8"' in html
    assert 'aria-valuetext="6 of 8 GB"' in html and 'style="width: 75%"' in html
    assert '<span class="figure">6 / 8 GB</span>' in html


def test_a_bar_without_a_unit_has_no_trailing_space() -> None:
    vcpus = str(host_bars(host())[0])
    assert 'aria-valuetext="1 of 4"' in vcpus and 'aria-label="vCPUs of h1"' in vcpus


def test_a_host_with_nothing_to_give_is_an_empty_bar_not_a_division_by_zero() -> None:
    ram = str(host_bars(host())[1])
    assert 'style="width: 0%"' in ram and 'class="bar ok"' in ram and 'aria-label="RAM of h1"' in ram


def test_a_host_name_is_escaped_in_every_bar() -> None:
    for html in map(str, host_bars(host('<script>"x"</script>'))):
        assert "<script>" not in html and "&lt;script&gt;" in html and "&#34;x&#34;" in html


def test_levels_turn_at_70_and_90_percent() -> None:
    shares = (0.0, 0.69, 0.7, 0.89, 0.9, 1.0)
    assert [level(s) for s in shares] == ["ok", "ok", "high", "high", "full", "full"]
