"""Messages every actor answers, whatever its service: health and a bench echo."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Is the actor alive, and can it reach its database? Reply: Pong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    service: str
    database_ok: bool | None  # None: this actor has no database


@dataclass(frozen=True, slots=True, kw_only=True)
class Echo:
    """Answer with the same payload. Reply: Echoed. Used by `bench rpc`."""

    payload: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Echoed:
    payload: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    """The reply of any command that took effect and has nothing to show."""


MESSAGES = (Ping, Pong, Echo, Echoed, Done)
