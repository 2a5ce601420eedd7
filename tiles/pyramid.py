"""The tile pyramid (migration 0015): clustered tiles at any datetime without a scan.

Below a source's detail zoom a tile is 16 × 16 clusters, each the count of the versions
valid at T under it and their mean point (sources.cluster_sql). Read from the version
table, that is a scan of every version under the tile — all of its history — and a
city-size persons tile at z10 holds about a million. Every month on the time slider is a
new instant, so the tile cache does not help.

The pyramid keeps, per layer, tile zoom, cell of the tile's 32 × 32 grid and month (UTC+8;
an instant on a month's first moment counts in the month before), the change of that count
(and of the sums of the points' x, y) in that month, and the same per year (migration 0018).
A cluster tile at T is then:
- the cells' changes of the whole years before T's year (`city.tile_pyramid_years`) and of
  the months of T's year before T's month (`city.tile_pyramid`): two index ranges, at most
  a row per year and 11 per cell (monthly rows alone were ~100 a cell by 2026: a city-size
  persons z11 tile read 79 k of them, 72 ms, where 2018's read 7 ms), plus
- the versions whose validity starts or ends after that month's first instant and not
  after T, read from the version table through its lower(valid) / upper(valid) indexes
  (none when T is a month's start: the time slider's steps; a city imported as of
  2018-01-01 00:00 made that month's "so far" a million versions when it was inclusive),
summed per cluster. The counts are those of cluster_sql exactly, at any instant; a
cluster's point is the same mean (st_centroid of a multipoint), from sums, so equal up to
float rounding, which the tile grid (4096 units a tile) does not show. A point exactly on a
cell edge is counted in one cell here; cluster_sql's `&&` would count it in both tiles
that share the edge. tests/test_tile_pyramid.py compares the two at many instants, before
and after writes of every kind.

Kept exact by a statement trigger in the writing transaction (`city.tile_pyramid_log`):
a version that becomes current counts +1 from lower(valid) and -1 from upper(valid), one
that stops being current (closed in transaction time, deleted) the opposite; TRUNCATE
empties the layer's pyramid. Only current knowledge is kept: `known_at` tiles read the
version table. `build` makes a layer's pyramid (and attaches its trigger) under a lock
that holds writers back; `ensure` builds what is missing or was built for other zooms
(`gisplatform up`, `gisplatform tiles pyramid`). Not on Citus, where the trigger would run
per shard (gisplatform/db/distribution.py drops it with the tile triggers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

from gisplatform.db.distribution import NO_CITUS, pyramid_trigger_names

from .sources import EXTENT, TileSource, _envelope, _lit, _q

# the trigger's events (in the order of distribution.PYRAMID_TRIGGER_EVENTS); TRUNCATE has
# no transition table
TRIGGER_EVENTS = {
    "insert": "referencing new table as new_rows",
    "update": "referencing old table as old_rows new table as new_rows",
    "delete": "referencing old table as old_rows",
    "truncate": "",
}
CELLS = 32  # per tile side: level z + 5, so the 16 × 16 clusters are whole cells
# The deepest zoom a pyramid serves. Deeper cluster tiles cover little ground and read the
# versions fast (city persons z14-15: p95 37 ms), while those zooms' fine cells are most
# of what a write adds to the pyramid (10 000 person versions closed, bench/
# pyramid_writes.py: 0.5 s without a pyramid, 3.6 s with z0-15, 2.1 s with z0-12 — where
# the versions' z13 tiles reached 0.3-1.4 s).
MAX_ZOOM = 13


def zooms(src: TileSource) -> tuple[int, int] | None:
    """The cluster zooms a source's pyramid serves (up to MAX_ZOOM), or None."""
    top = min(src.detail_zoom - 1, MAX_ZOOM)
    if src.kind != "layer" or top < src.minzoom:
        return None
    return src.minzoom, top


def usable(conn: psycopg.Connection) -> bool:
    return conn.execute("""
        select to_regclass('city.tile_pyramid') is not null and """ + NO_CITUS).fetchone()[0]


# The layers whose pyramid is built and kept (its trigger in place), with its zooms.
BUILT_SQL = """
    select l.layer, l.zmin, l.zmax from city.tile_pyramid_layers l
    where to_regclass('city.' || quote_ident(l.version_table)) is not null
      and exists (select 1 from pg_trigger t
                  where t.tgrelid = to_regclass('city.' || quote_ident(l.version_table))
                    and t.tgname = l.version_table || '_pyramid_insert')"""


