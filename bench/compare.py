"""`python -m bench compare A.json B.json`: two benchmark results side by side, as ratios.

A single figure says little on a machine shared with other work; the question is nearly always
"did this change make it faster or slower than before?". So this reads two result files (a
`bench run --json` object, or the flat one of the older `bench boot|place|ports|tokens|rpc`
commands), lines up every number the two have in common and says, where the field's name tells
which way is good, which side won. The table is Markdown, so it can go straight into RESULTS.md,
and it stays readable in a terminal because its columns are padded.

No third-party imports: comparing results must work wherever the result files are, not only
where the fabric's dependencies are installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Literal

Better = Literal["A", "B", "same"]

#: Sections of a `bench run` result whose numbers are compared, and the prefix each gets. The
#: operations' own names carry their service ("nova.boot_server"), so they need no prefix.
_NESTED: tuple[tuple[str, str], ...] = (("fleet", "fleet."), ("invariants", "invariants."))

#: Field names (last part of a metric) for which less is better, beyond the unit suffixes.
_LOWER_NAMES = ("errors", "invariant_violations")
_LOWER_SUFFIXES = ("_ms", "_s", "_mib", "_kib")


@dataclasses.dataclass(frozen=True)
class Row:
    """One metric both results have; `ratio` is B/A, None when A is 0 (no meaningful ratio)."""

    metric: str
    a: int | float
    b: int | float
    ratio: float | None
    better: Better | None


def _number(value: Any) -> int | float | None:
    # bool is an int to Python, but a flag compared as 1.0 vs 0.0 would only mislead.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flatten(result: Mapping[str, Any]) -> dict[str, int | float]:
    """Every comparable number of a result under one flat name, in the result's own order, so a
    table reads top-level figures first and each operation's figures together."""
    out: dict[str, int | float] = {}
    for key, value in result.items():
        number = _number(value)
        if number is not None:
            out[key] = number

    def numbers_of(section: Any) -> Iterator[tuple[str, int | float]]:
        if isinstance(section, Mapping):
            for field, value in section.items():
                number = _number(value)
                if number is not None:
                    yield str(field), number

    operations = result.get("operations")
    if isinstance(operations, Mapping):
        for name, figures in operations.items():
            for field, number in numbers_of(figures):
                out[f"{name}.{field}"] = number
    processes = result.get("processes")
    if isinstance(processes, Mapping):  # what each process cost: the other half of the claim
        for name, figures in processes.items():
            for field, number in numbers_of(figures):
                out[f"processes.{name}.{field}"] = number
    for section, prefix in _NESTED:
        for field, number in numbers_of(result.get(section)):
            out[f"{prefix}{field}"] = number
    return out


def direction(metric: str) -> Literal["higher", "lower"] | None:
    """Which way is good for a metric, read from its unit suffix; None when the name does not say
    (a count of hosts or a concurrency is a setting, not an outcome)."""
    field = metric.rsplit(".", 1)[-1]
    if metric.startswith("invariants.") or field.startswith(("leaked_", "overcommitted_")):
        return "lower"  # each counts something that must not happen
    if field.endswith("_per_s"):
        return "higher"
    if field.endswith(_LOWER_SUFFIXES) or field.endswith(_LOWER_NAMES):
        return "lower"
    return None


def _verdict(metric: str, a: float, b: float) -> Better | None:
    way = direction(metric)
    if way is None:
        return None
    if a == b:
        return "same"
    b_wins = b > a if way == "higher" else b < a
    return "B" if b_wins else "A"


def rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Row]:
    """The metrics both results carry, in A's order; a metric only one side has cannot be
    compared, and silently showing it half-empty would suggest it was."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for metric, va in fa.items():
        if metric not in fb:
            continue
        vb = fb[metric]
        ratio = None if va == 0 else vb / va
        out.append(Row(metric, va, vb, ratio, _verdict(metric, va, vb)))
    return out


def format_number(value: float) -> str:
    """Short but exact enough to compare by eye: ints whole, floats to about four figures."""
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:.1f}"
    return f"{value:.4g}"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    if ratio == 0 or 0.01 <= abs(ratio) < 1000:
        return f"{ratio:.2f}"
    return f"{ratio:.3g}"


def _cell(text: str) -> str:
    # A '|' in a file name or operation name would otherwise split a Markdown cell in two.
    return text.replace("|", "\\|")


def render_markdown(table: list[Row], a_label: str, b_label: str) -> str:
    """A Markdown table with padded columns: valid for RESULTS.md and aligned in a terminal."""
    header = ["metric", f"A: {_cell(a_label)}", f"B: {_cell(b_label)}", "B/A", "better"]
    body = [
        [_cell(r.metric), format_number(r.a), format_number(r.b), format_ratio(r.ratio), r.better or ""]
        for r in table
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = [False, True, True, True, False]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if right else c.ljust(w) for c, w, right in zip(cells, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if right else "-" * w for w, right in zip(widths, numeric)]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *(line(cells) for cells in body)])


def describe(path: str, result: Mapping[str, Any]) -> str:
    """A file named with what it measured, so a table pasted elsewhere still says what A and B
    were."""
    about = []
    for key in ("scenario", "bench", "target"):
        value = result.get(key)
        if isinstance(value, str) and value and not (key == "bench" and "scenario" in result):
            about.append(f"{key} {value}")
    return f"{path} ({', '.join(about)})" if about else path


def load(path: str) -> dict[str, Any]:
    """One result file; ValueError with a sentence fit for the user for anything unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected one JSON object (a bench result), found {type(data).__name__}")
    return data


def main(paths: list[str], as_json: bool) -> int:
    """Print the comparison of two result files; 2 (with the reason on stderr) if they cannot be
    read, so a script comparing runs stops instead of printing an empty table."""
    if len(paths) != 2:
        print(f"bench compare: expected two result files, got {len(paths)}", file=sys.stderr)
        return 2
    try:
        a, b = load(paths[0]), load(paths[1])
    except ValueError as exc:
        print(f"bench compare: {exc}", file=sys.stderr)
        return 2
    table = rows(a, b)
    if as_json:
        out = {"a": paths[0], "b": paths[1], "rows": [dataclasses.asdict(r) for r in table]}
        print(json.dumps(out))
        return 0
    print(f"A: {describe(paths[0], a)}  vs  B: {describe(paths[1], b)}")
    if not table:
        print("(no numeric field in common)")
        return 0
    print()
    print(render_markdown(table, paths[0], paths[1]))
    return 0
