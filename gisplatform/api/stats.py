"""Command-centre statistics: monthly time series by admin area (`/api/stats/...`).

Topics (`TOPICS`), each a series per area (the 6-digit GB/T 2260 code of a district or
county, from the record's `division_code`; `210400` is the whole city, the sum of all
records whatever their area) and month (`YYYY-MM`; a month starts at 00:00 of its first
day in the city's time, UTC+8):

- `population`: registered / floating persons valid at each month start;
- `legal-persons`: legal persons valid at each month start, by status and by industry
  (GB/T 4754 class);
- `buildings`: buildings valid at each month start, by use;
- `cameras`: cameras valid at each month start, by owner sector and status, and the
  online rate (ON / all);
- `cases`: city-management cases reported in the month, by class (kind-big class),
  source and current status;
- `evaluation`: the comprehensive-evaluation figures (综合评价) per area, department or
  unit grid (`by=`), see `evaluation` below.

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

Access: statistics are aggregates (counts by area and month, no object, no personal
field). As the population aggregates of the conditional persons layer are public
(`population-areas`, `population-grid`), aggregates of unconditional and conditional
layers are public; a layer shared not at all (`not_shared`) needs a read grant
(`security.access`). Person counts of 1 or 2 are suppressed (null, `suppressed: true`),
as in the population-in-polygon process: together with its siblings a small count
identifies people.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request
from fastapi.responses import Response
from psycopg import sql
from starlette.concurrency import run_in_threadpool

from gisplatform.errors import problem
from gisplatform.security import NOT_SHARED, current_principal, require
from gisplatform.temporal import TemporalError, contains_sql, parse_request_instant

from .responses import errors

CST = timezone(timedelta(hours=8))  # the city's time (no daylight saving since 1991)
FIRST_MONTH = "2018-01"  # where the plan, and the layers' history, start
CITY = "210400"  # 抚顺市: the whole city
MAX_MONTHS = 600
MIN_PERSONS = 3  # person counts below this (and above 0) are suppressed
EVALUATION_GROUPS = ("area", "department", "grid")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_AREA = re.compile(r"^\d{6}$")
_MICROSECOND = timedelta(microseconds=1)


class StatsError(ValueError):
    """A bad request parameter: HTTP 400 with this message."""


@dataclass(frozen=True)
class Topic:
    name: str
    layer: str  # whose sharing class governs access
    title: str
    figures: str  # what a point carries, for /api/stats


TOPICS = {t.name: t for t in (
    Topic("population", "persons", "人口 Population",
          "registered, floating, total: persons valid at the month start"),
    Topic("legal-persons", "legal-persons", "法人 Legal persons",
          "total, status.<status>, industry.<GB/T 4754 class>: valid at the month start"),
    Topic("buildings", "buildings", "房屋 Buildings",
          "total, use.<use>: valid at the month start"),
    Topic("cameras", "cameras", "视频监控 Cameras",
          "total, sector.<owner sector>, status.ON/OFF, online_rate: valid at the month start"),
    Topic("cases", "cases", "城管案件 City-management cases",
          "reported, class.<kind>-<big class>, source.<source>, status.<current status>: "
          "cases reported in the month"),
    Topic("evaluation", "cases", "综合评价 Evaluation",
          "due, closed, on_time, overdue, reworked, closing_rate, on_time_rate, "
          "rework_rate: cases due in the month (see the module doc)"),
)}


# --- parameters ---------------------------------------------------------------------

def parse_month(text: str, what: str) -> tuple[int, int]:
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or not 1900 <= int(m.group(1)) <= 2200:
        raise StatsError(f"{what}: expected a month YYYY-MM (e.g. 2018-01), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def month_starts(first: tuple[int, int], last: tuple[int, int]) -> list[datetime]:
    """Month starts (00:00 UTC+8) from `first` to `last`, both included."""
    (y, m), out = first, []
    while (y, m) <= last:
        out.append(datetime(y, m, 1, tzinfo=CST))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def current_month() -> str:
    return datetime.now(CST).strftime("%Y-%m")


@dataclass(frozen=True)
class Query:
    topic: str
    months: tuple[datetime, ...]
    area: str | None = None
    by: str = "area"
    known_at: datetime | None = None

    @property
    def labels(self) -> list[str]:
        return [m.strftime("%Y-%m") for m in self.months]


def make_query(topic: str, start: str | None = None, end: str | None = None,
               area: str | None = None, by: str | None = None,
               known_at: str | None = None) -> Query:
    """Validated parameters (StatsError says what is wrong)."""
    if topic not in TOPICS:
        raise StatsError(f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
    first = parse_month(start or FIRST_MONTH, "from")
    last = parse_month(end or current_month(), "to")
    if last < first:
        raise StatsError(f"to ({end}) is before from ({start or FIRST_MONTH})")
    months = month_starts(first, last)
    if len(months) > MAX_MONTHS:
        raise StatsError(f"at most {MAX_MONTHS} months per request")
    if area is not None and not _AREA.match(area.strip()):
        raise StatsError(f"area: a 6-digit GB/T 2260 code (e.g. 210402), got {area!r}")
    if by is not None and topic != "evaluation":
        raise StatsError("by= applies to the evaluation topic only")
    by = by or "area"
    if by not in EVALUATION_GROUPS:
        raise StatsError(f"by: one of {', '.join(EVALUATION_GROUPS)}, got {by!r}")
    at = None
    if known_at:
        try:
            at = parse_request_instant(known_at)
        except TemporalError as e:
            raise StatsError(f"known_at: {e}") from None
    return Query(topic, tuple(months), area.strip() if area else None, by, at)


# --- counting -----------------------------------------------------------------------

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


COUNTED = {c.layer: c for c in (
    Counted("persons", "division_code", (("household_type", "household_type"),)),
    Counted("legal-persons", "division_code", (("status", "status"), ("industry", "industry_code"))),
    Counted("buildings", "division_code", (("use", "use"),)),
    Counted("cameras", "coalesce(left(civil_code, 6), left(device_id, 6))",
            (("sector", "sector"), ("status", "status"))),
)}


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
        for a in (area_code or "unknown", CITY):
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
                   and to_regclass('city.stats_rollup_state') is not null
                   and not exists (select 1 from pg_extension where extname = 'citus')
                """).fetchone()
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


