"""The topics (`TOPICS`), each a series per area and month (see the package doc):

- `population`: registered / floating persons valid at each month start;
- `legal-persons`: legal persons valid at each month start, by status and by industry
  (GB/T 4754 class);
- `buildings`: buildings valid at each month start, by use;
- `cameras`: cameras valid at each month start, by owner sector and status, and the
  online rate (ON / all);
- `cases`: city-management cases reported in the month, by class (kind-big class),
  source and current status;
- `evaluation`: the comprehensive-evaluation figures (综合评价) per area, department or
  unit grid (`by=`), see `_evaluation` below;
- one topic per published layer that declares a `category` attribute (registry/definition.py),
  named like the layer: its features valid at each month start, by category, per district
  its geometry lies in (`publish_layer_topics`, called as the published layers are read).

`compute` answers a `Query` (the same JSON for /api/stats/{topic} and the OGC process),
`to_csv` turns it into CSV.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from psycopg import sql

from gisplatform.security import NOT_SHARED, SMALL_COUNT, current_principal, require
from gisplatform.temporal import BEIJING_TIME, contains_sql

from .query import Query, StatsCity, StatsError
from .rollup import BUILT_IN_COUNTED, COUNTED, Counted, _knowledge, _valid_counts


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
            if any(0 < v < SMALL_COUNT for v in p.values()):  # all of it: siblings tell
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
    return round(num / den, 4) if den else None


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
    """Each case once — its version valid at the evaluation instant (now, or known_at),
    as known then — as a FROM item `c` over city.cases_version.

    At the current knowledge the versions valid at E are split in two: open-ended ones
    that began by E and the few closed ones that end after E (the `valid_hi` index). The
    same rows as `valid @> E`; the first part is read by index-only scans of migration
    0016's indexes, which cover the columns `_cases` and `_evaluation` read (keep them in
    step): 23 + 35 MB at city size instead of the 480 MB version table (`cases` took
    9.7 s on a first request before)."""
    at = q.known_at or datetime.now(BEIJING_TIME)
    if q.known_at is not None:
        return (sql.SQL("(select * from city.cases_version where "
                        + contains_sql("valid", "%(at)s::timestamptz") + " and {}) c"
                        ).format(_knowledge(q))), {"at": at, "known_at": q.known_at}
    return sql.SQL(
        "(select * from city.cases_version where upper_inf(recorded) and upper_inf(valid)"
        " and lower(valid) <= %(at)s::timestamptz"
        " union all select * from city.cases_version where upper_inf(recorded)"
        " and not upper_inf(valid) and upper(valid) > %(at)s::timestamptz"
        " and lower(valid) <= %(at)s::timestamptz) c"), {"at": at, "known_at": None}


def _month_bounds(q: Query) -> list[datetime]:
    last = q.months[-1]
    after = datetime(last.year + (last.month == 12), last.month % 12 + 1, 1, tzinfo=BEIJING_TIME)
    return [*q.months, after]


def _cases(conn, q: Query) -> dict:
    cases, params = _case_state(q)
    bounds = _month_bounds(q)
    rows = conn.execute(sql.SQL("""
        select division_code, width_bucket(reported_at, %(bounds)s::timestamptz[]) as i,
               kind || '-' || big_class, source, status, count(*)
        from {cases}
        where reported_at >= %(lo)s and reported_at < %(hi)s
        group by 1, 2, 3, 4, 5""").format(cases=cases),
        {**params, "bounds": bounds, "lo": bounds[0], "hi": bounds[-1]}).fetchall()
    n = len(q.months)
    counts: dict[str, dict[str, list[int]]] = {}
    for area_code, i, cls, source, status, count in rows:
        for a in (area_code or "unknown", q.city.code):
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
    cases, params = _case_state(q)
    bounds = _month_bounds(q)
    group = {"area": "division_code", "department": "department", "grid": "grid_code"}[q.by]
    where = (sql.SQL(" and division_code = %(area)s") if q.area and q.area != q.city.code
             else sql.SQL(""))
    rows = conn.execute(sql.SQL("""
        select {group}, width_bucket(deadline, %(bounds)s::timestamptz[]) as i,
               count(*) as due,
               count(*) filter (where closed) as closed,
               count(*) filter (where closed and handled_at <= deadline) as on_time,
               count(*) filter (where coalesce(handled, %(at)s) > deadline) as overdue,
               count(*) filter (where closed and rework_count > 0) as reworked
        from (select *, closed_at is not null and closed_at <= %(at)s as closed,
                     case when handled_at <= %(at)s then handled_at end as handled
              from {cases}
              where deadline >= %(lo)s and deadline < %(hi)s{where}) c
        where deadline <= %(at)s or closed
        group by 1, 2""").format(group=sql.Identifier(group), cases=cases, where=where),
        {**params, "bounds": bounds, "lo": bounds[0], "hi": bounds[-1],
         "area": q.area}).fetchall()
    n = len(q.months)
    # by grid the answer is ~170 k points at city size: plain lists and one comprehension
    # per series (dicts per row and figure took most of a second)
    counts: dict[str, list[list[int]]] = {}
    city = [q.city.code] if q.by == "area" else []
    for key, i, *figures in rows:
        for k in [key or "unknown", *city]:
            figs = counts.get(k) or counts.setdefault(k, [[0] * n for _ in EVALUATION_FIGURES])
            for col, v in zip(figs, figures):
                col[i - 1] += v
    return {k: [{"due": d, "closed": c, "on_time": o, "overdue": ov, "reworked": r,
                 "closing_rate": _rate(c, d), "on_time_rate": _rate(o, d),
                 "rework_rate": _rate(r, c)}
                for d, c, o, ov, r in zip(*figs)]
            for k, figs in counts.items()}


COMPUTE = {"population": _population, "legal-persons": _legal_persons,
           "buildings": _buildings, "cameras": _cameras, "cases": _cases,
           "evaluation": _evaluation}


BUILT_IN_TOPICS = tuple(TOPICS)  # names no published layer's topic may take

# A published layer has no division code: a feature counts in the district or county its
# geometry lies in, by a point on it (the store refuses invalid geometries, so
# st_pointonsurface cannot fail), on the admin areas as they are now. The rollup is not
# recounted when a boundary moves: `gisplatform stats rebuild` after one.
AREA_BY_LOCATION = ("(select a.code from city.admin_areas a"
                    " where a.level in ('district', 'county')"
                    " and st_intersects(a.geom, st_pointonsurface(v.geom))"
                    " order by a.code limit 1)")


def _layer_topic(name: str, conn, q: Query) -> dict:
    return _points(_valid_counts(conn, q, COUNTED[name]), len(q.months), always=("total",))


def publish_layer_topics(layers: Iterable) -> list[str]:
    """Serve a topic for each of `layers` (the published ones) that declares a category
    attribute, and none for the others any more; their names. Updated in place, like the
    served layers (wiring.load_published calls it): readers never see an empty moment."""
    wanted = {}
    for layer in layers:
        category = layer.spec.extra.get("category")
        if not category or layer.name in BUILT_IN_TOPICS or layer.name in BUILT_IN_COUNTED:
            continue
        column = '"' + category.replace('"', '""') + '"'
        title = layer.spec.extra.get("titles", {}).get(category, category)
        wanted[layer.name] = (
            Topic(layer.name, layer.name, layer.spec.title or layer.name,
                  f"total, {category}.<{title}>: features valid at the month start, in the "
                  "district or county their geometry lies in"),
            Counted(layer.name, AREA_BY_LOCATION, ((category, column),)))
    for name in [n for n in TOPICS if n not in BUILT_IN_TOPICS and n not in wanted]:
        TOPICS.pop(name, None)
        COMPUTE.pop(name, None)
        COUNTED.pop(name, None)
    for name, (topic, counted) in wanted.items():
        COUNTED[name] = counted
        COMPUTE[name] = partial(_layer_topic, name)
        TOPICS[name] = topic
    return list(wanted)


def areas(conn, city: StatsCity) -> dict[str, str]:
    """code -> name of the whole city and its districts and counties (current snapshot)."""
    rows = conn.execute("""
        select code, name from city.admin_areas
        where level in ('city', 'district', 'county') order by code""").fetchall()
    out = {city.code: city.name}
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
    names = areas(conn, q.city)
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


def sharing_of(layers: Mapping) -> dict[str, str]:
    """layer name -> sharing class, for the layers the topics count."""
    return {t.layer: layers[t.layer].sharing for t in TOPICS.values() if t.layer in layers}
