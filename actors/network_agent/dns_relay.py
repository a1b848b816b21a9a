"""A DNS relay from the outside namespace to the cloud's PowerDNS.

Why it exists: PowerDNS listens on the root namespace's loopback (`dns_address`:`dns_port`), and
the outside namespace's 127.0.0.1 is its own; nor may the root namespace take an address on an
external network to be reachable from there. The agent owns the outside namespace, so it opens
two sockets *inside* it (a socket stays in the namespace it was made in; `setns` switches only
the calling thread, so a thread of its own makes them) on 127.0.0.1:53, UDP and TCP, and relays
each query to PowerDNS from the root namespace and the answer back. With
`/etc/netns/<outside>/resolv.conf` saying `nameserver 127.0.0.1` (`ip netns exec` mounts
/etc/netns/NAME/* over /etc), anything run as `ip netns exec <outside> ...` resolves the cloud's
names: `curl http://demo-vm.public.fabric.test/`.

The relay follows the namespace: `ensure` binds in the namespace named (again, when it was
made anew since), and `close` (or `ensure(None)`) stops relaying and removes the resolv.conf.
"""

import asyncio
import concurrent.futures
import ctypes
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

log = logging.getLogger("fabric.network_agent")

T = TypeVar("T")

ETC_NETNS = Path("/etc/netns")
RUN_NETNS = Path("/run/netns")
RESOLV_CONF = "nameserver 127.0.0.1\n"
CLONE_NEWNET = 0x40000000
#: Queries relayed at once over UDP; beyond that a query is dropped (its client asks again).
MAX_IN_FLIGHT = 256

_LIBC = ctypes.CDLL(None, use_errno=True)


def resolv_conf_path(namespace: str, etc_netns: Path = ETC_NETNS) -> Path:
    return etc_netns / namespace / "resolv.conf"


def write_resolv_conf(namespace: str, etc_netns: Path = ETC_NETNS) -> list[str]:
    path = resolv_conf_path(namespace, etc_netns)
    if path.is_file() and path.read_text() == RESOLV_CONF:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RESOLV_CONF)
    return [f"wrote {path}"]


