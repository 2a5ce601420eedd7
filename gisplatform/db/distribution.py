"""Where each table of schema `city` lives on a Citus cluster: the distribution plan.

Three kinds of placement:
- DISTRIBUTED: sharded by `fid` over the workers, every such table in one co-location
  group (all version tables of large layers: the default, so a new layer is covered
  without touching this file);
- REFERENCE: copied whole to every node (small layers joined spatially with distributed
  ones, code lists, registries): joins with distributed tables run on the shards;
- LOCAL: stays on the coordinator only (logs written and read there).

The plan is derived from the layer specs handed in (the migration passes `layers.LAYERS`;
the kernel does not import `layers`). A layer may choose its placement itself with
`LayerSpec.extra["distribution"] = "reference" | "distributed"`; otherwise REFERENCE_LAYERS
decides, and any other layer is distributed.

What Citus demands of a table before it is distributed, and what this module checks
against the live catalog (`problems`):
- every PRIMARY KEY / UNIQUE / EXCLUDE constraint includes the distribution column as a
  plain column (not an expression), with `=` in an EXCLUDE — so the version tables' overlap
  rule, written on `hashtextextended(fid, 0)` for build speed, is rewritten to `fid WITH =`
  (`citus_no_overlap_sql`);
- foreign keys go distributed → distributed (co-located) or → reference, reference →
  reference, local → local; never reference → distributed, nor between local and Citus
  tables;
- no triggers: Citus runs a distributed table's triggers per shard on the workers, where
  `city.tile_changes` does not exist and a NOTIFY reaches no listener (the app replicas
  LISTEN on the coordinator), so the tile-change triggers of migration 0005 are dropped
  there (see docs/scaling.md for what feeds tile invalidation instead);
- identity columns are bigint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gisplatform.temporal import SCHEMA, LayerSpec
from gisplatform.temporal.spec import index_sql

DISTRIBUTED, REFERENCE, LOCAL = "distributed", "reference", "local"
KINDS = (DISTRIBUTED, REFERENCE, LOCAL)
DISTRIBUTION_COLUMN = "fid"

# Layers copied to every node, and why: both are joined spatially with persons_version
# (distributed) inside SQL functions, which Citus runs on the shards only when the other
# side is a reference table. Measured on the city-size demo (docs/scaling.md): 42 admin
# area versions (0.1 MB), 1 755 grid cells (1.0 MB). Not here, though small-looking:
# responsibility zones, 62 436 versions / 37.7 MB at city size and joined with nothing.
REFERENCE_LAYERS = {
    "admin-areas": "joined spatially with persons_version in city.population_by_area; "
                   "42 versions at city size",
    "grid-cells": "joined spatially with persons_version in city.population_by_grid "
                  "(population tiles); 1 755 cells at city size",
}

# Tables of schema `city` that are not version tables. A table missing here (and not a
# layer's version table) is reported by `problems`: a new table must be placed on purpose.
OTHER_TABLES = {
    "departments": (REFERENCE, "code list; referenced by api_tokens"),
    "api_tokens": (REFERENCE, ("references departments; read on every authenticated "
                              "request, written rarely")),
    "grants": (REFERENCE, "references api_tokens"),
    "rasters": (REFERENCE, "registry of served COGs; a few rows"),
    "tilesets": (REFERENCE, "registry of 3D tilesets; a few rows"),
    "basemaps": (LOCAL, "registered external basemaps with their keys: read by the app "
                        "through the coordinator, the keys never copied to the workers"),
    "audit_log": (LOCAL, ("append-only log written by the app through the coordinator; "
                         "partition by month when it grows (docs/scaling.md)")),
    "purge_log": (LOCAL, "append-only record of legal erasures"),
    "case_steps": (LOCAL, ("append-only case lifecycle; its primary key (id) lacks the "
                          "case number it would be distributed by")),
    "tile_changes": (LOCAL, ("tile invalidation log: read by the app replicas' listeners "
                            "on the coordinator, where NOTIFY gisplatform_tiles is sent")),
    # change feed (migration 0011): written by the same triggers as tile_changes, so on
    # Citus (triggers dropped) the feed is not written either
    "change_log": (LOCAL, "change feed log, read by /api/changes and the webhook senders"),
    "change_log_horizon": (LOCAL, "the change feed's retention mark (one row)"),
    "pseudonym_key": (LOCAL, "the key of pseudonymous ids, read by importers and the app "
                             "through the coordinator; not copied to the workers"),
    "webhooks": (LOCAL, "change feed subscriptions, updated on every delivery"),
    # statistics rollup (migration 0012): kept exact from the change feed, so on Citus
    # (no feed) it is not used
    "stats_rollup": (LOCAL, "pre-aggregated statistics counts, written by the app"),
    "stats_rollup_state": (LOCAL, "the snapshot each statistics rollup was counted in"),
    # tile pyramid (migration 0015): kept by statement triggers, which Citus would run per
    # shard, so they are dropped there and the tiles read the version tables
    "tile_pyramid": (LOCAL, "monthly counts per map cell behind low-zoom tiles"),
    "tile_pyramid_years": (LOCAL, "yearly counts per map cell behind low-zoom tiles"),
    "tile_pyramid_layers": (LOCAL, "which layers have a tile pyramid, for which zooms"),
    # population counts (migration 0017): statement triggers as the tile pyramid's, so
    # never built there (tiles/population.py) and the population functions join instead
    "population_counts": (LOCAL, "monthly person counts per area behind population tiles"),
    "population_counts_state": (LOCAL, "whether the population counts are built"),
    # the layer registry (migration 0019): read by every app as it starts
    "layer_registry": (LOCAL, "definitions of published layers, versioned"),
    # the case workflow (migration 0022): read by each step through the coordinator
    "case_time_limits": (LOCAL, "case handling time limits, versioned; a few dozen rows"),
    "case_photos": (LOCAL, "which case and step each photo came with (files in the data dir)"),
    "work_calendar": (LOCAL, "holidays and moved working days; read by each step's clock"),
    "directory_changes": (LOCAL, "append-only log of department and calendar edits"),
    "alembic_version": (LOCAL, "migration bookkeeping"),
}

# A reference table is written on every node in one distributed transaction: past this
# size a layer should be distributed instead (the migration warns, it does not refuse).
REFERENCE_WARN_BYTES = 256 << 20

TILE_TRIGGER_EVENTS = {
    "insert": "new table as new_rows",
    "update": "old table as old_rows new table as new_rows",
    "delete": "old table as old_rows",
}


@dataclass(frozen=True)
class Placement:
    table: str  # in schema city
    kind: str
    reason: str
    layer: LayerSpec | None = None  # set for version tables


def plan(layers: Iterable[LayerSpec]) -> dict[str, Placement]:
    """table name → placement, for every layer's version table and every other table."""
    out: dict[str, Placement] = {}
    for spec in layers:
        choice = spec.extra.get("distribution")
        if choice is not None:
            if choice not in (DISTRIBUTED, REFERENCE):
                raise ValueError(f"layer {spec.name}: distribution {choice!r} is not "
                                 f"{DISTRIBUTED!r} or {REFERENCE!r}")
            kind, reason = choice, "chosen by the layer (LayerSpec.extra)"
        elif spec.name in REFERENCE_LAYERS:
            kind, reason = REFERENCE, REFERENCE_LAYERS[spec.name]
        else:
            kind, reason = DISTRIBUTED, "version table: sharded by fid, co-located"
        out[spec.version_table] = Placement(spec.version_table, kind, reason, spec)
    for table, (kind, reason) in OTHER_TABLES.items():
        if table in out:
            raise ValueError(f"{table} is both a layer's version table and another table")
        out[table] = Placement(table, kind, reason)
    return out


