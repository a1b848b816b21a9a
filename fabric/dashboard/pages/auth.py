"""Signing in and out, and switching projects: everything through Identity's token API.

Signing in asks for a token scoped to the project named in the form, then the user's projects
for the switcher; switching rescopes the current token to the chosen project and revokes the old
one; signing out revokes the token and forgets the session. The token stays in the session, on
the server.
"""

import asyncio
import logging

from aiohttp import web

from fabric.dashboard.api import ApiError, Identity
from fabric.dashboard.live import LIVE
from fabric.dashboard.page import (
    SESSIONS,
    form_str,
    identity_of,
    redirect,
    render,
    session_of,
    set_cookie,
    signed_in,
)

log = logging.getLogger("fabric.dashboard")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login, name="login-post")
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_post("/project", switch_project, name="project")


async def login_form(request: web.Request) -> web.Response:
    session = session_of(request)
    if session is not None and session.is_signed_in:
        return redirect("/overview")
    if session is None:
        session = request.app[SESSIONS].anonymous()
    context = {"values": {"domain": "Default"}, "expired": "expired" in request.query, "message": None}
    response = render(request, "login.html", context | {"csrf": session.csrf})
    set_cookie(request, response, session)
    return response


async def login(request: web.Request) -> web.Response:
    # "login-post" is not public: the middleware already checked the CSRF token, so there is an
    # (anonymous) session; being not yet signed in is what it is for.
    form = await request.post()
    values = {name: form_str(form, name, 255) for name in ("user", "project", "domain")}
    values["domain"] = values["domain"] or "Default"
    password = form_str(form, "password", 4096)
    missing = [name for name in ("user", "project") if not values[name]] + ([] if password else ["password"])
    if missing:
        return _again(request, values, f"Please fill in: {', '.join(missing)}.", status=400)
    identity = identity_of(request)
    try:
        token = await identity.password(values["user"], password, values["project"], values["domain"])
        projects = await identity.projects(token.id)
    except ApiError as exc:
        if exc.status >= 500:
            return _again(request, values, f"Identity failed (request {exc.request_id}).", status=502)
        # Keystone says 401 for a wrong user, password or project alike, and so do we.
        return _again(request, values, exc.message, status=exc.status)
    session = request.app[SESSIONS].sign_in(session_of(request), token, projects)
    log.info("dashboard sign-in", extra={"user": token.user_name, "project": token.project.name})
    response = redirect("/overview")
    set_cookie(request, response, session)
    return response


def _again(request: web.Request, values: dict[str, str], message: str, *, status: int) -> web.Response:
    """The login form again with what the user typed (never the password) and why."""
    return render(
        request, "login.html", {"values": values, "expired": False, "message": message}, status=status
    )


async def logout(request: web.Request) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    request.app[SESSIONS].drop(session.id)
    request.app[LIVE].session_ended(session.id)
    try:
        await identity_of(request).revoke(session.token.id)
    except ApiError as exc:  # already expired or revoked: the session is gone either way
        log.info("dashboard sign-out: revoke refused", extra={"status": exc.status})
    response = redirect("/login")
    response.del_cookie("fabric_dashboard", path="/dashboard")
    return response


async def switch_project(request: web.Request) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    form = await request.post()
    project_id = form_str(form, "project_id", 64)
    if project_id == session.token.project.id:
        return redirect("/overview")
    identity = identity_of(request)
    old = session.token
    try:
        token = await identity.rescope(old.id, project_id)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        session.flash(f"Cannot switch to that project: {exc.message}", "error")
        return redirect("/overview")
    projects = await identity.projects(token.id)
    request.app[SESSIONS].switch(session, token, projects)
    request.app[LIVE].session_ended(session.id)  # its streams were for the old project
    # The old token would still open the old project: revoke it, without making the user wait.
    task = asyncio.create_task(_revoke_quietly(identity_of(request), old.id))
    request.app[LIVE].keep(task)
    session.flash(f"Now in project {token.project.name}.")
    return redirect("/overview")


async def _revoke_quietly(identity: Identity, token_id: str) -> None:
    try:
        await identity.revoke(token_id)
    except ApiError as exc:
        log.info("dashboard: revoking the previous token refused", extra={"status": exc.status})
