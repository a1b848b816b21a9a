"""`bench tokens`: Keystone token validations or issues per second through the HTTP gateway.

- `validate`: `GET /identity/v3/auth/tokens` with `X-Auth-Token` (the caller, as a service
  validating a user's token would be) and `X-Subject-Token` (the token checked); a 200 with the
  token body (and catalog, unless `--nocatalog`) is one operation. This is what every API
  request of an OpenStack cloud costs its Keystone when middleware caches are cold.
- `issue`: `POST /identity/v3/auth/tokens` with a password, scoped to the admin project; a 201 is
  one operation. Each costs the identity service one argon2id verification, so the harness also
  times one hash and one verification at the same cost in this process (`hash_ms`,
  `verify_ms`): with ~2 cores, issue throughput cannot exceed about cores / verify time.

The load comes from aiohttp with a keep-alive connection pool as large as the concurrency, so
no operation waits for a connection or pays for a TCP handshake. `--client raw` sends the same
requests with `bench.http1` instead, whose per-request cost is a small fraction of aiohttp's:
on a small machine that is how to see what the gateway can do rather than what its client can.
"""

import argparse
import asyncio
import logging
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

# The one place the bench reaches into an actor: to time the very hashing the identity service
# does, rather than a look-alike whose parameters could drift from it.
from actors.identity.passwords import Cost, hash_password, verify_password
from bench import cpu, report
from bench.cloud import Credentials, own_fabric
from bench.http1 import Connection, encode_request
from bench.loop import Operation, closed_loop
from fabric.config import Settings

log = logging.getLogger("bench")

REQUEST_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
HASH_SAMPLES = 5