def built(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    if conn.execute("select to_regclass('city.tile_pyramid_layers')").fetchone()[0] is None:
        return {}
    return {layer: (zmin, zmax) for layer, zmin, zmax in conn.execute(BUILT_SQL)}


def lock_and_attach(conn: psycopg.Connection, table: str, names: list[str],
                    function: sql.Composable) -> None:
    """In the caller's transaction: hold writers of city.`table` back (SHARE lock) and
    (re)create its statement triggers `names` (one per TRIGGER_EVENTS, in order) running
    `function` — a count built next then misses nothing and counts nothing twice."""
    vt = sql.Identifier("city", table)
    conn.execute(sql.SQL("lock table {} in share mode").format(vt))
    for (event, refs), name in zip(TRIGGER_EVENTS.items(), names, strict=True):
        conn.execute(sql.SQL("drop trigger if exists {} on {}").format(sql.Identifier(name), vt))
        conn.execute(sql.SQL("create trigger {} after {} on {} " + refs +
                             " for each statement execute function {}").format(
            sql.Identifier(name), sql.SQL(event), vt, function))


def build(conn: psycopg.Connection, src: TileSource) -> float:
    """(Re)build the source's pyramid and attach its trigger; seconds taken. Writers to the
    layer wait meanwhile (SHARE lock), so nothing is missed or counted twice."""
    z = zooms(src)
    if z is None:
        raise ValueError(f"{src.name} has no clustered zooms (detail from z{src.detail_zoom})")
    t0 = time.perf_counter()
    with conn.transaction():
        lock_and_attach(conn, src.version_table, pyramid_trigger_names(src.version_table),
                        sql.SQL("city.tile_pyramid_log({})").format(sql.Literal(src.name)))
        conn.execute("""
            insert into city.tile_pyramid_layers (layer, version_table, polygonal, zmin, zmax)
            values (%s, %s, %s, %s, %s)
            on conflict (layer) do update set version_table = excluded.version_table,
              polygonal = excluded.polygonal, zmin = excluded.zmin, zmax = excluded.zmax,
              built_at = now()""", (src.name, src.version_table, src.surface_point, *z))
        conn.execute("select city.tile_pyramid_build(%s)", (src.name,))
    return time.perf_counter() - t0


def ensure(conn: psycopg.Connection, sources: Iterable[TileSource],
           on_layer: Callable[[str, float], None] = lambda name, secs: None,
           on_error: Callable[[str, Exception], None] | None = None) -> list[str]:
    """Build the pyramids that are missing or were built for other zooms; their names.
    `on_error`: told of a layer whose build failed (rolled back), and the others are built
    still; without it the failure is raised."""
    if not usable(conn):
        return []
    have = built(conn)
    out = []
    for src in sources:
        z = zooms(src)
        if z is not None and have.get(src.name) != z:
            try:
                on_layer(src.name, build(conn, src))
            except psycopg.Error as e:
                if on_error is None:
                    raise
                on_error(src.name, e)
                continue
            out.append(src.name)
    return out


def pyramid_sql(src: TileSource) -> str:
    """A cluster tile from the pyramid at coalesce(at, now()) (current knowledge): the same
    bound parameters as cluster_sql, plus `layer`."""
    point = "st_pointonsurface(v.geom)" if src.surface_point else "v.geom"
    vt = f"city.{_q(src.version_table)}"
    return f"""
        with b as (
          select t.at, m.bucket, city.tile_year(m.bucket) as year,
                 city.tile_year(m.bucket)::bigint * 12 as year_first,
                 city.tile_month_start(m.bucket) as since
          from (select coalesce(%(at)s::timestamptz, now()) as at) t,
               lateral (select city.tile_month(t.at) as bucket) m
        ), part as (  -- the month so far: versions starting (+1) or ending (-1) in it, after
          -- its first instant (what lies on it is in the months before: city.tile_bucket).
          -- Found by their time first (`offset 0`): none at a month's start, the slider's
          -- steps, where the planner had read the tile's whole geometry bitmap to AND it
          -- with the empty one (a third of a city-size persons tile's time)
          select 1 as d, st_transform({point}, 3857) as g
          from (select v.geom, v.recorded from {vt} v, b
                where lower(v.valid) > b.since and lower(v.valid) <= b.at offset 0) v
          where v.geom && {_envelope()} and upper_inf(v.recorded)
          union all
          select -1, st_transform({point}, 3857)
          from (select v.geom, v.recorded from {vt} v, b
                where not upper_inf(v.valid) and upper(v.valid) > b.since
                  and upper(v.valid) <= b.at offset 0) v
          where v.geom && {_envelope()} and upper_inf(v.recorded)
        ), cells as (  -- the whole years before T's year, then its months before T's month
          select p.i, p.j, p.n, p.sx, p.sy
          from city.tile_pyramid_years p, b
          where p.layer = %(layer)s and p.z = %(z)s and p.tx = %(x)s and p.ty = %(y)s
            and p.year < b.year
          union all
          select p.i, p.j, p.n, p.sx, p.sy
          from city.tile_pyramid p, b
          where p.layer = %(layer)s and p.z = %(z)s and p.tx = %(x)s and p.ty = %(y)s
            and p.bucket >= b.year_first and p.bucket < b.bucket
          union all
          select (city.tile_cell(st_x(g), %(z)s + 5) - %(x)s * {CELLS})::int,
                 (city.tile_cell(-st_y(g), %(z)s + 5) - %(y)s * {CELLS})::int,
                 d, d * st_x(g), d * st_y(g)
          from part
        )
        select st_asmvt(t.*, {_lit(src.name)}, {EXTENT}, 'geom') from (
          select sum(n)::bigint as count, true as cluster,
                 st_asmvtgeom(st_setsrid(st_makepoint(sum(sx) / sum(n), sum(sy) / sum(n)), 3857),
                              st_tileenvelope(%(z)s, %(x)s, %(y)s), {EXTENT}, 0, true) as geom
          from cells
          where i between 0 and {CELLS - 1} and j between 0 and {CELLS - 1}
          -- st_snaptogrid centres the clusters on the grid's points: cluster k spans
          -- the cells 2k - 1 and 2k
          group by (i + 1) >> 1, (j + 1) >> 1
          having sum(n) > 0
        ) t where t.geom is not null"""
