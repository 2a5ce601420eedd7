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

__all__ = ["ANALYST_ROLE", "ANALYST_USERNAME", "create_analyst_user"]

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
