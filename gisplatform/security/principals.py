"""Who is asking (Principal) and what they may do on one layer (Access).

The kernel knows nothing about the layer registry: callers pass the layer name, its sharing
class and its personal attributes (name -> mask kind). Stdlib only.

Rules (government data-sharing classes, 国发〔2016〕51号):

- unconditional (无条件共享): anyone may read; personal fields masked unless `read_personal`;
- conditional (有条件共享) and not_shared (不予共享): reading needs a grant on the layer
  (`read`, `read_personal` or `write`);
- `read_personal` implies read and unmask; `write` implies read (masked) and write;
- the anonymous principal never unmasks nor writes, whatever grants it carries;
- an unknown sharing class grants nothing (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from .masking import check_mask_kind, mask_value

__all__ = [
    "READ", "READ_PERSONAL", "WRITE", "LEVELS", "PUBLISH", "PUBLISH_TARGET", "require_publish",
    "WORKFLOW_TARGET", "WORKFLOW_ROLES", "require_role",
    "UNCONDITIONAL", "CONDITIONAL", "NOT_SHARED", "SHARING_CLASSES",
    "Principal", "ANONYMOUS", "current_principal", "Access", "NO_ACCESS", "access",
    "mask_row", "personal_masks", "AuthError", "AccessDenied",
    "MaskedFieldInput", "masked_fields", "check_inputs", "require",
]

READ, READ_PERSONAL, WRITE = "read", "read_personal", "write"
LEVELS = (READ, READ_PERSONAL, WRITE)
# Publishing new layers (POST /api/layers) for the token's department: the grant
# `layers:publish`, on no layer ("layers" is no layer's name), so it reads nothing.
PUBLISH, PUBLISH_TARGET = "publish", "layers"
# The case workflow's roles (gisplatform/cases): grants on the cases layer, beside its read
# and write levels (migration 0022)
WORKFLOW_TARGET = "cases"
WORKFLOW_ROLES = ("accept", "dispatch", "handle", "verify", "close", "manage")

# Government data-sharing classes (国发〔2016〕51号), which layers declare.
UNCONDITIONAL, CONDITIONAL, NOT_SHARED = "unconditional", "conditional", "not_shared"
SHARING_CLASSES = (UNCONDITIONAL, CONDITIONAL, NOT_SHARED)


class AuthError(Exception):
    """The credentials presented are not valid (unknown, revoked, expired): HTTP 401."""

    status = 401


class AccessDenied(Exception):
    """A known principal asked for something its grants do not allow: HTTP 403."""

    status = 403


class MaskedFieldInput(ValueError):
    """A field the caller receives masked was used as an input (a filter, a sort key, any
    expression): HTTP 400. Answering would let the masked value be recovered one yes/no
    question at a time (`legal_representative LIKE '刘桂%'`)."""

    status = 400

    def __init__(self, field: str, layer: str):
        self.field, self.layer = field, layer
        super().__init__(f"{field!r} is a personal field you receive masked: it cannot be "
                         f"filtered, sorted or used in an expression without a read_personal "
                         f"grant on {layer}")


@dataclass(frozen=True)
class Principal:
    token_id: int | None = None
    department: str | None = None
    # layer name -> granted levels
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    label: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.token_id is None

    def levels(self, layer: str) -> frozenset[str]:
        return frozenset(self.grants.get(layer, ()))


ANONYMOUS = Principal()

# Set per request by the HTTP middleware; read by providers. Outside a request: anonymous.
current_principal: ContextVar[Principal] = ContextVar("current_principal", default=ANONYMOUS)


@dataclass(frozen=True)
class Access:
    read: bool = False
    unmask: bool = False
    write: bool = False


NO_ACCESS = Access()


def access(principal: Principal, layer: str, sharing: str) -> Access:
    """What `principal` may do on `layer`, whose sharing class is `sharing`."""
    if sharing not in SHARING_CLASSES:
        return NO_ACCESS
    if principal.anonymous:
        return Access(read=sharing == UNCONDITIONAL)
    levels = principal.levels(layer)
    granted = bool(levels & set(LEVELS))
    return Access(
        read=sharing == UNCONDITIONAL or granted,
        unmask=READ_PERSONAL in levels,
        write=WRITE in levels,
    )


def require(principal: Principal, layer: str, sharing: str, need: str = READ) -> Access:
    """The caller's Access on `layer` when it has `need` (read, read_personal or write);
    else AuthError (401: no credentials) or AccessDenied (403: a token without the grant)."""
    acc = access(principal, layer, sharing)
    if {READ: acc.read, READ_PERSONAL: acc.unmask, WRITE: acc.write}[need]:
        return acc
    if principal.anonymous:
        raise AuthError(f"{layer} needs a token with a {need} grant (Authorization: Bearer …)")
    # any grant reads, so a missing read is "no grant"
    raise AccessDenied(f"your token has no {'' if need == READ else need + ' '}grant on {layer}")


def require_publish(principal: Principal, department: str) -> None:
    """A caller may publish a layer owned by `department` when its token holds
    `layers:publish` and belongs to that department; else AuthError (401) or AccessDenied
    (403)."""
    if principal.anonymous:
        raise AuthError("publishing a layer needs a token with the layers:publish grant "
                        "(Authorization: Bearer …)")
    if PUBLISH not in principal.levels(PUBLISH_TARGET):
        raise AccessDenied("your token has no layers:publish grant")
    if department != principal.department:
        raise AccessDenied(f"your token publishes for {principal.department}, "
                           f"not for {department}")


def require_role(principal: Principal, layer: str, role: str) -> None:
    """A workflow step needs its role, a grant on the layer (`cases:dispatch` …); else
    AuthError (401) or AccessDenied (403)."""
    if principal.anonymous:
        raise AuthError(f"this step needs a token with the {layer}:{role} grant "
                        "(Authorization: Bearer …)")
    if role not in principal.levels(layer):
        raise AccessDenied(f"your token has no {layer}:{role} grant")


def masked_fields(personal: Mapping[str, str | None], access: Access) -> frozenset[str]:
    """The fields a caller with `access` receives masked: exactly those it may not use as
    inputs (filters, sorting, expressions) nor see among the queryables."""
    return frozenset() if access.unmask else frozenset(personal)


def check_inputs(names, personal: Mapping[str, str | None], access: Access, layer: str) -> None:
    """Raise MaskedFieldInput for the first of `names` (the fields a request uses as inputs)
    that the caller receives masked. Every input path asks this, the way every output path
    masks with `mask_row` / `mask_sql`."""
    hidden = masked_fields(personal, access)
    for name in sorted(set(names)):
        if name in hidden:
            raise MaskedFieldInput(name, layer)


def mask_row(row: Mapping, personal: Mapping[str, str | None], access: Access) -> dict:
    """A copy of `row` with every personal field present in it masked (by its kind; None =
    secret), unless `access.unmask`. The caller checks `access.read` before serving at all."""
    out = dict(row)
    if access.unmask:
        return out
    for name, kind in personal.items():
        if name in out:
            out[name] = mask_value(kind, out[name])
    return out


def personal_masks(attributes) -> dict[str, str | None]:
    """{name: mask kind} of the personal attributes among `attributes` (objects with `name`,
    `personal` and optionally `mask`, e.g. gisplatform.temporal.Attribute). Unknown kinds
    raise ValueError here, at registration, rather than at serving time."""
    out: dict[str, str | None] = {}
    for a in attributes:
        if getattr(a, "personal", False):
            kind = getattr(a, "mask", None)
            check_mask_kind(kind)
            out[a.name] = kind
    return out
