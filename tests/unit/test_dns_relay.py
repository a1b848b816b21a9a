"""The network agent's DNS relay on plain loopback sockets: what it forwards and relays back,
over UDP and TCP, against a stand-in nameserver; what it does when that nameserver is silent;
and that closing leaves no task, socket or resolv.conf behind. (In the outside namespace, with
the real PowerDNS: tests/system/test_web_page.py.)
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.rrset
import pytest

from actors.network_agent import dns_relay
from actors.network_agent.dns_relay import DnsRelay


@dataclass
class Nameserver:
    """Answers every A question with 192.0.2.7, over UDP and TCP, unless `is_silent`."""

    address: tuple[str, int] = ("127.0.0.1", 0)
    is_silent: bool = False
    questions: list[str] = field(default_factory=list)

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        self.questions.append(query.question[0].name.to_text())
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.7"))
        return response.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: Nameserver) -> None:
        self.server = server
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.server.is_silent:
            self.transport.sendto(self.server.answer(data), addr)


@pytest.fixture
async def nameserver() -> AsyncIterator[Nameserver]:
    """A stand-in for PowerDNS on one loopback port, UDP and TCP."""
    server = Nameserver()
    tcp_sock = socket.create_server(("127.0.0.1", 0))
    port = tcp_sock.getsockname()[1]
    server.address = ("127.0.0.1", port)

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while size := await reader.readexactly(2):
                wire = await reader.readexactly(int.from_bytes(size, "big"))
                answer = server.answer(wire)
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(server), local_addr=server.address)
    tcp = await asyncio.start_server(on_tcp, sock=tcp_sock)
    try:
        yield server
    finally:
        udp.close()
        tcp.close()
        await tcp.wait_closed()


def loopback_sockets() -> tuple[socket.socket, socket.socket]:
    """What the relay binds in a namespace, on a free loopback port instead of 53."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            return dns_relay._bind("127.0.0.1", port)
        except OSError:  # taken meanwhile, or its TCP twin is
            continue
    raise RuntimeError("no free loopback port")


@pytest.fixture
async def relay(nameserver: Nameserver, tmp_path: Path) -> AsyncIterator[tuple[DnsRelay, int]]:
    """A relay to the stand-in, listening on a loopback port of its own (UDP and TCP alike)."""
    relay = DnsRelay(nameserver.address, timeout_s=0.5, etc_netns=tmp_path / "netns")
    udp, tcp = loopback_sockets()
    port = udp.getsockname()[1]
    await relay.start(udp, tcp)
    try:
        yield relay, port
    finally:
        await relay.close()


async def test_a_udp_question_gets_the_nameservers_answer(
    relay: tuple[DnsRelay, int], nameserver: Nameserver
) -> None:
    relay_, port = relay
    query = dns.message.make_query("demo-vm.public.fabric.test.", "A")
    answer = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2)
    assert answer.id == query.id
    assert [r.to_text() for rrset in answer.answer for r in rrset] == ["192.0.2.7"]
    assert nameserver.questions == ["demo-vm.public.fabric.test."]
    await asyncio.sleep(0)
    assert not relay_.tasks  # each query's task is done once relayed


async def test_many_udp_questions_at_once_each_get_their_own_answer(relay: tuple[DnsRelay, int]) -> None:
    _, port = relay
    queries = [dns.message.make_query(f"vm-{i}.fabric.test.", "A") for i in range(50)]
    answers = await asyncio.gather(
        *(dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2) for q in queries)
    )
    assert [a.question[0].name.to_text() for a in answers] == [f"vm-{i}.fabric.test." for i in range(50)]


async def test_tcp_relays_each_message_of_a_connection(
    relay: tuple[DnsRelay, int], nameserver: Nameserver
) -> None:
    _, port = relay
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for name in ("a.fabric.test.", "b.fabric.test."):
            wire = dns.message.make_query(name, "A").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 2), "big")
            answer = dns.message.from_wire(await reader.readexactly(size))
            assert answer.question[0].name.to_text() == name
            assert answer.answer[0][0].to_text() == "192.0.2.7"
    finally:
        writer.close()
    assert nameserver.questions == ["a.fabric.test.", "b.fabric.test."]


async def test_a_silent_nameserver_gets_no_answer_relayed_and_leaves_no_task(
    relay: tuple[DnsRelay, int], nameserver: Nameserver
) -> None:
    relay_, port = relay
    nameserver.is_silent = True
    query = dns.message.make_query("quiet.fabric.test.", "A")
    with pytest.raises(dns.exception.Timeout):
        await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=0.3)
    await asyncio.sleep(relay_.timeout_s + 0.1)
    assert not relay_.tasks


async def test_close_stops_listening_and_removes_the_resolv_conf(
    relay: tuple[DnsRelay, int], tmp_path: Path
) -> None:
    relay_, port = relay
    etc_netns = tmp_path / "netns"
    conf = etc_netns / "ns-x" / "resolv.conf"
    assert dns_relay.write_resolv_conf("ns-x", etc_netns) == [f"wrote {conf}"]
    assert dns_relay.write_resolv_conf("ns-x", etc_netns) == []  # as it should be already
    assert conf.read_text() == "nameserver 127.0.0.1\n"
    relay_.bound = ("ns-x", 1)  # as `ensure` records where it relays from
    assert relay_.is_serving
    await relay_.close()
    assert not relay_.is_serving
    assert not etc_netns.exists()  # the directories made for the file go with it
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    assert await relay_.close() == []  # twice: nothing more to do


def test_removing_the_resolv_conf_leaves_other_files_alone(tmp_path: Path) -> None:
    (tmp_path / "ns-x").mkdir()
    (tmp_path / "ns-x" / "hosts").write_text("192.0.2.1 someone-elses\n")
    dns_relay.write_resolv_conf("ns-x", tmp_path)
    assert dns_relay.remove_resolv_conf("ns-x", tmp_path) == [f"removed {tmp_path}/ns-x/resolv.conf"]
    assert (tmp_path / "ns-x" / "hosts").exists()


async def test_ensure_for_no_namespace_relays_nothing(nameserver: Nameserver, tmp_path: Path) -> None:
    relay = DnsRelay(nameserver.address, etc_netns=tmp_path)
    assert await relay.ensure(None) == []
    assert await relay.ensure("fabric-no-such-namespace") == []
    assert not relay.is_serving
