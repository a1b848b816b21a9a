"""The libvirt virt driver: each guest a persistent libvirt domain, on qemu (KVM or TCG) or on
libvirt's in-memory test driver (`test:///default`, for fast tests that boot nothing).

What it keeps where (all under `state_dir`, which qemu's own user must be able to traverse):
  images/<image_id>                   the image cache (`fabric/image_cache.py`): verified copies
  instances/<server_id>/disk.qcow2    the root disk: a qcow2 overlay of the cached root image
  instances/<server_id>/console.log   the serial console, as virtlogd writes it (appended across
                                      boots, rolled over by virtlogd at its size limit)
  kvm-probe-<random>/                 the KVM probe's boot sector and console, while it runs

Volumes are the volume agent's files, elsewhere (a `GuestDisk`'s connection names them): the
driver plugs them into domains (`attach_disk`, or at spawn: boot from volume) and never removes
or writes them; destroying a guest removes its domain and its instance directory, nothing else.
A volume's disk is found in a domain by its serial, the volume id; detach unplugs it from the
running guest first and waits until the guest let go, and only then from the definition.

The domain's definition is built in `domain_xml.py`, and with `virt_type="auto"` the choice of
KVM or TCG is made by `kvm_probe.py`. A domain is ours when it carries our `<metadata>` element
naming this host: `guests()` lists only those, and every action on a server id checks it, so
domains someone else made on the same libvirt (or another agent's, sharing one libvirtd in
tests) are never listed or touched.

libvirt-python blocks, so every libvirt call runs in a thread (`asyncio.to_thread`); libvirt
connections may be used from several threads at once.
"""

import asyncio
import errno
import logging
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal

import libvirt
import orjson

from actors.compute_agent.domain_xml import (
    METADATA_NS,
    BadDisk,
    VolumeDisk,
    attached_disks,
    choose_target,
    disk_xml,
    domain_name,
    domain_xml,
    owner,
    spawn_volumes,
    used_targets,
)
from actors.compute_agent.kvm_probe import libvirt_message, probed_virt_type
from fabric.blobs import BlobStore
from fabric.image_cache import ImageCache, ImageUnavailable
from fabric.threads import finish_in_thread
from fabric.virt import (
    AttachFailed,
    DetachFailed,
    GuestDisk,
    GuestNotFound,
    GuestSpec,
    HostResources,
    ImageFile,
    PowerState,
    SpawnFailed,
)
from protocol.network_agent import bridge_name

log = logging.getLogger("fabric.virt.libvirt")

VirtType = Literal["kvm", "qemu", "auto"]

GiB = 2**30

