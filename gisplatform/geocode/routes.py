"""HTTP: `GET /api/geocode?q=…` (a GeoJSON FeatureCollection, best first) and
`GET /api/reverse?lon=&lat=` (what is at a point), both with `datetime=`."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

import numpy as np
from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from gisplatform.api.responses import errors
from gisplatform.crs import CRSError, to_storage
from gisplatform.errors import problem
from gisplatform.temporal import TemporalError, parse_request_instant

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


def geocode_router(sources: Callable[[], Sources], connect, public_url: str,
                   city_bbox: tuple[float, float, float, float]) -> APIRouter:
    """`sources()`: the layers read (as published now); `connect()`: a pooled connection
    context manager; `city_bbox` (EPSG:4490): where a reverse-geocoded point may lie."""
    router = APIRouter(prefix="/api", tags=["geocoding"], responses=errors(401, 403))

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

    return router
