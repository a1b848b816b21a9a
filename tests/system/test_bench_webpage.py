"""`python -m bench webpage` runs end to end once: one JSON report with both timings, and nothing
of its guests or plumbing left behind. It proves the harness works, not the figure (that is in
bench/RESULTS.md)."""

import json
import subprocess
import sys

import pytest

from fabric.compose import why_no_network_agent
from tests.support import ROOT, can_manage_rabbitmq
from tests.system.guest_network import kernel_objects
from tests.system.test_test_guest import build, why_not_buildable

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]


def test_webpage_bench_reports_both_timings_and_cleans_up() -> None:
    why = why_not_buildable() or can_manage_rabbitmq() or why_no_network_agent()
    if why:
        pytest.skip(why)
    build()
    before, domains_before = kernel_objects(), fabric_domains()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "webpage", "--iterations", "1", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, f"stdout is not one JSON line: {lines!r}"
    result = json.loads(lines[0])
    assert result["errors"] == 0, result
    assert result["accel"] in ("kvm", "tcg")
    assert 0 < result["active_s"] < result["page_s"], result
    assert 0 < result["guest_alone_s"], result
    assert result["overhead_s"] == round(result["page_s"] - result["guest_alone_s"], 2), result
    assert kernel_objects() == before, "the bench left plumbing behind"
    assert fabric_domains() <= domains_before, "the bench left guests behind"


def fabric_domains() -> set[str]:
    """The fabric's domains on this libvirt (another suite running beside this one may have
    some: only the bench's own must be gone)."""
    listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                            capture_output=True, text=True).stdout  # fmt: skip
    return {name for name in listed.split() if name.startswith("fabric-")}
