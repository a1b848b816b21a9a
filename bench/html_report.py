"""One `bench run` result as a single self-contained HTML page, with its plots drawn as SVG here.

A result is often looked at far from where it was made (attached to an issue, copied off a test
machine, opened years later), so the page carries everything inline: CSS in a `<style>`, plots as
SVG written by the small helpers below, no script, no font or stylesheet to fetch. That also
keeps the benchmark free of a plotting dependency.

Every string taken from the result goes through `html.escape`, numbers through `_fmt`: a
scenario or operation name, an error kind or a process name is data, never markup. Any key may be
missing (a failed run, an older result); each section renders from what is there or not at all.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Line colours, chosen to stay distinct for the few series a plot has, also to colour-blind eyes.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
#: Percentile bars, light to dark: the tail is the darkest, as it is the figure that matters.
PERCENTILE_BARS = (
    ("p50", "p50_ms", "#9ecae1"),
    ("p90", "p90_ms", "#4292c6"),
    ("p99", "p99_ms", "#08519c"),
    ("p99.9", "p999_ms", "#08306b"),
)
SUMMARY_FIELDS = (
    "iterations_done",
    "iterations_per_s",
    "servers_per_s",
    "errors",
    "invariant_violations",
    "peak_rss_mib",
    "seconds",
)
OPERATION_FIELDS = ("count", "errors", "ops_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1000px; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 9px; } th { background: #f2f2f2; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.bad { background: #fde0dc; color: #a50e0e; font-weight: bold; }
.ok { color: #1b7a2f; }
svg { display: block; margin: 0.5em 0; background: #fff; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    """A number as people read it; anything else escaped, so a malformed result cannot inject."""
    if isinstance(value, bool) or value is None:
        return _esc(value if value is not None else "—")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return _esc(value)
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.1f}".removesuffix(".0") if abs(value) >= 100 else f"{value:.3g}"
    return _esc(value)


def _tick_label(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{round(value, 6):g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) spanning lo..hi, so axes
    read 0, 50, 100 rather than 0, 43.7, 87.4."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9)
    ticks = []
    i = first
    while True:
        ticks.append(i * step)
        if i * step >= hi - step * 1e-9:
            return ticks
        i += 1


#: Drawn as attributes, not CSS classes, so that an SVG copied out of the page looks the same.
_LINE_STROKES = {"grid": "#e5e5e5", "axis": "#666"}


class _Svg:
    """An SVG document being written: plain string parts, every text run escaped on the way in."""

    def __init__(self, width: int, height: int, title: str, plot_id: str) -> None:
        # No xmlns: inline SVG in HTML needs none, and the page is meant to reference no URL at all.
        self.parts = [
            f'<svg id="{_esc(plot_id)}" width="{width}" height="{height}" font-size="11" fill="#333" '
            'font-family="system-ui, sans-serif" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
            f"<title>{_esc(title)}</title>",
            f'<text x="8" y="16" font-size="13" font-weight="bold">{_esc(title)}</text>',
        ]

    def line(self, x1: float, y1: float, x2: float, y2: float, kind: str) -> None:
        stroke = _LINE_STROKES[kind]
        self.parts.append(
            f'<line stroke="{stroke}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>'
        )

    def text(self, x: float, y: float, content: str, anchor: str = "start", extra: str = "") -> None:
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{_esc(content)}</text>'
        )

    def legend(self, x: float, y: float, entries: Sequence[tuple[str, str]]) -> None:
        for name, colour in entries:
            self.parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
            self.text(x + 14, y, name)
            x += 24 + 7 * len(name)

    def done(self) -> str:
        return "\n".join([*self.parts, "</svg>"])


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    plot_id: str,
    width: int = 760,
    height: int = 280,
) -> str:
    """Lines sharing one linear x and y axis (y from 0, as rates and memory are read against 0).
    Each series is one polyline with one point per sample; a lone sample also gets a dot, since a
    one-point polyline draws nothing."""
    left, right, top, bottom = 62, 16, 44, 42
    points = [p for _, pts in series for p in pts]
    xs, ys = [x for x, _ in points] or [0.0], [y for _, y in points] or [0.0]
    x_ticks = nice_ticks(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1, 8)
    y_ticks = nice_ticks(min(0.0, min(ys)), max(ys) if max(ys) > 0 else 1.0, 5)
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    svg = _Svg(width, height, title, plot_id)
    for y in y_ticks:
        svg.line(left, sy(y), left + pw, sy(y), "grid")
        svg.text(left - 5, sy(y) + 4, _tick_label(y), "end")
    for x in x_ticks:
        svg.line(sx(x), top + ph, sx(x), top + ph + 4, "axis")
        svg.text(sx(x), top + ph + 16, _tick_label(x), "middle")
    svg.line(left, top, left, top + ph, "axis")
    svg.line(left, top + ph, left + pw, top + ph, "axis")
    svg.text(left + pw / 2, height - 6, x_label, "middle")
    svg.text(14, top + ph / 2, y_label, "middle", f' transform="rotate(-90 14 {top + ph / 2:.1f})"')
    colours = []
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        colours.append((name, colour))
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        svg.parts.append(
            f'<polyline data-series="{_esc(name)}" fill="none" stroke="{colour}" '
            f'stroke-width="1.8" points="{coords}"/>'
        )
        if len(pts) == 1:
            svg.parts.append(
                f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="{colour}"/>'
            )
    svg.legend(left + 4, 34, colours)
    return svg.done()


def latency_bars(groups: Sequence[tuple[str, Mapping[str, Any]]], *, plot_id: str, width: int = 760) -> str:
    """Grouped horizontal bars, one group per operation, on a log scale: operations' latencies
    differ by orders of magnitude (a token check against a boot), and on a linear axis the fast
    ones would be invisible. Each bar is labelled with its value in ms."""
    bar_h, gap, top, bottom = 9, 10, 44, 36
    longest = max((len(name) for name, _ in groups), default=4)
    left, right = min(12 + 6.5 * longest, 280), 70
    values = [
        v
        for _, figures in groups
        for _, key, _ in PERCENTILE_BARS
        if (v := _finite(figures.get(key))) and v > 0
    ]
    lo_exp = math.floor(math.log10(min(values))) if values else 0
    hi_exp = math.ceil(math.log10(max(values))) if values else 1
    hi_exp = max(hi_exp, lo_exp + 1)
    group_h = len(PERCENTILE_BARS) * bar_h + gap
    height = top + bottom + group_h * max(len(groups), 1)
    pw = width - left - right

    def sx(v: float) -> float:
        return left + (math.log10(v) - lo_exp) / (hi_exp - lo_exp) * pw

    svg = _Svg(width, height, "Latency percentiles per operation (ms, log scale)", plot_id)
    base = top + group_h * len(groups)
    for exp in range(lo_exp, hi_exp + 1):
        x = sx(10.0**exp)
        svg.line(x, top - 4, x, base, "grid")
        svg.text(x, base + 14, _tick_label(10.0**exp), "middle")
    svg.text(left + pw / 2, height - 6, "milliseconds (log scale)", "middle")
    for g, (name, figures) in enumerate(groups):
        y = top + g * group_h
        svg.text(left - 6, y + len(PERCENTILE_BARS) * bar_h / 2 + 4, name, "end")
        for b, (label, key, colour) in enumerate(PERCENTILE_BARS):
            value = _finite(figures.get(key))
            if value is None:
                continue
            end = sx(value) if value > 0 else left
            by = y + b * bar_h
            svg.parts.append(
                f'<rect x="{left:.1f}" y="{by:.1f}" width="{max(end - left, 1):.1f}" height="{bar_h - 1}" '
                f'fill="{colour}"><title>{_esc(name)} {label}: {value:g} ms</title></rect>'
            )
            svg.text(end + 4, by + bar_h - 1, f"{value:.3g}", extra=' font-size="9"')
    svg.line(left, top - 4, left, base, "axis")
    svg.legend(left + 4, 34, [(label, colour) for label, _, colour in PERCENTILE_BARS])
    return svg.done()


def _table(head: Sequence[str], body: Iterable[Sequence[str]], cls: Sequence[str] = ()) -> str:
    """Cells are already-escaped HTML; `cls` marks a row (e.g. a violation) by its index."""
    rows = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for i, cells in enumerate(body):
        mark = f' class="{cls[i]}"' if i < len(cls) and cls[i] else ""
        first, *rest = cells
        rows.append(
            f"<tr{mark}><td>{first}</td>" + "".join(f'<td class="n">{c}</td>' for c in rest) + "</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _heading(result: Mapping[str, Any]) -> tuple[str, str]:
    scenario = result.get("scenario") or result.get("bench") or "benchmark"
    title = f"{scenario} on {result['target']}" if result.get("target") else str(scenario)
    bits = []
    mode = result.get("mode")
    if mode == "closed":
        bits.append(f"closed loop, concurrency {_fmt(result.get('concurrency'))}")
    elif mode == "open":
        bits.append(f"open loop, rate {_fmt(result.get('rate'))} iterations/s")
    elif mode is not None:
        bits.append(f"mode {_esc(mode)}")
    for key, label in (("iterations", "iterations"), ("duration_s", "s"), ("hosts", "hosts")):
        if result.get(key) is not None:
            bits.append(f"{_fmt(result[key])} {label}")
    if result.get("seed") is not None:
        bits.append(f"seed {_fmt(result['seed'])}")
    if result.get("started_at"):
        bits.append(f"started {_esc(result['started_at'])}")
    return title, " · ".join(bits)


def _timeline_plot(result: Mapping[str, Any]) -> str:
    timeline = [e for e in _list(result.get("timeline")) if isinstance(e, Mapping)]
    if not timeline:
        return ""
    series = []
    for key, name in (("done", "done/s"), ("errors", "errors/s")):
        pts = [(t, _finite(e.get(key)) or 0.0) for e in timeline if (t := _finite(e.get("t"))) is not None]
        series.append((name, pts))
    return line_chart(
        series,
        title="Throughput over time",
        x_label="seconds since start",
        y_label="iterations per second",
        plot_id="plot-throughput",
    )


def _samples_plots(result: Mapping[str, Any]) -> list[str]:
    samples = _mapping(result.get("samples"))
    times = [_finite(t) for t in _list(samples.get("t"))]
    plots = []
    for key, title, unit, plot_id in (
        ("rss_mib", "Resident memory per process", "MiB", "plot-rss"),
        ("cpu_pct", "CPU per process", "% of one core", "plot-cpu"),
    ):
        series = []
        for process, values in _mapping(samples.get(key)).items():
            if not isinstance(values, list):
                continue
            pts = [
                (t, v) for t, raw in zip(times, values) if t is not None and (v := _finite(raw)) is not None
            ]
            series.append((str(process), pts))
        if series:
            plots.append(
                line_chart(series, title=title, x_label="seconds since start", y_label=unit, plot_id=plot_id)
            )
    return plots


def _summary(result: Mapping[str, Any]) -> list[str]:
    out = []
    summary = [name for name in SUMMARY_FIELDS if name in result]
    if summary:
        marks = [
            "bad" if name in ("errors", "invariant_violations") and (_finite(result[name]) or 0) > 0 else ""
            for name in summary
        ]
        body = [[name, _fmt(result[name])] for name in summary]
        out += ["<h2>Summary</h2>", _table(["", "value"], body, marks)]
    latency = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "min_ms", "mean_ms", "max_ms")
    if any(key in result for key in latency):
        head = ["", *(k[:-3].replace("p999", "p99.9") for k in latency)]
        body = [["all", *(_fmt(result.get(k)) for k in latency)]]
        out += ["<h2>Iteration latency (ms)</h2>", _table(head, body)]
    return out


def _operations(operations: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not operations:
        return []
    body = [[_esc(name), *(_fmt(f.get(k)) for k in OPERATION_FIELDS)] for name, f in operations.items()]
    marks = ["bad" if (_finite(f.get("errors")) or 0) > 0 else "" for f in operations.values()]
    head = ["operation", "count", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"]
    return ["<h2>Operations</h2>", _table(head, body, marks)]


def _errors(result: Mapping[str, Any]) -> list[str]:
    errors = _mapping(result.get("errors_by_kind"))
    if errors:
        body = [[_esc(k), _fmt(v)] for k, v in errors.items()]
        return ["<h2>Errors by kind</h2>", _table(["kind", "count"], body, ["bad"] * len(body))]
    if "errors_by_kind" in result:
        return ["<h2>Errors by kind</h2>", '<p class="ok">None.</p>']
    return []


def _plots(result: Mapping[str, Any], operations: Mapping[str, Mapping[str, Any]]) -> list[str]:
    plots = [_timeline_plot(result)]
    groups: list[tuple[str, Mapping[str, Any]]] = []
    if any(k in result for _, k, _ in PERCENTILE_BARS):
        groups.append(("whole iteration", result))
    groups += list(operations.items())
    if groups:
        plots.append(latency_bars(groups, plot_id="plot-latency"))
    plots += _samples_plots(result)
    plots = [p for p in plots if p]
    return ["<h2>Plots</h2>", *plots] if plots else []


def _details(result: Mapping[str, Any]) -> list[str]:
    """Processes, fleet, invariants and machine load: the figures that say whether the run's
    numbers can be trusted (a leak, an over-commitment, a busy machine)."""
    out = []
    processes = {str(k): _mapping(v) for k, v in _mapping(result.get("processes")).items()}
    if processes:
        body = [[_esc(n), _fmt(p.get("cpu_s")), _fmt(p.get("peak_rss_mib"))] for n, p in processes.items()]
        out += ["<h2>Processes</h2>", _table(["process", "CPU s", "peak RSS MiB"], body)]

    fleet = _mapping(result.get("fleet"))
    if fleet:
        out += ["<h2>Fleet</h2>", _table(["", "value"], [[_esc(k), _fmt(v)] for k, v in fleet.items()])]

    invariants = _mapping(result.get("invariants"))
    total = result.get("invariant_violations")
    if invariants or total is not None:
        out.append("<h2>Invariants</h2>")
        if total is not None:
            cls = "bad" if (_finite(total) or 0) > 0 else "ok"
            out.append(f'<p class="{cls}">{_fmt(total)} violation(s) in all.</p>')
        if invariants:
            marks = ["bad" if (_finite(v) or 0) > 0 else "" for v in invariants.values()]
            body = [[_esc(k), _fmt(v)] for k, v in invariants.items()]
            out.append(_table(["check", "count"], body, marks))

    loads = []
    for key, label in (("load_before", "before"), ("load_after", "after")):
        value = result.get(key)
        if isinstance(value, list):
            loads.append(f"{label}: " + " / ".join(_fmt(x) for x in value))
    if loads:
        out.append(f'<p class="meta">Load average (1/5/15 min) {"; ".join(loads)}.</p>')
    return out


def render(result: Mapping[str, Any]) -> str:
    """The whole page for one result."""
    title, meta = _heading(result)
    operations = {str(k): _mapping(v) for k, v in _mapping(result.get("operations")).items()}
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>bench: {_esc(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{_esc(title)}</h1>",
            *([f'<p class="meta">{meta}</p>'] if meta else []),
            *_summary(result),
            *_operations(operations),
            *_errors(result),
            *_plots(result, operations),
            *_details(result),
            "</body>",
            "</html>",
            "",
        ]
    )


def write(result: Mapping[str, Any], path: Path) -> None:
    """Write the page; UTF-8 explicitly, since the page declares it and results hold non-ASCII."""
    path.write_text(render(result), encoding="utf-8")
