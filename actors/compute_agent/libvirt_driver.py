"""The libvirt virt driver: each guest a persistent libvirt domain, on qemu (KVM or TCG) or on
libvirt's in-memory test driver (`test:///default`, for fast tests that boot nothing).

What it keeps where (all under `state_dir`, which qemu's own user must be able to traverse):
  images/<image_id>                   the image cache (`image_cache.py`): verified local copies
  instances/<server_id>/disk.qcow2    the root disk: a qcow2 overlay of the cached root image
  instances/<server_id>/console.log   the serial console, as virtlogd writes it (appended across
                                      boots, rolled over by virtlogd at its size limit)
  kvm-probe-<random>/                 the KVM probe's boot sector and console, while it runs

A domain is ours when it carries our `<metadata>` element naming this host: `guests()` lists
only those, and every action on a server id checks it, so domains someone else made on the same
libvirt (or another agent's, sharing one libvirtd in tests) are never listed or touched. The
domain is named `fabric-<server_id>` and, when the id is a UUID, has it as its uuid, so virsh
shows which server a domain is.

libvirt-python blocks, so every libvirt call runs in a thread (`asyncio.to_thread`); libvirt
connections may be used from several threads at once.
"""

import asyncio
import logging
import os
import re
import secrets
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import libvirt
import orjson

from actors.compute_agent.image_cache import ImageCache, finish_in_thread
from fabric.blobs import BlobStore
from fabric.virt import GuestNotFound, GuestSpec, HostResources, ImageFile, PowerState, SpawnFailed

log = logging.getLogger("fabric.virt.libvirt")

VirtType = Literal["kvm", "qemu", "auto"]

#: The XML namespace of our domain metadata; its presence is what makes a domain the fabric's.
METADATA_NS = "urn:x-cloud-fabric:instance:1"
DOMAIN_PREFIX = "fabric-"
GiB = 2**30

#: A guest's soft reboot first asks it to shut down (ACPI power button). Guests without an ACPI
#: daemon, such as the busybox test guest, ignore that; after this grace period the guest is
#: reset instead, as Nova falls back to a hard reboot (Nova waits minutes; the agent has a
#: deadline to keep, and a guest that handles ACPI is off well within this).
SOFT_REBOOT_GRACE_S = 5.0
QEMU_IMG_TIMEOUT_S = 60.0

#: The KVM probe: how long libvirt may take to start the probe guest, then how long the guest
#: has to print its marker (well under a second, under KVM or TCG, on a sound host).
PROBE_START_TIMEOUT_S = 30.0
PROBE_OUTPUT_TIMEOUT_S = 5.0
PROBE_MARKER = b"FABRIC-KVM-PROBE-OK"

