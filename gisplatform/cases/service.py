"""The case workflow on the database: reporting a case and taking its steps.

Every step is a new version of the case (TemporalStore.update at the step's instant), so
the case at any time T is a snapshot query and each step flows through the change feed;
and a row of `city.case_steps` (the timeline), in the same transaction. Steps on one case
are serialised by a transaction advisory lock on its number: of two concurrent steps, the
second sees the state the first left and, if its action is no longer allowed, is a
Conflict (409) — exactly one wins.

Who may: reporting needs a token holding any workflow role (or `write`) on the cases
layer; each action its role (workflow.ROLE) — `security.require_role` decides, the one
home of access; a `handle` only by the department the case is dispatched to. The grid
cell and division come from the location by point-in-polygon, never from the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import shapely
from psycopg import sql

from gisplatform.security import (
    ANONYMOUS,
    READ_PERSONAL_ACTION,
    WORKFLOW_ROLES,
    AccessDenied,
    AuthError,
    Principal,
    audit,
    mask_row,
    personal_masks,
    require,
    require_role,
)
from gisplatform.temporal import BEIJING_TIME, Feature, LayerSpec, TemporalStore, contains_sql

from .clock import load_clock
from .limits import STEPS as TIMED
from .limits import time_limit
from .workflow import ROLE, Applied, Conflict, Step, WorkflowError, apply, check

SCHEMA = "city"
REPORTED_FIELDS = ("kind", "big_class", "small_class", "description", "source")
CONTACT_FIELDS = ("reporter_name", "reporter_phone")  # personal: masked without read_personal
CONTACT_SOURCES = ("hotline_12345", "citizen_app")


@dataclass(frozen=True)
class CaseSetup:
    """What the workflow needs of the layers (from the composition root): the cases layer
    (`spec`, `check(props)` its validation: classes, sources), the grid cells and admin
    areas whose polygons place a case, the prefix of case numbers, and `locate(address)`
    → (lon, lat) or WorkflowError with the candidates (the geocoder)."""
    layer: str
    sharing: str
    spec: LayerSpec
    check: Callable[[dict], object]
    grid_cells: str
    admin_areas: str
    locate: Callable[[psycopg.Connection, str, datetime], tuple[float, float]]
    working_hours: str  # the periods of a working day (clock.py)
    prefix: str = "FS"

    @property
    def store(self) -> TemporalStore:
        return TemporalStore(self.spec)


def _table(layer: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, layer.replace("-", "_") + "_version")


def _now() -> datetime:
    return datetime.now(UTC)


def _place(conn, setup: CaseSetup, lon: float, lat: float, at: datetime) -> tuple:
    """(grid_code, division_code) of the point at `at`, by point-in-polygon."""
    cur = "upper_inf(v.recorded) and " + contains_sql("v.valid", "%(at)s")
    return conn.execute(sql.SQL(
        "with p as (select st_setsrid(st_point(%(x)s, %(y)s), 4490) g) select"
        " (select v.grid_code from {g} v, p where st_intersects(v.geom, p.g) and " + cur
        + " order by v.grid_code limit 1),"
        " (select v.code from {a} v, p where v.level in ('district', 'county')"
        " and st_intersects(v.geom, p.g) and " + cur + " order by v.code limit 1)").format(
        g=_table(setup.grid_cells), a=_table(setup.admin_areas)),
        {"x": lon, "y": lat, "at": at}).fetchone()


def _department(conn, code: str) -> str | None:
    """A department's name from the directory (city.departments), None when unknown."""
    row = conn.execute("select name from city.departments where code = %s", (code,)).fetchone()
    return row[0] if row else None


def _department_name(conn, principal: Principal) -> str | None:
    if principal.department is None:
        return None
    return _department(conn, principal.department) or principal.department


