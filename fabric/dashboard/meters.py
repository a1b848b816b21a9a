"""A host's used/total bar, rendered in Python.

The fleet page shows three per host, 150 on a page: as a Jinja macro they were a quarter of
the whole process's CPU under load (each call builds a context, each attribute escapes).
The markup is the one `static/live.js` updates in place when a capacity report arrives.
"""

from markupsafe import Markup, escape


def level(share: float) -> str:
    return "full" if share >= 0.9 else "high" if share >= 0.7 else "ok"


def bar(used: int, total: int, unit: str, label: str) -> Markup:
    """A `role="meter"` bar of `used` out of `total`, named `label`, then the figures."""
    share = used / total if total else 0.0
    width = round(100 * share) if total else 0
    name, suffix = escape(label), escape(f" {unit}" if unit else "")
    return Markup(
        f'<span class="bar {level(share)}" role="meter" aria-label="{name}" aria-valuemin="0" '
        f'aria-valuemax="{int(total)}" aria-valuenow="{int(used)}" '
        f'aria-valuetext="{int(used)} of {int(total)}{suffix}">'
        f'<span class="fill" style="width: {width}%"></span></span>'
        f'<span class="figure">{int(used)} / {int(total)}{suffix}</span>'
    )
