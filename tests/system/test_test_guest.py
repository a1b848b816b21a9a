"""The test guest (scripts/build-test-guest.sh) builds from Debian packages and boots for real.

It is booted with qemu directly, not libvirt, under TCG so that it needs no /dev/kvm, with
user-mode networking: slirp's own DHCP server gives the lease and a host port on 127.0.0.1 is
forwarded to the guest's port 80, so nothing leaves this machine. The test checks the three
things the cloud's own tests will rely on: the boot marker on the serial console names the
hostname from the kernel command line, DHCP gave a lease, and the guest's web page names it;
and the guest's probe page fetches what the guest itself can reach (slirp's 10.0.2.2 is the
host's loopback), or says it cannot. A second boot gives the guest disks, at boot and hot-plugged
through qemu's QMP socket, and checks the `DISK` lines and markers the volume tests rely on.
"""

import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class Qmp:
    """Just enough of qemu's QMP (JSON lines on a unix socket) to hot-plug a disk."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        self._answer()  # the greeting
        self.run("qmp_capabilities")

    def _answer(self) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(self.file.readline())
            if "event" not in message:
                return message

    def run(self, command: str, **arguments: object) -> object:
        self.file.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        self.file.flush()
        answer = self._answer()
        assert "error" not in answer, (command, answer)
        return answer.get("return")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def wait_for_line(console: Path, line: str, timeout_s: float, process: subprocess.Popen[bytes]) -> float:
    """Seconds until `line` is a whole line of the console."""
    started = time.monotonic()
    text = b""
    while time.monotonic() - started < timeout_s:
        text = console.read_bytes() if console.exists() else b""
        if re.search(rb"^" + re.escape(line.encode()) + rb"\r?$", text, re.M):
            return time.monotonic() - started
        assert b"Kernel panic" not in text, text.decode(errors="replace")[-3000:]
        assert process.poll() is None, f"qemu exited with {process.returncode}"
        time.sleep(0.02)
    raise AssertionError(
        f"no line {line!r} within {timeout_s:.0f}s:\n{text.decode(errors='replace')[-3000:]}"
    )


def test_guest_reports_each_disk_and_leaves_or_finds_its_marker(
    guest: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None or shutil.which("qemu-img") is None:
        pytest.skip(
            "qemu-system-x86_64 or qemu-img is not installed (scripts/build-test-guest.sh installs them)"
        )
    kernel, initrd, root = guest
    blank = tmp_path / "blank.qcow2"  # the test guest's own empty root disk, as a volume made of it
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(root), str(blank)], check=True
    )
    marked, hot = tmp_path / "marked.raw", tmp_path / "hot.raw"
    marked.write_bytes(b"written-by other-vm\n".ljust(2**20, b"\0"))
    hot.write_bytes(bytes(2**20))
    long_serial = "0123456789abcdefghijklmnopqrstuvwxyz"  # a volume id is longer than virtio's 20
    console, qmp_path = tmp_path / "console.log", tmp_path / "qmp.sock"
    command = [
        qemu,
        "-machine", "accel=tcg",
        "-m", "256",
        "-nographic",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", f"console=ttyS0 fabric.hostname={HOSTNAME}",
        "-serial", f"file:{console}",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
        "-netdev", "user,id=n0",
        "-device", "virtio-net-pci,netdev=n0",
        "-drive", f"file={blank},format=qcow2,if=none,id=root",
        "-device", f"virtio-blk-pci,drive=root,serial={long_serial}",
        "-drive", f"file={marked},format=raw,if=none,id=marked",
        "-device", "virtio-blk-pci,drive=marked,serial=marked-disk",
        "-no-reboot",
    ]  # fmt: skip
    log = (tmp_path / "qemu.log").open("wb")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    qmp = None
    try:
        wait_for_line(console, f"DISK vda serial={long_serial[:20]}", BOOT_TIMEOUT, process)
        wait_for_line(console, f"DISK vda wrote written-by {HOSTNAME}", 30, process)
        wait_for_line(console, "DISK vdb serial=marked-disk", 30, process)
        wait_for_line(console, "DISK vdb found written-by other-vm", 30, process)

        qmp = Qmp(qmp_path)
        qmp.run(
            "blockdev-add",
            driver="raw",
            **{"node-name": "hot"},
            file={"driver": "file", "filename": str(hot)},
        )
        started = time.monotonic()
        qmp.run("device_add", driver="virtio-blk-pci", drive="hot", id="hot0", serial="hot-plugged")
        wait_for_line(console, "DISK vdc serial=hot-plugged", 30, process)
        seen = time.monotonic() - started
        wait_for_line(console, f"DISK vdc wrote written-by {HOSTNAME}", 30, process)
        started = time.monotonic()
        qmp.run("device_del", id="hot0")
        wait_for_line(console, "DISK vdc removed", 30, process)
        removed = time.monotonic() - started
        print(
            f"\nqemu (TCG): a hot-plugged disk seen {seen:.2f}s after device_add, "
            f"gone {removed:.2f}s after device_del"
        )
    finally:
        if qmp is not None:
            qmp.close()
        if process.poll() is None:
            process.kill()  # by its PID: this qemu and nothing else
        process.wait(timeout=30)
        log.close()

    text = console.read_text(errors="replace")
    assert "fabric-guest:" not in text, text[-3000:]
    assert hot.read_bytes().startswith(f"written-by {HOSTNAME}\n".encode() + b"\0"), (
        "the marker is not on the disk"
    )
    assert marked.read_bytes().startswith(b"written-by other-vm\n\0"), "a marker was overwritten"
    assert text.count("DISK vdb found") == 1 and "DISK vdb wrote" not in text
