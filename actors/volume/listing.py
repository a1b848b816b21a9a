"""What volume and snapshot lists share: whose items a caller sees, and a marker that must be
one of them. Pure."""

import asyncpg

from protocol.envelope import Context
from protocol.errors import Invalid


def listed_project(ctx: Context, project_id: str | None, all_projects: bool) -> str | None:
    """The project whose items a list shows; None: every project's. Admins may ask for one
    project or all; others always see their own (Cinder ignores all_tenants for them)."""
    if ctx.is_admin and project_id is not None:
        return project_id
    if ctx.is_admin and all_projects:
        return None
    return ctx.project_id


def check_marker(marked: asyncpg.Record | None, project: str | None, marker: str) -> None:
    """A marker the list could not have shown is a 400, as Cinder answers."""
    if marked is None or (project is not None and marked["project_id"] != project):
        raise Invalid("marker", f"marker {marker} could not be found")
