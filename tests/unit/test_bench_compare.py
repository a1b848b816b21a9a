"""`bench.compare`: ratios, which side is better, flattening of a `bench run` result, bad files."""

import json
from pathlib import Path
from typing import Any

import pytest

from bench import compare
from bench.compare import Row


def run_result(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "bench": "run",
        "scenario": "boot-and-delete",
        "target": "own",
        "mode": "closed",
        "concurrency": 16,
        "rate": None,
        "started_at": "2026-11-26T06:00:00Z",
        "iterations_per_s": 10.0,
        "p99_ms": 100.0,
        "errors": 2,
        "errors_by_kind": {"HTTP 409": 2},
        "operations": {
            "nova.boot_server": {"count": 200, "errors": 0, "ops_per_s": 16.0, "p50_ms": 40.0},
        },
        "fleet": {"hosts": 100, "register_s": 1.5, "kib_per_host": 120.0},
        "invariant_violations": 0,
        "invariants": {"leaked_ports": 0},
        "load_before": [0.1, 0.2, 0.3],
    }
    result.update(overrides)
    return result


def by_metric(table: list[Row]) -> dict[str, Row]:
    return {row.metric: row for row in table}


def test_ratio_is_b_over_a_and_the_verdict_follows_the_unit() -> None:
    a = {"iterations_per_s": 10, "p99_ms": 100.0, "errors": 2, "peak_rss_mib": 300.0, "concurrency": 16}
    b = {"iterations_per_s": 20, "p99_ms": 50.0, "errors": 2, "peak_rss_mib": 330.0, "concurrency": 16}
    table = by_metric(compare.rows(a, b))

    assert table["iterations_per_s"] == Row("iterations_per_s", 10, 20, 2.0, "B")
    assert table["p99_ms"].ratio == pytest.approx(0.5)
    assert table["p99_ms"].better == "B"  # half the latency
    assert table["errors"].ratio == pytest.approx(1.0)
    assert table["errors"].better == "same"
    assert table["peak_rss_mib"].ratio == pytest.approx(1.1)
    assert table["peak_rss_mib"].better == "A"  # B used more memory
    assert table["concurrency"].better is None  # a setting: no direction


def test_slower_throughput_and_more_errors_favour_a() -> None:
    table = by_metric(compare.rows({"ops_per_s": 100.0, "errors": 1}, {"ops_per_s": 80.0, "errors": 5}))
    assert table["ops_per_s"].better == "A"
    assert table["ops_per_s"].ratio == pytest.approx(0.8)
    assert table["errors"].better == "A"


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("iterations_per_s", "higher"),
        ("nova.boot_server.ops_per_s", "higher"),
        ("p999_ms", "lower"),
        ("fleet.register_s", "lower"),
        ("duration_s", "lower"),
        ("fleet.rss_mib", "lower"),
        ("rss_kib", "lower"),
        ("errors", "lower"),
        ("nova.boot_server.errors", "lower"),
        ("invariant_violations", "lower"),
        ("seconds", None),  # no unit suffix: not known
        ("fleet.kib_per_host", None),
        ("fleet.hosts", None),
        ("concurrency", None),
        ("invariants.leaked_ports", "lower"),
        ("overcommitted_hosts", "lower"),
    ],
)
def test_direction_is_read_from_the_field_name(metric: str, expected: str | None) -> None:
    assert compare.direction(metric) == expected


def test_nested_sections_are_flattened_and_non_numbers_skipped() -> None:
    flat = compare.flatten(run_result(ok=True, note="x", nan=float("nan")))

    assert flat["nova.boot_server.p50_ms"] == 40.0
    assert flat["nova.boot_server.count"] == 200
    assert flat["fleet.hosts"] == 100
    assert flat["fleet.register_s"] == 1.5
    assert flat["invariants.leaked_ports"] == 0
    assert flat["invariant_violations"] == 0
    for skipped in ("bench", "scenario", "target", "rate", "ok", "note", "nan", "load_before"):
        assert skipped not in flat
    assert not any(key.startswith(("errors_by_kind", "operations", "HTTP")) for key in flat)


