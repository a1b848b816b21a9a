"""The bench commands run end to end, briefly and gently: each prints one JSON report with the
stable fields, counts some operations and no errors, and cleans up after itself.

These prove the harness works, not the figures (those are in bench/RESULTS.md); each run takes
a second of load after half a second of warm-up, at low concurrency, with cheap password hashes.
"""

import json
import subprocess
import sys
from typing import Any

import pytest

from bench.stats import Record, nearest_rank
from tests.support import ROOT, can_manage_rabbitmq

FIELDS = (
    "ops",
    "ops_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "errors",
    "errors_by_kind",
    "concurrency",
    "seconds",
)


def bench(*args: str) -> dict[str, Any]:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(f"the bench makes its own RabbitMQ vhost: {why}")
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--seconds", "1", "--warmup", "0.5", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, f"stdout is not one JSON line: {lines!r}"
    result: dict[str, Any] = json.loads(lines[0])
    missing = [field for field in FIELDS if field not in result]
    assert not missing, f"missing {missing} in {result}"
    assert result["ops"] > 0, result
    assert result["errors"] == 0, result["errors_by_kind"]
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    return result


@pytest.mark.amqp
@pytest.mark.postgres
def test_rpc_round_trips() -> None:
    result = bench("rpc", "--concurrency", "4")
    assert result["concurrency"] == 4
    assert result["calls_per_frame"] >= 1


@pytest.mark.amqp
@pytest.mark.postgres
def test_token_validations_with_aiohttp() -> None:
    result = bench("tokens", "--op", "validate", "--concurrency", "2", "--hash-cost", "minimal")
    assert result["client"] == "aiohttp"


@pytest.mark.amqp
@pytest.mark.postgres
def test_token_validations_on_two_gateway_processes() -> None:
    args = ["--op", "validate", "--concurrency", "4", "--hash-cost", "minimal", "--client", "raw"]
    result = bench("tokens", *args, "--gateways", "2")
    assert result["gateways"] == 2
    assert {"identity_cpu_pct", "gateway1_cpu_pct", "gateway2_cpu_pct"} <= result.keys()


@pytest.mark.amqp
@pytest.mark.postgres
def test_token_issues_with_the_raw_client() -> None:
    result = bench(
        "tokens", "--op", "issue", "--concurrency", "2", "--hash-cost", "minimal", "--client", "raw"
    )
    assert result["hash_ms"] > 0 and result["verify_ms"] > 0


def test_percentiles_are_exact_nearest_rank() -> None:
    ordered = list(range(1, 1001))  # 1..1000 us
    assert nearest_rank(ordered, 50) == 500
    assert nearest_rank(ordered, 99) == 990
    assert nearest_rank(ordered, 99.9) == 999  # not the maximum: no float rounding up
    assert nearest_rank([7], 99.9) == 7 and nearest_rank([], 50) == 0
    record = Record()
    for us in (3, 1, 2):
        record.add(us / 1_000_000)
    record.fail("http_503")
    summary = record.summary()
    assert (summary["p50_ms"], summary["max_ms"], record.ops) == (0.002, 0.003, 3)
    assert record.errors == {"http_503": 1}


def scenario(*args: str) -> dict[str, Any]:
    """A scenario with its own figures (boot, place): one JSON line, no errors, no over-commit."""
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(f"the bench makes its own RabbitMQ vhost: {why}")
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json"], cwd=ROOT, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, f"stdout is not one JSON line: {lines!r}"
    result: dict[str, Any] = json.loads(lines[0])
    assert result["errors"] == 0, result
    assert result["overcommitted_hosts"] == 0, result
    return result


@pytest.mark.amqp
@pytest.mark.postgres
def test_boot_servers_on_fake_hosts() -> None:
    result = scenario("boot", "--hosts", "20", "--servers", "40", "--concurrency", "8")
    fields = ("servers_per_s", "accept_p50_ms", "accept_p99_ms", "active_p50_ms", "active_p99_ms")
    assert all(result[f] > 0 for f in fields), result
    assert result["accept_p50_ms"] <= result["accept_p99_ms"] <= result["active_p99_ms"]
    assert result["leaked_allocations"] == 0


@pytest.mark.amqp
@pytest.mark.postgres
def test_place_on_two_schedulers() -> None:
    result = scenario("place", "--hosts", "200", "--schedulers", "2", "--placements", "500")
    assert result["placements_per_s"] > 0 and result["allocations"] == 500
