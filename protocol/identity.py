"""Identity: domains, projects, users, roles, assignments, tokens and the service catalog.

The queue is `identity`. Replies are the `...View` and `...List` types; every command names its
reply in its docstring. Names are Keystone's: a project-scoped token's `project_id`, a
domain-scoped token's `domain_id`.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from protocol.codec import MaxLen, MinLen

QUEUE = "identity"

Id = Annotated[str, MinLen(1), MaxLen(64)]
Name = Annotated[str, MinLen(1), MaxLen(255)]
Text = Annotated[str, MaxLen(65535)]
Password = Annotated[str, MaxLen(4096)]
Tags = Annotated[tuple[Annotated[str, MinLen(1), MaxLen(255)], ...], MaxLen(80)]


# --- views -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainView:
    id: str
    name: str
    description: str
    enabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectView:
    id: str
    name: str
    domain_id: str
    description: str
    enabled: bool
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UserView:
    id: str
    name: str
    domain_id: str
    enabled: bool
    default_project_id: str | None
    email: str | None
    description: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleView:
    id: str
    name: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignmentView:
    """One role of one user on one project or domain (exactly one of the two is set)."""

    role_id: str
    role_name: str
    user_id: str
    user_name: str
    user_domain_id: str
    user_domain_name: str
    project_id: str | None
    project_name: str | None
    project_domain_id: str | None
    project_domain_name: str | None
    domain_id: str | None
    domain_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainList:
    items: tuple[DomainView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectList:
    items: tuple[ProjectView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UserList:
    items: tuple[UserView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleList:
    items: tuple[RoleView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignmentList:
    items: tuple[AssignmentView, ...]


# --- domains -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateDomain:
    """Admin only. Reply: DomainView. Conflict when the name is taken."""

    name: Name
    description: Text = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class GetDomain:
    """Reply: DomainView."""

    domain_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListDomains:
    """Reply: DomainList. Admins see every domain, others the domains they have roles on."""

    name: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateDomain:
    """Admin only. Reply: DomainView. Disabling revokes the domain's tokens."""

    domain_id: Id
    name: Name | None = None
    description: Text | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteDomain:
    """Admin only; the domain must be disabled first (Forbidden otherwise). Reply: Done."""

    domain_id: Id


# --- projects ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateProject:
    """Admin only. Reply: ProjectView. Conflict when the name is taken in the domain."""

    name: Annotated[str, MinLen(1), MaxLen(64)]
    domain_id: Id = "default"
    description: Text = ""
    enabled: bool = True
    tags: Tags = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProject:
    """Reply: ProjectView. Non-admins may read only the project their token is scoped to."""

    project_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListProjects:
    """Admin only. Reply: ProjectList, filtered by every field that is set."""

    name: str | None = None
    domain_id: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListUserProjects:
    """The projects a user has a role on. The user themself or an admin. Reply: ProjectList."""

    user_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateProject:
    """Admin only. Reply: ProjectView. Disabling revokes the project's tokens."""

    project_id: Id
    name: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    description: Text | None = None
    enabled: bool | None = None
    tags: Tags | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteProject:
    """Admin only. Reply: Done. Removes its role assignments and revokes its tokens."""

    project_id: Id


# --- users -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateUser:
    """Admin only. Reply: UserView. Conflict when the name is taken in the domain."""

    name: Name
    domain_id: Id = "default"
    password: Password | None = None
    enabled: bool = True
    default_project_id: Id | None = None
    email: Annotated[str, MaxLen(255)] | None = None
    description: Text | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetUser:
    """Reply: UserView. Users may read themselves; admins anyone."""

    user_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListUsers:
    """Admin only. Reply: UserList."""

    name: str | None = None
    domain_id: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateUser:
    """Admin only. Reply: UserView. A new password or disabling revokes the user's tokens."""

    user_id: Id
    name: Name | None = None
    password: Password | None = None
    enabled: bool | None = None
    default_project_id: Id | None = None
    email: Annotated[str, MaxLen(255)] | None = None
    description: Text | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePassword:
    """A user changes their own password, proving the old one. Reply: Done."""

    user_id: Id
    original_password: Password
    password: Password


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteUser:
    """Admin only. Reply: Done. Removes the user's assignments and revokes their tokens."""

    user_id: Id


