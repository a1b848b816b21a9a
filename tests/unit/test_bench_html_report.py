"""`bench.html_report`: one self-contained page, a plot per figure, and nothing from the result
taken as markup."""

import itertools
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bench import html_report

EVIL = "<script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}
SVG_LEAVES = {"line", "polyline", "rect", "circle", "path"}  # written self-closed


def full_result(**overrides: Any) -> dict[str, Any]:
    timeline = [{"t": t, "done": 10 + t % 7, "errors": t % 3 == 0} for t in range(12)]
    for entry in timeline:
        entry["errors"] = int(entry["errors"])
    result: dict[str, Any] = {
        "bench": "run",
        "scenario": "boot-and-delete",
        "target": "own",
        "mode": "closed",
        "concurrency": 16,
        "rate": None,
        "iterations": 200,
        "duration_s": None,
        "hosts": 100,
        "seed": 1,
        "started_at": "2026-11-26T06:00:00Z",
        "seconds": 12.3,
        "iterations_done": 200,
        "iterations_per_s": 16.2,
        "servers_per_s": 16.2,
        "errors": 3,
        "errors_by_kind": {"HTTP 409": 2, "timeout": 1},
        "p50_ms": 300.0,
        "p90_ms": 400.0,
        "p99_ms": 450.0,
        "p999_ms": 480.0,
        "min_ms": 200.0,
        "mean_ms": 310.0,
        "max_ms": 481.0,
        "operations": {
            name: {
                "count": 200,
                "errors": errors,
                "ops_per_s": 16.0,
                "p50_ms": p50,
                "p90_ms": p50 * 1.5,
                "p99_ms": p50 * 2,
                "p999_ms": p50 * 2.5,
                "min_ms": p50 / 2,
                "mean_ms": p50,
                "max_ms": p50 * 3,
            }
            for name, p50, errors in (
                ("nova.boot_server", 110.0, 2),
                ("nova.wait_active", 190.0, 0),
                ("nova.delete_server", 0.8, 1),
            )
        },
        "timeline": timeline,
        "samples": {
            "t": [i * 0.5 for i in range(20)],
            "rss_mib": {"fabric": [200 + i for i in range(20)], "fleet": [50.0] * 20},
            "cpu_pct": {"fabric": [80.0 + i % 5 for i in range(20)], "fleet": [10.0] * 20},
        },
        "processes": {"fabric": {"cpu_s": 12.3, "peak_rss_mib": 250.1}, "fleet": {"cpu_s": 2.0}},
        "peak_rss_mib": 300.0,
        "fleet": {"hosts": 100, "register_s": 1.2, "rss_mib": 50.0, "kib_per_host": 120.0},
        "invariant_violations": 1,
        "invariants": {"overcommitted_hosts": 0, "leaked_allocations": 1, "leaked_ports": 0},
        "load_before": [0.1, 0.2, 0.3],
        "load_after": [1.0, 0.5, 0.3],
    }
    result.update(overrides)
    return result


