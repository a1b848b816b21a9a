"""Typed errors to HTTP: one status table, and the error body each OpenStack service uses.

Clients key on the status code; the body follows the shape of the service the path belongs to,
so that a Keystone error looks like Keystone's and a Nova error like Nova's.
"""

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from protocol.errors import (
    Conflict,
    FabricError,
    Forbidden,
    Internal,
    Invalid,
    NotFound,
    NoValidHost,
    QuotaExceeded,
    Timeout,
    Unauthorized,
    Unavailable,
)

STATUS: dict[type[FabricError], int] = {
    Invalid: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    NoValidHost: 409,
    QuotaExceeded: 413,
    Internal: 500,
    Unavailable: 503,
    Timeout: 504,
}


def status_of(error: FabricError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def keystone_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "title": HTTPStatus(status).phrase}}


ErrorShape = Callable[[int, str], dict[str, Any]]


# By the path's first segment; services add theirs as they arrive.
def nova_body(status: int, message: str) -> dict[str, Any]:
    """Nova names its error object by kind; 401 comes from the token check, Keystone-shaped."""
    if status == 401:
        return keystone_body(status, message)
    kind = NOVA_KINDS.get(status, "computeFault")
    return {kind: {"code": status, "message": message}}


NOVA_KINDS = {
    400: "badRequest",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
}


def neutron_body(status: int, message: str) -> dict[str, Any]:
    """Neutron names the error's type; clients print the message."""
    if status == 401:
        return keystone_body(status, message)
    kind = NEUTRON_TYPES.get(status, "HTTPError")
    return {"NeutronError": {"type": kind, "message": message, "detail": ""}}


NEUTRON_TYPES = {
    400: "HTTPBadRequest",
    403: "PolicyNotAuthorized",
    404: "NotFound",
    405: "HTTPMethodNotAllowed",
    409: "Conflict",
    413: "OverQuota",
}


def cinder_body(status: int, message: str) -> dict[str, Any]:
    """Cinder's faults are Nova's, but for 503 (its own name) and 406 (no name: computeFault)."""
    if status == 401:
        return keystone_body(status, message)
    kind = CINDER_KINDS.get(status, "computeFault")
    return {kind: {"code": status, "message": message}}


CINDER_KINDS = {k: v for k, v in NOVA_KINDS.items() if k != 406} | {503: "serviceUnavailable"}

SHAPES: dict[str, ErrorShape] = {
    "identity": keystone_body,
    "compute": nova_body,
    "network": neutron_body,
    "volume": cinder_body,
}


def error_body(path: str, status: int, message: str) -> dict[str, Any]:
    prefix = path.lstrip("/").split("/", 1)[0]
    return SHAPES.get(prefix, keystone_body)(status, message)