def of_kind(p: dict[str, Placement], kind: str) -> list[Placement]:
    return [x for x in p.values() if x.kind == kind]


# ------------------------------------------------------------------ Citus rewrites

def no_overlap_name(spec: LayerSpec) -> str:
    return f"{spec.version_table}_no_overlap"


def citus_no_overlap_sql(spec: LayerSpec) -> str:
    """The overlap rule with `fid` itself as the equality column (Citus needs the
    distribution column there). Same rows refused; the btree_gist index on text builds
    slower than on the hash, but per shard."""
    vt = f'{SCHEMA}."{spec.version_table}"'
    name = f'"{no_overlap_name(spec)}"'
    return (f"alter table {vt} drop constraint {name}, add constraint {name}"
            " exclude using gist (fid with =, valid with &&) where (upper_inf(recorded))")


def single_node_no_overlap_sql(spec: LayerSpec) -> str:
    """Back to the single-node form (`gisplatform.temporal.spec.index_sql`)."""
    add = next(s for s in index_sql(spec) if no_overlap_name(spec) in s)
    return add.replace(" add constraint ",
                       f' drop constraint "{no_overlap_name(spec)}", add constraint ', 1)


def tile_trigger_names(spec: LayerSpec) -> list[str]:
    return [f"{spec.version_table}_tiles_{event}" for event in TILE_TRIGGER_EVENTS]


