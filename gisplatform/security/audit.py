"""The audit log: one row per unmasked read, write and export.

Callers write the row in the same transaction as a write (so a rolled-back write leaves no
record, and a committed one always has one); for reads, before the response is sent.
`detail` must not carry personal values themselves: ids of what was read, counts, filters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .principals import Principal

if TYPE_CHECKING:
    import psycopg

__all__ = ["READ_PERSONAL_ACTION", "WRITE_ACTION", "EXPORT_ACTION", "audit"]

READ_PERSONAL_ACTION, WRITE_ACTION, EXPORT_ACTION = "read_personal", "write", "export"


def audit(conn: psycopg.Connection, principal: Principal, layer: str | None, action: str,
          detail: dict | None = None, client: str | None = None) -> int:
    """Insert an audit_log row; returns its id."""
    from psycopg.types.json import Jsonb

    if not isinstance(action, str) or not action:
        raise ValueError("audit action must be a non-empty string")
    (row_id,) = conn.execute(
        "insert into city.audit_log (token_id, department, layer, action, detail, client)"
        " values (%s, %s, %s, %s, %s, %s) returning id",
        (principal.token_id, principal.department, layer, action, Jsonb(detail or {}),
         client)).fetchone()
    return row_id
