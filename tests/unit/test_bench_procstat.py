"""The harness's process sampler, on real processes: a run's CPU seconds count what a process's
children used even after they exit (PostgreSQL's backends come and go during a run)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import procstat

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

#: A parent that, once told on stdin, starts a child that burns CPU, sleeps and exits.
PARENT = """
import subprocess, sys
sys.stdin.readline()
burn = "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass\\n"
child = subprocess.Popen([sys.executable, "-c", burn + "time.sleep(0.5)"])
print("started", flush=True)
child.wait()
print("ended", flush=True)
sys.stdin.readline()
"""


def test_a_child_that_exits_keeps_its_cpu_in_the_run() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        sampler = procstat.Sampler({"parent": parent.pid})
        sampler.sample()  # before the child: the baseline
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "started\n"
        time.sleep(0.45)  # the child has burnt its CPU and sleeps
        sampler.sample()
        assert parent.stdout.readline() == "ended\n"
        sampler.sample()  # the child is gone: its seconds must stay counted
        used = sampler.summary()["parent"]["cpu_s"]
        assert 0.3 <= used < 2.0, used
        assert all(pct >= 0 for pct in sampler.series()["cpu_pct"]["parent"])  # type: ignore[index]
        assert sampler.summary()["parent"]["peak_rss_mib"] > 0
    finally:
        parent.kill()
        parent.wait()


def test_a_process_is_among_its_parents_descendants() -> None:
    tree = procstat.process_tree()
    assert os.getpid() in procstat.descendants(os.getppid(), tree)
    assert procstat.descendants(os.getpid(), tree)[0] == os.getpid()
