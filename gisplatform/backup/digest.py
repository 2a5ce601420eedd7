"""A digest of the database's content: per table of schema `city`, its row count and an
MD5 over its rows (each row's text, in a stable order). Two databases with equal digests
hold the same rows — what a restore must give back."""

from __future__ import annotations

import psycopg
from psycopg import sql

SCHEMA = "city"


def digest(conn: psycopg.Connection) -> dict[str, list]:
    """{table: [rows, md5]} for every base table of schema city."""
    tables = [r[0] for r in conn.execute(
        "select c.relname from pg_class c where c.relnamespace = %s::regnamespace"
        " and c.relkind in ('r', 'p') and not c.relispartition order by 1", (SCHEMA,))]
    out = {}
    for t in tables:
        n, h = conn.execute(sql.SQL(
            "select count(*), md5(coalesce(string_agg(h, '' order by h), ''))"
            " from (select md5(x::text) h from {} x) r").format(
            sql.Identifier(SCHEMA, t))).fetchone()
        out[t] = [n, h]
    return out


def differences(a: dict, b: dict) -> list[str]:
    """The tables whose digests differ (or exist on one side only)."""
    return [f"{t}: {a.get(t)} vs {b.get(t)}" for t in sorted(set(a) | set(b))
            if a.get(t) != b.get(t)]
