"""CSRF: every state-changing request must carry its session's secret token.

The cookie alone is SameSite=Strict, which already keeps other sites' forms from sending it;
the token is the second, independent lock (older browsers, same-site subdomains). Each session
has one random token, put into every form as a hidden field (or sent by a script as the
`X-CSRF-Token` header, for a body that is not a form) and compared in constant time. In a
multipart form the token must be the first part; the reader, past it, is left in the request
(`MULTIPART`) so that a file part is streamed by its handler, never read whole here.
"""

import hmac

from aiohttp import BodyPartReader, MultipartReader, web

from fabric.dashboard.sessions import Session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
#: Where a multipart form's reader is left for its handler, past the CSRF field.
MULTIPART = web.RequestKey("dashboard.multipart", MultipartReader)
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
    if sent is None and request.content_type == "multipart/form-data":
        # Read only the first part, which must be the token (every form puts it first): the
        # rest, a file maybe larger than any body limit, is the handler's to stream.
        reader = await request.multipart()
        part = await reader.next()
        if isinstance(part, BodyPartReader) and part.name == FIELD:
            sent = (await part.read(decode=False))[:256].decode(errors="replace")
        request[MULTIPART] = reader
    elif sent is None and request.content_type in FORM_TYPES:
        form = await request.post()
        value = form.get(FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise CsrfRefused("missing or wrong token")
