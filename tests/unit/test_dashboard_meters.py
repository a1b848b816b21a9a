"""The fleet's bars: the markup `live.js` updates in place, with the host's name escaped."""

from fabric.dashboard.meters import bar, level


def test_a_bar_carries_its_figures_for_screen_readers_and_the_live_script() -> None:
    html = str(bar(6, 8, "GB", "disk of h1"))
    assert 'class="bar high"' in html and 'role="meter"' in html
    assert 'aria-valuenow="6"' in html and 'aria-valuemax="8"' in html
    assert 'aria-valuetext="6 of 8 GB"' in html and 'style="width: 75%"' in html
    assert '<span class="figure">6 / 8 GB</span>' in html


def test_a_bar_without_a_unit_has_no_trailing_space() -> None:
    assert 'aria-valuetext="1 of 4"' in str(bar(1, 4, "", "vCPUs of h1"))


def test_a_host_with_nothing_to_give_is_an_empty_bar_not_a_division_by_zero() -> None:
    html = str(bar(0, 0, "MB", "RAM of h1"))
    assert 'style="width: 0%"' in html and 'class="bar ok"' in html


def test_a_host_name_is_escaped() -> None:
    html = str(bar(1, 2, "MB", 'RAM of <script>"x"</script>'))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&#34;x&#34;" in html


def test_levels_turn_at_70_and_90_percent() -> None:
    shares = (0.0, 0.69, 0.7, 0.89, 0.9, 1.0)
    assert [level(s) for s in shares] == ["ok", "ok", "high", "high", "full", "full"]
