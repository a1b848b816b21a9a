"""Envelopes and replies to and from bytes.

Several envelopes travel in one frame (a JSON array) when the bus coalesces them; each keeps
its own id, deadline and attempt count, so coalescing changes nothing about their semantics.
"""

from typing import Any

import orjson

from protocol.codec import decode
from protocol.envelope import Context, Envelope, WireEnvelope
from protocol.errors import FabricError, Invalid, error_from_wire
from protocol.registry import NAMES, TYPES, schema_of


def name_of(message: object) -> str:
    try:
        return NAMES[type(message)]
    except KeyError:
        raise TypeError(f"{type(message).__name__} is not a registered message type") from None


def encode_envelope(id: str, message: object, ctx: Context, *, attempt: int = 0) -> bytes:
    cls = type(message)
    return orjson.dumps(
        {
            "id": id,
            "type": name_of(message),
            "schema": schema_of(cls),
            "deadline": ctx.deadline,
            "attempt": attempt,
            "ctx": ctx.to_wire(),
            "body": message,
        }
    )


def decode_envelope(raw: Any) -> Envelope:
    """Validate one envelope from a decoded frame. Raises Invalid naming the bad field."""
    head = decode(WireEnvelope, raw)
    cls = TYPES.get(head.type)
    if cls is None:
        raise Invalid("type", f"unknown message type {head.type[:100]!r}")
    if head.schema > schema_of(cls):
        raise Invalid("schema", f"{head.type} schema {head.schema} is newer than this process")
    message: object = decode(cls, head.body, path="body")
    w = head.ctx
    ctx = Context(
        request_id=w.request_id,
        user_id=w.user_id,
        project_id=w.project_id,
        domain_id=w.domain_id,
        roles=w.roles,
        deadline=head.deadline,
    )
    return Envelope(
        id=head.id,
        type=head.type,
        schema=head.schema,
        attempt=head.attempt,
        context=ctx,
        message=message,
    )


def with_attempt(raw: dict[str, Any], attempt: int) -> bytes:
    """Re-encode a raw envelope for another delivery attempt."""
    return orjson.dumps({**raw, "attempt": attempt})


def encode_reply(id: str, result: object | None) -> bytes:
    if result is None:
        return orjson.dumps({"id": id, "type": None, "body": None})
    return orjson.dumps({"id": id, "type": name_of(result), "body": result})


def encode_error(id: str, error: FabricError) -> bytes:
    return orjson.dumps({"id": id, "error": error.to_wire()})


def decode_reply(raw: Any) -> tuple[str, object | None, FabricError | None]:
    """(envelope id, result, error) from one decoded reply; a malformed reply is an error."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise Invalid("reply.id", "a reply needs a string id")
    id = raw["id"]
    if "error" in raw:
        return id, None, error_from_wire(raw["error"])
    name = raw.get("type")
    if name is None:
        return id, None, None
    cls = TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        return id, None, Invalid("reply.type", f"unknown message type {str(name)[:100]!r}")
    try:
        return id, decode(cls, raw.get("body"), path="reply.body"), None
    except Invalid as exc:
        return id, None, exc


def join_frame(items: list[bytes]) -> bytes:
    """Several encoded envelopes (or replies) as one frame, without re-encoding them."""
    return b"[" + b",".join(items) + b"]"


def split_frame(body: bytes) -> list[Any]:
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid("frame", f"malformed JSON: {exc}") from None
    if not isinstance(items, list):
        raise Invalid("frame", "a frame is a JSON array")
    return items