#: The virt types chosen by probing, by libvirt URI: probed once per process.
_probed: dict[str, tuple[str, str]] = {}

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class LibvirtDriver:
    """`fabric.virt.VirtDriver` over libvirt; see the module docstring."""

    def __init__(
        self,
        *,
        uri: str = "qemu:///system",
        virt_type: VirtType = "auto",
        blobs: BlobStore,
        state_dir: Path,
        host: str,
    ) -> None:
        self.uri = uri
        self.virt_type = virt_type
        self.host = host
        self.state_dir = state_dir
        self.instances_dir = state_dir / "instances"
        self.images = ImageCache(state_dir / "images", blobs)
        #: "QEMU" (TCG), "KVM" or "test", known once started, and why that one.
        self.hypervisor_type = "unknown"
        self.virt_type_reason = ""
        self._domain_type = ""
        self._conn: Any = None
        self._resources: HostResources | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        # Errors reach us as exceptions; libvirt's default handler would also print each one,
        # expected ones included (a lookup of a domain that is gone), to stderr.
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        self._conn = await asyncio.to_thread(libvirt.open, self.uri)
        driver = str(await asyncio.to_thread(self._conn.getType))
        if driver == "TEST":
            self._domain_type, self.hypervisor_type = "test", "test"
            self.virt_type_reason = "libvirt's test driver"
        elif driver == "QEMU":
            self._domain_type, self.virt_type_reason = await self._choose_virt_type()
            self.hypervisor_type = "KVM" if self._domain_type == "kvm" else "QEMU"
        else:
            raise RuntimeError(f"{self.uri}: libvirt driver {driver} is not supported (qemu or test)")
        await asyncio.to_thread(self.instances_dir.mkdir, parents=True, exist_ok=True)
        closed = await asyncio.to_thread(_closed_to_others, self.instances_dir)
        if driver == "QEMU" and closed is not None:
            log.warning(
                "%s is closed to other users (mode %o): qemu, which libvirt runs as its own user, "
                "will fail to open guests' disks under %s unless it runs as root",
                closed,
                closed.stat().st_mode & 0o777,
                self.state_dir,
                extra={"host": self.host},
            )
        self._resources = await asyncio.to_thread(self._measure_resources)
        log.info(
            "libvirt driver on %s: hypervisor %s (%s), %s",
            self.uri,
            self.hypervisor_type,
            self.virt_type_reason,
            self._resources,
            extra={"host": self.host},
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)

    def resources(self) -> HostResources:
        """Measured at start: host CPUs and memory as libvirt reports them, and the size of the
        filesystem that holds `state_dir` (where the guests' disks grow)."""
        if self._resources is None:
            raise RuntimeError("the libvirt driver is not started")
        return self._resources

    def _measure_resources(self) -> HostResources:
        info = self._conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
        # getInfo's memory is the sum of the NUMA nodes' and misses memory no node lists (on a
        # VM with hot-plugged memory: 5 of 24 GiB); the host-wide total is /proc/meminfo's.
        try:
            ram_mb = (
                int(self._conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)["total"]) // 1024
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:  # the test driver has no stats
                raise
            ram_mb = int(info[1])
        fs = os.statvfs(self.state_dir)
        disk_gb = fs.f_blocks * fs.f_frsize // GiB
        return HostResources(vcpus=int(info[2]), ram_mb=ram_mb, disk_gb=disk_gb)

    async def _choose_virt_type(self) -> tuple[str, str]:
        """("kvm" or "qemu", why)."""
        if self.virt_type != "auto":
            return self.virt_type, "configured"
        if self.uri not in _probed:
            _probed[self.uri] = await probe_kvm(self._conn, self.uri, self.state_dir)
            chosen, why = _probed[self.uri]
            log.info("virt type %s for %s: %s", chosen, self.uri, why)
        return _probed[self.uri]

    # -- spawn ----------------------------------------------------------------------------

    async def spawn(self, spec: GuestSpec) -> None:
        if not _SAFE_ID.fullmatch(spec.server_id):
            raise SpawnFailed(f"server id {spec.server_id!r} cannot name a domain")
        try:
            if await asyncio.to_thread(self._start_existing, spec.server_id):
                return
        except libvirt.libvirtError as exc:
            # The guest exists and would not start: it is not removed, its disk may matter.
            raise SpawnFailed(f"libvirt: {_libvirt_message(exc)}") from exc
        directory = self.instances_dir / spec.server_id
        try:
            # A directory without a domain is what a spawn that crashed half-way left behind.
            await asyncio.to_thread(_remove_tree, directory)
            await asyncio.to_thread(directory.mkdir, parents=True)
            root = await self.images.fetch(spec.root_image)
            kernel = await self.images.fetch(spec.kernel) if spec.kernel else None
            ramdisk = await self.images.fetch(spec.ramdisk) if spec.kernel and spec.ramdisk else None
            disk = directory / "disk.qcow2"
            await create_overlay(root, spec.root_image, disk, spec.disk_gb)
            xml = domain_xml(
                spec,
                domain_type=self._domain_type,
                host=self.host,
                disk=disk,
                console=directory / "console.log",
                kernel=kernel,
                ramdisk=ramdisk,
            )
            await finish_in_thread(self._define_and_start, xml)
        except BaseException as exc:
            await asyncio.to_thread(self._forget, spec.server_id)
            if isinstance(exc, libvirt.libvirtError):
                raise SpawnFailed(f"libvirt: {_libvirt_message(exc)}") from exc
            if isinstance(exc, OSError):
                raise SpawnFailed(_os_reason(exc)) from exc
            raise
        log.info("spawned %s (%s)", spec.server_id, self.hypervisor_type, extra={"host": self.host})

    def _start_existing(self, server_id: str) -> bool:
        """True when the guest exists already (and now runs); a domain by that name that is not
        ours is refused rather than taken over."""
        try:
            dom = self._conn.lookupByName(domain_name(server_id))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise
        if _owner(dom) != (server_id, self.host):
            raise SpawnFailed(f"a domain named {domain_name(server_id)} exists that this agent did not make")
        if not dom.isActive():
            dom.create()
        return True

    def _define_and_start(self, xml: str) -> None:
        dom = self._conn.defineXML(xml)
        dom.create()

    def _forget(self, server_id: str) -> None:
        """Remove whatever a spawn made: the domain (when ours) and the instance directory."""
        dom = self._find(server_id)
        if dom is not None:
            _remove_domain(dom)
        _remove_tree(self.instances_dir / server_id)

    # -- actions --------------------------------------------------------------------------

    async def destroy(self, server_id: str) -> None:
        if not _SAFE_ID.fullmatch(server_id):
            return
        await asyncio.to_thread(self._forget, server_id)

    async def power_on(self, server_id: str) -> None:
        await asyncio.to_thread(self._power_on, server_id)

    def _power_on(self, server_id: str) -> None:
        dom = self._lookup(server_id)
        if not dom.isActive():
            dom.create()

    async def power_off(self, server_id: str) -> None:
        await asyncio.to_thread(self._power_off, server_id)

    def _power_off(self, server_id: str) -> None:
        _stop(self._lookup(server_id))

    async def reboot(self, server_id: str, *, hard: bool) -> None:
        """A guest that is off is started. Hard: a reset. Soft: an ACPI shutdown, then a start
        once it is off; a guest still running after `SOFT_REBOOT_GRACE_S` is reset."""
        dom = await asyncio.to_thread(self._lookup, server_id)
        if not await asyncio.to_thread(dom.isActive):
            await asyncio.to_thread(dom.create)
            return
        if hard:
            await asyncio.to_thread(dom.reset, 0)
            return
        await asyncio.to_thread(dom.shutdown)
        deadline = time.monotonic() + SOFT_REBOOT_GRACE_S
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(dom.isActive):
                await asyncio.to_thread(dom.create)
                return
            await asyncio.sleep(0.2)
        log.info("%s ignored the ACPI shutdown for %.0fs: resetting it", server_id, SOFT_REBOOT_GRACE_S)
        await asyncio.to_thread(dom.reset, 0)

    async def console_output(self, server_id: str, max_bytes: int) -> str:
        await asyncio.to_thread(self._lookup, server_id)
        if self._domain_type == "test":
            return ""  # the test driver runs no guest, so nothing writes a console
        return await asyncio.to_thread(_tail, self.instances_dir / server_id / "console.log", max_bytes)

    async def guests(self) -> dict[str, PowerState]:
        return await asyncio.to_thread(self._guests)

    def _guests(self) -> dict[str, PowerState]:
        found: dict[str, PowerState] = {}
        for dom in self._conn.listAllDomains(0):
            owner = _owner(dom)
            if owner is None or owner[1] != self.host:
                continue
            try:
                state = int(dom.state()[0])
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # undefined while we looked
                raise
            found[owner[0]] = _power_state(state)
        return found

    # -- lookups --------------------------------------------------------------------------

    def _find(self, server_id: str) -> Any:
        """The server's domain, or None when there is none or it is not ours (for this host)."""
        try:
            dom = self._conn.lookupByName(domain_name(server_id))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        return dom if _owner(dom) == (server_id, self.host) else None

    def _lookup(self, server_id: str) -> Any:
        dom = self._find(server_id) if _SAFE_ID.fullmatch(server_id) else None
        if dom is None:
            raise GuestNotFound(server_id)
        return dom


