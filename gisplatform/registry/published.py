"""Published layers: definitions in the registry (migration 0019) and their tables.

`create` registers a definition and makes its version table, snapshot view and indexes
through the same generator as the built-in layers (gisplatform.temporal create_sql), plus
the statement triggers every version table has (tile invalidation and the change feed,
migrations 0005 and 0011); `alter` only adds (new optional attributes, new titles, tile
settings); `retire` hides a layer and keeps its table. Each is a new registry row in the
caller's transaction: the caller commits it with the table (and the first import), or
nothing at all.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from gisplatform.db.distribution import NO_CITUS, create_tile_triggers_sql
from gisplatform.security.analyst import analyst_may_read, grant_analyst_view
from gisplatform.stats.topics import BUILT_IN_TOPICS
from gisplatform.temporal import LayerSpec, create_sql
from gisplatform.temporal.spec import SCHEMA, index_sql

from .definition import DefinitionError, LayerDefinition, describe, parse

CURRENT = "select name, definition, action from city.layer_registry where upper_inf(recorded)"


class PublishError(ValueError):
    """The registry refuses the change (taken name, destructive alter …); nothing written."""


def usable(conn: psycopg.Connection) -> bool:
    return conn.execute("select to_regclass('city.layer_registry') is not null").fetchone()[0]


def load(conn: psycopg.Connection) -> list[LayerDefinition]:
    """The current definitions of the layers published and not retired."""
    if not usable(conn):
        return []
    return [parse(d) for _, d, action in conn.execute(CURRENT + " order by name")
            if action != "retire"]


def definitions(conn: psycopg.Connection, builtin) -> list[LayerDefinition]:
    """Every layer's definition: the built-in layers `builtin` described from their code,
    then the published ones (not retired)."""
    return [describe(x) for x in builtin] + load(conn)


def current(conn: psycopg.Connection, name: str) -> tuple[LayerDefinition, str] | None:
    """A layer's current definition and its last action (retired ones too)."""
    row = conn.execute(CURRENT + " and name = %s", (name,)).fetchone()
    return (parse(row[1]), row[2]) if row else None


def history(conn: psycopg.Connection, name: str) -> list[dict]:
    return [{"action": a, "actor": who, "from": lo, "to": hi, "definition": d}
            for a, who, lo, hi, d in conn.execute(
                "select action, actor, lower(recorded), upper(recorded), definition"
                " from city.layer_registry where name = %s order by rid", (name,))]


def _record(conn: psycopg.Connection, d: LayerDefinition, action: str, actor: str) -> None:
    conn.execute("update city.layer_registry set recorded = tstzrange(lower(recorded), now())"
                 " where name = %s and upper_inf(recorded)", (d.name,))
    conn.execute("insert into city.layer_registry (name, definition, action, actor)"
                 " values (%s, %s, %s, %s)",
                 (d.name, Jsonb(d.model_dump(mode="json")), action, actor))


def taken(conn: psycopg.Connection, name: str, builtin: set[str]) -> str | None:
    """Why a new layer cannot be called `name` (a plain name: definition.LAYER_NAME), or
    None: a built-in collection, a layer published before (retired ones too), a table."""
    if name in builtin or name in ("population-grid", "population-areas"):
        return f"{name} is a built-in collection"
    if name in BUILT_IN_TOPICS:  # a layer declaring a category gets a topic of its name
        return f"{name} is a built-in statistics topic (/api/stats/{name})"
    if usable(conn) and current(conn, name) is not None:
        return f"a layer {name} was already published (layer show {name})"
    spec = LayerSpec(name, "Point")
    for rel in (spec.table, spec.version_table):
        if conn.execute("select to_regclass(%s)", (f'{SCHEMA}."{rel}"',)).fetchone()[0]:
            return f"{SCHEMA}.{rel} already exists"
    return None


