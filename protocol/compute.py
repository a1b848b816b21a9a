"""Compute: flavors so far (servers, keypairs and the boot saga follow). The queue is `compute`.

A flavor is a size of server. Public flavors are for every project; a private one only for the
projects given access. Only admins create, delete and grant flavors.
"""

from dataclasses import dataclass
from typing import Annotated

from protocol.codec import MaxLen, MinLen, Pattern, Range

QUEUE = "compute"

FlavorId = Annotated[str, MinLen(1), MaxLen(255), Pattern(r"[A-Za-z0-9_.\- ]+")]
ProjectId = Annotated[str, MinLen(1), MaxLen(64)]
Count = Annotated[int, Range(0, 2**31 - 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorView:
    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    swap: int
    ephemeral: int
    is_public: bool
    rxtx_factor: float
    disabled: bool
    description: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorList:
    items: tuple[FlavorView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateFlavor:
    """Admins only. Reply: FlavorView; Conflict when the id or name is taken."""

    flavor_id: FlavorId
    name: Annotated[str, MinLen(1), MaxLen(255)]
    vcpus: Annotated[int, Range(1, 2**31 - 1)]
    ram: Annotated[int, Range(1, 2**31 - 1)]
    disk: Count = 0
    swap: Count = 0
    ephemeral: Count = 0
    is_public: bool = True
    rxtx_factor: Annotated[float, Range(0.0, 1e6)] = 1.0
    description: Annotated[str, MaxLen(65535)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetFlavor:
    """Reply: FlavorView; NotFound when the caller may not use it."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFlavors:
    """Flavors the caller may use, by id. `is_public` None: admins see every flavor. Reply:
    FlavorList."""

    is_public: bool | None = True
    min_ram: Count = 0
    min_disk: Count = 0
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Annotated[str, MinLen(1), MaxLen(255)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteFlavor:
    """Admins only. Servers keep what they were built with. Reply: Done."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetFlavorAccess:
    """Admins only: give (`allowed`) or take a project's use of a private flavor. Reply:
    FlavorAccess."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]
    project_id: ProjectId
    allowed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFlavorAccess:
    """Admins only. Reply: FlavorAccess."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorAccess:
    flavor_id: str
    project_ids: tuple[str, ...]


SpecKey = Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtraSpecs:
    flavor_id: str
    specs: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetExtraSpecs:
    """Reply: ExtraSpecs; NotFound when the caller may not use the flavor."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetExtraSpecs:
    """Admins only: add or overwrite these keys. Reply: ExtraSpecs (all of them)."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]
    #: Keys of 1 to 255 characters (checked by the service: the codec types keys as plain str).
    specs: Annotated[dict[str, Annotated[str, MaxLen(255)]], MinLen(1), MaxLen(128)]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteExtraSpec:
    """Admins only. Reply: ExtraSpecs (the ones left); NotFound for a key not set."""

    flavor_id: Annotated[str, MinLen(1), MaxLen(255)]
    key: SpecKey


MESSAGES = (
    FlavorView,
    FlavorList,
    CreateFlavor,
    GetFlavor,
    ListFlavors,
    DeleteFlavor,
    SetFlavorAccess,
    ListFlavorAccess,
    FlavorAccess,
    ExtraSpecs,
    GetExtraSpecs,
    SetExtraSpecs,
    DeleteExtraSpec,
)
