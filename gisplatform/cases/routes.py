"""HTTP: the case workflow (service.py).

    POST /api/cases                        report (a GeoJSON Feature) → 201 + Location
    POST /api/cases/{case_number}/steps    {"action", "department"?, "result"?, "note"?}
    GET  /api/cases/{case_number}          the case, its deadline, overdue and timeline
    GET  /api/cases/limits                 the time limits in effect
    GET  /api/cases/classes                the classes a case is reported under (public)
    PUT  /api/cases/limits                 new limits, from an instant on (cases:manage)
    GET  /api/cases/calendar               the work calendar and working hours
    PUT  /api/cases/calendar               holidays, moved working days (cases:manage)
    GET  /api/cases/departments            the department directory
    PUT  /api/cases/departments            add or rename departments (cases:manage)
    POST /api/cases/{case_number}/photos   a photo (JPEG/PNG/HEIC body) of an open case
    GET  /api/cases/{case_number}/photos/{sha256}.jpg   a photo, for readers of the case
    GET  /api/tasks                        the caller department's inbox
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from gisplatform.api.responses import errors
from gisplatform.errors import problem
from gisplatform.security import current_principal, require, require_role

from . import photos
from .directory import calendar, departments, parse_days, parse_departments, set_days
from .directory import set_departments as set_departments_
from .limits import limits, parse_limits, set_limit
from .service import CaseSetup, add_photo, get, photo_file, report, take_step, tasks
from .workflow import Conflict, Step, WorkflowError

STEP_FIELDS = {"action", "department", "result", "note", "reason"}
MAX_JSON = 64 << 10  # bytes of a report or a step: far more than either needs


def cases_router(setup: Callable[[], CaseSetup], connect, settings,
                 classes: Callable[[], dict] | None = None) -> APIRouter:
    """`setup()`: the workflow's layers (wiring.py); `connect()`: a pooled connection
    context manager; `settings`: the public URL, the data dir (photos), the photo distance;
    `classes()`: the case classes with their names (wiring.py), served when given."""
    public_url = settings.public_url
    photo_root = photos.root(settings.data_dir)
    router = APIRouter(prefix="/api", tags=["city management"], responses=errors(401, 403))
    base = f"{public_url}/api/cases"

    async def body_json(request: Request):
        """The JSON body (None when it is not JSON or over MAX_JSON: a report is small)."""
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_JSON:
            return None
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            return None

    def answer(fn, *args, status: int = 200, headers=None):
        async def run():
            def work():
                with connect() as conn:
                    return fn(conn, *args)
            try:
                out = await run_in_threadpool(work)
            except Conflict as e:
                return JSONResponse(status_code=409, content={
                    "code": "Conflict", "description": str(e), "allowed": e.allowed})
            except WorkflowError as e:  # a photo refused may be a 413 or 415
                return problem(getattr(e, "status", 400), str(e))
            except LookupError as e:
                return problem(404, str(e).strip("'\""))
            return JSONResponse(status_code=status, content=out,
                                headers=headers(out) if headers else None)
        return run()

    @router.post("/cases", status_code=201, responses={
        201: {"description": "The case reported; Location names it."}, **errors(400)})
    async def report_(request: Request):
        """Report a case: a GeoJSON Feature (a CRS84 Point, or null geometry with
        properties.address) with kind, big_class, small_class, description, source."""
        feature = await body_json(request)
        principal = current_principal.get()
        return await answer(lambda conn: report(conn, setup(), feature, principal), status=201,
                            headers=lambda out: {"Location": f"{base}/{out['id']}"})

    @router.get("/cases/limits", responses={200: {"description": "The limits in effect."}})
    async def limits_():
        """The time limits in effect (per kind and big class, hours from dispatch)."""
        require(current_principal.get(), setup().layer, setup().sharing)
        return await answer(lambda conn: {"limits": limits(conn)})

    if classes is not None:
        @router.get("/cases/classes", responses={200: {"description": "The case classes."}})
        async def classes_():
            """The classes a case is reported under: per kind (event 事件, component 部件)
            its big classes and their small classes, with Chinese names. A public code table
            for reporting clients (the phone page /viewer/report.html)."""
            return JSONResponse(classes(), headers={"Cache-Control": "public, max-age=3600"})

    async def manage(request: Request, parse, write, answer_with):
        """A maintenance PUT (a `cases:manage` grant): the body checked by `parse` (400
        with its reason), written by `write(conn, parsed, actor)` in one transaction, then
        `answer_with(conn)`."""
        principal = current_principal.get()
        require_role(principal, setup().layer, "manage")
        try:
            parsed = parse(await body_json(request))
        except WorkflowError as e:
            return problem(400, str(e))
        actor = f"token {principal.token_id} ({principal.department})"

        def put(conn):
            with conn.transaction():
                write(conn, parsed, actor)
            return answer_with(conn)
        return await answer(put)

    def write_limits(conn, parsed, actor):
        items, effective = parsed
        for kind, big, step, hours, unit in items:
            set_limit(conn, kind, big, hours, effective, actor, step, unit)

    def calendar_of(conn, year=None):
        return {"working_hours": settings.case_working_hours, "days": calendar(conn, year)}

    @router.put("/cases/limits", responses={200: {"description": "The limits in effect."},
                                             **errors(400)})
    async def set_limits(request: Request):
        """Set time limits (a `cases:manage` grant): `{"limits": [{kind, big_class, hours,
        step?, unit?}], "effective"?: instant}` — `step` the step timed (register, dispatch,
        handle: the case's deadline, verify, close; default handle), `unit` calendar or
        working hours (default calendar); each applies to clocks that start from
        `effective` (default now) on; the earlier limits stay on record."""
        return await manage(request, parse_limits, write_limits,
                            lambda conn: {"limits": limits(conn)})

    @router.get("/cases/calendar", responses={200: {"description": "The work calendar."},
                                              **errors(400)})
    async def get_calendar(year: int | None = None):
        """The work calendar: the days that break the Monday–Friday week (holidays,
        moved working days), and the working hours of a working day (Beijing time);
        `year`: that year's days only."""
        if year is not None and not 1900 <= year <= 2200:
            return problem(400, "year: 1900 to 2200")
        return await answer(lambda conn: calendar_of(conn, year))

    @router.put("/cases/calendar", responses={200: {"description": "The work calendar."},
                                              **errors(400)})
    async def set_calendar(request: Request):
        """Mark days (a `cases:manage` grant): `{"days": [{"day": "2026-10-01", "working":
        false, "note"?: "国庆节"}, …]}`; applies to deadlines computed from then on."""
        return await manage(request, parse_days, set_days, calendar_of)

    @router.get("/cases/departments", responses={200: {"description": "The directory."}})
    async def get_departments():
        """The department directory cases are dispatched to (code, name)."""
        return await answer(lambda conn: {"departments": departments(conn)})

    @router.put("/cases/departments", responses={200: {"description": "The directory."},
                                                 **errors(400)})
    async def set_departments(request: Request):
        """Add or rename departments (a `cases:manage` grant): `{"departments": [{"code",
        "name"}, …]}`; every change is logged (city.directory_changes)."""
        return await manage(request, parse_departments, set_departments_,
                            lambda conn: {"departments": departments(conn)})

    @router.post("/cases/{case_number}/steps", responses={
        200: {"description": "The case as it now stands."}, **errors(400, 404, 409)})
    async def step_(case_number: str, request: Request):
        """Take a step: register, reject, dispatch, handle, verify, close, suspend, resume."""
        body = await body_json(request)
        principal = current_principal.get()
        if not isinstance(body, dict):
            return problem(400, "the body is a JSON object {action, …}")
        unknown = set(body) - STEP_FIELDS
        if unknown:
            return problem(400, f"unknown fields {sorted(unknown)}")
        if not all(isinstance(body.get(k), (str, type(None))) for k in STEP_FIELDS):
            return problem(400, f"{', '.join(sorted(STEP_FIELDS))}: strings")
        step = Step(body.get("action") or "", body.get("department"), body.get("result"),
                    body.get("note") or body.get("reason"))
        return await answer(lambda conn: take_step(conn, setup(), case_number, step, principal))

    @router.post("/cases/{case_number}/photos", status_code=201, openapi_extra={
        "requestBody": {"required": True, "content": {t: {"schema": {
            "type": "string", "format": "binary"}} for t in photos.TYPES}}},
        responses={201: {"description": "The photo's record."}, **errors(400, 404, 409),
                   413: {"description": "Over 10 MB."}, 415: {"description": "Not an image."}})
    async def add_photo_(case_number: str, request: Request):
        """Attach a photo (JPEG, PNG or HEIC; stored as a JPEG keeping only when and where
        it was taken) to an open case."""
        principal = current_principal.get()
        length = request.headers.get("content-length")
        if length is None:
            return problem(411, f"Content-Length is required (a photo up to "
                                f"{photos.MAX_BYTES >> 20} MB)", code="LengthRequired")
        if not length.isdigit() or int(length) > photos.MAX_BYTES:
            return problem(413, f"the photo is over {photos.MAX_BYTES >> 20} MB")
        data = await request.body()
        kind = request.headers.get("content-type", "")
        return await answer(lambda conn: add_photo(
            conn, setup(), case_number, data, kind, principal, photo_root,
            settings.case_photo_max_distance_m), status=201)

    @router.get("/cases/{case_number}/photos/{name}", response_class=FileResponse, responses={
        200: {"description": "The photo.", "content": {"image/jpeg": {}}}, **errors(404)})
    async def photo_(case_number: str, name: str):
        """A photo of a case (for those who may read the case)."""
        principal = current_principal.get()
        sha = name.removesuffix(".jpg")

        def find():
            with connect() as conn:
                return photo_file(conn, setup(), case_number, sha, principal, photo_root)
        try:
            where = await run_in_threadpool(find)
        except LookupError as e:
            return problem(404, str(e).strip("'\""))
        return FileResponse(where, media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=86400"})

    @router.get("/cases/{case_number}", responses={200: {"description": "The case."},
                                                   **errors(404)})
    async def case_(case_number: str):
        """The case with its status, deadline, overdue flag and timeline."""
        principal = current_principal.get()
        return await answer(lambda conn: get(conn, setup(), case_number, principal))

    @router.get("/tasks", responses={200: {"description": "The inbox."}})
    async def tasks_():
        """The caller department's open dispatched cases, overdue first, then by deadline."""
        principal = current_principal.get()
        return await answer(lambda conn: {"cases": tasks(conn, setup(), principal)})

    return router