def report(conn: psycopg.Connection, setup: CaseSetup, feature: dict,
           principal: Principal) -> dict:
    """A new case from a GeoJSON Feature (geometry a CRS84 Point, or null with
    properties.address); the case as stored. WorkflowError for bad input."""
    if principal.anonymous:
        raise AuthError("reporting a case needs a token (Authorization: Bearer …)")
    if not (principal.levels(setup.layer) & {*WORKFLOW_ROLES, "write"}):
        raise AccessDenied(f"reporting needs a role on {setup.layer} "
                           f"({', '.join(WORKFLOW_ROLES)}) or write")
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise WorkflowError("the body is a GeoJSON Feature (JSON, at most 64 kB)")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise WorkflowError("properties: an object")
    unknown = set(props) - {*REPORTED_FIELDS, *CONTACT_FIELDS, "address"}
    if unknown:
        raise WorkflowError(f"properties: unknown {', '.join(sorted(unknown))} (status, grid "
                            "and division come from the workflow and the location)")
    for k in (*REPORTED_FIELDS, *CONTACT_FIELDS, "address"):
        if props.get(k) is not None and not isinstance(props[k], str):
            raise WorkflowError(f"{k}: a string")
    if any(props.get(k) for k in CONTACT_FIELDS) and props.get("source") not in CONTACT_SOURCES:
        raise WorkflowError(f"reporter_name, reporter_phone: for {' or '.join(CONTACT_SOURCES)}"
                            " reports only (a patrol's or a camera's report has no citizen)")
    at = _now()
    geom = feature.get("geometry")
    if geom is None:
        if not props.get("address"):
            raise WorkflowError("geometry: a Point, or null with properties.address")
        lon, lat = setup.locate(conn, props["address"], at)
    else:
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        if (not isinstance(geom, dict) or geom.get("type") != "Point"
                or not isinstance(coords, list) or len(coords) < 2
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                           for c in coords[:2])):
            raise WorkflowError("geometry: a GeoJSON Point [lon, lat] in CRS84")
        lon, lat = float(coords[0]), float(coords[1])
    with conn.transaction():
        grid, division = _place(conn, setup, lon, lat, at)
        if grid is None:
            raise WorkflowError(f"({lon}, {lat}) lies in no unit-grid cell of the city")
        (seq,) = conn.execute("select nextval('city.case_number_seq')").fetchone()
        number = f"{setup.prefix}{at.astimezone(BEIJING_TIME):%Y%m%d}{seq:07d}"
        case = {"case_number": number, "kind": props.get("kind"),
                "big_class": props.get("big_class"), "small_class": props.get("small_class"),
                "description": props.get("description"), "source": props.get("source"),
                "status": "reported", "grid_code": grid, "division_code": division,
                "department": None, "reported_at": at, "dispatched_at": None, "deadline": None,
                "handled_at": None, "closed_at": None, "rework_count": 0,
                **{k: props.get(k) for k in CONTACT_FIELDS}}
        try:
            setup.check(case)
        except ValueError as e:
            raise WorkflowError(str(e)) from None
        setup.store.insert(conn, [Feature(number, shapely.Point(lon, lat), case)], at)
        _log(conn, number, "reported", at, _department_name(conn, principal),
             props.get("description"))
    return get(conn, setup, number, principal)


def _log(conn, number: str, step: str, at: datetime, actor: str | None,
         note: str | None) -> None:
    conn.execute("insert into city.case_steps (case_number, step, at, actor, note)"
                 " values (%s, %s, %s, %s, %s)", (number, step, at, actor, note))


