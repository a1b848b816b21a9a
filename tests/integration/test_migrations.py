"""`fabric.store.migrate` on the real PostgreSQL: racing processes, re-runs, edited files.

Each test gets a schema of its own in a throwaway database that is dropped at the end.
"""

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from fabric.store import migrate
from tests.support import ROOT, scratch_database

pytestmark = pytest.mark.postgres

THINGS = "CREATE TABLE {schema}.things (id serial PRIMARY KEY, note text NOT NULL);\n"
SEED = "INSERT INTO {schema}.things (note) VALUES ('seeded once');\n"
MORE = "ALTER TABLE {schema}.things ADD COLUMN size_bytes bigint NOT NULL DEFAULT 0;\n"

# A process that waits for the starting signal, then migrates and reports what it did.
CHILD = """
import asyncio, json, sys, time
from pathlib import Path
from fabric.store import migrate

dsn, schema, directory, go, ready = sys.argv[1:]
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.001)
began = time.time()
applied = asyncio.run(migrate(dsn, schema, Path(directory)))
print(json.dumps({"applied": applied, "began": began, "ended": time.time()}))
"""


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[str]:
    async with scratch_database("fabric_migrations") as dsn:
        yield dsn


@pytest.fixture
def schema() -> str:
    return f"mig_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def migrations(tmp_path: Path, schema: str) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "001_things.sql").write_text(THINGS.format(schema=schema))
    (directory / "002_seed.sql").write_text(SEED.format(schema=schema))
    (directory / "README.md").write_text("not a migration: ignored\n")
    return directory


async def ledger(dsn: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT version, name, sha256, applied_at FROM public.fabric_migrations"
            " WHERE schema_name = $1 ORDER BY version",
            schema,
        )
    finally:
        await conn.close()


async def fetchval(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_text().encode()).hexdigest()


async def run_migrate(dsn: str, schema: str, directory: Path) -> list[str]:
    return await asyncio.wait_for(migrate(dsn, schema, directory), timeout=20)


async def test_two_processes_migrating_at_once_apply_each_file_exactly_once(
    database: str, schema: str, migrations: Path, tmp_path: Path
) -> None:
    # The first migration holds its transaction for a while, so that the second process
    # surely arrives while the first is still applying.
    first_file = migrations / "001_things.sql"
    first_file.write_text("SELECT pg_sleep(0.3);\n" + first_file.read_text())
    go = tmp_path / "go"
    ready = [tmp_path / "ready-1", tmp_path / "ready-2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            database,
            schema,
            str(migrations),
            str(go),
            str(flag),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 30
        while not all(flag.exists() for flag in ready):  # both imported and waiting
            assert time.monotonic() < deadline, "the migrating processes did not start"
            assert all(c.returncode is None for c in children), "a migrating process died"
            await asyncio.sleep(0.01)
        go.touch()
        outputs = [await asyncio.wait_for(c.communicate(), timeout=30) for c in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()

    for child, (_, err) in zip(children, outputs):
        assert child.returncode == 0, err.decode()
    reports = [json.loads(out) for out, _ in outputs]
    applied = sorted((r["applied"] for r in reports), key=len)
    assert applied == [[], ["001_things.sql", "002_seed.sql"]]
    first, second = sorted(reports, key=lambda r: r["began"])
    assert second["began"] < first["ended"]  # they really did overlap

    rows = await ledger(database, schema)
    assert [(r["version"], r["name"]) for r in rows] == [(1, "001_things.sql"), (2, "002_seed.sql")]
    assert [r["sha256"] for r in rows] == [sha256_of(migrations / r["name"]) for r in rows]
    assert await fetchval(database, f"SELECT count(*) FROM {schema}.things") == 1


async def test_running_again_changes_nothing(database: str, schema: str, migrations: Path) -> None:
    assert await run_migrate(database, schema, migrations) == ["001_things.sql", "002_seed.sql"]
    before = await ledger(database, schema)
    assert await run_migrate(database, schema, migrations) == []
    assert await ledger(database, schema) == before  # applied_at included
    assert await fetchval(database, f"SELECT count(*) FROM {schema}.things") == 1


async def test_a_new_file_is_applied_alone(database: str, schema: str, migrations: Path) -> None:
    await run_migrate(database, schema, migrations)
    (migrations / "003_more.sql").write_text(MORE.format(schema=schema))
    assert await run_migrate(database, schema, migrations) == ["003_more.sql"]
    assert [r["version"] for r in await ledger(database, schema)] == [1, 2, 3]
    assert await fetchval(database, f"SELECT count(*) FROM {schema}.things") == 1


async def test_an_applied_file_that_changed_is_refused(database: str, schema: str, migrations: Path) -> None:
    await run_migrate(database, schema, migrations)
    before = await ledger(database, schema)
    original = (migrations / "002_seed.sql").read_text()
    (migrations / "002_seed.sql").write_text(original + "-- an innocent-looking edit\n")
    (migrations / "003_more.sql").write_text(MORE.format(schema=schema))

    with pytest.raises(RuntimeError, match=rf"{schema}/002_seed.sql changed after it was applied"):
        await run_migrate(database, schema, migrations)
    assert await ledger(database, schema) == before  # and nothing after it was applied either

    (migrations / "002_seed.sql").write_text(original)
    assert await run_migrate(database, schema, migrations) == ["003_more.sql"]


async def test_a_failing_migration_leaves_no_trace(database: str, schema: str, migrations: Path) -> None:
    await run_migrate(database, schema, migrations)
    bad = migrations / "003_more.sql"
    bad.write_text(f"CREATE TABLE {schema}.half (id int);\nSELECT * FROM {schema}.missing;\n")
    with pytest.raises(asyncpg.UndefinedTableError):
        await run_migrate(database, schema, migrations)
    assert [r["version"] for r in await ledger(database, schema)] == [1, 2]
    assert await fetchval(database, f"SELECT to_regclass('{schema}.half')::text") is None

    bad.write_text(MORE.format(schema=schema))
    assert await run_migrate(database, schema, migrations) == ["003_more.sql"]


@pytest.mark.parametrize("name", ["3_short.sql", "003-dash.sql", "003_Upper.sql", "003_more.sql.sql"])
async def test_a_misnamed_file_stops_everything(
    database: str, schema: str, migrations: Path, name: str
) -> None:
    (migrations / name).write_text("SELECT 1;\n")
    with pytest.raises(ValueError, match=r"NNN_name\.sql"):
        await run_migrate(database, schema, migrations)
    assert await ledger(database, schema) == []


async def test_two_files_with_one_number_stop_everything(
    database: str, schema: str, migrations: Path
) -> None:
    (migrations / "002_other.sql").write_text("SELECT 1;\n")
    with pytest.raises(ValueError, match="share a number"):
        await run_migrate(database, schema, migrations)
    assert await ledger(database, schema) == []