# SQL, true where Citus is not installed: the derived data kept by statement triggers or
# from the change feed (tile pyramid, population counts, statistics rollups) is only
# kept there
NO_CITUS = "not exists (select 1 from pg_extension where extname = 'citus')"


# the tile pyramid's triggers (tiles/pyramid.py attaches them when it builds one)
PYRAMID_TRIGGER_EVENTS = ("insert", "update", "delete", "truncate")


def pyramid_trigger_names(version_table: str) -> list[str]:
    return [f"{version_table}_pyramid_{event}" for event in PYRAMID_TRIGGER_EVENTS]


# the population counts' triggers (tiles/population.py attaches them when it builds them)
def population_trigger_names(version_table: str) -> list[str]:
    return [f"{version_table}_population_{event}" for event in PYRAMID_TRIGGER_EVENTS]


def drop_tile_triggers_sql(spec: LayerSpec) -> list[str]:
    return [f'drop trigger if exists "{name}" on {SCHEMA}."{spec.version_table}"'
            for name in tile_trigger_names(spec) + pyramid_trigger_names(spec.version_table)
            + population_trigger_names(spec.version_table)]


def create_tile_triggers_sql(spec: LayerSpec) -> list[str]:
    """The statement triggers of migration 0005 (for a downgrade from Citus)."""
    return [f'create trigger "{spec.version_table}_tiles_{event}" after {event}'
            f' on {SCHEMA}."{spec.version_table}" referencing {refs}'
            f" for each statement execute function {SCHEMA}.log_tile_changes('{spec.name}')"
            for event, refs in TILE_TRIGGER_EVENTS.items()]


def prepare_sql(p: dict[str, Placement]) -> list[str]:
    """What must change before the tables are handed to Citus: the tile triggers go from
    every Citus table, the overlap rule of distributed ones moves onto `fid`."""
    out: list[str] = []
    for x in p.values():
        if x.layer is None or x.kind == LOCAL:
            continue
        out += drop_tile_triggers_sql(x.layer)
        if x.kind == DISTRIBUTED:
            out.append(citus_no_overlap_sql(x.layer))
    return out


def unprepare_sql(p: dict[str, Placement]) -> list[str]:
    out: list[str] = []
    for x in p.values():
        if x.layer is None or x.kind == LOCAL:
            continue
        if x.kind == DISTRIBUTED:
            out.append(single_node_no_overlap_sql(x.layer))
        out += create_tile_triggers_sql(x.layer)
    return out


# ------------------------------------------------------------------ catalog checks