def take_step(conn: psycopg.Connection, setup: CaseSetup, number: str, step: Step,
              principal: Principal) -> dict:
    """Take `step` on case `number` as `principal`; the case as it now stands.
    LookupError (404), AuthError / AccessDenied (401 / 403), Conflict (409),
    WorkflowError (400)."""
    if step.action not in ROLE:
        raise WorkflowError(f"action: one of {', '.join(ROLE)}; got {step.action!r}")
    require_role(principal, setup.layer, ROLE[step.action])
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('gisplatform.case'), hashtext(%s))",
                     (number,))
        current = setup.store.current(conn, number)
        if current is None or current["valid_to"] is not None:
            raise LookupError(f"no open case {number}")
        case = {a: current[a] for a in setup.spec.attribute_names}
        check(case["status"], step.action)  # 409 before who: the state decides first
        actor = _department_name(conn, principal)
        if step.action == "handle" and case.get("department") != actor:
            raise AccessDenied(f"case {number} is dispatched to {case.get('department')}, "
                               f"not to {actor}")
        at = max(_now(), current["valid_from"])
        kwargs: dict = {}
        department = step.department
        if step.action == "dispatch":
            if department is not None:
                department = _department(conn, department)
                if department is None:
                    raise WorkflowError(f"department: unknown department {step.department!r}")
            limit = time_limit(conn, case["kind"], case["big_class"], "handle", at)
            if limit is not None:
                kwargs["deadline"] = load_clock(conn, setup.working_hours).add(
                    at, limit.hours, limit.unit)
        elif step.action == "resume":
            history = setup.store.history(conn, number)
            if len(history) >= 2:
                kwargs["resumes_to"] = history[-2]["status"]
                kwargs["deadline"] = _resumed_deadline(conn, setup, case,
                                                       current["valid_from"], at)
        applied: Applied = apply(case, Step(step.action, department, step.result, step.note),
                                 at, **kwargs)
        try:
            setup.check(applied.properties)
        except ValueError as e:
            raise WorkflowError(str(e)) from None
        geom = shapely.geometry.shape(current["geometry"])
        setup.store.update(conn, [Feature(number, geom, applied.properties)], at)
        _log(conn, number, applied.step, at, actor, applied.note)
    return get(conn, setup, number, principal)


def _resumed_deadline(conn, setup: CaseSetup, case: dict, since: datetime,
                      at: datetime) -> datetime | None:
    """The deadline after a suspension from `since` to `at`: the clock stopped, so what was
    left of the limit at `since` (in the unit the case was dispatched under) is left at
    `at`. A case already overdue when suspended stays as far past its deadline."""
    deadline = case.get("deadline")
    if deadline is None:
        return None
    limit = time_limit(conn, case["kind"], case["big_class"], "handle",
                       case.get("dispatched_at") or since)
    unit = limit.unit if limit else "calendar"
    if unit == "calendar" or deadline <= since:
        return deadline + (at - since)
    clock = load_clock(conn, setup.working_hours)
    left = clock.between(since, deadline, unit)
    return clock.add(at, left.total_seconds() / 3600, unit)


# the step due next from a status, when its clock is not the case's deadline (handle)
DUE = {"reported": "register", "registered": "dispatch", "handled": "verify",
       "verified": "close"}


def _step_deadline(conn, setup: CaseSetup, props: dict, since: datetime) -> datetime | None:
    """When the step due next (DUE) must be taken, by its limit in effect at `since` (the
    last step); None when the case waits on no timed step or none is set."""
    step = DUE.get(props["status"])
    if step is None or step not in TIMED:
        return None
    limit = time_limit(conn, props["kind"], props["big_class"], step, since)
    if limit is None:
        return None
    return load_clock(conn, setup.working_hours).add(since, limit.hours, limit.unit)