def domain_name(server_id: str) -> str:
    return f"{DOMAIN_PREFIX}{server_id}"


def guest_hostname(name: str) -> str:
    """A server name as a hostname (what Nova does too): lower case, spaces and underscores as
    dashes, nothing but letters, digits, dots and dashes, at most 63 characters."""
    hostname = re.sub(r"[^a-z0-9.-]", "", re.sub(r"[ _]", "-", name.lower()))
    return hostname.strip(".-")[:63].strip(".-") or "server"


def domain_xml(
    spec: GuestSpec,
    *,
    domain_type: str,
    host: str,
    disk: Path,
    console: Path,
    kernel: Path | None,
    ramdisk: Path | None,
) -> str:
    """The domain definition of a guest: no network interfaces yet (ports attach taps later)."""
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = domain_name(spec.server_id)
    if _is_uuid(spec.server_id):
        ET.SubElement(domain, "uuid").text = spec.server_id
    # The namespace is declared on the element itself (ElementTree would hoist it to <domain>),
    # as libvirt's documentation writes metadata.
    metadata = ET.SubElement(domain, "metadata")
    instance = ET.SubElement(metadata, "fabric:instance", {"xmlns:fabric": METADATA_NS})
    ET.SubElement(instance, "fabric:server-id").text = spec.server_id
    ET.SubElement(instance, "fabric:host").text = host
    ET.SubElement(instance, "fabric:name").text = spec.name
    ET.SubElement(domain, "memory", unit="MiB").text = str(spec.ram_mb)
    ET.SubElement(domain, "vcpu").text = str(spec.vcpus)

    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type").text = "hvm"
    if kernel is not None:
        ET.SubElement(os_, "kernel").text = str(kernel)
        if ramdisk is not None:
            ET.SubElement(os_, "initrd").text = str(ramdisk)
        cmdline = f"{spec.cmdline or ''} fabric.hostname={guest_hostname(spec.name)}".strip()
        ET.SubElement(os_, "cmdline").text = cmdline
    else:
        ET.SubElement(os_, "boot", dev="hd")
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")  # the power button that soft reboot presses
    ET.SubElement(features, "apic")
    _add_cpu(domain, domain_type)
    ET.SubElement(domain, "clock", offset="utc")
    # Off means off: a guest that powers itself off stays defined and shut off, as Nova's does.
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"

    devices = ET.SubElement(domain, "devices")
    disk_el = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk_el, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk_el, "source", file=str(disk))
    ET.SubElement(disk_el, "target", dev="vda", bus="virtio")
    # A pty (so `virsh console` works) whose output virtlogd also appends to console.log.
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=str(console), append="on")
    ET.SubElement(serial, "target", port="0")
    return ET.tostring(domain, encoding="unicode")