def _population(conn, q: Query) -> dict:
    counts = _valid_counts(conn, q, COUNTED["persons"])
    out = {}
    for a, figs in counts.items():
        zero = [0] * len(q.months)
        total, reg = figs.get("total", zero), figs.get("household_type.registered", zero)
        flo = figs.get("household_type.floating", zero)
        points = []
        for i in range(len(q.months)):
            p = {"registered": reg[i], "floating": flo[i], "total": total[i]}
            if any(0 < v < MIN_PERSONS for v in p.values()):  # all of it: siblings tell
                p = dict.fromkeys(p) | {"suppressed": True}
            points.append(p)
        out[a] = points
    return out


def _points(counts: dict[str, dict[str, list]], n: int, extra=None,
            always: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """{area: [point per month]} with the same figure keys in every point (0 if absent):
    those seen anywhere in the answer and `always`."""
    keys = sorted({k for figs in counts.values() for k in figs} | set(always),
                  key=lambda k: (k != "total", k))
    out = {}
    for a, figs in counts.items():
        points = []
        for i in range(n):
            p = {k: figs[k][i] if k in figs else 0 for k in keys}
            if extra:
                p.update(extra(p))
            points.append(p)
        out[a] = points
    return out


def _rate(num, den):
    return None if not den else round(num / den, 4)


def _legal_persons(conn, q: Query) -> dict:
    return _points(_valid_counts(conn, q, COUNTED["legal-persons"]), len(q.months))


def _buildings(conn, q: Query) -> dict:
    return _points(_valid_counts(conn, q, COUNTED["buildings"]),
                   len(q.months))


def _cameras(conn, q: Query) -> dict:
    counts = _valid_counts(conn, q, COUNTED["cameras"])
    return _points(counts, len(q.months),
                   lambda p: {"online_rate": _rate(p["status.ON"], p["total"])},
                   always=("total", "status.ON", "status.OFF"))


def _case_state(q: Query) -> tuple[sql.Composable, dict]:
    """Each case once: its version valid at the evaluation instant (now, or known_at),
    as known then."""
    at = q.known_at or datetime.now(CST)
    return (sql.SQL(contains_sql("valid", "%(at)s::timestamptz") + " and ")
            + _knowledge(q)), {"at": at, "known_at": q.known_at}


def _month_bounds(q: Query) -> list[datetime]:
    last = q.months[-1]
    after = datetime(last.year + (last.month == 12), last.month % 12 + 1, 1, tzinfo=CST)
    return [*q.months, after]


def _cases(conn, q: Query) -> dict:
    state, params = _case_state(q)
    bounds = _month_bounds(q)
    rows = conn.execute(sql.SQL("""
        select division_code, width_bucket(reported_at, %(bounds)s::timestamptz[]) as i,
               kind || '-' || big_class, source, status, count(*)
        from city.cases_version
        where {state} and reported_at >= %(lo)s and reported_at < %(hi)s
        group by 1, 2, 3, 4, 5""").format(state=state),
        {**params, "bounds": bounds, "lo": bounds[0], "hi": bounds[-1]}).fetchall()
    n = len(q.months)
    counts: dict[str, dict[str, list[int]]] = {}
    for area_code, i, cls, source, status, count in rows:
        for a in (area_code or "unknown", CITY):
            figs = counts.setdefault(a, {})
            for fig in ("reported", f"class.{cls}", f"source.{source}", f"status.{status}"):
                figs.setdefault(fig, [0] * n)[i - 1] += count
    out = _points(counts, n)
    for points in out.values():  # `reported` first, as `total` elsewhere
        points[:] = [{"reported": p.pop("reported", 0), **p} for p in points]
    return out


EVALUATION_FIGURES = ("due", "closed", "on_time", "overdue", "reworked")


def _evaluation(conn, q: Query) -> dict:
    """Comprehensive evaluation (综合评价) of case handling, per group and month.

    A case belongs to the month (UTC+8) its deadline falls in — the task clock starts at
    dispatch and `deadline` = dispatched_at + the class's time limit. Each case counts
    once, in its version valid at the evaluation instant E (now, or `known_at`), as then
    known:

    - due (应结案数): cases whose deadline falls in the month and has passed at E, plus
      those of the month already closed at E (closed before their deadline);
    - closed (结案数): due cases with closed_at <= E;
    - on_time (按期结案数): closed cases handled by the deadline (handled_at <= deadline;
      the handling unit's report stops the clock, as in city.case_status);
    - overdue (超期数): due cases not handled by their deadline — handled late, or still
      unhandled at E past their deadline (city.case_status.overdue at E);
    - reworked (返工数): closed cases sent back at verification at least once
      (rework_count > 0);
    - closing_rate = closed / due, on_time_rate = on_time / due (DOMAIN.md: 911/972,
      737/972 — the denominator is what was due, so an unclosed case lowers the rate),
      rework_rate = reworked / closed; null when the denominator is 0.

    Groups (`by`): area (division_code, plus the whole city), department (the handling
    department) or grid (the unit grid code); `area=` narrows to one district's cases.
    """
    state, params = _case_state(q)
    bounds = _month_bounds(q)
    group = {"area": "division_code", "department": "department", "grid": "grid_code"}[q.by]
    where = sql.SQL(" and division_code = %(area)s") if q.area and q.area != CITY else sql.SQL("")
    rows = conn.execute(sql.SQL("""
        select {group}, width_bucket(deadline, %(bounds)s::timestamptz[]) as i,
               count(*) as due,
               count(*) filter (where closed) as closed,
               count(*) filter (where closed and handled_at <= deadline) as on_time,
               count(*) filter (where coalesce(handled, %(at)s) > deadline) as overdue,
               count(*) filter (where closed and rework_count > 0) as reworked
        from (select *, closed_at is not null and closed_at <= %(at)s as closed,
                     case when handled_at <= %(at)s then handled_at end as handled
              from city.cases_version
              where {state} and deadline >= %(lo)s and deadline < %(hi)s{where}) c
        where deadline <= %(at)s or closed
        group by 1, 2""").format(group=sql.Identifier(group), state=state, where=where),
        {**params, "bounds": bounds, "lo": bounds[0], "hi": bounds[-1],
         "area": q.area}).fetchall()
    n = len(q.months)
    counts: dict[str, dict[str, list[int]]] = {}
    for key, i, *figures in rows:
        keys = (key or "unknown",) + ((CITY,) if q.by == "area" else ())
        for k in keys:
            figs = counts.setdefault(k, {f: [0] * n for f in EVALUATION_FIGURES})
            for f, v in zip(EVALUATION_FIGURES, figures, strict=True):
                figs[f][i - 1] += v
    out = {}
    for k, figs in counts.items():
        out[k] = []
        for i in range(n):
            p = {f: figs[f][i] for f in EVALUATION_FIGURES}
            p.update(closing_rate=_rate(p["closed"], p["due"]),
                     on_time_rate=_rate(p["on_time"], p["due"]),
                     rework_rate=_rate(p["reworked"], p["closed"]))
            out[k].append(p)
    return out


COMPUTE = {"population": _population, "legal-persons": _legal_persons,
           "buildings": _buildings, "cameras": _cameras, "cases": _cases,
           "evaluation": _evaluation}


def areas(conn) -> dict[str, str]:
    """code -> name of the whole city and its districts and counties (current snapshot)."""
    rows = conn.execute("""
        select code, name from city.admin_areas
        where level in ('city', 'district', 'county') order by code""").fetchall()
    out = {CITY: "抚顺市"}
    out.update(dict(rows))
    return out


def check_access(topic: str, sharing: Mapping[str, str], principal=None) -> None:
    """Aggregates of unconditional and conditional layers are public (module doc); a layer
    not shared needs a read grant. Unknown layers are refused (fail closed)."""
    t = TOPICS[topic]
    cls = sharing.get(t.layer)
    if cls is None or cls == NOT_SHARED:  # AuthError (401) / AccessDenied (403)
        require(principal or current_principal.get(), t.layer, cls or "unregistered")


def compute(conn, q: Query) -> dict:
    """The JSON answer of one query (also what the OGC process returns)."""
    names = areas(conn)
    if q.area is not None and q.area not in names:
        raise StatsError(f"area: unknown area {q.area}; areas: {', '.join(names)}")
    data = COMPUTE[q.topic](conn, q)  # one statement: one snapshot
    n = len(q.months)
    labels = q.labels
    series = []
    if q.topic == "evaluation" and q.by != "area":
        for key in sorted(data):
            series.append({q.by: key, "points": _label(data[key], labels)})
    else:
        template = _empty_point(q, data)
        wanted = [q.area] if q.area else list(names)
        for code in wanted:
            points = data.get(code) or [dict(template) for _ in range(n)]
            series.append({"area": code, "name": names.get(code), "points": _label(points, labels)})
    out = {"topic": q.topic, "title": TOPICS[q.topic].title, "from": labels[0], "to": labels[-1],
           "month_start": "00:00 on the 1st, UTC+8", "series": series}
    if q.topic == "evaluation":
        out["by"] = q.by
    if q.known_at is not None:
        out["known_at"] = q.known_at.isoformat()
    return out


def _empty_point(q: Query, data: dict) -> dict:
    """A point of an area with no records: the figures of the others, zero (rates null)."""
    sample = next((pts[0] for pts in data.values() if pts), None)
    if sample is None:
        sample = {"population": {"registered": 0, "floating": 0, "total": 0},
                  "cases": {"reported": 0},
                  "evaluation": dict.fromkeys(EVALUATION_FIGURES, 0)}.get(q.topic, {"total": 0})
    return {k: (None if k.endswith("_rate") else 0) for k in sample if k != "suppressed"}


def _label(points: list[dict], labels: list[str]) -> list[dict]:
    return [{"month": m, **p} for m, p in zip(labels, points, strict=True)]


def to_csv(result: dict) -> str:
    """One row per series and month: the series' key columns, month, then every figure."""
    series = result["series"]
    keys = [k for k in ("area", "name", "department", "grid") if series and k in series[0]]
    figures: list[str] = []
    for s in series:
        for p in s["points"]:
            for k in p:
                if k != "month" and k not in figures:
                    figures.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*keys, "month", *figures])
    for s in series:
        for p in s["points"]:
            w.writerow([*(s[k] for k in keys), p["month"],
                        *("" if p.get(f) is None else p.get(f) for f in figures)])
    return buf.getvalue()