def get(conn: psycopg.Connection, setup: CaseSetup, number: str,
        principal: Principal = ANONYMOUS) -> dict:
    """The case as a GeoJSON Feature: its properties, deadline, overdue, remaining time,
    and `steps` (the timeline); the reporter's contact masked unless `principal` may read
    it (then the read is audited). LookupError when there is no such case."""
    current = setup.store.current(conn, number)
    if current is None:
        raise LookupError(f"no case {number}")
    acc = require(principal, setup.layer, setup.sharing)
    raw = {a: current[a] for a in setup.spec.attribute_names}
    props = mask_row(raw, personal_masks(setup.spec.attributes), acc)
    if acc.unmask and any(raw.get(k) for k in CONTACT_FIELDS):
        audit(conn, principal, setup.layer, READ_PERSONAL_ACTION, {"case": number})
    now = _now()
    deadline = props.get("deadline")
    stop = props.get("handled_at") or now
    props["overdue"] = deadline is not None and stop > deadline
    props["remaining_s"] = (round((deadline - now).total_seconds())
                            if deadline is not None and props["status"] == "dispatched" else None)
    steps = conn.execute(
        "select s.step, s.at, s.actor, s.note, coalesce(array_agg(p.sha256"
        " order by p.id) filter (where p.id is not null), '{}')"
        " from city.case_steps s left join city.case_photos p on p.step_id = s.id"
        " where s.case_number = %s group by s.id order by s.at, s.id", (number,)).fetchall()
    props["steps"] = [{"step": s, "department": actor, "at": at.isoformat(), "note": note,
                       "photos": list(photos)} for s, at, actor, note, photos in steps]
    # the step due next and its time: the deadline when dispatched, else its own limit
    due = (props["deadline"] if props["status"] == "dispatched"
           else _step_deadline(conn, setup, props, steps[-1][1]) if steps else None)
    props["step_deadline"] = due
    props["step_overdue"] = due is not None and now > due
    for k, v in list(props.items()):
        if isinstance(v, datetime):
            props[k] = v.isoformat()
    return {"type": "Feature", "id": number, "geometry": current["geometry"],
            "properties": props}


def add_photo(conn: psycopg.Connection, setup: CaseSetup, number: str, data: bytes,
              content_type: str, principal: Principal, root, max_distance_m: float) -> dict:
    """Attach a photo to an open case (any workflow role on cases; photos.py checks and
    cleans it); the photo's record, with a warning when taken far from the case."""
    from . import photos

    if principal.anonymous:
        raise AuthError("attaching a photo needs a token (Authorization: Bearer …)")
    if not (principal.levels(setup.layer) & set(WORKFLOW_ROLES)):
        raise AccessDenied(f"attaching a photo needs a role on {setup.layer}")
    current = setup.store.current(conn, number)
    if current is None or current["valid_to"] is not None:
        raise LookupError(f"no open case {number}")
    if current["status"] in ("closed", "rejected"):
        raise Conflict(f"case {number} is {current['status']}: no more photos", [])
    photo = photos.clean(data, content_type)
    photos.store(root, photo)
    with conn.transaction():
        return photos.record(conn, number, photo, _department_name(conn, principal),
                             max_distance_m)


def photo_file(conn: psycopg.Connection, setup: CaseSetup, number: str, sha: str,
               principal: Principal, root):
    """The stored file of a photo of case `number`, for those who may read the case."""
    from . import photos

    require(principal, setup.layer, setup.sharing)
    if not photos.SHA256.match(sha) or conn.execute(
            "select 1 from city.case_photos where case_number = %s and sha256 = %s",
            (number, sha)).fetchone() is None:
        raise LookupError("no such photo of this case")
    return photos.path(root, sha)


def tasks(conn: psycopg.Connection, setup: CaseSetup, principal: Principal) -> list[dict]:
    """The caller department's inbox: its open dispatched cases, overdue first, then by
    deadline."""
    if principal.anonymous:
        raise AuthError("the inbox is a department's: a token is needed")
    require_role(principal, setup.layer, "handle")
    name = _department_name(conn, principal)
    rows = conn.execute(sql.SQL(
        "select fid, deadline from {} where upper_inf(recorded) and upper_inf(valid)"
        " and status = 'dispatched' and department = %s").format(_table(setup.layer)),
        (name,)).fetchall()
    now = _now()
    rows.sort(key=lambda r: (not (r[1] is not None and r[1] < now), r[1] or now, r[0]))
    return [get(conn, setup, fid, principal) for fid, _ in rows]
