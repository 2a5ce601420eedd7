"""Keyed pseudonyms: stable ids made from personal values that tell nothing about them.

A person's fid is derived from the ID number, so that every source (imports, OGC
transactions, the demo) names one person alike. A plain hash will not do: the masked ID
number that a `read` grant shows (area code and last four) leaves only the birth date
unknown, and hashing those ~40 000 candidates gives the number back from the item's id in
seconds. HMAC-SHA256 under a key no caller sees keeps the id stable and useless for that.
One key per database (`city.pseudonym_key`, migration 0014, readable by the platform's own
role only: no grant to the analyst role), made at random when the database is migrated;
never a constant in code (that would make it a plain hash again).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PseudonymKeyMissing", "pseudonym", "read_pseudonym_key"]


class PseudonymKeyMissing(RuntimeError):
    """The database has no pseudonym key (not migrated), or a caller forgot to pass it."""


def read_pseudonym_key(conn) -> bytes:
    row = conn.execute("select key from city.pseudonym_key").fetchone()
    if row is None:
        raise PseudonymKeyMissing("the database has no pseudonym key: run `gisplatform db migrate`")
    return bytes(row[0])


def pseudonym(key: bytes, value: str, prefix: str = "", length: int = 20) -> str:
    """`prefix` + the first `length` hex digits of HMAC-SHA256(key, value)."""
    if len(key) < 16:
        raise PseudonymKeyMissing("a pseudonym key has at least 16 bytes")
    return prefix + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:length]
