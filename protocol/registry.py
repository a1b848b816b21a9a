"""Every message type by its wire name, `<module>.<Class>` (e.g. `identity.CreateProject`).

The list of protocol modules is explicit: adding a service means adding its module here.
"""

from protocol import (
    compute,
    compute_agent,
    dns,
    identity,
    image,
    network,
    network_agent,
    network_l3,
    scheduler,
    security_groups,
    storage,
    system,
    volume,
    volume_agent,
)

MODULES = (
    compute,
    compute_agent,
    dns,
    identity,
    image,
    network,
    network_agent,
    network_l3,
    scheduler,
    security_groups,
    storage,
    system,
    volume,
    volume_agent,
)


def type_name(cls: type) -> str:
    return f"{cls.__module__.removeprefix('protocol.')}.{cls.__name__}"


TYPES: dict[str, type] = {type_name(cls): cls for mod in MODULES for cls in mod.MESSAGES}
NAMES: dict[type, str] = {cls: name for name, cls in TYPES.items()}


def schema_of(cls: type) -> int:
    """A message type's schema version: `SCHEMA` on the class, 1 when absent."""
    return int(getattr(cls, "SCHEMA", 1))
