"""A minimal HTTP/1.1 keep-alive client, for measuring a server rather than a client library.

On a machine with two cores, the load generator and the server under test share the CPU; with
aiohttp's client, the client side costs more per request than the gateway does (see
RESULTS.md), so the figure would mostly measure aiohttp's client. This one writes requests
encoded once in advance and reads a response by its status line and `Content-Length`, nothing
more, so almost all the CPU left goes to the server.

One connection per worker, one request in flight on it at a time (no pipelining): the same
shape of load as a keep-alive pool as large as the concurrency. Chunked responses are not
supported (the gateway always sends a length); they fail with `UnsupportedResponse`.
"""

import asyncio
from typing import cast
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024


class UnsupportedResponse(Exception):
    kind = "unsupported_response"


class ConnectionClosed(Exception):
    kind = "connection_closed"


def encode_request(method: str, url: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.is_open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        self.transport, self.is_open = cast(asyncio.Transport, transport), True

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionClosed(repr(exc) if exc else "closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                waiter.set_exception(UnsupportedResponse("response head too large"))
            return
        head = bytes(self.buffer[:head_end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(UnsupportedResponse("no Content-Length (chunked?)"))
            assert self.transport is not None
            self.transport.close()
            return
        value_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : value_end if value_end >= 0 else len(head)])
        end = head_end + 4 + length
        if len(self.buffer) < end:
            return
        status = int(self.buffer[9:12])
        body = bytes(self.buffer[head_end + 4 : end])
        del self.buffer[:end]
        waiter.set_result((status, body))


class Connection:
    """One keep-alive connection to `url`'s host, opened on first use and again after a loss."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._protocol: _Protocol | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Write an encoded request; return the status and body of its response."""
        protocol = self._protocol
        if protocol is None or not protocol.is_open:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
            self._protocol = protocol
        assert protocol.transport is not None
        protocol.waiter = asyncio.get_running_loop().create_future()
        protocol.transport.write(request)
        return await protocol.waiter

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
