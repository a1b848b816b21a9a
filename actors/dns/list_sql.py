"""Zone and recordset lists: exact-match filters, one sort key with the id as tie-break, a
marker, and the total count Designate reports (every match, whatever the page)."""

from typing import Any

import asyncpg

from fabric.store import Connection
from protocol.errors import Invalid


class Query:
    """A WHERE clause built from filters, with its arguments numbered as they are added."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def equal(self, column: str, value: Any) -> None:
        if value is not None:
            self.where.append(f"{column} = {self.arg(value)}")

    def clause(self) -> str:
        return " AND ".join(self.where) or "true"


async def page(
    conn: Connection,
    *,
    columns: str,
    source: str,
    query: Query,
    sort: str,
    descending: bool,
    marker: asyncpg.Record | None,
    limit: int,
) -> tuple[list[asyncpg.Record], int, bool]:
    """(rows of the page, total count, whether more follow). `source` is the FROM clause; `sort`
    a column of its first alias, the marker a row with that column (`sort_value`) and `id`."""
    where = query.clause()
    total = int(await conn.fetchval(f"SELECT count(*) FROM {source} WHERE {where}", *query.args))
    args = list(query.args)
    alias = sort.split(".")[0]
    if marker is not None:
        args += [marker["sort_value"], marker["id"]]
        op = "<" if descending else ">"
        where += f" AND ({sort}, {alias}.id) {op} (${len(args) - 1}, ${len(args)})"
    order = "DESC" if descending else "ASC"
    args.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT {columns} FROM {source} WHERE {where}"
        f" ORDER BY {sort} {order}, {alias}.id {order} LIMIT ${len(args)}",
        *args,
    )
    return rows[:limit], total, len(rows) > limit


async def marker_row(conn: Connection, table: str, sort: str, marker: str | None) -> asyncpg.Record | None:
    """The marker's sort value and id; a marker that is not there is a 400, as Designate says."""
    if marker is None:
        return None
    alias = sort.split(".")[0]
    row = await conn.fetchrow(
        f"SELECT {sort} AS sort_value, {alias}.id FROM {table} {alias} WHERE {alias}.id = $1", marker
    )
    if row is None:
        raise Invalid("marker", f"marker {marker} could not be found")
    return row


ZONES = "dns.zones z"
RECORDSETS = "dns.recordsets r JOIN dns.zones z ON z.id = r.zone_id"
