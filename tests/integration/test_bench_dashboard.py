"""`python -m bench dashboard` end to end, tiny and brief: one JSON line with the figures
bench/RESULTS.md quotes, pages served, ACTIVE events seen, no errors. It proves the harness,
not the figures."""

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.support import ROOT, can_manage_rabbitmq

pytestmark = [pytest.mark.amqp, pytest.mark.postgres]


def test_dashboard_pages_and_live_events_on_a_small_cloud() -> None:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(f"the bench makes its own RabbitMQ vhost: {why}")
    args = ["--servers", "30", "--hosts", "10", "--users", "2", "--seconds", "1", "--warmup", "0.5"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "dashboard", *args, "--events", "3", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, f"stdout is not one JSON line: {lines!r}"
    result: dict[str, Any] = json.loads(lines[0])
    assert result["errors"] == 0, result["errors_by_kind"]
    for page in ("servers", "fleet"):
        assert result[f"{page}_page_per_s"] > 0, result
        assert 0 < result[f"{page}_page_p50_ms"] <= result[f"{page}_page_p99_ms"], result
    assert 0 < result["active_to_browser_p50_ms"] <= result["active_to_browser_p99_ms"], result
    assert result["api_active_to_browser_p99_ms"] <= result["active_to_browser_p99_ms"], result
    assert (result["servers"], result["hosts"], result["users"], result["events"]) == (30, 10, 2, 3)
