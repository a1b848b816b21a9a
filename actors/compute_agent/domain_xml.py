"""A guest's libvirt domain definition, and the fabric's metadata inside it, as pure functions.

A domain is the fabric's when it carries the `<metadata>` element in `METADATA_NS`, which names
the server and the host whose agent made it; `owner` reads that element back. The domain is
named `fabric-<server_id>` and, when the id is a UUID, has it as its uuid, so virsh shows which
server a domain is.

Volumes are virtio disks whose `<serial>` is the volume id, as Nova makes them: the guest reads
(the first 20 characters of) it, and `attached_disks` finds a volume in a domain by it, so an
attach or detach asked twice can see what the first one did. The target name (`vdb`) is only a
hint to the guest, which names disks in the order it finds them.
"""

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabric.virt import GuestDisk, GuestSpec
from protocol.network_agent import bridge_name, tap_name

#: The XML namespace of our domain metadata; its presence is what makes a domain the fabric's.
METADATA_NS = "urn:x-cloud-fabric:instance:1"
DOMAIN_PREFIX = "fabric-"

#: The targets a guest's virtio disks may have; `vda` is the root disk's.
DISK_TARGETS = tuple(f"vd{chr(c)}" for c in range(ord("a"), ord("z") + 1))
ROOT_TARGET = DISK_TARGETS[0]
#: The formats qemu is told a volume file has (never probed: a probed raw file could claim to be
#: a qcow2 naming any backing file of its choosing).
VOLUME_FORMATS = ("qcow2", "raw")
#: What libvirt accepts in a disk's serial.
_SERIAL = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


class BadDisk(Exception):
    """A disk that cannot become part of a domain; `reason` says why, for a user to read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VolumeDisk:
    """A volume as it goes into a domain: its target chosen, and qemu's cache mode."""

    disk: GuestDisk
    target: str
    #: "none" (O_DIRECT: no second copy in the host's page cache, as Nova prefers) when the
    #: file's filesystem takes O_DIRECT (tmpfs does not); None: qemu's default.
    cache: str | None = None


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
    disk: Path | None,
    console: Path,
    kernel: Path | None,
    ramdisk: Path | None,
    volumes: Sequence[VolumeDisk] = (),
) -> str:
    """The domain definition of a guest. Each NIC is a tap (`tap<port>`) on its network's bridge
    (`brq<network>`), which the host's network agent makes: the bridge must exist first. The
    root disk `vda` is the image overlay `disk`, or the volume among `volumes` that `is_root`
    (then `disk` is None)."""
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
    # ACPI: the power button that soft reboot presses, and PCI hot-plug on the `pc` machine
    # (without it qemu answers "Bus 'pci.0' does not support hotplugging" to a disk attach).
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    add_cpu(domain, domain_type)
    ET.SubElement(domain, "clock", offset="utc")
    # Off means off: a guest that powers itself off stays defined and shut off, as Nova's does.
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"

    devices = ET.SubElement(domain, "devices")
    if disk is not None:
        disk_el = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk_el, "driver", name="qemu", type="qcow2")
        ET.SubElement(disk_el, "source", file=str(disk))
        ET.SubElement(disk_el, "target", dev=ROOT_TARGET, bus="virtio")
    # The root disk first: it is the one the guest finds first, and the kernel's vda.
    for volume in sorted(volumes, key=lambda v: not v.disk.is_root):
        devices.append(disk_element(volume))
    # A pty (so `virsh console` works) whose output virtlogd also appends to console.log.
    for nic in spec.nics:
        interface = ET.SubElement(devices, "interface", type="bridge")
        ET.SubElement(interface, "mac", address=nic.mac)
        ET.SubElement(interface, "source", bridge=bridge_name(nic.network_id))
        ET.SubElement(interface, "target", dev=tap_name(nic.port_id))
        ET.SubElement(interface, "model", type="virtio")
        ET.SubElement(interface, "mtu", size=str(nic.mtu))
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=str(console), append="on")
    ET.SubElement(serial, "target", port="0")
    return ET.tostring(domain, encoding="unicode")


