"""Scale-out: apply the distribution plan when the database is a Citus coordinator.

On plain PostGIS this does nothing. With the `citus` extension installed (docker-compose
profile `citus`, deploy/citus/) it follows `gisplatform.db.distribution.plan`: version
tables of large layers sharded by fid and co-located, small layers, code lists and
registries as reference tables, logs left on the coordinator. Before handing tables over
it rewrites what Citus refuses (the overlap rule onto `fid`, the tile-change triggers of
0005 dropped) and stops with the list of problems if anything is left.

Citus steps run outside the migration transaction (autocommit): `create_distributed_table`
moves data and may not share a transaction with DDL on the same table. Each step skips
tables already placed, so a run stopped half-way can be rerun.

Revision ID: 0010
Revises: 0009
"""

import logging

from alembic import op

from gisplatform.db.distribution import (
    DISTRIBUTED,
    REFERENCE,
    REFERENCE_WARN_BYTES,
    of_kind,
    plan,
    prepare_sql,
    problems,
    unprepare_sql,
)
from layers import LAYERS

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# Functions the shards evaluate inside pushed-down queries (camera_cones, cameras-covering).
SHARD_FUNCTIONS = (("city.view_cone(geometry, double precision, double precision, "
                   "double precision)"),)


def _has_citus(conn) -> bool:
    return conn.execute("select exists (select from pg_extension where extname = 'citus')"
                        ).fetchone()[0]


def _placed(conn) -> set[str]:
    return {r[0] for r in conn.execute(
        "select c.relname from pg_dist_partition p join pg_class c on c.oid = p.logicalrelid"
        " where c.relnamespace = 'city'::regnamespace")}


def _referenced_first(conn, tables: list[str]) -> list[str]:
    """Reference tables ordered so that a table comes after those its foreign keys name."""
    deps = {t: set() for t in tables}
    for src, dst in conn.execute(
            "select s.relname, d.relname from pg_constraint c"
            " join pg_class s on s.oid = c.conrelid join pg_class d on d.oid = c.confrelid"
            " where c.contype = 'f' and s.relnamespace = 'city'::regnamespace"):
        if src in deps and dst in deps and src != dst:
            deps[src].add(dst)
    ordered: list[str] = []
    while deps:
        ready = sorted(t for t, d in deps.items() if not d - set(ordered))
        if not ready:
            raise RuntimeError(f"foreign keys form a cycle among {sorted(deps)}")
        ordered += ready
        for t in ready:
            del deps[t]
    return ordered


def _dbapi():
    """The psycopg connection under alembic's (problems() speaks psycopg)."""
    return op.get_bind().connection.dbapi_connection


def upgrade() -> None:
    if not _has_citus(_dbapi()):
        return
    p = plan(layer.spec for layer in LAYERS.values())
    with op.get_context().autocommit_block():
        conn = _dbapi()
        for stmt in prepare_sql(p):
            conn.execute(stmt)
        left = problems(conn, p)
        if left:
            raise RuntimeError("the distribution plan does not fit the schema:\n  "
                               + "\n  ".join(left))
        placed = _placed(conn)
        for table in _referenced_first(conn, [x.table for x in of_kind(p, REFERENCE)]):
            size = conn.execute("select pg_total_relation_size(%s::regclass)",
                                (f"city.{table}",)).fetchone()[0]
            if size > REFERENCE_WARN_BYTES:
                log.warning("reference table city.%s is %d MB: consider distributing it "
                            "(gisplatform/db/distribution.py)", table, size >> 20)
            if table not in placed:
                conn.execute("select create_reference_table(%s)", (f"city.{table}",))
        for fn in SHARD_FUNCTIONS:
            conn.execute("select create_distributed_function(%s)", (fn,))
        anchor = None
        for x in of_kind(p, DISTRIBUTED):
            if x.table not in placed:
                conn.execute("select create_distributed_table(%s, 'fid', colocate_with => %s)",
                             (f"city.{x.table}", anchor or "none"))
            anchor = anchor or f"city.{x.table}"


def downgrade() -> None:
    if not _has_citus(_dbapi()):
        return
    p = plan(layer.spec for layer in LAYERS.values())
    with op.get_context().autocommit_block():
        conn = _dbapi()
        for x in [*of_kind(p, DISTRIBUTED), *of_kind(p, REFERENCE)]:
            if x.table in _placed(conn):  # cascading may have undistributed it already
                conn.execute("select undistribute_table(%s, cascade_via_foreign_keys => true)",
                             (f"city.{x.table}",))
        for stmt in unprepare_sql(p):
            conn.execute(stmt)
