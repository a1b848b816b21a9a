"""What makes a zone name, a record name, an email and each type's record data valid, and their
normal forms (the forms stored, and that PowerDNS serves). Pure: `Invalid(field, reason)` names
the API field at fault.

Names are absolute (trailing dot), compared lowercased, at most 255 characters and 63 per label
(RFC 1035). Record names may also hold `_` (SRV's `_service._proto`, DKIM's `_domainkey`) and
a leading `*` label (a wildcard); zone names may not.
"""

import ipaddress
import re

from protocol.errors import Invalid

MAX_NAME = 255
_ZONE_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_RECORD_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_EMAIL = re.compile(r"[^@\s]+@[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.[a-z]{2,63}")
_TXT_CHUNK = 255


def zone_name(name: str, field: str = "name") -> str:
    """The zone's normal form; Designate's rules: absolute, more than one label."""
    labels = _labels(name, field)
    if len(labels) < 2:
        raise Invalid(field, "more than one label is required")
    for label in labels:
        if not _ZONE_LABEL.fullmatch(label):
            raise Invalid(field, f"{label!r} is not a valid label of a zone name")
    return name.lower()


def record_name(name: str, zone: str, field: str = "name") -> str:
    """The record's normal form, which must be `zone` or a name under it."""
    labels = _labels(name, field)
    for i, label in enumerate(labels):
        if not (_RECORD_LABEL.fullmatch(label) or (i == 0 and label == "*")):
            raise Invalid(field, f"{label!r} is not a valid label of a record name")
    lowered = name.lower()
    if lowered != zone and not lowered.endswith("." + zone):
        raise Invalid(field, f"{name} is not in zone {zone}")
    return lowered


def host_name(value: str, field: str) -> str:
    """A name inside record data (a CNAME's target, an MX's exchange...): absolute."""
    labels = _labels(value, field)
    for label in labels:
        if not _RECORD_LABEL.fullmatch(label):
            raise Invalid(field, f"{value!r} is not a valid host name")
    return value.lower()


def email(value: str, field: str = "email") -> str:
    if not _EMAIL.fullmatch(value.lower()):
        raise Invalid(field, f"{value!r} is not an email address")
    return value.lower()


def soa_rname(address: str) -> str:
    """The SOA's RNAME for an email: its @ becomes a dot (dots in the local part escaped)."""
    local, domain = address.split("@", 1)
    return f"{local.replace('.', chr(92) + '.')}.{domain.rstrip('.')}."


def pdns_name(name: str) -> str:
    """How PowerDNS asks for a name in its SQL: without the trailing dot."""
    return name.rstrip(".")


def record_data(kind: str, data: str, field: str) -> str:
    """One record of type `kind` in its normal form."""
    check = _DATA.get(kind)
    if check is None:
        raise Invalid("type", f"{kind} records cannot be created here")
    return check(data.strip(), field)


def ancestors(name: str) -> list[str]:
    """`a.b.example.org.` → [`b.example.org.`, `example.org.`, `org.`]."""
    labels = name.split(".")[:-1]
    return [".".join(labels[i:]) + "." for i in range(1, len(labels))]


def reverse_name(address: str) -> str:
    """The PTR name of an IP address (`4.3.2.1.in-addr.arpa.`)."""
    return ipaddress.ip_address(address).reverse_pointer + "."


def reverse_zone(address: str) -> str:
    """The reverse zone a floating IP's PTR goes in: its /24 (IPv4) or /64 (IPv6)."""
    labels = reverse_name(address)[:-1].split(".")
    keep = 3 if ipaddress.ip_address(address).version == 4 else 16
    return ".".join(labels[-(keep + 2) :]) + "."


def _labels(name: str, field: str) -> list[str]:
    if not name.endswith("."):
        raise Invalid(field, f"{name!r} must be fully qualified, ending with a dot")
    if len(name) > MAX_NAME:
        raise Invalid(field, f"names are at most {MAX_NAME} characters")
    labels = name[:-1].lower().split(".")
    if any(not label for label in labels):
        raise Invalid(field, f"{name!r} has an empty label")
    if any(len(label) > 63 for label in labels):
        raise Invalid(field, "labels are at most 63 characters")
    return labels


def _a(data: str, field: str) -> str:
    try:
        return str(ipaddress.IPv4Address(data))
    except ValueError:
        raise Invalid(field, f"{data!r} is not an IPv4 address") from None


def _aaaa(data: str, field: str) -> str:
    try:
        return str(ipaddress.IPv6Address(data))
    except ValueError:
        raise Invalid(field, f"{data!r} is not an IPv6 address") from None


def _name_data(data: str, field: str) -> str:
    return host_name(data, field)


def _number(value: str, field: str, what: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise Invalid(field, f"{what} must be a number from 0 to 65535, not {value!r}")
    return int(value)


def _mx(data: str, field: str) -> str:
    parts = data.split()
    if len(parts) != 2:
        raise Invalid(field, f"an MX record is '<preference> <exchange>.', not {data!r}")
    return f"{_number(parts[0], field, 'the preference')} {host_name(parts[1], field)}"


def _srv(data: str, field: str) -> str:
    parts = data.split()
    if len(parts) != 4:
        raise Invalid(field, f"an SRV record is '<priority> <weight> <port> <target>.', not {data!r}")
    numbers = [_number(p, field, what) for p, what in zip(parts, ("the priority", "the weight", "the port"))]
    return " ".join(map(str, numbers)) + " " + host_name(parts[3], field)


def _txt(data: str, field: str) -> str:
    """Stored quoted, as PowerDNS serves it: unquoted text is quoted here; every quoted string
    is at most 255 characters (one DNS character-string)."""
    if not (len(data) >= 2 and data.startswith('"') and data.endswith('"')):
        data = '"' + data.replace("\\", "\\\\").replace('"', '\\"') + '"'
    for chunk in re.findall(r'"((?:[^"\\]|\\.)*)"', data):
        if len(chunk) > _TXT_CHUNK:
            raise Invalid(field, f"a TXT string is at most {_TXT_CHUNK} characters; split it in quoted parts")
    return data


_DATA = {
    "A": _a,
    "AAAA": _aaaa,
    "CNAME": _name_data,
    "NS": _name_data,
    "PTR": _name_data,
    "MX": _mx,
    "SRV": _srv,
    "TXT": _txt,
}
