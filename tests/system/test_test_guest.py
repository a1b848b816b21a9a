"""The test guest (scripts/build-test-guest.sh) builds from Debian packages and boots for real.

It is booted with qemu directly, not libvirt, under TCG so that it needs no /dev/kvm, with
user-mode networking: slirp's own DHCP server gives the lease and a host port on 127.0.0.1 is
forwarded to the guest's port 80, so nothing leaves this machine. The test checks the three
things the cloud's own tests will rely on: the boot marker on the serial console names the
hostname from the kernel command line, DHCP gave a lease, and the guest's web page names it;
and the guest's probe page fetches what the guest itself can reach (slirp's 10.0.2.2 is the
host's loopback), or says it cannot.
"""

import http.client
import http.server
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, free_port

# The first build installs packages (a minute or two); TCG boots take ~10 s, allowed 120 s.
pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

SCRIPT = ROOT / "scripts" / "build-test-guest.sh"
HOSTNAME = "testvm"
BOOT_TIMEOUT = 120.0
BOOTED = re.compile(rb"^FABRIC-GUEST-BOOTED hostname=(\S+)", re.M)
READY = re.compile(rb"^FABRIC-GUEST-READY hostname=(\S+) ip=(\S+)", re.M)


def why_not_buildable() -> str | None:
    if os.geteuid() != 0:
        return "building the test guest needs root (apt-get, and /boot/vmlinuz-* is root-only)"
    if not (shutil.which("apt-get") and shutil.which("dpkg-query")):
        return "apt-get/dpkg-query not available: the test guest is built from Debian packages"
    return None


def build() -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, timeout=800)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done, time.monotonic() - started


@pytest.fixture(scope="module")
def guest() -> tuple[Path, Path, Path]:
    """The built kernel, initramfs and empty root disk (cached by the script across runs)."""
    why = why_not_buildable()
    if why:
        pytest.skip(why)
    done, seconds = build()
    kernel, initrd, root = (Path(line) for line in done.stdout.decode().split())
    assert (kernel.name, initrd.name, root.name) == ("vmlinuz", "initrd.img", "root.qcow2"), done.stdout
    print(
        f"\ntest guest: built or checked in {seconds:.1f}s: {kernel} ({kernel.stat().st_size} B), "
        f"{initrd} ({initrd.stat().st_size} B), {root} ({root.stat().st_size} B)"
    )
    assert initrd.stat().st_size < 16 * 2**20, "the initramfs should be a few MB"
    assert root.read_bytes()[:4] == b"QFI\xfb", "the root disk should be a qcow2 image"
    return kernel, initrd, root


def test_rebuild_with_nothing_changed_is_cached(guest: tuple[Path, Path, Path]) -> None:
    before = [path.stat().st_mtime_ns for path in guest]
    done, seconds = build()
    assert [Path(line) for line in done.stdout.decode().split()] == list(guest)
    assert [path.stat().st_mtime_ns for path in guest] == before, "a cached run rewrote the images"
    assert seconds < 1.0, f"a cached run took {seconds:.2f}s"


def get(url: str) -> str | None:
    """The page, or None while the guest is not answering yet (slirp resets the connection)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an http_proxy
    try:
        with opener.open(url, timeout=5) as response:
            return str(response.read().decode(errors="replace"))
    except (OSError, http.client.HTTPException):
        return None


class HostPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"page served by the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def host_page() -> Iterator[int]:
    """A page on the host's loopback, which the guest reaches as slirp's 10.0.2.2."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_guest_boots_gets_a_lease_and_serves_its_hostname(
    guest: tuple[Path, Path, Path], tmp_path: Path, host_page: int
) -> None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 is not installed (scripts/build-test-guest.sh installs it)")
    kernel, initrd, _root = guest  # booted from RAM: qemu needs no disk for this test
    console = tmp_path / "console.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        qemu,
        "-machine", "accel=tcg",
        "-m", "256",
        "-nographic",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", f"console=ttyS0 fabric.hostname={HOSTNAME}",
        "-serial", f"file:{console}",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80",
        "-device", "virtio-net-pci,netdev=n0",
        "-no-reboot",
    ]  # fmt: skip
    log = (tmp_path / "qemu.log").open("wb")
    # stdin is not the terminal: -nographic would put it in raw mode for the monitor.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    to_marker = to_ready = to_http = None
    page = reached = unreached = None
    closed = 0
    text = b""
    try:
        while time.monotonic() - started < BOOT_TIMEOUT:
            text = console.read_bytes() if console.exists() else b""
            elapsed = time.monotonic() - started
            if to_marker is None and BOOTED.search(text):
                to_marker = elapsed
            if to_ready is None and READY.search(text):
                to_ready = elapsed
            if to_marker is not None and to_http is None:
                page = get(url)
                if page is not None:
                    to_http = time.monotonic() - started
            if to_ready is not None and to_http is not None:
                break
            assert b"Kernel panic" not in text, text.decode(errors="replace")[-3000:]
            assert process.poll() is None, (
                f"qemu exited with {process.returncode}: "
                + ((tmp_path / "qemu.log").read_text(errors="replace")[-2000:])
            )
            time.sleep(0.25)
        if page is not None:  # what the guest itself reaches: the host's page, and a closed port
            reached = get(f"{url}cgi-bin/probe?10.0.2.2:{host_page}")
            closed = free_port()
            unreached = get(f"{url}cgi-bin/probe?10.0.2.2:{closed}")
    finally:
        if process.poll() is None:
            process.kill()  # by its PID: this qemu and nothing else
        process.wait(timeout=30)
        log.close()

    tail = text.decode(errors="replace")[-3000:]
    print(
        f"\ntest guest under TCG: boot marker after {to_marker and round(to_marker, 1)}s, "
        f"DHCP lease (READY) after {to_ready and round(to_ready, 1)}s, "
        f"HTTP answer after {to_http and round(to_http, 1)}s"
    )
    booted = BOOTED.search(text)
    assert booted, f"no boot marker within {BOOT_TIMEOUT:.0f}s:\n{tail}"
    assert booted.group(1) == HOSTNAME.encode(), tail
    ready = READY.search(text)
    assert ready, f"no DHCP lease (READY line) within {BOOT_TIMEOUT:.0f}s:\n{tail}"
    assert ready.group(2).startswith(b"10.0.2."), tail  # slirp's default network
    assert b"fabric-guest:" not in text, f"the guest's init reported a problem:\n{tail}"
    assert page is not None, f"{url} did not answer within {BOOT_TIMEOUT:.0f}s:\n{tail}"
    assert f"hello from {HOSTNAME}" in page, page
    assert reached == "PROBE-OK page served by the host\n", reached
    assert unreached is not None and unreached.startswith(f"PROBE-FAILED 10.0.2.2:{closed}: "), unreached
