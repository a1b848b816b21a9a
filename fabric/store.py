"""PostgreSQL: one asyncpg pool per process, plain SQL, numbered migrations per schema.

Each service owns one schema and keeps its migrations as `NNN_name.sql` files beside its code.
`migrate` applies the missing ones in order, each in its own transaction, under an advisory lock,
so that any number of processes may start at once: the first applies, the others wait and then
find nothing left to do. A migration file that changed after it was applied is an error, not a
silent skip.
"""

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from protocol.errors import Unavailable

log = logging.getLogger("fabric.store")

#: What SQL helpers take: a pooled connection inside `Store.transaction`, or a plain one.
Connection = asyncpg.Connection | PoolConnectionProxy
MIGRATIONS_LOCK = 0x6661627269630001  # "fabric" + 1: one lock for every schema's migrations
MIGRATION_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
LOST_DATABASE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
)


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before the pool hands it out again. asyncpg's default sends
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;` on every release, a
    round trip per use; the fabric leaves no session state on pooled connections (no LISTEN, no
    SET, no cursors, advisory locks only per transaction), so only an open transaction (a
    cancelled task's) needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> "Store":
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            reset=_reset,
            command_timeout=30,
            server_settings={
                "application_name": "fabric",
            },
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self, *, timeout_s: float = 5.0) -> AsyncIterator[Connection]:
        """A connection without a transaction, for reads and single statements (each is atomic
        on its own): no BEGIN and COMMIT round trips. Errors as `transaction`."""
        try:
            async with self.pool.acquire(timeout=timeout_s) as conn:
                yield conn
        except LOST_DATABASE as exc:
            raise Unavailable(f"database: {type(exc).__name__}") from exc

    @asynccontextmanager
    async def transaction(self, *, timeout_s: float = 5.0) -> AsyncIterator[Connection]:
        """A connection inside a transaction: committed when the block ends, rolled back if it
        raises. `timeout_s` bounds the wait for a free connection. Losing the database is
        `Unavailable` (retry later), not a crash."""
        try:
            async with self.pool.acquire(timeout=timeout_s) as conn, conn.transaction():
                yield conn
        except LOST_DATABASE as exc:
            raise Unavailable(f"database: {type(exc).__name__}") from exc

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def is_healthy(self) -> bool:
        try:
            return bool(await self.pool.fetchval("SELECT 1", timeout=2) == 1)
        except Exception:
            return False


CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS public.fabric_migrations (
    schema_name text NOT NULL,
    version     integer NOT NULL,
    name        text NOT NULL,
    sha256      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, version)
)"""


def migration_files(directory: Path) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration in `directory`, in order."""
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path} is not named NNN_name.sql")
        found.append((int(match.group(1)), path.name, path.read_text()))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations in {directory} share a number")
    return found


async def migrate(dsn: str, schema: str, directory: Path) -> list[str]:
    """Apply `directory`'s missing migrations to `schema`. Returns the names applied."""
    conn: Connection = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK)
        try:
            await conn.execute(CREATE_LEDGER)
            done = {
                r["version"]: r["sha256"]
                for r in await conn.fetch(
                    "SELECT version, sha256 FROM public.fabric_migrations WHERE schema_name = $1", schema
                )
            }
            for version, name, sql in migration_files(directory):
                digest = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version] != digest:
                        raise RuntimeError(f"migration {schema}/{name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO public.fabric_migrations (schema_name, version, name, sha256)"
                        " VALUES ($1, $2, $3, $4)",
                        schema,
                        version,
                        name,
                        digest,
                    )
                log.info("applied migration", extra={"schema": schema, "migration": name})
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK)
    finally:
        await conn.close()
    return applied


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if it does not exist. True if it was created."""
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    if not name:
        raise ValueError(f"no database name in {dsn!r}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False  # another process created it first
        return True
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
