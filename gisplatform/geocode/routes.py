"""HTTP: `GET /api/geocode?q=…` (a GeoJSON FeatureCollection, best first) and
`GET /api/reverse?lon=&lat=` (what is at a point), both with `datetime=`; and batch
geocoding as a job (api/jobs.py), for a token:

    POST /api/geocode/batch?column=address&datetime=…   (body: text/csv, UTF-8 or GB18030)
         -> 202, Location: /api/geocode/batch/{id}
    GET  /api/geocode/batch/{id}              status, progress (rows), error
    GET  /api/geocode/batch/{id}/result.csv   the CSV with the geocode_* columns (batch.py)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from gisplatform.api.jobs import Jobs, owned, times, unfinished
from gisplatform.api.responses import errors
from gisplatform.crs import CRSError, to_storage
from gisplatform.db.connections import connect as connect_db
from gisplatform.errors import problem
from gisplatform.security import AuthError, current_principal, require
from gisplatform.temporal import TemporalError, parse_request_instant

from .batch import check_header, decode_csv, geocode_rows, write_csv
from .geocoder import MAX_LIMIT, Candidate, Sources, geocode, reverse
from .parse import AddressError, check_query


def instant(value: str | None) -> datetime:
    """`datetime=` (an instant or a date: its midnight in the city), default now."""
    from datetime import UTC

    if value is None or not value.strip():
        return datetime.now(UTC)
    try:
        return parse_request_instant(value)
    except TemporalError as e:
        raise AddressError(f"datetime: {e}") from None


def number(text: str, name: str) -> float:
    """A finite number from a query parameter, or AddressError naming it (a 400 in the one
    error shape, not FastAPI's 422)."""
    try:
        value = float(text)
    except ValueError:
        raise AddressError(f"{name}: a number is required, got {text!r}") from None
    if not math.isfinite(value):
        raise AddressError(f"{name}: a finite number is required, got {text!r}")
    return value


def feature(c: Candidate, public_url: str) -> dict:
    """A candidate as a GeoJSON Feature (the contract of /api/geocode)."""
    props = {"score": c.score, "level": c.level, "address": c.address,
             "division_code": c.division_code, "grid_code": c.grid_code}
    if c.layer is not None:
        props["layer"] = c.layer
        props["item"] = f"{public_url}/ogc/collections/{c.layer}/items/{c.fid}"
    if "nearest" in c.extra:  # a road: the standard address nearest the number asked
        props["nearest_address"] = c.extra["nearest"]
    return {"type": "Feature", "id": c.fid,
            "geometry": {"type": "Point", "coordinates": [round(c.lon, 7), round(c.lat, 7)]},
            "properties": props}


BATCH_MAX_BYTES = 50 << 20
BATCH_MAX_ROWS = 200_000


def geocode_router(sources: Callable[[], Sources], connect, url: str, settings,
                   city_bbox: tuple[float, float, float, float]) -> APIRouter:
    """`sources()`: the layers read (as published now); `connect()`: a pooled connection
    context manager (requests); `url`: the database, for batch jobs' own connections (a
    job of minutes holds no pool connection); `city_bbox` (EPSG:4490): where a
    reverse-geocoded point may lie."""
    public_url = settings.public_url
    jobs = Jobs(Path(settings.data_dir) / "geocode-jobs", settings.exports_ttl_hours, 1,
                "geocode", expected=(AddressError,))
    base = f"{public_url}/api/geocode/batch"

    router = APIRouter(prefix="/api", tags=["geocoding"], responses=errors(401, 403),
                       lifespan=jobs.lifespan)

    @router.get("/geocode", responses=errors(400))
    async def geocode_(q: str = Query("", description="an address, a place or an area"),
                       limit: str = Query("5", description=f"1..{MAX_LIMIT}"),
                       datetime: str | None = Query(None, description="instant or date; "
                                                    "default now")):
        """Ranked candidates for an address: a GeoJSON FeatureCollection, best first; each
        feature's `score` (0–1; ≥ 0.8 a match), `level`, standard `address`,
        `division_code`, `grid_code` and its OGC item."""
        try:
            text = check_query(q)
            at = instant(datetime)
            n = number(limit, "limit")
            if n != int(n) or not 1 <= n <= MAX_LIMIT:
                raise AddressError(f"limit: an integer 1..{MAX_LIMIT}, got {limit!r}")
        except AddressError as e:
            return problem(400, str(e))

        def run():
            with connect() as conn:
                return geocode(conn, sources(), text, at, int(n))
        found = await run_in_threadpool(run)
        return {"type": "FeatureCollection", "query": text, "datetime": at.isoformat(),
                "features": [feature(c, public_url) for c in found]}

    @router.get("/reverse", responses=errors(400))
    async def reverse_(lon: str = Query("", description="x in `crs` (longitude, easting)"),
                       lat: str = Query("", description="y in `crs` (latitude, northing)"),
                       crs: str = Query("EPSG:4490", description="EPSG code, CRS URI, "
                                        "GCJ02 or BD09; x/y in traditional GIS order"),
                       datetime: str | None = Query(None, description="instant or date; "
                                                    "default now")):
        """What is at a point: the nearest standard address and its distance, the building
        containing it, its grid cell, community, street and district, the responsibility
        zone (门前三包)."""
        try:
            at = instant(datetime)
            lon_, lat_ = number(lon, "lon"), number(lat, "lat")
            try:
                x, y = (float(v[0]) for v in to_storage(crs)(np.array([lon_]), np.array([lat_])))
            except CRSError as e:
                raise AddressError(f"crs: {e}") from None
            w, s, e_, n = city_bbox
            if not (w <= x <= e_ and s <= y <= n):
                swapped = w <= lat_ <= e_ and s <= lon_ <= n
                raise AddressError(
                    f"({lon}, {lat}) in {crs} is outside the city ({w}..{e_} E, {s}..{n} N)"
                    + ("; lon and lat swapped?" if swapped else ""))
        except AddressError as err:
            return problem(400, str(err))

        def run():
            with connect() as conn:
                return reverse(conn, sources(), x, y, at)
        out = await run_in_threadpool(run)
        if out["address"] is not None:
            out["address"] = feature(out["address"], public_url)
        return {"lon": x, "lat": y, "datetime": at.isoformat(), **out}

    @router.post("/geocode/batch", status_code=202, openapi_extra={"requestBody": {
        "required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
        responses={202: {"description": "Accepted: the job; Location names it."},
                   **errors(400), 413: {"description": "Over 50 MB or 200 000 rows."}})
    async def batch(request: Request, column: str = Query("address", description="the "
                                                           "address column"),
                    datetime: str | None = Query(None, description="instant or date; "
                                                 "default now")):
        """Geocode a CSV (a job for a token): each row's best candidate, score and level."""
        principal = current_principal.get()
        if principal.anonymous:
            raise AuthError("batch geocoding needs a token (Authorization: Bearer …): a job "
                            "belongs to the token that asked for it")
        src = sources()
        require(principal, src.addresses.layer, src.addresses.sharing)
        if (request.headers.get("content-type") or "").split(";")[0].strip() != "text/csv":
            return problem(415, "send the CSV as text/csv (UTF-8 or GB18030)")
        length = request.headers.get("content-length")
        if length is None:
            return problem(411, "Content-Length is required (a CSV up to 50 MB)",
                           code="LengthRequired")
        if not length.isdigit() or int(length) > BATCH_MAX_BYTES:
            return problem(413, "the CSV is over 50 MB")
        body = await request.body()
        try:
            at = instant(datetime)
            header, rows = decode_csv(body)
        except AddressError as e:
            return problem(400, str(e))
        except csv.Error as e:
            return problem(400, f"not a CSV: {e}")
        why = check_header(header, column)
        if why:
            return problem(400, why)
        if len(rows) > BATCH_MAX_ROWS:
            return problem(413, f"{len(rows)} rows: at most {BATCH_MAX_ROWS} per job")
        job = await run_in_threadpool(jobs.new, principal, {
            "column": column, "datetime": at.isoformat(), "total": len(rows), "matched": None})

        def work(job: dict, progress) -> None:
            with connect_db(url, "gisplatform-geocode-batch", autocommit=True) as conn:
                job["matched"] = write_csv(
                    jobs.dir / job["id"] / "result.csv", header,
                    geocode_rows(conn, src, rows, column, at, principal),
                    lambda n: progress(n, len(rows)))
        jobs.start(job, work)
        return JSONResponse(status_code=202, content=_batch_view(job, base),
                            headers={"Location": f"{base}/{job['id']}"})

    @router.get("/geocode/batch/{job_id}", responses={200: {"description": "The job."},
                                                      **errors(404)})
    async def batch_status(job_id: str):
        """A batch job's status and progress (its owner's token only)."""
        job = await owned(jobs, job_id, "geocoding")
        return _batch_view(job, base) if isinstance(job, dict) else job

    @router.get("/geocode/batch/{job_id}/result.csv", response_class=FileResponse, responses={
        200: {"description": "The CSV.", "content": {"text/csv": {}}}, **errors(404),
        409: {"description": "The job has not finished, or failed."}})
    async def batch_result(job_id: str):
        """The geocoded CSV, once the job is done (its owner's token only)."""
        job = await owned(jobs, job_id, "geocoding")
        if not isinstance(job, dict):
            return job
        if (refusal := unfinished(job, "job")) is not None:
            return refusal
        return FileResponse(jobs.dir / job["id"] / "result.csv",
                            media_type="text/csv; charset=utf-8", filename="geocoded.csv",
                            headers={"Cache-Control": "private, no-store"})

    return router


def _batch_view(job: dict, base: str) -> dict:
    out = {k: job.get(k) for k in ("id", "status", "column", "datetime", "matched", "error")}
    out.update(times(job), progress={"rows": job["rows"], "total": job["total"]})
    out["links"] = [{"rel": "self", "type": "application/json", "href": f"{base}/{job['id']}"}]
    if job["status"] == "done":
        out["links"].append({"rel": "enclosure", "type": "text/csv",
                             "href": f"{base}/{job['id']}/result.csv"})
    return out
