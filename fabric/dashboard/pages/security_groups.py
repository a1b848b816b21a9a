"""Security groups: the list with each group's rules (Neutron gives them inside the group, so
the page is one call), create a group, add and delete rules.

The add-rule form is one per group; a refused rule is shown in its own group's form, beside
the field the API names, with what was typed.
"""

from typing import Any

from aiohttp import web

from fabric.dashboard.api import ApiError
from fabric.dashboard.page import cloud_of, error_page, form_str, redirect, render, signed_in
from fabric.dashboard.pages.refusals import FormState, page_params, refused

PAGE_SIZE = 20
GROUP_FIELDS = {"security_group.name": "name", "security_group.description": "description"}
RULE_FIELDS = {
    "direction": "direction",
    "protocol": "protocol",
    "port_range_min": "port_range_min",
    "port_range_max": "port_range_max",
    "remote_ip_prefix": "remote_ip_prefix",
    "ethertype": "remote_ip_prefix",
}
RULE_DEFAULTS = {"direction": "ingress", "protocol": "tcp"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/security-groups", group_list, name="security-groups")
    app.router.add_post("/security-groups", create_group, name="security-group-create")
    app.router.add_post("/security-groups/{group_id}/rules", add_rule, name="security-group-rule")
    app.router.add_post("/security-groups/{group_id}/action", group_action, name="security-group-action")


async def _page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    params = page_params(request.query, PAGE_SIZE)
    page = await cloud_of(request).get(
        "network", "/v2.0/security-groups", project_id=session.token.project.id, **params
    )
    groups = page["security_groups"]
    context = {
        "groups": groups,
        "names": {g["id"]: g["name"] for g in groups},
        "next_marker": groups[-1]["id"] if len(groups) == PAGE_SIZE else None,
        "marker": request.query.get("marker", ""),
        "form": form,
        # The forms the refusal is not about: empty, but for the rule's usual choices.
        "blank_group": FormState(),
        "blank_rule": FormState(dict(RULE_DEFAULTS)),
    }
    return render(request, "security_groups.html", context, status=status)


async def group_list(request: web.Request) -> web.Response:
    return await _page(request, FormState())


async def create_group(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    values = {"name": form_str(form, "name", 255), "description": form_str(form, "description", 255)}
    try:
        await cloud_of(request).call("POST", "network", "/v2.0/security-groups", {"security_group": values})
    except ApiError as exc:
        return await _page(request, refused(exc, GROUP_FIELDS, values, "group"), status=exc.status)
    session.flash(f"Made security group {values['name']}.")
    return redirect("/security-groups")


def _rule_body(group_id: str, values: dict[str, str]) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "security_group_id": group_id,
        "direction": values["direction"],
        "ethertype": "IPv4",
    }
    if values["protocol"]:
        rule["protocol"] = values["protocol"]
    for name in ("port_range_min", "port_range_max"):
        if values[name]:
            # As typed when it is no number: the API says what is wrong with it.
            rule[name] = int(values[name]) if values[name].isdigit() else values[name]
    if values["remote_ip_prefix"]:
        rule["remote_ip_prefix"] = values["remote_ip_prefix"]
    return {"security_group_rule": rule}


async def add_rule(request: web.Request) -> web.Response:
    session = signed_in(request)
    group_id = request.match_info["group_id"]
    form = await request.post()
    values = {name: form_str(form, name, 64) for name in RULE_FIELDS if name != "ethertype"}
    try:
        await cloud_of(request).call(
            "POST", "network", "/v2.0/security-group-rules", _rule_body(group_id, values)
        )
    except ApiError as exc:
        return await _page(request, refused(exc, RULE_FIELDS, values, group_id), status=exc.status)
    session.flash("Rule added.")
    return redirect("/security-groups")


async def group_action(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    action = form_str(form, "action", 20)
    cloud = cloud_of(request)
    try:
        if action == "delete_rule":
            await cloud.call(
                "DELETE", "network", f"/v2.0/security-group-rules/{form_str(form, 'rule_id', 64)}"
            )
            done = "Rule deleted."
        elif action == "delete":
            await cloud.call("DELETE", "network", f"/v2.0/security-groups/{request.match_info['group_id']}")
            done = f"Deleted security group {form_str(form, 'name', 255)}."
        else:
            done = f"Unknown action {action[:20]!r}."
    except ApiError as exc:
        if exc.status == 401:
            raise
        if not exc.is_client_error:
            return error_page(request, exc)
        session.flash(f"Cannot {action.replace('_', ' ')}: {exc.message}", "error")
        return redirect("/security-groups")
    session.flash(done)
    return redirect("/security-groups")
