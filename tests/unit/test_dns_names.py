"""What the DNS service accepts as names, emails and record data, and the forms it stores."""

import pytest

from actors.dns import names
from protocol.errors import Invalid


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("example.org", "fully qualified"),
        ("org.", "more than one label"),
        ("a..example.", "empty label"),
        ("-a.example.", "not a valid label"),
        ("under_score.example.", "not a valid label"),
        ("x" * 64 + ".example.", "63 characters"),
        (("a" * 60 + ".") * 5, "255 characters"),
    ],
)
def test_bad_zone_names_say_why(name: str, reason: str) -> None:
    with pytest.raises(Invalid) as raised:
        names.zone_name(name)
    assert raised.value.field == "name" and reason in raised.value.reason


def test_names_are_lowercased_and_kept_in_their_zone() -> None:
    assert names.zone_name("Example.ORG.") == "example.org."
    assert names.record_name("WWW.example.org.", "example.org.") == "www.example.org."
    assert names.record_name("example.org.", "example.org.") == "example.org."
    assert names.record_name("*.example.org.", "example.org.") == "*.example.org."
    assert names.record_name("_sip._tcp.example.org.", "example.org.") == "_sip._tcp.example.org."
    for outside in ("www.example.com.", "wwwexample.org.", "a.*.example.org."):
        with pytest.raises(Invalid):
            names.record_name(outside, "example.org.")


@pytest.mark.parametrize(
    ("kind", "data", "normal"),
    [
        ("A", " 192.0.2.1 ", "192.0.2.1"),
        ("AAAA", "2001:DB8:0::1", "2001:db8::1"),
        ("CNAME", "Target.Example.", "target.example."),
        ("MX", "10   mail.example.", "10 mail.example."),
        ("SRV", "0 5 5060 sip.example.", "0 5 5060 sip.example."),
        ("TXT", "hello world", '"hello world"'),
        ("TXT", '"already quoted"', '"already quoted"'),
        ("TXT", 'say "hi"', '"say \\"hi\\""'),
        ("PTR", "www.example.", "www.example."),
        ("NS", "ns.example.", "ns.example."),
    ],
)
def test_record_data_in_its_normal_form(kind: str, data: str, normal: str) -> None:
    assert names.record_data(kind, data, "records[0]") == normal


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("A", "300.1.1.1"),
        ("A", "2001:db8::1"),
        ("AAAA", "192.0.2.1"),
        ("CNAME", "no-dot.example"),
        ("MX", "mail.example."),
        ("MX", "70000 mail.example."),
        ("SRV", "1 2 mail.example."),
        ("TXT", '"' + "x" * 256 + '"'),
        ("SOA", "anything"),
    ],
)
def test_bad_record_data_names_the_field(kind: str, data: str) -> None:
    with pytest.raises(Invalid) as raised:
        names.record_data(kind, data, "records[3]")
    assert raised.value.field in ("records[3]", "type")


def test_emails_reverse_names_and_ancestors() -> None:
    assert names.email("Admin@Example.org") == "admin@example.org"
    for bad in ("admin", "a@b", "a b@example.org", "@example.org"):
        with pytest.raises(Invalid):
            names.email(bad)
    assert names.soa_rname("first.last@example.org") == "first\\.last.example.org."
    assert names.reverse_name("203.0.113.5") == "5.113.0.203.in-addr.arpa."
    assert names.reverse_zone("203.0.113.5") == "113.0.203.in-addr.arpa."
    assert names.reverse_zone("2001:db8::1").endswith(".8.b.d.0.1.0.0.2.ip6.arpa.")
    assert names.ancestors("a.b.example.org.") == ["b.example.org.", "example.org.", "org."]
