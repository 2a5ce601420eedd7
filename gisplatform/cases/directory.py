"""The workflow's directories as data (应用维护): the departments cases are dispatched to
(city.departments, which tokens are issued to) and the work calendar (clock.py). Both are
edited in place; every change made here is logged in city.directory_changes (migration
0025: old and new row, when, who), so the directory at any past moment can be read back."""

from __future__ import annotations

import re
from datetime import date

import psycopg
from psycopg.types.json import Jsonb

from gisplatform.security import list_departments
from gisplatform.temporal import BEIJING_TIME

from .workflow import WorkflowError

CODE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # as city.departments' check


def departments(conn: psycopg.Connection) -> list[dict]:
    return [{"code": c, "name": n} for c, n in list_departments(conn)]


def parse_departments(body: object) -> list[tuple[str, str]]:
    """`{"departments": [{"code", "name"}, …]}` → (code, name) pairs, or WorkflowError."""
    if not isinstance(body, dict) or set(body) != {"departments"} \
            or not isinstance(body["departments"], list) or not body["departments"]:
        raise WorkflowError('the body is {"departments": [{"code", "name"}, …]}')
    out = []
    for item in body["departments"]:
        if not isinstance(item, dict) or set(item) != {"code", "name"}:
            raise WorkflowError("each department is {code, name}")
        code, name = item["code"], item["name"]
        if not isinstance(code, str) or not CODE.match(code):
            raise WorkflowError(f"code: lower-case letters, digits and _ (a letter first): {item}")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise WorkflowError(f"name: 1 to 200 characters: {item}")
        out.append((code, name.strip()))
    return out


def _log(conn, table: str, old: dict | None, new: dict, actor: str) -> None:
    conn.execute("insert into city.directory_changes (tbl, old, new, actor)"
                 " values (%s, %s, %s, %s)",
                 (table, Jsonb(old) if old else None, Jsonb(new), actor))


def set_departments(conn: psycopg.Connection, items: list[tuple[str, str]],
                    actor: str) -> None:
    """Add departments or rename them (cases keep the name they were dispatched under)."""
    for code, name in items:
        row = conn.execute("select name from city.departments where code = %s for update",
                           (code,)).fetchone()
        if row and row[0] == name:
            continue
        conn.execute("insert into city.departments (code, name) values (%s, %s)"
                     " on conflict (code) do update set name = excluded.name", (code, name))
        _log(conn, "departments", {"code": code, "name": row[0]} if row else None,
             {"code": code, "name": name}, actor)


def set_days(conn: psycopg.Connection, days: list[tuple[date, bool, str | None]],
             actor: str) -> None:
    """Mark days as working or not (a holiday, a moved working day); a day set again
    takes the new value. Deadlines computed from then on follow it; those set stay."""
    for day, working, note in days:
        row = conn.execute("select working, note from city.work_calendar where day = %s"
                           " for update", (day,)).fetchone()
        if row and tuple(row) == (working, note):
            continue
        conn.execute(
            "insert into city.work_calendar (day, working, note, actor) values (%s, %s, %s, %s)"
            " on conflict (day) do update set working = excluded.working, note = excluded.note,"
            " actor = excluded.actor, recorded = now()", (day, working, note, actor))
        _log(conn, "work_calendar",
             {"day": day.isoformat(), "working": row[0], "note": row[1]} if row else None,
             {"day": day.isoformat(), "working": working, "note": note}, actor)


def calendar(conn: psycopg.Connection, year: int | None = None) -> list[dict]:
    """The work calendar's exceptions (of `year`, or all), by day."""
    rows = conn.execute(
        "select day, working, note, actor, recorded from city.work_calendar"
        " where %(y)s::int is null or extract(year from day) = %(y)s order by day",
        {"y": year}).fetchall()
    return [{"day": d.isoformat(), "working": w, "note": n, "actor": a,
             "recorded": r.astimezone(BEIJING_TIME).isoformat()} for d, w, n, a, r in rows]


def parse_days(body: object) -> list[tuple[date, bool, str | None]]:
    """`{"days": [{"day": "YYYY-MM-DD", "working": bool, "note"?}, …]}` → (day, working,
    note), or WorkflowError."""
    if not isinstance(body, dict) or set(body) != {"days"} \
            or not isinstance(body["days"], list) or not body["days"]:
        raise WorkflowError('the body is {"days": [{"day": "YYYY-MM-DD", "working": false,'
                            ' "note"?: "…"}, …]}')
    out = []
    for item in body["days"]:
        if not isinstance(item, dict) or not {"day", "working"} <= set(item) \
                or set(item) - {"day", "working", "note"}:
            raise WorkflowError("each day is {day, working, note?}")
        try:
            day = date.fromisoformat(item["day"]) if isinstance(item["day"], str) else None
        except ValueError:
            day = None
        if day is None or not 1900 <= day.year <= 2200:
            raise WorkflowError(f"day: a date YYYY-MM-DD: {item}")
        if not isinstance(item["working"], bool):
            raise WorkflowError(f"working: true or false: {item}")
        note = item.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 200):
            raise WorkflowError(f"note: a string of at most 200 characters: {item}")
        out.append((day, item["working"], note))
    return out