def _add_cpu(domain: ET.Element, domain_type: str) -> None:
    """KVM guests get the host's CPU as it is (the fastest; nothing here migrates guests);
    TCG guests libvirt's default model. The KVM probe uses this too, so that it fails where
    guests would."""
    if domain_type == "kvm":
        ET.SubElement(domain, "cpu", mode="host-passthrough")


async def create_overlay(base: Path, image: ImageFile, disk: Path, disk_gb: int) -> None:
    """`disk`: a qcow2 overlay of the cached image `base`, of `disk_gb` GiB or the image's own
    size when that is larger (or disk_gb is 0). The image's format is given to qemu-img, never
    probed, and a qcow2 image that names a backing file of its own is refused: either would let
    an uploaded image make the host open a file of its choosing."""
    if image.disk_format not in ("qcow2", "raw"):
        raise SpawnFailed(f"image {image.image_id}: disk format {image.disk_format} cannot be a root disk")
    info = orjson.loads(await _qemu_img("info", "-f", image.disk_format, "--output=json", str(base)))
    if info.get("backing-filename"):
        raise SpawnFailed(f"image {image.image_id}: a qcow2 image with a backing file is not accepted")
    size = max(disk_gb * GiB, int(info["virtual-size"]))
    fmt = image.disk_format
    await _qemu_img("create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(base), str(disk), str(size))


async def _qemu_img(*args: str) -> bytes:
    try:
        proc = await asyncio.create_subprocess_exec(
            "qemu-img",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise SpawnFailed("qemu-img is not installed on this host") from exc
    try:
        async with asyncio.timeout(QEMU_IMG_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError as exc:
        raise SpawnFailed(f"qemu-img {args[0]} took longer than {QEMU_IMG_TIMEOUT_S:.0f}s") from exc
    finally:
        if proc.returncode is None:
            proc.kill()  # this qemu-img, by its PID
            await proc.wait()
    if proc.returncode != 0:
        raise SpawnFailed(f"qemu-img {args[0]}: {err.decode(errors='replace').strip()[-300:]}")
    return out


# -- the KVM probe ------------------------------------------------------------------------


async def probe_kvm(conn: Any, uri: str, workdir: Path) -> tuple[str, str]:
    """("kvm" or "qemu", why). /dev/kvm being there proves little: under nested virtualization
    KVM may create guests that fail to start or crawl, so a tiny guest really boots, with the
    CPU settings real guests get: a boot sector that writes a marker to the serial port. KVM is
    chosen when its marker comes in time and sooner than the same guest's under TCG. (Where
    this was written, the boot sector printed under KVM, but after 2.5 s against TCG's 0.15 s,
    and a Linux kernel under KVM got no further than its decompressor in minutes.)"""
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
            return None, f"failed to start ({_libvirt_message(exc)})"
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
        await asyncio.to_thread(_remove_tree, directory)


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
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = "32"
    ET.SubElement(domain, "vcpu").text = "1"
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    _add_cpu(domain, domain_type)
    devices = ET.SubElement(domain, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=str(directory / "boot.img"))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(directory / "console.log"))
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(domain, encoding="unicode")


# -- small libvirt helpers ----------------------------------------------------------------


def _owner(dom: Any) -> tuple[str, str] | None:
    """(server id, host) from our metadata, or None for a domain that has none (not ours)."""
    try:
        xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_DOMAIN):
            return None
        raise
    # libvirt hands the element back without its prefix: <instance><server-id>...
    element = ET.fromstring(xml)
    server_id, host = element.findtext("server-id"), element.findtext("host")
    if not server_id or not host:
        return None
    return server_id, host


def _stop(dom: Any) -> None:
    """Hard off (qemu killed), the domain kept; already off: nothing to do."""
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # not running
            raise


_UNDEFINE_ALL = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)
_UNDEFINE_BASIC = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA


