"""Counting what is valid at each month start: the persisted rollup engine.

"Valid at T" counts use current knowledge (`upper_inf(recorded)`), or what was known at
`known_at`, with the event trick: a version is valid at month start m_i exactly when
lo <= i < hi, lo = the first month start at or after lower(valid), hi = the first at or after
upper(valid) (none when open); versions grouped by (area, key values, lo, hi) and a
difference array + running sum here give the counts per month — no per-month scan.

Current counts come from a persisted rollup of those groups (`Rollup`, migration 0012:
counted once in one pass, then kept exact by adding the changes the change feed logged
since — the issue's bar is a city-size population series under 2 s on a first request,
and one pass over 2M person versions alone takes 2–3.5 s). `known_at` counts, and
databases without the change feed (Citus), use that one pass over the version table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import sql

from gisplatform.db.distribution import NO_CITUS
from gisplatform.temporal import contains_sql

from .query import Query, month_starts

_MICROSECOND = timedelta(microseconds=1)


def _knowledge(q: Query, alias: str = "") -> sql.Composable:
    col = f"{alias}recorded"
    if q.known_at is None:
        return sql.SQL(f"upper_inf({col})")
    return sql.SQL(contains_sql(col, "%(known_at)s"))


@dataclass(frozen=True)
class Counted:
    """What a valid-at-a-month-start topic counts: `layer`'s current versions by `area`
    and by each key expression (SQL over the version table's columns)."""
    layer: str
    area: str
    keys: tuple[tuple[str, str], ...]

    @property
    def table(self) -> str:
        return self.layer.replace("-", "_") + "_version"

    @property
    def definition(self) -> str:  # a rollup counted by another definition is rebuilt
        return repr((self.area, self.keys))

    def columns(self) -> sql.Composable:
        """area, keys (text[]): the grouping columns of the rollup."""
        keys = sql.SQL(", ").join(sql.SQL(f"coalesce(({e})::text, 'unknown')") for _, e in self.keys)
        return sql.SQL(f"coalesce(({self.area})::text, 'unknown'), array[{{}}]::text[]").format(keys)


BUILT_IN_COUNTED = {c.layer: c for c in (
    Counted("persons", "division_code", (("household_type", "household_type"),)),
    Counted("legal-persons", "division_code", (("status", "status"), ("industry", "industry_code"))),
    Counted("buildings", "division_code", (("use", "use"),)),
    Counted("cameras", "coalesce(left(civil_code, 6), left(device_id, 6))",
            (("sector", "sector"), ("status", "status"))),
)}
# and the published layers' topics (topics.publish_layer_topics adds and removes them)
COUNTED = dict(BUILT_IN_COUNTED)


def month_index(m: datetime) -> int:
    """Absolute index of the month starting at `m` (00:00 UTC+8 on a 1st)."""
    return m.year * 12 + m.month - 1


# The rollup's month grid: every month start from 1900-01 to 2200-12 (make_query's range).
# width_bucket(t, start + 1µs) = how many month starts lie strictly before t, so the first
# month start at or after t is GRID_BASE + that (a binary search: cheaper per row than
# date arithmetic). Before 1900-01 and ±infinity land on the grid's ends, which every
# window clamps the same way as the exact month would.
GRID_BASE = 1900 * 12
GRID = [m + _MICROSECOND for m in month_starts((1900, 1), (2200, 12))]
_LO = f"{GRID_BASE} + width_bucket(lower(v.valid), %(grid)s::timestamptz[])"
_HI = (f"case when upper_inf(v.valid) then null"
       f" else {GRID_BASE} + width_bucket(upper(v.valid), %(grid)s::timestamptz[]) end")
# the versions a rollup counts (contains_sql never matches an unbounded lower end)
_COUNTABLE = "not lower_inf(v.valid) and not isempty(v.valid)"


def _valid_counts(conn, q: Query, counted: Counted) -> dict[str, dict[str, list[int]]]:
    """{area: {figure: counts per month}} of the layer's versions valid at each month start,
    where figure is `total` and `<key>.<value>` for each key. From the rollup (`Rollup`)
    for current knowledge where the change feed is written, else one pass over the version
    table (module doc)."""
    n = len(q.months)
    rows = _ROLLUP.rows(conn, q, counted) if q.known_at is None else None
    if rows is None:
        rows = _direct_rows(conn, q, counted)
    diffs: dict[str, dict[str, list[int]]] = {}
    names = [k for k, _ in counted.keys]
    for area_code, values, lo, hi, count in rows:
        hi = n if hi is None else hi
        if lo >= hi or not count:
            continue
        for a in (area_code or "unknown", q.city.code):
            figs = diffs.setdefault(a, {})
            for fig in ["total", *(f"{k}.{v}" for k, v in zip(names, values, strict=True))]:
                d = figs.setdefault(fig, [0] * (n + 1))
                d[lo] += count
                d[hi] -= count
    out: dict[str, dict[str, list[int]]] = {}
    for a, figs in diffs.items():
        out[a] = {}
        for fig, d in figs.items():
            run, series = 0, []
            for i in range(n):
                run += d[i]
                series.append(run)
            out[a][fig] = series
    return out


def _direct_rows(conn, q: Query, counted: Counted) -> list[tuple]:
    """(area, [key values], lo, hi, count) with lo, hi month positions in q.months: one pass
    over the version table."""
    # width_bucket(t, m + 1µs) = how many month starts lie strictly before t
    thresholds = [m + _MICROSECOND for m in q.months]
    stmt = sql.SQL("""
        select {columns},
               case when lower(valid) <= %(first)s then 0
                    else width_bucket(lower(valid), %(thr)s::timestamptz[]) end as lo,
               width_bucket(upper(valid), %(thr)s::timestamptz[]) as hi, count(*)
        from {table} v where {knowledge} and lower(valid) < %(last)s
        group by 1, 2, 3, 4""").format(
        columns=counted.columns(), table=sql.Identifier("city", counted.table),
        knowledge=_knowledge(q))
    return conn.execute(stmt, {"first": q.months[0], "thr": thresholds,
                               "last": q.months[-1] + _MICROSECOND,
                               "known_at": q.known_at}).fetchall()


class Rollup:
    """Exact current counts from a persisted rollup plus the changes since it was counted.

    The rollup R of a layer (`city.stats_rollup`, migration 0012) holds, per (area, key
    values, lo, hi), how many current versions are valid at the month starts lo <= i < hi
    (absolute month indexes; hi null = open), counted by one statement whose snapshot S is
    stored with it (`city.stats_rollup_state`). Any from/to window is a clamp of lo and hi.

    The answer at a later snapshot T is R plus the changes of the transactions S did not
    see: the change feed (`city.change_log`, migration 0011) holds an entry for every
    version row a transaction inserts ('opened'), closes ('superseded') or deletes, written
    by that transaction, so the entries whose xid is not visible in S (and, being read in T,
    visible in T) are exactly those changes — including a write in flight while R was
    counted that committed later. The store never changes a version's `valid` or
    attributes in place, so for each changed vid: +1 if its row is current now, -1 if it
    was current in S (it was unless it was opened after S: an unseen 'superseded' entry
    means it was closed after S), at the row's (immutable) valid. One statement reads the
    log, the version rows and R, so the answer is one snapshot.

    Refinements of the first design, each for a hole found:
    - the log also has 'valid_changed' and 'updated' entries (an UPDATE of `valid` or of an
      attribute in place, which the store never does but SQL can): R is then counted anew,
      like after a purge, since the row's state in S is gone;
    - the snapshot is passed to the answering statement as a parameter, not read from the
      state table inside it: with it the planner sees how few log entries lie past it
      (else it plans for a large delta and JIT-compiles it: +0.8 s); the statement checks
      the state still holds that snapshot (else a rebuild came between: counted directly);
    - a transaction that has written does not count R: its own xid is visible in the
      snapshot R is stored with, so its later writes would not be in the delta;
    - R is built by the requesting transaction (a savepoint in a request's transaction),
      so it is visible to others when that commits; the advisory lock is held until then.
    A request that finds no R pays the build (city size: ~3.5–4.7 s for persons, more than
    the direct pass): `gisplatform up` and `gisplatform stats rebuild` build ahead.

    Rebuilt (one pass, ~the cost of a direct answer) when the delta gets large (more than
    `REBUILD_FIXED` + `REBUILD_SHARE` of the counted versions changed vids), and required
    when R cannot be corrected: a row deleted, updated in place or with a changed `valid`
    (purge, `valid_changed`, `updated`), the table's file node changed (TRUNCATE,
    rewrites bypass the log), log entries after S pruned by retention, or another
    definition. One process rebuilds (transaction advisory lock); without a usable R the
    others wait for it, with one they answer from the old R meanwhile. R is built lazily
    on first use and eagerly by `gisplatform stats rebuild` (and `gisplatform up`).
    Where the change feed is not written (no city.change_log; Citus, where its triggers
    are dropped) and for `known_at`, counts come from the direct pass."""

    REBUILD_FIXED = 20_000
    REBUILD_SHARE = 0.05

    def __init__(self):
        self._usable: dict = {}  # database -> whether the feed and the rollup tables exist

    def usable(self, conn) -> bool:
        key = (conn.info.host, conn.info.port, conn.info.dbname)
        if key not in self._usable:
            self._usable[key], = conn.execute("""
                select to_regclass('city.change_log') is not null
                   and to_regclass('city.stats_rollup_state') is not null and """
                + NO_CITUS).fetchone()
        return self._usable[key]

    def rows(self, conn, q: Query, counted: Counted) -> list[tuple] | None:
        """(area, [key values], lo, hi, count) as `_direct_rows`, or None: count directly."""
        if not self.usable(conn):
            return None
        state = self.check(conn, counted)
        if state is None or not state["usable"]:
            if not self.rebuild(conn, counted, wait=True):
                return None
            state = self.check(conn, counted)
        elif self.large(state) and self.rebuild(conn, counted, wait=False):
            state = self.check(conn, counted)  # else: the old R + delta meanwhile
        if state is None or not state["usable"]:
            return None
        return self.answer(conn, q, counted, state["snapshot"])

    def large(self, state: dict) -> bool:
        return state["changed"] > self.REBUILD_FIXED + self.REBUILD_SHARE * state["versions"]

    def check(self, conn, counted: Counted) -> dict | None:
        """The rollup's state: usable (R can be corrected to now), changed (vids changed
        since S), versions (counted in R); None when there is no rollup."""
        row = conn.execute("""
            select s.snapshot::text, s.definition = %(def)s
                   and s.filenode = pg_relation_filenode(%(table)s::regclass)
                   and not exists (select 1 from city.change_log_horizon h
                                   where h.xid >= pg_snapshot_xmin(s.snapshot))
                   and not bool_or(c.op not in ('opened', 'superseded')) is true,
                   count(distinct c.vid), s.versions
            from city.stats_rollup_state s
            left join city.change_log c
              on c.layer = s.layer and c.xid >= pg_snapshot_xmin(s.snapshot)
             and not pg_visible_in_snapshot(c.xid, s.snapshot)
            where s.layer = %(layer)s
            group by s.layer""", {"def": counted.definition, "layer": counted.layer,
                                  "table": f"city.{counted.table}"}).fetchone()
        if row is None:
            return None
        return {"snapshot": row[0], "usable": row[1], "changed": row[2], "versions": row[3]}

    def rebuild(self, conn, counted: Counted, wait: bool) -> bool:
        """Count R anew unless another session is doing it (wait: then wait for it and
        use its R). False when there is no usable R after all (count directly)."""
        own_writes, = conn.execute("select pg_current_xact_id_if_assigned()").fetchone()
        if own_writes is not None:
            # this transaction's earlier and later writes carry one xid, visible in the
            # snapshot R would be stored with: later ones would be missed
            return False
        lock = ("select pg_advisory_xact_lock(hashtext('gisplatform.stats_rollup'), hashtext(%s))"
                if wait else
                "select pg_try_advisory_xact_lock(hashtext('gisplatform.stats_rollup'), hashtext(%s))")
        with conn.transaction():
            got, = conn.execute(lock, (counted.layer,)).fetchone()
            if got is False:
                return False  # the old R serves meanwhile
            state = self.check(conn, counted)  # a builder we waited for may have done it
            if state is not None and state["usable"] and not self.large(state):
                return True
            build(conn, counted)
        return True

    def answer(self, conn, q: Query, counted: Counted, snapshot: str) -> list[tuple] | None:
        """R (counted in `snapshot`, checked here) plus the changes since, in one statement.
        The snapshot is a parameter, not read from the state table in the statement, so
        the planner sees how few log entries lie past it (else it plans for a large delta
        and JIT-compiles: +0.8 s)."""
        i0, n = month_index(q.months[0]), len(q.months)
        with conn.transaction():  # JIT would cost more than the statement (+0.8 s)
            conn.execute("select set_config('jit', 'off', true)")
            rows = conn.execute(sql.SQL("""
                with st as (
                  select snapshot::text = %(snap)s as same, filenode from city.stats_rollup_state
                  where layer = %(layer)s),
                chg as (
                  select c.vid, bool_or(c.op = 'opened') as opened_since,
                         bool_or(c.op not in ('opened', 'superseded')) as not_a_version_change
                  from city.change_log c
                  where c.layer = %(layer)s and c.xid >= pg_snapshot_xmin(%(snap)s::pg_snapshot)
                    and not pg_visible_in_snapshot(c.xid, %(snap)s::pg_snapshot)
                  group by c.vid),
                parts as (
                  select area, keys, lo, hi, n from city.stats_rollup where layer = %(layer)s
                  union all
                  select {columns}, {lo}, {hi},
                         upper_inf(v.recorded)::int - (not chg.opened_since)::int
                  from chg join {table} v on v.vid = chg.vid
                  where {countable})
                select area, keys, greatest(lo - %(i0)s, 0), least(coalesce(hi - %(i0)s, %(n)s), %(n)s),
                       sum(n)::bigint,
                       (select coalesce(bool_or(not_a_version_change), false) from chg)
                       or (select filenode from st) <> pg_relation_filenode(%(t)s::regclass)
                       or not coalesce((select same from st), false)
                from parts where lo < %(end)s and (hi is null or hi > %(i0)s)
                group by 1, 2, 3, 4 having sum(n) <> 0""").format(
                columns=counted.columns(), lo=sql.SQL(_LO), hi=sql.SQL(_HI),
                table=sql.Identifier("city", counted.table), countable=sql.SQL(_COUNTABLE)),
                {"layer": counted.layer, "i0": i0, "n": n, "end": i0 + n, "snap": snapshot,
                 "t": f"city.{counted.table}", "grid": GRID}).fetchall()
        if any(r[5] for r in rows):  # R went stale between check and answer (a purge)
            return None
        return [r[:5] for r in rows]


def build(conn, counted: Counted) -> float:
    """Count the rollup of `counted.layer` anew in one statement (its snapshot is stored
    with it); seconds taken. The caller holds the layer's rollup lock."""
    t = time.perf_counter()
    names = [f"k{i}" for i in range(len(counted.keys))]
    conn.execute(sql.SQL("""
        with gone as (delete from city.stats_rollup where layer = %(layer)s),
        counted as (
          insert into city.stats_rollup (layer, area, keys, lo, hi, n)
          select %(layer)s, area, array[{names}]::text[], lo, hi, n from (
            -- grouped by the key columns, the array built per group (not per version)
            select area, {names}, lo, hi, count(*) as n from (
              select coalesce(({area})::text, 'unknown') as area, {keys},
                     {lo} as lo, {hi} as hi from {table} v
              where upper_inf(v.recorded) and {countable}) x
            where hi is null or hi > lo  -- else valid at no month start
            group by area, {names}, lo, hi) g
          returning n)
        insert into city.stats_rollup_state as s
          (layer, definition, snapshot, filenode, versions, build_s)
        select %(layer)s, %(def)s, pg_current_snapshot(),
               pg_relation_filenode(%(t)s::regclass), coalesce(sum(n), 0), 0 from counted
        on conflict (layer) do update set
          definition = excluded.definition, snapshot = excluded.snapshot,
          filenode = excluded.filenode, versions = excluded.versions,
          built_at = now()""").format(
        area=sql.SQL(counted.area), names=sql.SQL(", ").join(sql.Identifier(k) for k in names),
        keys=sql.SQL(", ").join(sql.SQL(f"coalesce(({e})::text, 'unknown') as {{}}").format(
            sql.Identifier(k)) for k, (_, e) in zip(names, counted.keys, strict=True)),
        lo=sql.SQL(_LO), hi=sql.SQL(_HI),
        table=sql.Identifier("city", counted.table), countable=sql.SQL(_COUNTABLE)),
        {"layer": counted.layer, "def": counted.definition, "t": f"city.{counted.table}",
         "grid": GRID})
    took = time.perf_counter() - t
    conn.execute("update city.stats_rollup_state set build_s = %s where layer = %s",
                 (took, counted.layer))
    return took


def rebuild_all(conn, layers: list[str] | None = None, if_needed: bool = False
                ) -> dict[str, float | None]:
    """Count every rollup (or those of `layers`) anew, each in its own transaction under
    its lock: layer -> seconds (None: `if_needed` and it could still be corrected).
    Eager building (CLI, `up`) so a first request is fast."""
    out: dict[str, float | None] = {}
    for layer in layers or list(COUNTED):
        counted = COUNTED[layer]
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('gisplatform.stats_rollup'),"
                         " hashtext(%s))", (layer,))
            state = _ROLLUP.check(conn, counted) if if_needed else None
            if state is not None and state["usable"] and not _ROLLUP.large(state):
                out[layer] = None
            else:
                out[layer] = build(conn, counted)
    return out


_ROLLUP = Rollup()
