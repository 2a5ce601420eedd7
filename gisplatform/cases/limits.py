"""The time limits of case handling (应用维护): data in `city.case_time_limits` (migration
0022), versioned by when each limit took effect.

A limit is per case kind and big class, in calendar hours, counted from dispatch to the
handling unit's report. A change applies to cases dispatched after it: a dispatch reads the
limit in effect at its instant, and the deadline it sets stays with the case. Every change
is a new row (who, when); nothing is overwritten.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg


def parse_limits(body: object) -> tuple[list[tuple[str, str, float]], datetime]:
    """`{"limits": [{"kind", "big_class", "hours"}, …], "effective"?: instant}` checked:
    the triples and the instant (default now). WorkflowError says what is wrong."""
    from datetime import UTC

    from gisplatform.temporal import TemporalError, parse_request_instant

    from .workflow import WorkflowError

    if not isinstance(body, dict) or not isinstance(body.get("limits"), list) \
            or not body["limits"] or set(body) - {"limits", "effective"}:
        raise WorkflowError('the body is {"limits": [{"kind", "big_class", "hours"}, …],'
                            ' "effective"?: instant}')
    out = []
    for item in body["limits"]:
        if not isinstance(item, dict) or set(item) != {"kind", "big_class", "hours"}:
            raise WorkflowError("each limit is {kind, big_class, hours}")
        kind, big, hours = item["kind"], item["big_class"], item["hours"]
        if kind not in ("event", "component") or not isinstance(big, str) \
                or not (len(big) == 2 and big.isdigit()):
            raise WorkflowError(f"kind event|component and a 2-digit big_class: {item}")
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) \
                or not 0 < hours <= 24 * 365:
            raise WorkflowError(f"hours: more than 0, at most a year: {item}")
        out.append((kind, big, float(hours)))
    effective = datetime.now(UTC)
    if body.get("effective") is not None:
        try:
            effective = parse_request_instant(str(body["effective"]))
        except TemporalError as e:
            raise WorkflowError(f"effective: {e}") from None
    return out, effective


def time_limit(conn: psycopg.Connection, kind: str, big_class: str,
               at: datetime) -> timedelta | None:
    """The limit for a case of `kind` / `big_class` dispatched at `at` (None: none set)."""
    row = conn.execute(
        "select hours from city.case_time_limits where kind = %s and big_class = %s"
        " and effective <= %s order by effective desc limit 1",
        (kind, big_class, at)).fetchone()
    return timedelta(hours=float(row[0])) if row else None


def set_limit(conn: psycopg.Connection, kind: str, big_class: str, hours: float,
              effective: datetime, actor: str) -> None:
    """A new limit from `effective` on (the rows before it stay: history)."""
    if not 0 < hours <= 24 * 365:
        raise ValueError(f"hours: more than 0 and at most a year, got {hours}")
    conn.execute("insert into city.case_time_limits (kind, big_class, hours, effective, actor)"
                 " values (%s, %s, %s, %s, %s)", (kind, big_class, hours, effective, actor))


def limits(conn: psycopg.Connection, at: datetime | None = None) -> list[dict]:
    """Every limit in effect at `at` (default now)."""
    rows = conn.execute(
        "select distinct on (kind, big_class) kind, big_class, hours, effective, actor,"
        " recorded from city.case_time_limits where effective <= coalesce(%s, now())"
        " order by kind, big_class, effective desc", (at,)).fetchall()
    return [{"kind": k, "big_class": b, "hours": float(h), "effective": e.isoformat(),
             "actor": a, "recorded": r.isoformat()} for k, b, h, e, a, r in rows]
