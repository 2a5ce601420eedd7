"""Database logins for GIS analysts (QGIS straight on PostGIS).

Members of the NOLOGIN group role `gisplatform_analyst` (migration 0003) may read the snapshot
views of layers without personal attributes and call the population aggregates; nothing else.
Roles are cluster-wide; the grants are per database.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

__all__ = ["ANALYST_ROLE", "ANALYST_USERNAME", "analyst_may_read", "create_analyst_user",
           "grant_analyst_view"]

ANALYST_ROLE = "gisplatform_analyst"
ANALYST_USERNAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def create_analyst_user(conn: psycopg.Connection, username: str, password: str) -> None:
    """Create a LOGIN role in `gisplatform_analyst`. ValueError for a bad or taken name or an
    empty password. The password travels as a SCRAM verifier computed client-side, so the
    plaintext never reaches the server (nor its statement log)."""
    from psycopg import sql

    if not isinstance(username, str) or not ANALYST_USERNAME.match(username) \
            or username.startswith("pg_"):
        raise ValueError(f"username {username!r} must match ^[a-z_][a-z0-9_]{{0,62}}$ "
                         "and not start with pg_")
    if not password:
        raise ValueError("the password must not be empty")
    with conn.transaction():
        if conn.execute("select 1 from pg_roles where rolname = %s",
                        (ANALYST_ROLE,)).fetchone() is None:
            raise ValueError(f"role {ANALYST_ROLE} does not exist: apply the migrations first")
        if conn.execute("select 1 from pg_roles where rolname = %s",
                        (username,)).fetchone() is not None:
            raise ValueError(f"role {username!r} already exists")
        verifier = conn.pgconn.encrypt_password(
            password.encode("utf-8"), username.encode("utf-8"), b"scram-sha-256").decode()
        conn.execute(sql.SQL(
            "create role {} login password {} in role {}").format(
            sql.Identifier(username), sql.Literal(verifier), sql.Identifier(ANALYST_ROLE)))


def analyst_may_read(sharing: str, personal: bool) -> bool:
    """Whether analysts read a layer's snapshot view: shared unconditionally and without a
    personal attribute (the built-in views migration 0003 grants follow the same rule; a
    conditional layer is read through the API with a token, where access is decided)."""
    from .principals import UNCONDITIONAL

    return sharing == UNCONDITIONAL and not personal


def grant_analyst_view(conn: psycopg.Connection, view: str, may_read: bool) -> None:
    """Grant (or revoke) the analyst role's SELECT on `city.<view>`, where the role exists."""
    from psycopg import sql

    if conn.execute("select to_regrole(%s)", (ANALYST_ROLE,)).fetchone()[0] is None:
        return
    stmt = "grant select on {} to {}" if may_read else "revoke select on {} from {}"
    conn.execute(sql.SQL(stmt).format(sql.Identifier("city", view), sql.Identifier(ANALYST_ROLE)))