#: A guest's soft reboot first asks it to shut down (ACPI power button). Guests without an ACPI
#: daemon, such as the busybox test guest, ignore that; after this grace period the guest is
#: reset instead, as Nova falls back to a hard reboot (Nova waits minutes; the agent has a
#: deadline to keep, and a guest that handles ACPI is off well within this).
SOFT_REBOOT_GRACE_S = 5.0
QEMU_IMG_TIMEOUT_S = 60.0
#: While a detach waits for the guest to let go, the live XML is read this often, and the unplug
#: request sent again this often (as Nova does: a guest still booting may miss the first one).
DETACH_POLL_S = 0.05
DETACH_RESEND_S = 5.0

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
        return await probed_virt_type(self._conn, self.uri, self.state_dir)

    # -- spawn ----------------------------------------------------------------------------

    async def spawn(self, spec: GuestSpec) -> None:
        if not _SAFE_ID.fullmatch(spec.server_id):
            raise SpawnFailed(f"server id {spec.server_id!r} cannot name a domain")
        await wait_for_bridges(spec)
        try:
            if await asyncio.to_thread(self._start_existing, spec.server_id):
                return
        except libvirt.libvirtError as exc:
            # The guest exists and would not start: it is not removed, its disk may matter.
            raise SpawnFailed(f"libvirt: {libvirt_message(exc)}") from exc
        directory = self.instances_dir / spec.server_id
        try:
            # A directory without a domain is what a spawn that crashed half-way left behind.
            await asyncio.to_thread(_remove_tree, directory)
            await asyncio.to_thread(directory.mkdir, parents=True)
            caches = [await asyncio.to_thread(_cache_mode, d) for d in spec.disks]
            volumes = spawn_volumes(spec, caches)
            kernel = await self.images.fetch(spec.kernel) if spec.kernel else None
            ramdisk = await self.images.fetch(spec.ramdisk) if spec.kernel and spec.ramdisk else None
            disk = None
            if spec.root_image is not None:  # else the root disk is a volume (boot from volume)
                root = await self.images.fetch(spec.root_image)
                disk = directory / "disk.qcow2"
                await create_overlay(root, spec.root_image, disk, spec.disk_gb)

            def xml() -> str:
                return domain_xml(
                    spec,
                    domain_type=self._domain_type,
                    host=self.host,
                    disk=disk,
                    console=directory / "console.log",
                    kernel=kernel,
                    ramdisk=ramdisk,
                    volumes=volumes,
                )

            try:
                await finish_in_thread(self._define_and_start, xml())
            except libvirt.libvirtError as exc:
                if self._domain_type != "kvm" or "failed to set MSR" not in libvirt_message(exc):
                    raise
                # The probe's guest ran under KVM but a real one cannot (nested virtualization
                # refusing an MSR of the passed-through CPU): this host is TCG from now on.
                self.virt_type_reason = f"KVM guests fail here ({libvirt_message(exc)[-160:]}); TCG"
                log.warning("falling back to TCG", extra={"host": self.host, "reason": self.virt_type_reason})
                await asyncio.to_thread(self._undefine, spec.server_id)
                self._domain_type, self.hypervisor_type = "qemu", "QEMU"
                await finish_in_thread(self._define_and_start, xml())
        except BaseException as exc:
            await asyncio.to_thread(self._forget, spec.server_id)
            if isinstance(exc, libvirt.libvirtError):
                raise SpawnFailed(f"libvirt: {libvirt_message(exc)}") from exc
            if isinstance(exc, ImageUnavailable | BadDisk):
                raise SpawnFailed(exc.reason) from exc
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

    def _undefine(self, server_id: str) -> None:
        """Remove the domain only, keeping the instance directory (a spawn about to retry)."""
        dom = self._find(server_id)
        if dom is not None:
            _remove_domain(dom)

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

    # -- volumes --------------------------------------------------------------------------

    async def attach_disk(self, server_id: str, disk: GuestDisk) -> str:
        dom = await asyncio.to_thread(self._lookup, server_id)
        try:
            cache = await asyncio.to_thread(_cache_mode, disk)
            # A cancelled attach still finishes, so a retry finds the disk by its serial.
            target = await finish_in_thread(self._attach, dom, disk, cache)
        except BadDisk as exc:
            raise AttachFailed(exc.reason) from exc
        except libvirt.libvirtError as exc:
            raise AttachFailed(f"libvirt: {libvirt_message(exc)}") from exc
        log.info(
            "attached volume %s as %s",
            disk.volume_id,
            target,
            extra={"host": self.host, "server_id": server_id},
        )
        return target

    def _attach(self, dom: Any, disk: GuestDisk, cache: str | None) -> str:
        """Live and persistent for a running guest, persistent for a stopped one; each part only
        where the disk is not there yet (a redelivered attach, or one a crash cut in half)."""
        is_active = bool(dom.isActive())
        live = dom.XMLDesc(0)
        config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        in_live = attached_disks(live).get(disk.volume_id) if is_active else None
        in_config = attached_disks(config).get(disk.volume_id)
        target = in_live or in_config or choose_target(disk.device, used_targets(live) | used_targets(config))
        flags = 0
        if is_active and in_live is None:
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        if in_config is None:
            flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if flags:
            dom.attachDeviceFlags(disk_xml(VolumeDisk(disk=disk, target=target, cache=cache)), flags)
        return target

    async def detach_disk(self, server_id: str, volume_id: str, timeout_s: float) -> None:
        """First from the running guest, waiting until it let go; only then from the persistent
        definition. So a guest that keeps the disk keeps it in both (the volume stays attached,
        truthfully), and a detach cut short is finished by the next one."""
        dom = await asyncio.to_thread(self._lookup, server_id)
        try:
            if await asyncio.to_thread(self._live_disk, dom, volume_id) is not None:
                await self._detach_live(dom, volume_id, timeout_s)
            await asyncio.to_thread(self._detach_config, dom, volume_id)
        except libvirt.libvirtError as exc:
            raise DetachFailed(f"libvirt: {libvirt_message(exc)}") from exc
        log.info("detached volume %s", volume_id, extra={"host": self.host, "server_id": server_id})

    async def _detach_live(self, dom: Any, volume_id: str, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        # libvirt's detach itself waits (up to 5 s) for qemu to report the device gone, holding
        # the domain's job, which can hold up our reads of the live XML too (seen with a paused
        # guest): the deadline bounds the whole wait, and a call still running when it comes
        # runs on in its thread, which does no harm.
        first = asyncio.ensure_future(asyncio.to_thread(self._request_live_detach, dom, volume_id))
        requests, sent_at = [first], loop.time()
        try:
            async with asyncio.timeout(timeout_s):
                while await asyncio.to_thread(self._live_disk, dom, volume_id) is not None:
                    if first.done():
                        first.result()  # the first request's error is the answer (resends' are not)
                    if requests[-1].done() and loop.time() - sent_at >= DETACH_RESEND_S:
                        resend = asyncio.to_thread(self._request_live_detach, dom, volume_id)
                        requests.append(asyncio.ensure_future(resend))
                        sent_at = loop.time()
                    await asyncio.sleep(DETACH_POLL_S)
        except TimeoutError:
            raise DetachFailed(
                f"the guest did not release the disk within {timeout_s:g} s "
                "(it must handle ACPI hot-unplug; a guest still booting may miss the request)"
            ) from None
        finally:
            for request in requests:
                request.add_done_callback(_log_request_error)

    def _live_disk(self, dom: Any, volume_id: str) -> str | None:
        """The disk's `<disk>` element in the running guest, or None (not there, or not running)."""
        if not dom.isActive():
            return None
        return _disk_by_serial(dom.XMLDesc(0), volume_id)

    def _request_live_detach(self, dom: Any, volume_id: str) -> None:
        element = self._live_disk(dom, volume_id)
        if element is not None:
            dom.detachDeviceFlags(element, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def _detach_config(self, dom: Any, volume_id: str) -> None:
        element = _disk_by_serial(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), volume_id)
        if element is not None:
            dom.detachDeviceFlags(element, libvirt.VIR_DOMAIN_AFFECT_CONFIG)

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


# -- small libvirt helpers ----------------------------------------------------------------


def _disk_by_serial(xml: str, serial: str) -> str | None:
    """The `<disk>` element whose serial is `serial`, as XML, or None."""
    for element in ET.fromstring(xml).iterfind("devices/disk"):
        if element.findtext("serial") == serial:
            return ET.tostring(element, encoding="unicode")
    return None


def _cache_mode(disk: GuestDisk) -> str | None:
    """The qemu cache mode of a volume: `none` when its file can be opened with O_DIRECT (qemu
    then bypasses the host's page cache, as Nova prefers), else None (qemu's default). Raises
    BadDisk when a file volume's file is not on this host; other connection types are judged by
    `disk_element`."""
    if disk.connection.driver_volume_type != "file":
        return None
    path = disk.connection.data.get("path", "")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except FileNotFoundError as exc:
        raise BadDisk(f"volume {disk.volume_id}: its file {path} is not on this host") from exc
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # the filesystem (tmpfs) has no O_DIRECT
            return None
        raise BadDisk(f"volume {disk.volume_id}: {_os_reason(exc)}") from exc
    os.close(fd)
    return "none"


def _log_request_error(request: "asyncio.Future[None]") -> None:
    """Reads a finished detach request's error (so asyncio does not report it as never read)."""
    if not request.cancelled() and request.exception() is not None:
        log.debug("a detach request failed: %s", request.exception())


def _owner(dom: Any) -> tuple[str, str] | None:
    """(server id, host) from our metadata, or None for a domain that has none (not ours)."""
    try:
        xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_DOMAIN):
            return None
        raise
    return owner(xml)


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


