"""`python -m bench run` end to end, briefly: each run starts its own fabric (and simulated fleet),
prints one JSON report with the stable fields, counts no errors and no invariant violations, and
writes its saved result and HTML report; `bench compare` reads two saved results. These prove the
harness works, not the figures (those are in bench/RESULTS.md)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, can_manage_rabbitmq

pytestmark = [pytest.mark.amqp, pytest.mark.postgres]

FIELDS = (
    "scenario", "target", "mode", "seconds", "iterations_done", "iterations_per_s", "servers_per_s",
    "errors", "errors_by_kind", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "operations",
    "timeline", "samples", "processes", "peak_rss_mib", "invariant_violations", "invariants",
)  # fmt: skip


def bench(*args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(f"the bench makes its own RabbitMQ vhost: {why}")
    done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, timeout=150)
    if ok:
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done


def run(*args: str) -> dict[str, Any]:
    done = bench("run", *args, "--hash-cost", "minimal", "--json")
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, f"stdout is not one JSON line: {lines!r}"
    result: dict[str, Any] = json.loads(lines[0])
    assert not [f for f in FIELDS if f not in result], result.keys()
    assert result["errors"] == 0, result["errors_by_kind"]
    assert result["invariant_violations"] == 0, result["invariants"]
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["peak_rss_mib"] > 0 and sum(p["cpu_s"] for p in result["processes"].values()) > 0
    return result


def test_boot_and_delete_on_a_simulated_fleet(tmp_path: Path) -> None:
    saved, page = tmp_path / "a.json", tmp_path / "a.html"
    result = run(
        "boot-and-delete", "--hosts", "5", "--iterations", "12", "--concurrency", "4",
        "--save", str(saved), "--report", str(page),
    )  # fmt: skip
    assert result["iterations_done"] == 12 and result["servers_per_s"] > 0
    assert set(result["operations"]) == {"boot_server", "wait_active", "delete_server", "wait_deleted"}
    assert all(op["count"] == 12 for op in result["operations"].values())
    assert result["fleet"]["hosts"] == 5 and result["fleet"]["register_s"] > 0
    assert result["fleet"]["kib_per_host"] >= 0
    assert json.loads(saved.read_text())["iterations_done"] == 12
    assert page.read_text().count("<svg") >= 3

    compared = bench("compare", str(saved), str(saved), "--json")
    rows = {r["metric"]: r for r in json.loads(compared.stdout)["rows"]}
    assert rows["servers_per_s"]["ratio"] == 1.0 and rows["servers_per_s"]["better"] == "same"
    assert rows["wait_active.p99_ms"]["a"] == result["operations"]["wait_active"]["p99_ms"]


def test_token_validate_in_an_open_loop_and_a_short_mix_on_split_processes() -> None:
    result = run("token-validate", "--rate", "100", "--duration", "1")
    assert result["mode"] == "open" and result["rate"] == 100.0
    assert 90 <= result["iterations_done"] <= 101, result["iterations_done"]
    # The mix touches every service; in the split layout each actor is a process of its own.
    mixed = run(
        "mixed", "--layout", "split", "--hosts", "3", "--duration", "2", "--concurrency", "4",
        "--image-kib", "64",
    )  # fmt: skip
    assert mixed["iterations_done"] > 0
    assert "validate_token" in mixed["operations"]
    assert {"identity", "compute", "scheduler", "gateway1"} <= mixed["processes"].keys()


def test_a_bad_scenario_or_target_is_refused_before_anything_starts() -> None:
    done = bench("run", "boot-and-fly", ok=False)
    assert done.returncode == 2 and b"known: boot-and-delete" in done.stderr
    done = bench("run", "token-validate", "--target", "no-such-cloud", ok=False)
    assert done.returncode == 2 and b"no cloud 'no-such-cloud'" in done.stderr