class HttpStatus(Exception):
    """An answer with an unexpected status; counted as `http_<status>`."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.kind = f"http_{status}"


def password_body(creds: Credentials) -> bytes:
    return orjson.dumps(
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": creds.username,
                            "domain": {"name": creds.user_domain},
                            "password": creds.password,
                        }
                    },
                },
                "scope": {"project": {"name": creds.project, "domain": {"name": creds.project_domain}}},
            }
        }
    )


def credentials_from(args: argparse.Namespace) -> Credentials:
    """--url and the OS_* variables (as an openrc sets them), flags first."""
    url = str(args.url).rstrip("/").removesuffix("/v3").removesuffix("/identity")
    missing = [
        name
        for name, value in (
            ("--username/OS_USERNAME", args.username or os.environ.get("OS_USERNAME")),
            ("--password/OS_PASSWORD", args.password or os.environ.get("OS_PASSWORD")),
            ("--project/OS_PROJECT_NAME", args.project or os.environ.get("OS_PROJECT_NAME")),
        )
        if not value
    ]
    if missing:
        raise SystemExit(f"bench tokens --url needs credentials: {', '.join(missing)}")
    return Credentials(
        url=url,
        username=args.username or os.environ["OS_USERNAME"],
        password=args.password or os.environ["OS_PASSWORD"],
        project=args.project or os.environ["OS_PROJECT_NAME"],
        user_domain=os.environ.get("OS_USER_DOMAIN_NAME", "Default"),
        project_domain=os.environ.get("OS_PROJECT_DOMAIN_NAME", "Default"),
    )


@asynccontextmanager
async def gateway(args: argparse.Namespace, settings: Settings) -> AsyncIterator[Credentials]:
    if args.url:
        yield credentials_from(args)
    else:
        async with own_fabric(settings, hash_cost=args.hash_cost, gateways=args.gateways) as creds:
            yield creds


async def issue(http: aiohttp.ClientSession, creds: Credentials, body: bytes, query: str) -> str:
    async with http.post(
        f"{creds.url}/identity/v3/auth/tokens{query}",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as resp:
        answer = await resp.read()
        if resp.status != 201:
            raise HttpStatus(resp.status, answer)
        return resp.headers["X-Subject-Token"]


def _validator(
    http: aiohttp.ClientSession, creds: Credentials, auth: str, subject: str, query: str
) -> Operation:
    url = f"{creds.url}/identity/v3/auth/tokens{query}"
    headers = {"X-Auth-Token": auth, "X-Subject-Token": subject}

    async def validate() -> None:
        async with http.get(url, headers=headers) as resp:
            answer = await resp.read()
            if resp.status != 200:
                raise HttpStatus(resp.status, answer)

    return validate


def _issuer(http: aiohttp.ClientSession, creds: Credentials, body: bytes, query: str) -> Operation:
    async def issue_one() -> None:
        await issue(http, creds, body, query)

    return issue_one


def _raw(connection: Connection, request: bytes, expect: int) -> Operation:
    async def send() -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            status, answer = await connection.send(request)
        if status != expect:
            raise HttpStatus(status, answer)

    return send


def raw_request(args: argparse.Namespace, creds: Credentials, body: bytes, auth: str, subject: str) -> bytes:
    url = f"{creds.url}/identity/v3/auth/tokens" + ("?nocatalog" if args.nocatalog else "")
    if args.op == "validate":
        return encode_request("GET", url, {"X-Auth-Token": auth, "X-Subject-Token": subject})
    return encode_request("POST", url, {"Content-Type": "application/json"}, body)


async def every_gateway_validates(creds: Credentials, auth: str, subject: str, gateways: int) -> None:
    """Wait until fresh connections, which the kernel spreads over the gateways sharing the
    port, all get their tokens validated: each gateway loads the token keys on its own after
    it starts listening. 10 successes in a row per gateway leave a gateway that was never
    reached a chance below 2**-10 per gateway."""
    url = f"{creds.url}/identity/v3/auth/tokens?nocatalog"
    headers = {"X-Auth-Token": auth, "X-Subject-Token": subject}
    in_a_row = 0
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        asyncio.timeout(READY_TIMEOUT_S),
    ):
        while in_a_row < 10 * gateways:
            async with http.get(url, headers=headers) as resp:
                await resp.read()
                in_a_row = in_a_row + 1 if resp.status == 200 else 0
            if in_a_row == 0:
                await asyncio.sleep(0.1)


async def hash_cost_ms(cost: Cost) -> dict[str, float]:
    """Median time of one argon2id hash and one verification, as the identity service runs
    them (`actors.identity.passwords`, one thread hop each), one at a time."""
    hashes, verifies = [], []
    stored = await hash_password("bench password", cost)
    for _ in range(HASH_SAMPLES):
        began = time.perf_counter()
        await hash_password("bench password", cost)
        hashes.append(time.perf_counter() - began)
        began = time.perf_counter()
        ok = await verify_password(stored, "bench password", cost)
        verifies.append(time.perf_counter() - began)
        assert ok, "the verification of a fresh hash failed"
    return {
        "hash_ms": round(statistics.median(hashes) * 1000, 2),
        "verify_ms": round(statistics.median(verifies) * 1000, 2),
    }


def _operations(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    creds: Credentials,
    body: bytes,
    auth: str,
    subject: str,
    connections: list[Connection],
) -> Callable[[int], Operation]:
    """What worker i repeats; raw connections are added to `connections` for closing."""
    query = "?nocatalog" if args.nocatalog else ""
    if args.client == "raw":
        request = raw_request(args, creds, body, auth, subject)
        expect = 200 if args.op == "validate" else 201

        def raw(i: int) -> Operation:
            connections.append(Connection(creds.url))
            return _raw(connections[-1], request, expect)

        return raw
    if args.op == "validate":
        return lambda i: _validator(http, creds, auth, subject, query)
    return lambda i: _issuer(http, creds, body, query)


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    load_before = report.load_average()
    async with gateway(args, settings) as creds:
        connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            body = password_body(creds)
            # Two tokens, as when a service checks a user's token with its own.
            auth = await issue(http, creds, body, "?nocatalog")
            subject = await issue(http, creds, body, "?nocatalog")
            if args.gateways > 1 and args.op == "validate":
                await every_gateway_validates(creds, auth, subject, args.gateways)
            connections: list[Connection] = []
            make = _operations(args, http, creds, body, auth, subject, connections)
            try:
                measured = await closed_loop(
                    make,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    warmup_s=args.warmup,
                    probe=lambda: cpu.sample(creds.pids),
                )
            finally:
                for connection in connections:
                    connection.close()
    extra: dict[str, Any] = {
        "op": args.op,
        "client": args.client,
        "catalog": not args.nocatalog,
        "gateway": creds.url,
    }
    if args.url is None:
        extra.update(gateways=args.gateways, hash_cost=args.hash_cost)
    if args.op == "issue":
        # Once the load has stopped: the cost of one hash, not time spent waiting for a core.
        extra.update(await hash_cost_ms(args.hash_cost))
    return report.build(f"tokens {args.op}", measured, load_before, **extra)
