"""A refused form, shown as the API said it: the message beside the field it names, or at the top
of the form when it names none of the form's fields. A 401 and a failure of the cloud (5xx) are
raised again, so that the middleware ends the session or shows the request id."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from fabric.dashboard.api import ApiError


@dataclass(slots=True)
class FormState:
    """What a page shows in one of its forms: what was typed, and why it was refused."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    #: Which of the page's forms the state belongs to, where it has several of a kind.
    target: str = ""


#: An item of a list field (`records[0]`): the field is the list's.
_INDEX = re.compile(r"\[\d+\]")


def field_of(exc: ApiError, fields: Mapping[str, str]) -> str | None:
    """The form field `exc` is about: `fields` maps the API's names (`subnet.cidr`, or the last
    part alone, `cidr`) to the form's."""
    if not exc.field:
        return None
    named = _INDEX.sub("", exc.field)
    if named in fields:
        return fields[named]
    return fields.get(named.rsplit(".", 1)[-1])


def refused(exc: ApiError, fields: Mapping[str, str], values: dict[str, str], target: str = "") -> FormState:
    """The form's state after `exc` (a 4xx other than 401); raises `exc` again otherwise."""
    if exc.status == 401 or not exc.is_client_error:
        raise exc
    where = field_of(exc, fields)
    if where is None:
        return FormState(values, {}, exc.message, target)
    return FormState(values, {where: exc.message}, None, target)


def page_params(query: Mapping[str, str], limit: int) -> dict[str, str]:
    """`limit` and the `marker` the page was asked for, for a list call."""
    params = {"limit": str(limit)}
    marker = query.get("marker", "")[:64]
    if marker:
        params["marker"] = marker
    return params
