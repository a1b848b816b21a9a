"""What travels around every message: its identity, deadline and the request it serves.

Wire form of one envelope (a JSON object; several of them travel together in one frame):

    {"id": "...", "type": "identity.CreateProject", "schema": 1, "deadline": 1764000000.25,
     "attempt": 0, "ctx": {"request_id": "req-...", "user_id": ..., "project_id": ...,
     "domain_id": ..., "roles": [...]}, "body": {...}}

and of one reply:

    {"id": "<envelope id>", "type": "identity.ProjectView", "body": {...}}     success
    {"id": "<envelope id>", "error": {"type": "NotFound", "args": {...}}}      failure

`deadline` is absolute (seconds since the epoch) because it crosses processes and hosts.
"""

import time
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Who asked, within which scope, and until when the answer is still wanted.

    Services decide authorization from these fields; the gateway fills them from a verified
    token, and an actor passes its context on to the calls it makes for the same request.
    """

    request_id: str
    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    roles: tuple[str, ...] = ()
    deadline: float = 0.0

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.time())

    def within(self, timeout_s: float) -> "Context":
        """The same request with a deadline no later than `timeout_s` from now."""
        return replace(self, deadline=min(self.deadline, time.time() + timeout_s))

    def to_wire(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "user_id": self.user_id,
            "project_id": self.project_id,
            "domain_id": self.domain_id,
            "roles": self.roles,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class WireContext:
    """The context as it travels: everything but the deadline, which is the envelope's."""

    request_id: str
    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WireEnvelope:
    """The envelope's header as it travels; `body` is decoded by the message type."""

    id: str
    type: str
    schema: int
    deadline: float
    attempt: int
    ctx: WireContext
    body: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A decoded envelope: a typed message with its context."""

    id: str
    type: str
    schema: int
    attempt: int
    context: Context
    message: object