# --- roles and assignments ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRole:
    """Admin only. Reply: RoleView."""

    name: Name
    description: Text = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRole:
    """Reply: RoleView."""

    role_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRoles:
    """Reply: RoleList."""

    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRole:
    """Admin only. Reply: RoleView."""

    role_id: Id
    name: Name | None = None
    description: Text | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRole:
    """Admin only. Reply: Done. Removes its assignments and revokes the tokens carrying it."""

    role_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """A role, a user and exactly one target: a project or a domain."""

    role_id: Id
    user_id: Id
    project_id: Id | None = None
    domain_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantRole:
    """Admin only. Reply: Done. Idempotent."""

    grant: Grant


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeRole:
    """Admin only. Reply: Done; NotFound when there was no such assignment. Revokes the
    user's tokens on that target, as Keystone does."""

    grant: Grant


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRole:
    """Admin only. Reply: Done when the assignment exists, NotFound otherwise."""

    grant: Grant


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRoleAssignments:
    """Reply: AssignmentList. Admins see all; others only their own assignments.
    `effective` adds the roles implied by the assigned ones (admin ⇒ member ⇒ reader)."""

    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    role_id: str | None = None
    effective: bool = False


# --- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordCredentials:
    """A user by id, or by name within a domain given by id or name."""

    password: Password
    user_id: str | None = None
    user_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """A project (by id, or by name within a domain) or a domain (by id or name)."""

    project_id: str | None = None
    project_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticate:
    """Check credentials and issue a token. Reply: TokenIssued; Unauthorized on bad credentials.

    `scope` None with `unscoped` False scopes to the user's default project when they have a
    role there, as Keystone does; `unscoped` True asks for an unscoped token explicitly.
    """

    methods: tuple[Literal["password", "token"], ...]
    password: PasswordCredentials | None = None
    token: str | None = None
    scope: Scope | None = None
    unscoped: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleRef:
    id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenData:
    """Everything a token says; it is sealed inside the token itself so that any gateway can
    read it without asking the identity service. Times are seconds since the epoch."""

    user_id: str
    user_name: str
    user_domain_id: str
    user_domain_name: str
    project_id: str | None
    project_name: str | None
    project_domain_id: str | None
    project_domain_name: str | None
    domain_id: str | None
    domain_name: str | None
    roles: tuple[RoleRef, ...]
    methods: tuple[str, ...]
    issued_at: float
    expires_at: float
    audit_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenIssued:
    token: str
    data: TokenData


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeToken:
    """Revoke one token (the caller's own, or any for an admin). Reply: Revocations, the rule
    written, so that the gateway that asked applies it before the event reaches the others.
    NotFound when the token is not one of ours."""

    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetTokenKeys:
    """The keys that seal tokens, newest first. Reply: TokenKeys. For gateways only."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenKeys:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """Tokens matching every field that is set, issued at or before `issued_before`, are
    revoked. `domain_id` matches a token's user domain, project domain or domain scope. The
    rule can be forgotten after `expires_at`, when every token it matches has expired."""

    audit_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    role_id: str | None = None
    issued_before: float
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRevocations:
    """Every revocation that still matters. Reply: Revocations. For gateways, at start-up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocations:
    items: tuple[Revocation, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokensRevoked:
    """Event: a revocation took effect; every gateway applies it at once."""

    revocation: Revocation


# --- catalog -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointView:
    id: str
    interface: str
    region: str
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceView:
    id: str
    type: str
    name: str
    endpoints: tuple[EndpointView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    services: tuple[ServiceView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetCatalog:
    """Reply: Catalog. URLs may hold `$(project_id)s`, filled in per token by the gateway."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterService:
    """A service announces where it is reached, at start-up. Idempotent. Reply: Done."""

    type: Name
    name: Name
    url: Annotated[str, MinLen(1), MaxLen(1024)]
    region: Name = "RegionOne"
    interfaces: tuple[Literal["public", "internal", "admin"], ...] = ("public",)


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogChanged:
    """Event: the catalog changed; gateways drop their cached copy."""


MESSAGES = (
    DomainView,
    ProjectView,
    UserView,
    RoleView,
    AssignmentView,
    DomainList,
    ProjectList,
    UserList,
    RoleList,
    AssignmentList,
    CreateDomain,
    GetDomain,
    ListDomains,
    UpdateDomain,
    DeleteDomain,
    CreateProject,
    GetProject,
    ListProjects,
    ListUserProjects,
    UpdateProject,
    DeleteProject,
    CreateUser,
    GetUser,
    ListUsers,
    UpdateUser,
    ChangePassword,
    DeleteUser,
    CreateRole,
    GetRole,
    ListRoles,
    UpdateRole,
    DeleteRole,
    GrantRole,
    RevokeRole,
    CheckRole,
    ListRoleAssignments,
    Authenticate,
    TokenIssued,
    RevokeToken,
    GetTokenKeys,
    TokenKeys,
    ListRevocations,
    Revocations,
    TokensRevoked,
    GetCatalog,
    Catalog,
    RegisterService,
    CatalogChanged,
)