_TABLES = """
    select c.relname from pg_class c
    where c.relnamespace = %(s)s::regnamespace and c.relkind in ('r', 'p')
      and not c.relispartition"""

# Unique / primary key / exclusion constraints: does a key column *as a plain column* equal
# the distribution column, with an equality operator where it is an exclusion?
_KEYS = """
    select c.conrelid::regclass::text, t.relname, c.conname, c.contype,
           bool_or(k.attnum = a.attnum and (c.contype <> 'x'
                   or (select o.oprname = '=' from pg_operator o
                       where o.oid = c.conexclop[k.ord::int])))
    from pg_constraint c
    join pg_class t on t.oid = c.conrelid
    join pg_index i on i.indexrelid = c.conindid
    cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
    left join pg_attribute a on a.attrelid = c.conrelid and a.attname = %(col)s
    where t.relnamespace = %(s)s::regnamespace and c.contype in ('p', 'u', 'x')
    group by 1, 2, 3, 4"""

_FKEYS = """
    select c.conname, s.relname, d.relname from pg_constraint c
    join pg_class s on s.oid = c.conrelid join pg_class d on d.oid = c.confrelid
    where c.contype = 'f' and s.relnamespace = %(s)s::regnamespace"""

_TRIGGERS = """
    select c.relname, t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid
    where not t.tgisinternal and c.relnamespace = %(s)s::regnamespace"""

_IDENTITY = """
    select c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
    from pg_attribute a join pg_class c on c.oid = a.attrelid
    where c.relnamespace = %(s)s::regnamespace and a.attnum > 0 and not a.attisdropped
      and (a.attidentity <> '' or pg_get_expr(
             (select d.adbin from pg_attrdef d
              where d.adrelid = a.attrelid and d.adnum = a.attnum), a.attrelid)
           like 'nextval(%%')"""

_ALLOWED_FKEYS = {(DISTRIBUTED, DISTRIBUTED), (DISTRIBUTED, REFERENCE), (REFERENCE, REFERENCE),
                  (LOCAL, LOCAL)}


def problems(conn, p: dict[str, Placement], schema: str = SCHEMA) -> list[str]:
    """Everything in the live catalog of `schema` that Citus would refuse under plan `p`
    (empty = the plan can be applied). Run it after `prepare_sql` for the real verdict;
    before it, it names exactly what `prepare_sql` rewrites."""
    args = {"s": schema, "col": DISTRIBUTION_COLUMN}
    out: list[str] = []
    tables = {r[0] for r in conn.execute(_TABLES, args)}
    for t in sorted(tables - set(p)):
        out.append(f"{t}: not in the distribution plan")
    for t in sorted(set(p) - tables):
        if p[t].layer is not None:
            out.append(f"{t}: planned for layer {p[t].layer.name} but not in the database")
    kind = {t: x.kind for t, x in p.items()}
    for rel, t, con, contype, has_fid in conn.execute(_KEYS, args):
        if kind.get(t) == DISTRIBUTED and not has_fid:
            what = {"p": "primary key", "u": "unique constraint", "x": "exclusion constraint"}
            out.append(f"{rel}: {what[contype]} {con} does not include {DISTRIBUTION_COLUMN} "
                       "as a plain column" + (" with =" if contype == "x" else ""))
    for con, src, dst in conn.execute(_FKEYS, args):
        pair = (kind.get(src), kind.get(dst))
        if pair not in _ALLOWED_FKEYS:
            out.append(f"{src}: foreign key {con} goes {pair[0]} → {pair[1]} ({dst})")
    for t, trigger in conn.execute(_TRIGGERS, args):
        if kind.get(t) in (DISTRIBUTED, REFERENCE):
            out.append(f"{t}: trigger {trigger} would run per shard on the workers")
    for t, col, typ in conn.execute(_IDENTITY, args):
        if kind.get(t) == DISTRIBUTED and typ != "bigint":
            out.append(f"{t}: generated column {col} is {typ}, Citus needs bigint")
    return out
