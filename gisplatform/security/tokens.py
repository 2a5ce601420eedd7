"""API tokens: departments hold bearer tokens carrying per-layer grants.

Only the SHA-256 of a secret is stored (`city.api_tokens.token_hash`); the secret is shown
once, at creation. A request's token is looked up by that hash on every request: nothing is
cached, so a revoke takes effect on the very next request.

Layer names are checked for shape only (`^[a-z][a-z0-9-]*$`): the kernel does not know the
layer registry, so the composition root validates names against it when it wants to.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .principals import (
    LEVELS,
    PUBLISH,
    PUBLISH_TARGET,
    WORKFLOW_ROLES,
    WORKFLOW_TARGET,
    AuthError,
    Principal,
)

if TYPE_CHECKING:  # psycopg is only needed by callers that pass a connection
    import psycopg

__all__ = ["TOKEN_PREFIX", "LAYER_NAME", "hash_secret", "presented_secret", "parse_grant", "check_grant",
           "create_token", "revoke_token", "principal_for_token", "list_tokens",
           "list_departments"]

TOKEN_PREFIX = "gp_"
LAYER_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_MAX_SECRET = 256  # anything longer is not one of ours; refuse before hashing


def presented_secret(authorization: str | None, query_token: str | None) -> str | None:
    """The token a request presents: `Authorization: Bearer …`, else `?token=` (for clients
    that cannot set headers, e.g. tile URLs in a map style). The one place that reads it."""
    auth = authorization or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return query_token


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_grant(layer: str, level: str) -> tuple[str, str]:
    if not isinstance(layer, str) or not LAYER_NAME.match(layer):
        raise ValueError(f"layer {layer!r} is not a layer name (lowercase letters, digits, '-')")
    if (layer, level) == (PUBLISH_TARGET, PUBLISH):
        return layer, level
    if layer == WORKFLOW_TARGET and level in WORKFLOW_ROLES:
        return layer, level
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is not one of {', '.join(LEVELS)}"
                         f" (or the grant {PUBLISH_TARGET}:{PUBLISH}, or a workflow role"
                         f" {WORKFLOW_TARGET}:{'|'.join(WORKFLOW_ROLES)})")
    return layer, level


def parse_grant(text: str) -> tuple[str, str]:
    """'persons:read_personal' -> ('persons', 'read_personal'); ValueError otherwise."""
    layer, sep, level = text.strip().partition(":")
    if not sep:
        raise ValueError(f"grant {text!r} is not LAYER:LEVEL (levels: {', '.join(LEVELS)})")
    return check_grant(layer, level)


def create_token(conn: psycopg.Connection, department: str,
                 grants: Iterable[tuple[str, str]], label: str | None = None,
                 expires_at: datetime.datetime | None = None) -> tuple[int, str]:
    """Create a token for `department` with `grants`; returns (token_id, secret).

    The secret is returned here only; the database keeps its SHA-256. Raises ValueError for an
    unknown department, a malformed grant or a naive/past `expires_at`.
    """
    checked = sorted({check_grant(layer, level) for layer, level in grants})
    if expires_at is not None:
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise ValueError("expires_at must be timezone-aware")
        if expires_at <= datetime.datetime.now(datetime.UTC):
            raise ValueError("expires_at is in the past")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        if conn.execute("select 1 from city.departments where code = %s",
                        (department,)).fetchone() is None:
            known = [r[0] for r in conn.execute("select code from city.departments order by code")]
            raise ValueError(f"unknown department {department!r} (known: {', '.join(known)})")
        (token_id,) = conn.execute(
            "insert into city.api_tokens (token_hash, department, label, expires_at)"
            " values (%s, %s, %s, %s) returning id",
            (hash_secret(secret), department, label, expires_at)).fetchone()
        if checked:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into city.grants (token_id, layer, level) values (%s, %s, %s)",
                    [(token_id, layer, level) for layer, level in checked])
    return token_id, secret


def revoke_token(conn: psycopg.Connection, token_id: int) -> bool:
    """Revoke a token: True if it was active, False if it was already revoked.
    LookupError if there is no such token. Grants are kept (the audit trail names them)."""
    with conn.transaction():
        row = conn.execute(
            "update city.api_tokens set revoked_at = now()"
            " where id = %s and revoked_at is null returning id", (token_id,)).fetchone()
        if row is not None:
            return True
        if conn.execute("select 1 from city.api_tokens where id = %s",
                        (token_id,)).fetchone() is None:
            raise LookupError(f"no token with id {token_id}")
    return False


_PRINCIPAL_SQL = """select t.id, t.department, t.label, t.revoked_at is not null,
                  t.expires_at is not null and t.expires_at <= now(),
                  coalesce(array_agg(g.layer) filter (where g.layer is not null), '{}'),
                  coalesce(array_agg(g.level) filter (where g.layer is not null), '{}')
           from city.api_tokens t left join city.grants g on g.token_id = t.id
           where t.token_hash = %s
           group by t.id"""


def _checked_secret(secret: str) -> str:
    if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX) \
            or len(secret) > _MAX_SECRET:
        raise AuthError("unknown token")
    return hash_secret(secret)


def _principal(row) -> Principal:
    if row is None:
        raise AuthError("unknown token")
    token_id, department, label, revoked, expired, layers, levels = row
    if revoked:
        raise AuthError("token revoked")
    if expired:
        raise AuthError("token expired")
    grants: dict[str, set[str]] = {}
    for layer, level in zip(layers, levels):
        grants.setdefault(layer, set()).add(level)
    return Principal(token_id=token_id, department=department, label=label,
                     grants={k: frozenset(v) for k, v in grants.items()})


def principal_for_token(conn: psycopg.Connection, secret: str) -> Principal:
    """The principal a bearer secret stands for; AuthError (status 401) if it is unknown,
    revoked or expired. Looked up by its SHA-256, never cached."""
    token_hash = _checked_secret(secret)
    return _principal(conn.execute(_PRINCIPAL_SQL, (token_hash,)).fetchone())


async def principal_for_token_async(conn: psycopg.AsyncConnection, secret: str) -> Principal:
    """`principal_for_token` on the app's async pool: the per-request lookup neither takes a
    thread nor competes with the OGC threads for their pool's connections."""
    token_hash = _checked_secret(secret)
    cur = await conn.execute(_PRINCIPAL_SQL, (token_hash,))
    return _principal(await cur.fetchone())


def list_tokens(conn: psycopg.Connection) -> list[dict]:
    """Every token (never a secret nor its hash), oldest first."""
    rows = conn.execute(
        """select t.id, t.department, t.label, t.created_at, t.expires_at, t.revoked_at,
                  coalesce(array_agg(g.layer || ':' || g.level order by g.layer, g.level)
                           filter (where g.layer is not null), '{}')
           from city.api_tokens t left join city.grants g on g.token_id = t.id
           group by t.id order by t.id""").fetchall()
    keys = ("id", "department", "label", "created_at", "expires_at", "revoked_at", "grants")
    return [dict(zip(keys, r)) for r in rows]


def list_departments(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(c, n) for c, n in conn.execute("select code, name from city.departments order by code")]
