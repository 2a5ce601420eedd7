"""The time limits of case handling (应用维护): data in `city.case_time_limits` (migrations
0022, 0025), versioned by when each limit took effect.

A limit is per case kind, big class and step, in calendar or working hours (clock.py),
counted from the step before (STEPS): `handle` from dispatch to the handling unit's report
is the case's deadline; the others time the supervision centre's own steps. A change applies
to steps whose clock starts after it: a dispatch reads the limit in effect at its instant,
and the deadline it sets stays with the case. Every change is a new row (who, when);
nothing is overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from gisplatform.temporal import BEIJING_TIME

from .clock import UNITS

# step → the step its clock starts from
STEPS = {"register": "reported", "dispatch": "registered", "handle": "dispatched",
         "verify": "handled", "close": "verified"}


@dataclass(frozen=True)
class Limit:
    hours: float
    unit: str  # calendar | working


def parse_limits(body: object) -> tuple[list[tuple[str, str, str, float, str]], datetime]:
    """`{"limits": [{"kind", "big_class", "hours", "step"?, "unit"?}, …], "effective"?:
    instant}` checked: (kind, big_class, step, hours, unit) — step `handle` and unit
    `calendar` by default — and the instant (default now). WorkflowError says what is
    wrong."""
    from datetime import UTC

    from gisplatform.temporal import TemporalError, parse_request_instant

    from .workflow import WorkflowError

    if not isinstance(body, dict) or not isinstance(body.get("limits"), list) \
            or not body["limits"] or set(body) - {"limits", "effective"}:
        raise WorkflowError('the body is {"limits": [{"kind", "big_class", "hours", "step"?,'
                            ' "unit"?}, …], "effective"?: instant}')
    out = []
    for item in body["limits"]:
        if not isinstance(item, dict) or not {"kind", "big_class", "hours"} <= set(item) \
                or set(item) - {"kind", "big_class", "hours", "step", "unit"}:
            raise WorkflowError("each limit is {kind, big_class, hours, step?, unit?}")
        step, unit = item.get("step", "handle"), item.get("unit", "calendar")
        if step not in STEPS:
            raise WorkflowError(f"step: one of {', '.join(STEPS)}: {item}")
        if unit not in UNITS:
            raise WorkflowError(f"unit: one of {', '.join(UNITS)}: {item}")
        kind, big, hours = item["kind"], item["big_class"], item["hours"]
        if kind not in ("event", "component") or not isinstance(big, str) \
                or not (len(big) == 2 and big.isdigit()):
            raise WorkflowError(f"kind event|component and a 2-digit big_class: {item}")
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) \
                or not 0 < hours <= 24 * 365:
            raise WorkflowError(f"hours: more than 0, at most a year: {item}")
        out.append((kind, big, step, float(hours), unit))
    effective = datetime.now(UTC)
    if body.get("effective") is not None:
        try:
            effective = parse_request_instant(str(body["effective"]))
        except TemporalError as e:
            raise WorkflowError(f"effective: {e}") from None
    return out, effective


def time_limit(conn: psycopg.Connection, kind: str, big_class: str, step: str,
               at: datetime) -> Limit | None:
    """The limit of `step` for a case of `kind` / `big_class` whose clock starts at `at`
    (None: none set)."""
    row = conn.execute(
        "select hours, unit from city.case_time_limits where kind = %s and big_class = %s"
        " and step = %s and effective <= %s order by effective desc limit 1",
        (kind, big_class, step, at)).fetchone()
    return Limit(float(row[0]), row[1]) if row else None


def set_limit(conn: psycopg.Connection, kind: str, big_class: str, hours: float,
              effective: datetime, actor: str, step: str = "handle",
              unit: str = "calendar") -> None:
    """A new limit from `effective` on (the rows before it stay: history)."""
    if not 0 < hours <= 24 * 365:
        raise ValueError(f"hours: more than 0 and at most a year, got {hours}")
    if step not in STEPS or unit not in UNITS:
        raise ValueError(f"step one of {', '.join(STEPS)}, unit one of {', '.join(UNITS)}")
    conn.execute("insert into city.case_time_limits (kind, big_class, step, hours, unit,"
                 " effective, actor) values (%s, %s, %s, %s, %s, %s, %s)",
                 (kind, big_class, step, hours, unit, effective, actor))


def limits(conn: psycopg.Connection, at: datetime | None = None) -> list[dict]:
    """Every limit in effect at `at` (default now)."""
    rows = conn.execute(
        "select distinct on (kind, big_class, step) kind, big_class, step, hours, unit,"
        " effective, actor, recorded from city.case_time_limits"
        " where effective <= coalesce(%s, now())"
        " order by kind, big_class, step, effective desc", (at,)).fetchall()
    return [{"kind": k, "big_class": b, "step": s, "hours": float(h), "unit": u,
             "effective": e.astimezone(BEIJING_TIME).isoformat(), "actor": a,
             "recorded": r.astimezone(BEIJING_TIME).isoformat()}
            for k, b, s, h, u, e, a, r in rows]
