"""Names of ports and floating IPs (Neutron's dns-integration and dns-domain-ports): the checks
Neutron's validators make, and the `dns_assignment` a port shows. Pure: no I/O.

Neutron lowercases every one of these values before it checks it, and so do we. '' always
means "not set". An FQDN here keeps its trailing dot; the longest is 255 characters with it
(Neutron's FQDN_FIELD_SIZE).

Differences from Neutron, on purpose:
- A port's `dns_name` is one label (the hostname DHCP gives its guest), where Neutron also takes
  an FQDN ending in the server's configured domain: this cloud has no such configured domain.
- `dns_assignment` uses the port's domain (its own, else its network's) where Neutron uses its
  configuration's `dns_domain`; without one it is Neutron's default, `openstacklocal.`. The
  hostname is the port's `dns_name`, else Neutron's `host-<address with dashes>`, which is also
  what the DHCP server gives the guest (`plumbing.py`).
"""

import re

from protocol.errors import Invalid
from protocol.network import DnsAssignment

FQDN_MAX = 255
LABEL_MAX = 63
#: Neutron's `dns_domain` default: what `dns_assignment` shows when no domain applies.
DEFAULT_DOMAIN = "openstacklocal."
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
ALL_DIGITS = re.compile(r"[0-9]+")


def _labels(name: str, field: str, shown: str) -> None:
    """Each dot-separated part a label; the last one (a top-level domain) not all digits
    (RFC 1123, as Neutron checks)."""
    labels = name.split(".")
    for label in labels:
        if not label:
            raise Invalid(field, f"{shown!r} has an empty label")
        if not LABEL.fullmatch(label):
            raise Invalid(
                field,
                f"{shown!r}: label {label[: LABEL_MAX + 1]!r} must be 1-{LABEL_MAX} letters, digits or "
                "hyphens, and not start or end with a hyphen",
            )
    if len(labels) > 1 and ALL_DIGITS.fullmatch(labels[-1]):
        raise Invalid(field, f"{shown!r}: the top-level domain {labels[-1]!r} must not be all digits")


def port_name(value: str, field: str) -> str:
    """A port's `dns_name`: one label, or ''. Returns it lowercased."""
    name = value.lower()
    if "." in name:
        raise Invalid(field, f"{value[:FQDN_MAX]!r} is not a hostname: one label, without dots")
    if name:
        _labels(name, field, value[:FQDN_MAX])
    return name


def domain(value: str, field: str) -> str:
    """A `dns_domain`: an FQDN with its trailing dot, or ''. Returns it lowercased."""
    name = value.lower()
    if not name:
        return name
    if not name.endswith("."):
        raise Invalid(field, f"{value[:FQDN_MAX]!r} is not a fully qualified domain name: end it with '.'")
    if len(name) > FQDN_MAX - 2:  # room for a one-letter name in front of it
        raise Invalid(field, f"{len(name)} characters: at most {FQDN_MAX - 2}")
    _labels(name[:-1], field, value)
    return name


def floating_ip_name(value: str, field: str) -> str:
    """A floating IP's `dns_name`: a relative name (labels, no trailing dot), or ''."""
    name = value.lower()
    if not name:
        return name
    if name.endswith("."):
        raise Invalid(
            field, f"{value[:FQDN_MAX]!r} is a fully qualified name: give it relative to dns_domain"
        )
    if len(name) > FQDN_MAX - 3:  # room for a one-letter domain behind it
        raise Invalid(field, f"{len(name)} characters: at most {FQDN_MAX - 3}")
    _labels(name, field, value)
    return name


def fits(name: str, zone: str, field: str) -> None:
    """`name.zone` must be a valid FQDN in length, else Invalid naming `field`."""
    if name and zone and len(name) + 1 + len(zone) > FQDN_MAX:
        raise Invalid(field, f"{name}.{zone} would be longer than {FQDN_MAX} characters")


def assignment(dns_name: str, zone: str, addresses: tuple[str, ...]) -> tuple[DnsAssignment, ...]:
    """What a port shows as `dns_assignment`: one entry per fixed address. `zone`: the port's
    domain, its own or its network's ('' when neither has one)."""
    out = []
    for ip in addresses:
        hostname = dns_name or "host-" + ip.replace(".", "-")
        out.append(
            DnsAssignment(hostname=hostname, ip_address=ip, fqdn=f"{hostname}.{zone or DEFAULT_DOMAIN}")
        )
    return tuple(out)