class Nesting(HTMLParser):
    """Fails on any element closed out of order or left open: the page must be one clean tree."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.roots: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            if not self.stack:
                self.roots.append(tag)
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in VOID | SVG_LEAVES, tag

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def check_document(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    assert page.count("<body") == 1 and page.count("<head") == 1
    parser = Nesting()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    assert parser.roots == ["html"]


def svgs(page: str) -> dict[str, ET.Element]:
    """Each plot parsed as XML (which also proves it well formed), by its id."""
    out = {}
    for text in re.findall(r"<svg\b.*?</svg>", page, re.S):
        element = ET.fromstring(text)
        out[element.attrib["id"]] = element
    return out


def points(polyline: ET.Element) -> list[tuple[float, float]]:
    pairs = [p.split(",") for p in polyline.attrib["points"].split()]
    return [(float(x), float(y)) for x, y in pairs]


def test_one_self_contained_document() -> None:
    page = html_report.render(full_result())

    check_document(page)
    lowered = page.lower()
    for reference in ("http://", "https://", "<script", "<link", "@import", "url(", "<iframe", "<img"):
        assert reference not in lowered, reference
    assert "<style>" in page


def test_title_says_what_ran_and_how() -> None:
    page = html_report.render(full_result())
    title = re.search(r"<title>(.*?)</title>", page)
    assert title and "boot-and-delete" in title.group(1) and "own" in title.group(1)
    h1 = page[page.index("<h1>") : page.index("</h1>")]
    assert "boot-and-delete" in h1 and "own" in h1
    assert "closed loop, concurrency 16" in page
    assert "2026-11-26T06:00:00Z" in page

    open_loop = html_report.render(full_result(mode="open", rate=25.0, concurrency=None))
    assert "open loop, rate 25" in open_loop


def test_a_plot_per_figure_with_a_point_per_sample() -> None:
    result = full_result()
    plots = svgs(html_report.render(result))

    assert set(plots) == {"plot-throughput", "plot-latency", "plot-rss", "plot-cpu"}
    lines = plots["plot-throughput"].findall("polyline")
    assert [p.attrib["data-series"] for p in lines] == ["done/s", "errors/s"]
    for line in lines:
        assert len(points(line)) == len(result["timeline"])
    for plot_id in ("plot-rss", "plot-cpu"):
        lines = plots[plot_id].findall("polyline")
        assert [p.attrib["data-series"] for p in lines] == ["fabric", "fleet"]
        assert all(len(points(line)) == len(result["samples"]["t"]) for line in lines)


def test_throughput_line_goes_up_where_more_was_done() -> None:
    result = full_result(timeline=[{"t": 0, "done": 5, "errors": 0}, {"t": 1, "done": 20, "errors": 0}])
    line = svgs(html_report.render(result))["plot-throughput"].findall("polyline")[0]
    (x0, y0), (x1, y1) = points(line)
    assert x1 > x0
    assert y1 < y0  # SVG's y grows downwards


def test_latency_bars_one_per_percentile_and_operation_longest_for_the_tail() -> None:
    result = full_result()
    plot = svgs(html_report.render(result))["plot-latency"]
    bars = [r for r in plot.findall("rect") if r.find("title") is not None]

    groups = 1 + len(result["operations"])  # the whole iteration, then each operation
    assert len(bars) == 4 * groups
    widths = [float(r.attrib["width"]) for r in bars]
    for g in range(groups):
        p50, p90, p99, p999 = widths[4 * g : 4 * g + 4]
        assert p50 < p90 < p99 < p999
    labels = [t.text for t in plot.iter("text")]
    assert "nova.boot_server" in labels and "whole iteration" in labels
    assert "110" in labels  # each bar says its value in ms


def test_tables_carry_summary_operations_errors_fleet_and_invariants() -> None:
    page = html_report.render(full_result())

    for field in html_report.SUMMARY_FIELDS:
        assert f"<td>{field}</td>" in page
    assert "<td>nova.wait_active</td>" in page
    assert "<td>HTTP 409</td>" in page
    assert "<h2>Fleet</h2>" in page and "<td>kib_per_host</td>" in page
    assert '<tr class="bad"><td>leaked_allocations</td>' in page  # a violation stands out
    assert "<tr><td>leaked_ports</td>" in page  # a clean check does not
    assert '<tr class="bad"><td>nova.boot_server</td>' in page


def test_strings_from_the_result_are_escaped_everywhere() -> None:
    result = full_result(scenario=EVIL, target=EVIL, started_at=EVIL, mode=EVIL)
    result["operations"][EVIL] = result["operations"]["nova.boot_server"]
    result["errors_by_kind"][EVIL] = 1
    result["samples"]["rss_mib"][EVIL] = [1.0] * 20
    result["processes"][EVIL] = {"cpu_s": EVIL}
    result["fleet"][EVIL] = EVIL
    result["invariants"][EVIL] = 0
    result["iterations_done"] = EVIL
    page = html_report.render(result)

    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    check_document(page)
    svgs(page)  # still well formed


def test_renders_with_optional_keys_absent() -> None:
    for result in ({}, {"bench": "run"}, {"scenario": "s", "errors": 0}):
        page = html_report.render(result)
        check_document(page)
        assert "<svg" not in page

    only_timeline = {"timeline": [{"t": 0, "done": 3}]}
    plots = svgs(html_report.render(only_timeline))
    assert list(plots) == ["plot-throughput"]
    line = plots["plot-throughput"].findall("polyline")[0]
    assert len(points(line)) == 1
    assert plots["plot-throughput"].find("circle") is not None  # one point is still visible

    partial = full_result()
    for key in ("samples", "fleet", "invariants", "operations", "processes", "errors_by_kind", "mode"):
        del partial[key]
    page = html_report.render(partial)
    check_document(page)
    assert set(svgs(page)) == {"plot-throughput", "plot-latency"}
    assert "<h2>Fleet</h2>" not in page


def test_malformed_parts_are_skipped_not_fatal() -> None:
    result = full_result(
        timeline=[{"t": 0, "done": 1}, "junk", {"t": "x"}, {"t": 2, "done": None}],
        samples={"t": [0, 1], "rss_mib": {"fabric": [1.0, "big"], "fleet": "n/a"}, "cpu_pct": []},
        operations={"nova.boot_server": {"p50_ms": 0.0, "p99_ms": -1, "p90_ms": float("inf")}},
        fleet=[1, 2],
        load_after="high",
    )
    page = html_report.render(result)
    check_document(page)
    assert "nan" not in page.lower() and "inf" not in " ".join(re.findall(r'points="[^"]*"', page))
    plots = svgs(page)
    assert len(points(plots["plot-throughput"].findall("polyline")[0])) == 2
    assert len(points(plots["plot-rss"].findall("polyline")[0])) == 1

    for junk in (5, "text", None, {"t": 1}):
        check_document(html_report.render({"timeline": junk, "samples": {"t": junk}, "invariants": junk}))


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (0, 17), (0, 980), (3.2, 3.9), (0, 123456), (5, 5)])
def test_nice_ticks_are_round_and_cover_the_range(lo: float, hi: float) -> None:
    ticks = html_report.nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    assert 2 <= len(ticks) <= 12
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    (step,) = steps
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5)


def test_write_puts_the_page_in_a_utf8_file(tmp_path: Path) -> None:
    result = full_result(scenario="démarrage — boot")
    path = tmp_path / "report.html"
    html_report.write(result, path)
    assert path.read_text(encoding="utf-8") == html_report.render(result)