def test_only_metrics_in_both_are_compared_in_a_s_order() -> None:
    a = run_result()
    b = run_result(iterations_per_s=12.0, extra_per_s=5.0)
    del b["fleet"]
    table = compare.rows(a, b)
    metrics = [row.metric for row in table]

    assert "extra_per_s" not in metrics
    assert not any(m.startswith("fleet.") for m in metrics)
    assert metrics == [m for m in compare.flatten(a) if m in compare.flatten(b)]
    assert metrics.index("iterations_per_s") < metrics.index("nova.boot_server.count")
    assert by_metric(table)["iterations_per_s"].ratio == pytest.approx(1.2)


def test_zero_in_a_has_no_ratio_but_still_a_verdict() -> None:
    table = by_metric(compare.rows({"errors": 0, "p50_ms": 0.0}, {"errors": 3, "p50_ms": 0.0}))

    assert table["errors"].ratio is None
    assert table["errors"].better == "A"
    assert table["p50_ms"].ratio is None
    assert table["p50_ms"].better == "same"
    markdown = compare.render_markdown(list(table.values()), "a.json", "b.json")
    assert "—" in markdown.splitlines()[2]


def test_markdown_table_is_a_valid_pipe_table() -> None:
    table = compare.rows({"ops_per_s": 100.0, "x|y": 1}, {"ops_per_s": 150.0, "x|y": 1})
    lines = compare.render_markdown(table, "old|run.json", "new.json").splitlines()

    assert len(lines) == 2 + len(table)
    assert lines[0].startswith("| metric ")
    assert "A: old\\|run.json" in lines[0] and "B: new.json" in lines[0]
    assert set(lines[1]) <= set("|-: ")
    cells = [c.strip() for c in lines[2].strip("|").split(" | ")]
    assert cells == ["ops_per_s", "100", "150", "1.50", "B"]
    # the escaped pipe keeps the row at five cells
    assert lines[3].replace("\\|", "").count("|") == 6
    assert len({len(line) for line in lines}) == 1  # padded columns line up


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_main_prints_a_header_naming_both_sides_and_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path, "a.json", run_result())
    b = write(tmp_path, "b.json", run_result(target="prod", iterations_per_s=20.0))

    assert compare.main([a, b], as_json=False) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert a in header and b in header
    assert "scenario boot-and-delete" in header and "target own" in header and "target prod" in header
    row = next(line for line in out.splitlines() if line.startswith("| iterations_per_s "))
    assert [c.strip() for c in row.strip("|").split(" | ")] == ["iterations_per_s", "10", "20", "2.00", "B"]


def test_main_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path, "a.json", run_result(errors=0))
    b = write(tmp_path, "b.json", run_result(errors=4, p99_ms=80.0))

    assert compare.main([a, b], as_json=True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == a and out["b"] == b
    table = {row["metric"]: row for row in out["rows"]}
    assert set(table["errors"]) == {"metric", "a", "b", "ratio", "better"}
    assert table["errors"] == {"metric": "errors", "a": 0, "b": 4, "ratio": None, "better": "A"}
    assert table["p99_ms"]["ratio"] == pytest.approx(0.8)
    assert table["p99_ms"]["better"] == "B"


def test_old_flat_results_compare_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = {"bench": "boot", "hosts": 1000, "servers_per_s": 196.2, "placements_per_s": 200.0, "errors": 0}
    new = {"bench": "boot", "hosts": 1000, "servers_per_s": 204.4, "placements_per_s": 209.0, "errors": 0}
    a, b = write(tmp_path, "old.json", old), write(tmp_path, "new.json", new)

    assert compare.main([a, b], as_json=False) == 0
    out = capsys.readouterr().out
    assert "bench boot" in out.splitlines()[0]
    assert "| servers_per_s " in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ("[1, 2]", "expected one JSON object"),
        ('"text"', "expected one JSON object"),
        (b"\xff\xfe\x00", "cannot read"),
    ],
)
def test_a_bad_file_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, message: str
) -> None:
    good = write(tmp_path, "good.json", run_result())
    bad = tmp_path / "bad.json"
    if isinstance(content, str):
        bad.write_text(content)
    elif isinstance(content, bytes):
        bad.write_bytes(content)

    for paths in ([good, str(bad)], [str(bad), good]):
        assert compare.main(paths, as_json=False) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert str(bad) in captured.err
        assert message in captured.err


def test_a_directory_is_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good.json", run_result())
    assert compare.main([good, str(tmp_path)], as_json=True) == 2
    assert "cannot read" in capsys.readouterr().err


def test_main_wants_exactly_two_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(["only.json"], as_json=False) == 2
    assert "two result files" in capsys.readouterr().err
