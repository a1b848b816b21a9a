"""Server-side sessions: a random id in a cookie, everything else (the token above all) here.

The store lives in the memory of one gateway process: a session is known only to the process
that made it, and gone when that process restarts (its users sign in again). Several gateway
processes behind one port therefore need sticky routing for the dashboard; a shared store is
the step after this one.

A session starts anonymous (a visitor on the login page, holding only a CSRF token for the login
form) and gets a fresh id when the user signs in, so an id seen before sign-in is worth nothing
after it. It ends at logout, when its token expires, or when it has been idle too long.
"""

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from fabric.dashboard.api import Project, Token

COOKIE = "fabric_dashboard"
#: A visitor who never signs in is forgotten after this long.
ANONYMOUS_TTL_S = 15 * 60
#: A signed-in session unused for this long ends, even if its token is still valid.
IDLE_TTL_S = 8 * 3600
#: Bound on the store, so that a flood of anonymous visits cannot exhaust memory: past it, the
#: least recently used sessions go first.
MAX_SESSIONS = 20_000


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    expires_at: float
    last_seen: float
    token: Token | None = None
    #: The user's projects, for the switcher; read at sign-in and at every switch.
    projects: tuple[Project, ...] = ()
    #: Messages for the next page (after a redirect), with their kind: "ok" or "error".
    flashes: list[tuple[str, str]] = field(default_factory=list)
    #: Flavor and image names by id, and until when they may be shown without asking again
    #: (`pages/servers.py`): display names, so a few seconds' staleness costs nothing.
    names: tuple[float, dict[str, str], dict[str, str]] | None = None

    @property
    def is_signed_in(self) -> bool:
        return self.token is not None

    def flash(self, message: str, kind: str = "ok") -> None:
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


def _random_id() -> str:
    return secrets.token_urlsafe(32)


class SessionStore:
    def __init__(self, *, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.max_sessions = max_sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, expired or idle too long)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.time()
        idle_limit = IDLE_TTL_S if session.is_signed_in else ANONYMOUS_TTL_S
        if now >= session.expires_at or now - session.last_seen > idle_limit:
            self.drop(session_id)
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def anonymous(self) -> Session:
        now = time.time()
        return self._add(Session(_random_id(), _random_id(), now + ANONYMOUS_TTL_S, now))

    def sign_in(self, old: Session | None, token: Token, projects: list[Project]) -> Session:
        """A new session (new id, new CSRF token) for `token`; the old one, if any, ends."""
        if old is not None:
            self.drop(old.id)
        now = time.time()
        return self._add(
            Session(_random_id(), _random_id(), token.expires_at, now, token=token, projects=tuple(projects))
        )

    def switch(self, session: Session, token: Token, projects: list[Project]) -> None:
        """The same session, now scoped to another project."""
        session.token, session.projects, session.expires_at = token, tuple(projects), token.expires_at

    def drop(self, session_id: str) -> Session | None:
        return self._sessions.pop(session_id, None)

    def tokens(self) -> list[Token]:
        """Every signed-in session's token (tests read this to check revocation)."""
        return [s.token for s in self._sessions.values() if s.token is not None]

    def _add(self, session: Session) -> Session:
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        self._sessions[session.id] = session
        return session
