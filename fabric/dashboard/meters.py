"""A host's used/total bars, rendered in Python.

The fleet page shows three per host, 150 on a page: as a Jinja macro they were a quarter of
the whole process's CPU under load (each call builds a context, each attribute escapes), so
they are formatted here, the host's name escaped once per row. The markup is the one
`static/live.js` updates in place when a capacity report arrives.
"""

from typing import Any

from markupsafe import Markup, escape


def level(share: float) -> str:
    return "full" if share >= 0.9 else "high" if share >= 0.7 else "ok"


def host_bars(host: dict[str, Any]) -> tuple[Markup, Markup, Markup]:
    """An `os-hypervisors/detail` item's vCPU, RAM and disk bars."""
    name = escape(host["hypervisor_hostname"])
    return (
        _bar(int(host["vcpus_used"]), int(host["vcpus"]), "", "vCPUs", name),
        _bar(int(host["memory_mb_used"]), int(host["memory_mb"]), " MB", "RAM", name),
        _bar(int(host["local_gb_used"]), int(host["local_gb"]), " GB", "disk", name),
    )


def _bar(used: int, total: int, suffix: str, what: str, host: Markup) -> Markup:
    """A `role="meter"` bar of `used` out of `total`, then the figures. Every argument but
    `host` (escaped by the caller) is a number or a constant of this module."""
    share = used / total if total else 0.0
    return Markup(
        f'<span class="bar {level(share)}" role="meter" aria-label="{what} of {host}" aria-valuemin="0" '
        f'aria-valuemax="{total}" aria-valuenow="{used}" aria-valuetext="{used} of {total}{suffix}">'
        f'<span class="fill" style="width: {round(100 * share)}%"></span></span>'
        f'<span class="figure">{used} / {total}{suffix}</span>'
    )
