"""Typed errors that travel back as replies.

Nothing here knows HTTP: the gateway maps each class to a status code. Every error carries a
small set of string fields so that it crosses the wire as `{"type": ..., "args": {...}}` and is
rebuilt on the other side as the same class.
"""

from typing import ClassVar


class FabricError(Exception):
    """Base of every error that travels back as a reply."""

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, object]:
        return {"type": type(self).__name__, "args": {f: getattr(self, f) for f in self.fields}}


class NotFound(FabricError):
    fields = ("kind", "id")

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"Could not find {kind}: {id}.")
        self.kind, self.id = kind, id


class Conflict(FabricError):
    fields = ("kind", "detail")

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"Conflict occurred attempting to store {kind} - {detail}.")
        self.kind, self.detail = kind, detail


class Invalid(FabricError):
    fields = ("field", "reason")

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid input for field '{field}': {reason}")
        self.field, self.reason = field, reason


class Forbidden(FabricError):
    fields = ("action",)

    def __init__(self, action: str) -> None:
        super().__init__(f"You are not authorized to perform the requested action: {action}.")
        self.action = action


class Unauthorized(FabricError):
    fields = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(f"The request you have made requires authentication. {reason}".strip())
        self.reason = reason


class QuotaExceeded(FabricError):
    fields = ("resource", "limit")

    def __init__(self, resource: str, limit: str) -> None:
        super().__init__(f"Quota exceeded for {resource}: limit is {limit}.")
        self.resource, self.limit = resource, limit


class NoValidHost(FabricError):
    """No host can take the server; `reason` says how many hosts each filter turned away."""

    fields = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(f"No valid host was found. {reason}".strip())
        self.reason = reason


class Timeout(FabricError):
    fields = ("what",)

    def __init__(self, what: str) -> None:
        super().__init__(f"Timed out waiting for {what}.")
        self.what = what


class Unavailable(FabricError):
    """A dependency (the bus, the database) cannot be reached right now; retrying may work."""

    fields = ("what",)

    def __init__(self, what: str) -> None:
        super().__init__(f"Service unavailable: {what}.")
        self.what = what


class Internal(FabricError):
    fields = ("request_id",)

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"An unexpected error prevented the request from being fulfilled (request id {request_id})."
        )
        self.request_id = request_id


ERRORS: dict[str, type[FabricError]] = {
    cls.__name__: cls
    for cls in (
        NotFound,
        Conflict,
        Invalid,
        Forbidden,
        Unauthorized,
        QuotaExceeded,
        NoValidHost,
        Timeout,
        Unavailable,
        Internal,
    )
}


def error_from_wire(data: object) -> FabricError:
    """Rebuild an error reply; anything malformed becomes `Invalid` naming what was wrong."""
    if not isinstance(data, dict):
        return Invalid("error", "an error reply must be an object")
    name = data.get("type")
    cls = ERRORS.get(name) if isinstance(name, str) else None
    if cls is None:
        return Invalid("error.type", f"unknown error type {str(name)[:100]!r}")
    args = data.get("args")
    if not isinstance(args, dict) or set(args) != set(cls.fields):
        return Invalid("error.args", f"{cls.__name__} takes {', '.join(cls.fields) or 'nothing'}")
    if not all(isinstance(v, str) for v in args.values()):
        return Invalid("error.args", "every error argument is a string")
    return cls(**args)