def _remove_domain(dom: Any) -> None:
    try:
        _stop(dom)
        try:
            dom.undefineFlags(_UNDEFINE_ALL)
        except libvirt.libvirtError as exc:
            # libvirt's test driver (and older libvirts) refuse the nvram/checkpoint flags.
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
            dom.undefineFlags(_UNDEFINE_BASIC)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise


def _destroy_by_name(conn: Any, name: str) -> None:
    try:
        conn.lookupByName(name).destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise


def _power_state(state: int) -> PowerState:
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return PowerState.RUNNING
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return PowerState.SHUTDOWN
    return PowerState.OTHER


def _libvirt_message(exc: Any) -> str:
    """libvirt's message, first line, without the timestamps qemu puts before its own lines."""
    message = str(exc.get_error_message() or exc).strip().splitlines()[0]
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z ", "", message)[:300]


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _ignore_libvirt_error(_ctx: object, _error: object) -> None:
    return None


# -- files --------------------------------------------------------------------------------


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _closed_to_others(path: Path) -> Path | None:
    """The first directory from / down to `path` that other users may not traverse, if any."""
    for directory in (*reversed(path.resolve().parents), path.resolve()):
        if not directory.stat().st_mode & 0o001:
            return directory
    return None


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            return f.read(max_bytes).decode(errors="replace")
    except FileNotFoundError:
        return ""