def remove_resolv_conf(namespace: str, etc_netns: Path = ETC_NETNS) -> list[str]:
    """The file, and the directories `write_resolv_conf` made for it while nothing else is in
    them (an empty /etc/netns means nothing to `ip netns exec`)."""
    path = resolv_conf_path(namespace, etc_netns)
    if not path.exists():
        return []
    path.unlink()
    for directory in (path.parent, etc_netns):
        try:
            directory.rmdir()
        except OSError:
            break  # someone else's files are there too
    return [f"removed {path}"]


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _bind(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on address:port, in this thread's namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((address, port))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address, port))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def _bind_in(namespace_path: Path, address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """`_bind` inside the namespace, from a thread that then switches back (and ends anyway: a
    thread left in the wrong namespace must never run anything else)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(namespace_path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            return _bind(address, port)
        finally:
            _setns(own)
    finally:
        os.close(own)


async def _in_own_thread(fn: Callable[[], T]) -> T:
    """`fn()` in a new thread that ends with it: not `asyncio.to_thread`, whose pooled threads
    run whatever comes next (pyroute2's calls too) in whatever namespace they were left in."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def target() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name="dns-relay-setns", daemon=True).start()
    return await asyncio.wrap_future(future)


def _namespace_id(namespace: str) -> int | None:
    """The namespace's inode (a namespace made anew under the same name has another), or None."""
    try:
        return (RUN_NETNS / namespace).stat().st_ino
    except FileNotFoundError:
        return None


class _Answer(asyncio.DatagramProtocol):
    def __init__(self, answered: asyncio.Future[bytes]) -> None:
        self.answered = answered

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not self.answered.done():
            self.answered.set_result(data)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: "DnsRelay") -> None:
        self.relay = relay
        self.transport: asyncio.DatagramTransport | None = None
        #: Set once the socket is closed for real (a transport closes it on a later loop turn).
        self.is_closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's UDP transport does not subclass asyncio's.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed.set()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None and len(self.relay.tasks) < MAX_IN_FLIGHT:
            self.relay.own(self.relay.relay_udp(self.transport, data, addr))


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One length-prefixed DNS message (RFC 1035 4.2.2); None at a clean end of stream."""
    try:
        size = int.from_bytes(await reader.readexactly(2), "big")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    return await reader.readexactly(size)


class DnsRelay:
    """UDP and TCP DNS relay to `upstream`; owns its sockets and every task it starts."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        port: int = 53,
        timeout_s: float = 3.0,
        etc_netns: Path = ETC_NETNS,
    ) -> None:
        self.upstream = upstream
        self.port, self.timeout_s, self.etc_netns = port, timeout_s, etc_netns
        self.tasks: set[asyncio.Task[None]] = set()
        #: (namespace, its inode) the sockets were made in; None when not relaying.
        self.bound: tuple[str, int] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._listener: _Listener | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def is_serving(self) -> bool:
        return self._udp is not None or self._tcp is not None

    async def ensure(self, namespace: str | None) -> list[str]:
        """Relay from `namespace` (None: from nowhere) and point its resolv.conf at us. Raises
        OSError when the sockets cannot be made (port 53 taken there)."""
        ns_id = _namespace_id(namespace) if namespace is not None else None
        if namespace is None or ns_id is None:
            return await self.close()
        actions: list[str] = []
        if self.bound != (namespace, ns_id):
            actions += await self.close()
            udp, tcp = await _in_own_thread(lambda: _bind_in(RUN_NETNS / namespace, "127.0.0.1", self.port))
            await self.start(udp, tcp)
            self.bound = (namespace, ns_id)
            actions.append(f"relaying DNS from {namespace} 127.0.0.1:{self.port} to {self.upstream_text}")
        return actions + write_resolv_conf(namespace, self.etc_netns)

    @property
    def upstream_text(self) -> str:
        return f"{self.upstream[0]}:{self.upstream[1]}"

    async def start(self, udp: socket.socket, tcp: socket.socket) -> None:
        """Serve on two bound sockets (non-blocking; the TCP one listening): they are the
        relay's from now on."""
        loop = asyncio.get_running_loop()
        try:
            self._udp, self._listener = await loop.create_datagram_endpoint(lambda: _Listener(self), sock=udp)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        try:
            self._tcp = await asyncio.start_server(self._relay_tcp, sock=tcp)
        except BaseException:
            tcp.close()
            await self.close()
            raise

    async def close(self) -> list[str]:
        """Stop relaying: sockets, queries in flight, and the namespace's resolv.conf. Returns
        once the sockets are closed, so that a next relay (an agent restarted in this process)
        can bind the port again."""
        udp, listener, tcp, bound = self._udp, self._listener, self._tcp, self.bound
        self._udp = self._listener = self._tcp = self.bound = None
        if udp is not None:
            udp.close()
        if tcp is not None:
            tcp.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if tcp is not None:
            await tcp.wait_closed()
        if listener is not None:
            await listener.is_closed.wait()
        if bound is None:
            return []
        return [f"stopped relaying DNS from {bound[0]}", *remove_resolv_conf(bound[0], self.etc_netns)]

    def own(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def relay_udp(
        self, listener: asyncio.DatagramTransport, query: bytes, client: tuple[str | Any, int]
    ) -> None:
        """One query: from a socket of its own (so the answer is this query's), back to `client`.
        No answer in time: none sent (the client asks again, or gives up)."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Answer(answered), remote_addr=self.upstream
            )
        except OSError as exc:
            log.warning("dns relay: cannot reach %s: %s", self.upstream_text, exc)
            return
        try:
            transport.sendto(query)
            async with asyncio.timeout(self.timeout_s):
                answer = await answered
        except TimeoutError:
            log.debug("dns relay: no answer from %s", self.upstream_text)
            return
        finally:
            transport.close()
        if not listener.is_closing():
            listener.sendto(answer, client)

    async def _relay_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A client's connection: each message to PowerDNS over one connection of ours, its answer
        back; ends at the client's end of stream, or after `timeout_s` of waiting on anyone."""
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            async with asyncio.timeout(self.timeout_s):
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            try:
                while True:
                    async with asyncio.timeout(self.timeout_s):
                        query = await _read_message(reader)
                        if query is None:
                            return
                        up_writer.write(len(query).to_bytes(2, "big") + query)
                        await up_writer.drain()
                        answer = await _read_message(up_reader)
                        if answer is None:
                            return
                        writer.write(len(answer).to_bytes(2, "big") + answer)
                        await writer.drain()
            finally:
                up_writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("dns relay: tcp connection ended: %s", exc)
        finally:
            self.tasks.discard(task)
            writer.close()
