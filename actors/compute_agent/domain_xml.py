"""A guest's libvirt domain definition, and the fabric's metadata inside it, as pure functions.

A domain is the fabric's when it carries the `<metadata>` element in `METADATA_NS`, which names
the server and the host whose agent made it; `owner` reads that element back. The domain is
named `fabric-<server_id>` and, when the id is a UUID, has it as its uuid, so virsh shows which
server a domain is.
"""

import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from fabric.virt import GuestSpec
from protocol.network_agent import bridge_name, tap_name

#: The XML namespace of our domain metadata; its presence is what makes a domain the fabric's.
METADATA_NS = "urn:x-cloud-fabric:instance:1"
DOMAIN_PREFIX = "fabric-"


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
    """The domain definition of a guest. Each NIC is a tap (`tap<port>`) on its network's bridge
    (`brq<network>`), which the host's network agent makes: the bridge must exist first."""
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
    add_cpu(domain, domain_type)
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