def disk_element(volume: VolumeDisk) -> ET.Element:
    """A volume's `<disk>`: a virtio disk with the volume id as its serial. Raises BadDisk for a
    connection this hypervisor cannot open (only "file" for now)."""
    disk, connection = volume.disk, volume.disk.connection
    if connection.driver_volume_type != "file":
        raise BadDisk(
            f"volume {disk.volume_id}: connection type {connection.driver_volume_type!r} is not supported "
            "by this hypervisor (only 'file')"
        )
    if not _SERIAL.fullmatch(disk.volume_id):
        raise BadDisk(f"volume id {disk.volume_id!r} cannot be a disk serial")
    path, fmt = connection.data.get("path", ""), connection.data.get("format", "")
    if not path.startswith("/") or "\0" in path:
        raise BadDisk(f"volume {disk.volume_id}: the file connection has no absolute path ({path!r})")
    if fmt not in VOLUME_FORMATS:
        raise BadDisk(f"volume {disk.volume_id}: format {fmt!r} is not one of {', '.join(VOLUME_FORMATS)}")
    if volume.target not in DISK_TARGETS:
        raise BadDisk(f"volume {disk.volume_id}: {volume.target!r} is not a virtio disk target")
    element = ET.Element("disk", type="file", device="disk")
    driver = ET.SubElement(element, "driver", name="qemu", type=fmt)
    if volume.cache is not None:
        driver.set("cache", volume.cache)
    ET.SubElement(element, "source", file=path)
    ET.SubElement(element, "target", dev=volume.target, bus="virtio")
    ET.SubElement(element, "serial").text = disk.volume_id
    return element


def disk_xml(volume: VolumeDisk) -> str:
    """What `attachDeviceFlags` takes."""
    return ET.tostring(disk_element(volume), encoding="unicode")


def choose_target(hint: str | None, used: Collection[str]) -> str:
    """The hint when it is a free virtio target, else the first free one (`vdb`... as the root
    disk holds `vda`). A hint may be a path, as Nova's API takes it (`/dev/vdb`). Raises BadDisk
    when all 26 are taken."""
    hint = hint.removeprefix("/dev/") if hint else None
    if hint in DISK_TARGETS and hint not in used:
        return hint
    for target in DISK_TARGETS:
        if target not in used:
            return target
    raise BadDisk(f"the guest has no free disk target (all {len(DISK_TARGETS)} are in use)")


def spawn_volumes(spec: GuestSpec, caches: Sequence[str | None]) -> list[VolumeDisk]:
    """`spec.disks` with their targets: the root volume `vda`, the others their hints when free,
    in order. `caches[i]` is the cache mode of `spec.disks[i]`. Raises BadDisk for a spec with
    no root disk or two."""
    roots = [d for d in spec.disks if d.is_root]
    if len(roots) > 1 or (roots and spec.root_image is not None):
        raise BadDisk("a guest has one root disk: an image or a volume, not both, not two")
    if not roots and spec.root_image is None:
        raise BadDisk("no root disk: the guest has neither an image nor a root volume")
    used = {ROOT_TARGET}
    placed = []
    for disk, cache in zip(spec.disks, caches, strict=True):
        target = ROOT_TARGET if disk.is_root else choose_target(disk.device, used)
        used.add(target)
        placed.append(VolumeDisk(disk=disk, target=target, cache=cache))
    return placed


def attached_disks(xml: str) -> dict[str, str]:
    """{serial: target} of the disks in a domain's XML that have a serial (volumes)."""
    found = {}
    for element in ET.fromstring(xml).iterfind("devices/disk"):
        serial, target = element.findtext("serial"), element.find("target")
        if serial and target is not None and target.get("dev"):
            found[serial] = str(target.get("dev"))
    return found


def used_targets(xml: str) -> set[str]:
    """Every disk target in a domain's XML, volumes or not."""
    return {str(t.get("dev")) for t in ET.fromstring(xml).iterfind("devices/disk/target") if t.get("dev")}


def add_cpu(domain: ET.Element, domain_type: str) -> None:
    """KVM guests get the host's CPU as it is (the fastest; nothing here migrates guests);
    TCG guests libvirt's default model. The KVM probe uses this too, so that it fails where
    guests would."""
    if domain_type == "kvm":
        ET.SubElement(domain, "cpu", mode="host-passthrough")


def owner(metadata: str) -> tuple[str, str] | None:
    """(server id, host) from our metadata element as libvirt returns it, or None when it does
    not name both."""
    # libvirt hands the element back without its prefix: <instance><server-id>...
    element = ET.fromstring(metadata)
    server_id, host = element.findtext("server-id"), element.findtext("host")
    if not server_id or not host:
        return None
    return server_id, host


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
