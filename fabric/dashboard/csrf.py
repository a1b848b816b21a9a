"""CSRF: every state-changing request must carry its session's secret token.

The cookie alone is SameSite=Strict, which already keeps other sites' forms from sending it;
the token is the second, independent lock (older browsers, same-site subdomains). Each session
has one random token, put into every form as a hidden field (or sent by a script as the
`X-CSRF-Token` header, for a body that is not a form) and compared in constant time.
"""

import hmac

from aiohttp import web

from fabric.dashboard.sessions import Session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class CsrfRefused(Exception):
    """The request changes state and its CSRF token is missing or wrong (answered 403)."""


async def check(request: web.Request, session: Session | None) -> None:
    """Return if `request` may change state for `session`; CsrfRefused otherwise."""
    if request.method in SAFE_METHODS:
        return
    if session is None:
        raise CsrfRefused("no session")
    sent = request.headers.get(HEADER)
    if sent is None and request.content_type in FORM_TYPES:
        form = await request.post()
        value = form.get(FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise CsrfRefused("missing or wrong token")
