"""The KVM probe: whether guests on a libvirt should run under KVM or under TCG (emulation).

/dev/kvm being there proves little: under nested virtualization KVM may create guests that fail
to start or crawl. So a tiny guest really boots, with the CPU settings real guests get: a
transient domain whose disk is a boot sector, generated here, that writes a marker to the
serial port. KVM is chosen when its marker comes in time and sooner than the same guest's under
TCG. (Where this was written, the boot sector printed under KVM, but after 2.5 s against TCG's
0.15 s, and a Linux kernel under KVM got no further than its decompressor in minutes.)

The answer is kept per process and libvirt URI. While a probe runs, its boot sector and console
are in `<workdir>/kvm-probe-<random>/`; the domain is `fabric-kvm-probe-<random>`.
"""

import asyncio
import logging
import os
import re
import secrets
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import libvirt

from actors.compute_agent.domain_xml import DOMAIN_PREFIX, add_cpu

log = logging.getLogger("fabric.virt.libvirt")

#: How long libvirt may take to start the probe guest, then how long the guest has to print its
#: marker (well under a second, under KVM or TCG, on a sound host).
PROBE_START_TIMEOUT_S = 30.0
PROBE_OUTPUT_TIMEOUT_S = 5.0
PROBE_MARKER = b"FABRIC-KVM-PROBE-OK"

#: The virt types chosen by probing, by libvirt URI: probed once per process.
_probed: dict[str, tuple[str, str]] = {}


async def probed_virt_type(conn: Any, uri: str, workdir: Path) -> tuple[str, str]:
    """("kvm" or "qemu", why) for the libvirt at `uri`, probed the first time it is asked for
    in this process."""
    if uri not in _probed:
        _probed[uri] = await probe_kvm(conn, uri, workdir)
        chosen, why = _probed[uri]
        log.info("virt type %s for %s: %s", chosen, uri, why)
    return _probed[uri]


async def probe_kvm(conn: Any, uri: str, workdir: Path) -> tuple[str, str]:
    """("kvm" or "qemu", why), from booting the probe guest under KVM, then under TCG."""
    if not urlsplit(uri).hostname:  # a local libvirtd: qemu will open this machine's /dev/kvm
        try:
            os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        except FileNotFoundError:
            return "qemu", "no /dev/kvm: TCG"
        except OSError as exc:
            return "qemu", f"/dev/kvm cannot be opened ({exc.strerror}): TCG"
    kvm_s, failure = await _boot_probe(conn, workdir, "kvm")
    if kvm_s is None:
        return "qemu", f"a KVM guest {failure}: TCG"
    tcg_s, _ = await _boot_probe(conn, workdir, "qemu")
    if tcg_s is not None and kvm_s > tcg_s:
        return "qemu", (
            f"a KVM guest booted slower than an emulated one ({kvm_s:.2f}s, TCG {tcg_s:.2f}s; "
            "nested virtualization?): TCG"
        )
    tcg = f"{tcg_s:.2f}s" if tcg_s is not None else "did not boot"
    return "kvm", f"a KVM guest booted in {kvm_s:.2f}s (TCG: {tcg})"


async def _boot_probe(conn: Any, workdir: Path, domain_type: str) -> tuple[float | None, str]:
    """(seconds from the probe guest's start to its marker, or None and what went wrong). The
    guest and its files are gone when this returns, whatever happened."""
    token = secrets.token_hex(4)
    name = f"{DOMAIN_PREFIX}kvm-probe-{token}"
    directory = workdir / f"kvm-probe-{token}"
    console = directory / "console.log"
    await asyncio.to_thread(_write_probe_disk, directory)
    xml = _probe_xml(name, directory, domain_type)
    creating = asyncio.ensure_future(asyncio.to_thread(conn.createXML, xml, 0))
    try:
        try:
            await asyncio.wait_for(asyncio.shield(creating), PROBE_START_TIMEOUT_S)
        except TimeoutError:
            return None, f"did not start within {PROBE_START_TIMEOUT_S:.0f}s"
        except libvirt.libvirtError as exc:
            return None, f"failed to start ({libvirt_message(exc)})"
        started = time.monotonic()
        while time.monotonic() - started < PROBE_OUTPUT_TIMEOUT_S:
            if PROBE_MARKER in await asyncio.to_thread(_read_or_empty, console):
                return time.monotonic() - started, ""
            await asyncio.sleep(0.01)
        return None, f"started but wrote nothing within {PROBE_OUTPUT_TIMEOUT_S:.0f}s"
    finally:
        # Destroy first (that also ends a start still in progress), then wait for the start
        # to return, then destroy again in case it finished only now.
        await asyncio.to_thread(_destroy_by_name, conn, name)
        await asyncio.gather(creating, return_exceptions=True)
        await asyncio.to_thread(_destroy_by_name, conn, name)
        await asyncio.to_thread(shutil.rmtree, directory)


def _boot_sector() -> bytes:
    """x86 real mode, loaded by the BIOS at 0x7c00: write the marker to COM1, then halt for ever."""
    message = PROBE_MARKER + b"\r\n\0"
    start = 0x7C00 + 23  # where the message follows the 23 bytes of code below
    code = bytes(
        [
            *(0x31, 0xC0),  # xor ax, ax
            *(0x8E, 0xD8),  # mov ds, ax
            0xFC,  # cld
            *(0xBA, 0xF8, 0x03),  # mov dx, 0x3f8        (COM1's data port)
            *(0xBE, start & 0xFF, start >> 8),  # mov si, message
            0xAC,  # next: lodsb
            *(0x84, 0xC0),  # test al, al
            *(0x74, 0x03),  # jz halt
            0xEE,  # out dx, al
            *(0xEB, 0xF8),  # jmp next
            0xFA,  # halt: cli
            0xF4,  # hlt
            *(0xEB, 0xFD),  # jmp hlt
        ]
    )
    assert len(code) == 23
    return (code + message).ljust(510, b"\0") + b"\x55\xaa"


def _write_probe_disk(directory: Path) -> None:
    directory.mkdir(parents=True)
    disk = directory / "boot.img"
    disk.write_bytes(_boot_sector())
    # SeaBIOS does not boot a virtio disk of one sector; 1 MiB (sparse) it does.
    os.truncate(disk, 2**20)


def _probe_xml(name: str, directory: Path, domain_type: str) -> str:
    """A transient domain that boots `directory/boot.img` and logs its serial port to a file."""
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = "32"
    ET.SubElement(domain, "vcpu").text = "1"
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    add_cpu(domain, domain_type)
    devices = ET.SubElement(domain, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=str(directory / "boot.img"))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(directory / "console.log"))
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(domain, encoding="unicode")


def _destroy_by_name(conn: Any, name: str) -> None:
    try:
        conn.lookupByName(name).destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def libvirt_message(exc: Any) -> str:
    """libvirt's message, first line, without the timestamps qemu puts before its own lines.
    (Here because the probe reports why its guest failed; the driver uses it too.)"""
    message = str(exc.get_error_message() or exc).strip().splitlines()[0]
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z ", "", message)[:300]