def create(conn: psycopg.Connection, d: LayerDefinition, actor: str, builtin: set[str],
           defer_indexes: bool = False) -> list[str]:
    """Register `d` and create its tables and triggers, in the caller's transaction.
    `defer_indexes`: leave out the indexes and the exclusion constraint and return their
    statements, for the caller to run after a first import (built once, not row by row:
    100 000 rows imported in less time)."""
    if d.builtin:
        raise PublishError("a built-in definition cannot be published")
    if not usable(conn):
        raise PublishError("the database has no layer registry: run gisplatform db migrate")
    if not conn.execute("select " + NO_CITUS).fetchone()[0]:
        raise PublishError("publishing layers on Citus is not supported: the version table "
                           "would need distributing (gisplatform/db/distribution.py)")
    why = taken(conn, d.name, builtin)
    if why:
        raise PublishError(why)
    _record(conn, d, "create", actor)
    spec = d.spec()
    later = index_sql(spec) if defer_indexes else []
    for stmt in create_sql(spec) + create_tile_triggers_sql(spec):
        if stmt not in later:
            conn.execute(stmt)
    _analyst_grant(conn, d)
    return later


def _analyst_grant(conn: psycopg.Connection, d: LayerDefinition, retired: bool = False) -> None:
    """QGIS analysts read the snapshot view as they read the built-in public ones."""
    spec = d.spec()
    grant_analyst_view(conn, spec.table, not retired and analyst_may_read(
        d.sharing, any(a.personal for a in spec.attributes)))


def alter(conn: psycopg.Connection, new: LayerDefinition, actor: str) -> list[str]:
    """Apply an additive change; the columns added. Refuses anything that would rewrite
    or hide history: a dropped or retyped attribute, another geometry type or id, a new
    required attribute (old versions have no value), a personal attribute made public."""
    got = current(conn, new.name)
    if got is None or got[1] == "retire":
        raise PublishError(f"no published layer {new.name}")
    old = got[0]
    problems = []
    for field in ("geometry_type", "id_attribute"):
        if getattr(old, field) != getattr(new, field):
            problems.append(f"{field} cannot change ({getattr(old, field)} → "
                            f"{getattr(new, field)})")
    by_name = {a.name: a for a in new.attributes}
    for a in old.attributes:
        b = by_name.get(a.name)
        if b is None:
            problems.append(f"attribute {a.name} cannot be dropped (its history stays)")
        elif b.type != a.type:
            problems.append(f"attribute {a.name} cannot change type ({a.type} → {b.type})")
        elif a.personal and not b.personal:
            problems.append(f"attribute {a.name} is personal: it cannot be made public here")
        elif b.required and not a.required:
            problems.append(f"attribute {a.name} cannot become required (old versions lack it)")
    added = [a for a in new.attributes if a.name not in {x.name for x in old.attributes}]
    problems += [f"new attribute {a.name} cannot be required (old versions have no value)"
                 for a in added if a.required]
    if problems:
        raise PublishError("; ".join(problems))
    _record(conn, new, "alter", actor)
    vt = sql.Identifier(SCHEMA, new.spec().version_table)
    for a in added:
        conn.execute(sql.SQL("alter table {} add column {} " + a.type).format(
            vt, sql.Identifier(a.name)))
    if added:  # the snapshot view lists its columns: made again with the new ones
        view = next(s for s in create_sql(new.spec()) if s.startswith("create view"))
        conn.execute(view.replace("create view", "create or replace view", 1))
    _analyst_grant(conn, new)  # a personal attribute added, or the sharing changed
    return [a.name for a in added]


def retire(conn: psycopg.Connection, name: str, actor: str) -> None:
    got = current(conn, name)
    if got is None or got[1] == "retire":
        raise PublishError(f"no published layer {name}")
    _record(conn, got[0], "retire", actor)
    _analyst_grant(conn, got[0], retired=True)  # hidden from listings, and from analysts


__all__ = ["DefinitionError", "PublishError", "alter", "create", "current", "definitions",
           "history", "load", "retire", "taken", "usable"]
