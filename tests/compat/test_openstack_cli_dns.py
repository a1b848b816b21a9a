"""The stock openstack CLI's DNS options on networks, ports and floating IPs (it sends them only
when the network API lists the dns-integration and dns-domain-ports extensions)."""

import uuid

import pytest

from tests.compat.test_openstack_cli import Cli, cli  # noqa: F401 - the fixture

pytestmark = [pytest.mark.compat, pytest.mark.postgres, pytest.mark.amqp]


async def test_dns_options_of_network_port_and_floating_ip(cli: Cli) -> None:  # noqa: F811
    s = uuid.uuid4().hex[:6]
    net = await cli.json("network", "create", "--dns-domain", "corp.example.org.", f"compat-dns-{s}")
    assert net["dns_domain"] == "corp.example.org."
    await cli.json(
        "subnet",
        "create",
        "--network",
        f"compat-dns-{s}",
        "--subnet-range",
        "10.92.0.0/24",
        f"compat-dns-sub-{s}",
    )
    port = await cli.json(
        "port", "create", "--network", f"compat-dns-{s}", "--dns-name", "Web1", f"compat-dns-port-{s}"
    )
    assert port["dns_name"] == "web1"
    assert "web1.corp.example.org." in str(port["dns_assignment"]), port
    await cli.run("port", "set", "--dns-name", "web2", "--dns-domain", "own.example.org.", port["id"])
    shown = await cli.json("port", "show", port["id"])
    assert (shown["dns_name"], shown["dns_domain"]) == ("web2", "own.example.org.")
    await cli.run("network", "set", "--dns-domain", "other.example.org.", f"compat-dns-{s}")
    assert (await cli.json("network", "show", f"compat-dns-{s}"))["dns_domain"] == "other.example.org."
    code, _, err = await cli.run("port", "set", "--dns-name", "bad_name", port["id"], check=False)
    assert code != 0 and "dns_name" in err, err

    await cli.json("network", "create", "--external", f"compat-dns-ext-{s}")
    ext = ["--network", f"compat-dns-ext-{s}", "--subnet-range", "192.0.2.0/24", "--no-dhcp"]
    await cli.json("subnet", "create", *ext, f"compat-dns-ext-sub-{s}")
    fip = await cli.json(
        "floating",
        "ip",
        "create",
        "--dns-name",
        "www",
        "--dns-domain",
        "shop.example.org.",
        f"compat-dns-ext-{s}",
    )
    assert (fip["dns_name"], fip["dns_domain"]) == ("www", "shop.example.org.")
    await cli.run("floating", "ip", "delete", fip["id"])
    await cli.run("port", "delete", port["id"])
    await cli.run("subnet", "delete", f"compat-dns-sub-{s}", f"compat-dns-ext-sub-{s}")
    await cli.run("network", "delete", f"compat-dns-{s}", f"compat-dns-ext-{s}")