# --- HTTP ---------------------------------------------------------------------------

def stats_router(sharing: Mapping[str, str], connect) -> APIRouter:
    """`sharing`: layer name -> sharing class (the composition root knows the layers);
    `connect()`: a pooled connection context manager."""
    router = APIRouter(prefix="/api/stats", tags=["statistics"], responses=errors(401))

    @router.get("")
    async def topics():
        """The topics, their figures and the parameters every topic takes."""
        return {"topics": [{"id": t.name, "title": t.title, "figures": t.figures,
                            "href": f"/api/stats/{t.name}"} for t in TOPICS.values()],
                "parameters": {"from": f"YYYY-MM, default {FIRST_MONTH}",
                               "to": "YYYY-MM, default the current month (UTC+8)",
                               "area": f"6-digit GB/T 2260 code; {CITY} = the whole city; "
                                       "default every district and county and the city",
                               "by": "evaluation only: area | department | grid",
                               "known_at": "instant: count what was known then",
                               "f": "json | csv (or Accept: text/csv)"}}

    @router.get("/{topic}", responses={**errors(400, 403, 404, 503), 200: {
        "description": "the series", "content": {"application/json": {}, "text/csv": {}}}})
    async def stats(topic: str, request: Request):
        """Monthly series of one topic by area (see /api/stats for the parameters)."""
        params = request.query_params
        unknown = set(params) - {"from", "to", "area", "by", "known_at", "f", "token"}
        if topic not in TOPICS:
            return problem(404, f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
        fmt = params.get("f")
        if fmt is None:
            fmt = "csv" if "text/csv" in request.headers.get("accept", "") else "json"
        try:
            if unknown:
                raise StatsError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
            if fmt not in ("json", "csv"):
                raise StatsError(f"f: json or csv, got {fmt!r}")
            q = make_query(topic, params.get("from"), params.get("to"), params.get("area"),
                           params.get("by"), params.get("known_at"))
            check_access(topic, sharing)  # a refusal is answered by gisplatform.errors
        except StatsError as e:
            return problem(400, str(e))

        def run():
            with connect() as conn:
                return compute(conn, q)
        try:
            result = await run_in_threadpool(run)
        except StatsError as e:
            return problem(400, str(e))
        if fmt == "csv":
            name = f"stats-{topic}-{result['from']}-{result['to']}.csv"
            return Response(to_csv(result), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'inline; filename="{name}"'})
        return result

    return router


def sharing_of(layers: Mapping) -> dict[str, str]:
    """layer name -> sharing class, for the layers the topics count."""
    return {t.layer: layers[t.layer].sharing for t in TOPICS.values() if t.layer in layers}