def _power_state(state: int) -> PowerState:
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return PowerState.RUNNING
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return PowerState.SHUTDOWN
    return PowerState.OTHER


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _ignore_libvirt_error(_ctx: object, _error: object) -> None:
    return None


# -- files --------------------------------------------------------------------------------


def _closed_to_others(path: Path) -> Path | None:
    """The first directory from / down to `path` that other users may not traverse, if any."""
    for directory in (*reversed(path.resolve().parents), path.resolve()):
        if not directory.stat().st_mode & 0o001:
            return directory
    return None


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            return f.read(max_bytes).decode(errors="replace")
    except FileNotFoundError:
        return ""


#: How long a spawn waits for the network agent to make the bridges its NICs join.
BRIDGE_WAIT_S = 30.0


async def wait_for_bridges(spec: GuestSpec) -> None:
    """The bridges of the guest's networks, made by the host's network agent once the ports were
    bound here. The agent has answered the compute agent's `PlugPorts` by now, but a convergence
    that failed on a bridge retries: wait for them a while, or fail the spawn saying which
    network is not plumbed, rather than boot a guest whose NIC goes nowhere."""
    deadline = time.monotonic() + BRIDGE_WAIT_S
    for nic in spec.nics:
        bridge = Path("/sys/class/net") / bridge_name(nic.network_id) / "bridge"
        while not await asyncio.to_thread(bridge.exists):
            if time.monotonic() > deadline:
                raise SpawnFailed(
                    f"network {nic.network_id} is not plumbed on this host (no bridge {bridge.parent.name}): "
                    "is its network agent running?"
                )
            await asyncio.sleep(0.1)
