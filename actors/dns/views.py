"""Rows of schema `dns` as the protocol's views. Pure."""

import asyncpg

from protocol.dns import RecordsetView, ZoneView


def zone_view(row: asyncpg.Record) -> ZoneView:
    return ZoneView(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        ttl=row["ttl"],
        serial=row["serial"],
        status=row["status"],
        action=row["action"],
        project_id=row["project_id"],
        description=row["description"],
        version=row["version"],
        managed=row["managed"],
        created_at=row["created"],
        updated_at=row["updated"],
    )


def soa_record(mname: str, rname: str, serial: int, ttl: int) -> str:
    """The SOA as PowerDNS serves it (`pdns.records` renders the same): refresh, retry,
    expire as Designate's defaults, the negative-answer TTL the zone's."""
    return f"{mname} {rname} {serial} 3600 600 86400 {ttl}"


def recordset_view(row: asyncpg.Record) -> RecordsetView:
    records = tuple(row["records"])
    if row["type"] == "SOA":
        records = (soa_record(row["soa_mname"], row["soa_rname"], row["zone_serial"], row["zone_ttl"]),)
    return RecordsetView(
        id=row["id"],
        zone_id=row["zone_id"],
        zone_name=row["zone_name"],
        name=row["name"],
        type=row["type"],
        records=records,
        ttl=row["ttl"],
        description=row["description"],
        status=row["status"],
        action=row["action"],
        version=row["version"],
        project_id=row["project_id"],
        managed=row["managed_by"] is not None,
        created_at=row["created"],
        updated_at=row["updated"],
    )
