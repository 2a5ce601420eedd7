"""OGC API Processes: analyses that answer with aggregates or public fields only.

Each process asks gisplatform.security like every other read path; personal layers
only ever contribute counts. A process that needs a grant says so in `authorize(inputs)`,
which guards.execute_needs_an_object calls before pygeoapi's job manager runs it (the
manager turns any exception into a failed job, a 400): no token is a 401, a token
without the grant a 403.
"""

from __future__ import annotations

import json

from psycopg import sql
from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from gisplatform.security import SMALL_COUNT, current_principal, require
from gisplatform.temporal import contains_sql, spatial_first

from . import catalog
from .provider import parse_datetime


def _meta(pid: str, title: str, description: str, inputs: dict, outputs: dict, example: dict) -> dict:
    return {"version": "1.0.0", "id": pid, "title": {"en": title}, "description": {"en": description},
            "jobControlOptions": ["sync-execute"], "keywords": ["gisplatform"], "links": [],
            "inputs": inputs, "outputs": outputs, "example": {"inputs": example}}


GEOMETRY_IN = {"title": "geometry", "description": "GeoJSON geometry in CRS84 (lon, lat)",
               "schema": {"type": "object"}, "minOccurs": 1, "maxOccurs": 1}
DATETIME_IN = {"title": "datetime", "description": "instant (RFC 3339 with zone); default now",
               "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1}
JSON_OUT = {"result": {"title": "result", "schema": {"type": "object",
                                                     "contentMediaType": "application/json"}}}
SQUARE = {"type": "Polygon", "coordinates": [[[123.88, 41.86], [123.9, 41.86], [123.9, 41.875],
                                              [123.88, 41.875], [123.88, 41.86]]]}


def _geometry(data: dict) -> str:
    g = data.get("geometry")
    if not isinstance(g, dict) or "type" not in g:
        raise ProcessorExecuteError(user_msg="input 'geometry' must be a GeoJSON geometry")
    return json.dumps(g)


def _instant(data: dict, key: str = "datetime"):
    try:
        when = parse_datetime(data.get(key))
    except Exception as e:  # ProviderInvalidQueryError carries the reason
        raise ProcessorExecuteError(user_msg=getattr(e, "message", str(e))) from None
    if isinstance(when, tuple):
        raise ProcessorExecuteError(user_msg=f"{key} must be an instant")
    return when


def _run(query: sql.Composable, params: dict) -> list[tuple]:
    try:
        with catalog.pool().connection() as conn:
            return conn.execute(query, params).fetchall()
    except Exception as e:  # bad geometry and the like reach us as database errors
        if getattr(e, "sqlstate", "") and str(e.sqlstate).startswith(("22", "XX")):
            raise ProcessorExecuteError(user_msg=f"invalid input: {str(e).splitlines()[0]}") from None
        raise


GEOM_SQL = "st_setsrid(st_geomfromgeojson(%(geom)s), 4490)"


class PopulationInPolygon(BaseProcessor):
    ID = "population-in-polygon"

    def __init__(self, processor_def):
        super().__init__(processor_def, _meta(
            self.ID, "Population in a polygon",
            "Residents (registered / floating) living in the polygon at a datetime. Aggregate "
            f"only; counts under {SMALL_COUNT} are suppressed.",
            {"geometry": GEOMETRY_IN, "datetime": DATETIME_IN}, JSON_OUT,
            {"geometry": SQUARE, "datetime": "2024-01-01T00:00:00+08:00"}))

    def execute(self, data, outputs=None):
        geom, when = _geometry(data), _instant(data)
        (total, reg, flo), = _run(sql.SQL(
            "select count(*), count(*) filter (where household_type = 'registered'),"
            " count(*) filter (where household_type = 'floating')"
            " from " + spatial_first("city.persons_version", "p", f"p.geom && {GEOM_SQL}",
                                     "p.geom, p.valid, p.recorded, p.household_type")
            + " where upper_inf(p.recorded) and "
            + contains_sql("p.valid", "coalesce(%(at)s::timestamptz, now())")
            + f" and st_intersects(p.geom, {GEOM_SQL})"), {"geom": geom, "at": when})

        def safe(n):
            # a count of 1 in a small polygon is a person
            return n if n == 0 or n >= SMALL_COUNT else None
        return "application/json", {
            "datetime": when.isoformat() if when else "now", "total": safe(total),
            "registered": safe(reg), "floating": safe(flo),
            "suppressed": any(0 < n < SMALL_COUNT for n in (total, reg, flo))}


class CamerasCovering(BaseProcessor):
    ID = "cameras-covering"

    def __init__(self, processor_def):
        super().__init__(processor_def, _meta(
            self.ID, "Cameras whose view covers a place",
            "Cameras whose view cone intersects the geometry (a point or polygon) at a datetime. "
            "Needs a read grant on cameras; stream addresses are never returned.",
            {"geometry": GEOMETRY_IN, "datetime": DATETIME_IN}, JSON_OUT,
            {"geometry": {"type": "Point", "coordinates": [123.89, 41.87]}}))

    def authorize(self, inputs: dict) -> None:
        cams = catalog.get("cameras")
        require(current_principal.get(), cams.layer, cams.sharing)

    def execute(self, data, outputs=None):
        self.authorize(data)
        geom, when = _geometry(data), _instant(data)
        rows = _run(sql.SQL(
            "select device_id, name, sector, status, azimuth,"
            f" round(st_distance(c.geom::geography, st_centroid({GEOM_SQL})::geography)::numeric, 1)"
            " from city.cameras_version c where upper_inf(c.recorded)"
            " and c.valid @> coalesce(%(at)s::timestamptz, now())"
            f" and st_dwithin(c.geom::geography, {GEOM_SQL}::geography, coalesce(c.range_m, 0))"
            f" and st_intersects(city.view_cone(c.geom, c.azimuth, c.fov, c.range_m), {GEOM_SQL})"
            " order by 6, device_id"), {"geom": geom, "at": when})
        return "application/json", {"cameras": [
            {"device_id": r[0], "name": r[1], "sector": r[2], "status": r[3], "azimuth": r[4],
             "distance_m": float(r[5])} for r in rows]}


class CaseHotspots(BaseProcessor):
    ID = "case-hotspots"

    def __init__(self, processor_def):
        super().__init__(processor_def, _meta(
            self.ID, "City-management case hot spots",
            "Cases reported in [start, end) per unit grid cell, busiest first.",
            {"start": {**DATETIME_IN, "minOccurs": 1, "title": "start"},
             "end": {**DATETIME_IN, "minOccurs": 1, "title": "end"},
             "kind": {"title": "kind", "schema": {"type": "string", "enum": ["event", "component"]},
                      "minOccurs": 0, "maxOccurs": 1},
             "top": {"title": "top", "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                     "minOccurs": 0, "maxOccurs": 1}}, JSON_OUT,
            {"start": "2024-01-01T00:00:00+08:00", "end": "2025-01-01T00:00:00+08:00", "top": 10}))

    def execute(self, data, outputs=None):
        start, end = _instant(data, "start"), _instant(data, "end")
        if start is None or end is None or end <= start:
            raise ProcessorExecuteError(user_msg="give start and end instants, end after start")
        top = data.get("top", 20)
        if not isinstance(top, int) or not 1 <= top <= 1000:
            raise ProcessorExecuteError(user_msg="top is an integer 1..1000")
        kind = data.get("kind")
        if kind not in (None, "event", "component"):
            raise ProcessorExecuteError(user_msg="kind is event or component")
        # count(*) counts cases: current versions that are open-ended are one per case
        # (the exclusion constraint), and a hash aggregate over the covering index of
        # migration 0016 is what makes it fast (count(distinct) sorted 270 k rows: 0.55 s)
        rows = _run(sql.SQL(
            "select c.grid_code, count(*) n,"
            " count(*) filter (where c.handled_at > c.deadline) overdue"
            " from city.cases_version c where upper_inf(c.recorded) and upper_inf(c.valid)"
            " and c.reported_at >= %(s)s and c.reported_at < %(e)s and c.grid_code is not null"
            " and (%(k)s::text is null or c.kind = %(k)s)"
            " group by c.grid_code order by n desc, c.grid_code limit %(top)s"),
            {"s": start, "e": end, "k": kind, "top": top})
        return "application/json", {"cells": [
            {"grid_code": r[0], "cases": r[1], "overdue": r[2]} for r in rows]}


class LegalPersonsNear(BaseProcessor):
    ID = "legal-persons-near"

    def __init__(self, processor_def):
        super().__init__(processor_def, _meta(
            self.ID, "Legal persons near a feature",
            "Legal persons within a distance (metres) of a feature of any collection you may read.",
            {"collection": {"title": "collection", "schema": {"type": "string"}, "minOccurs": 1, "maxOccurs": 1},
             "id": {"title": "feature id", "schema": {"type": "string"}, "minOccurs": 1, "maxOccurs": 1},
             "distance": {"title": "distance (m)", "schema": {"type": "number", "minimum": 0,
                                                              "maximum": 5000}, "minOccurs": 1, "maxOccurs": 1},
             "datetime": DATETIME_IN}, JSON_OUT,
            {"collection": "buildings", "id": "21040200000001", "distance": 200}))

    def authorize(self, inputs: dict) -> None:
        coll = catalog.collections().get(inputs.get("collection"))
        if coll is not None:  # an unknown one is the 400 of execute
            require(current_principal.get(), coll.layer, coll.sharing)

    def execute(self, data, outputs=None):
        cid, fid, dist = data.get("collection"), data.get("id"), data.get("distance")
        coll = catalog.collections().get(cid)
        if coll is None or coll.kind != catalog.SNAPSHOT:
            raise ProcessorExecuteError(user_msg=f"unknown collection {cid!r}")
        self.authorize(data)
        if not isinstance(dist, (int, float)) or not 0 <= dist <= 5000:
            raise ProcessorExecuteError(user_msg="distance is a number of metres, 0..5000")
        when = _instant(data)
        # `l.geom && reach`: the geometry index finds the candidates (the distance on
        # geography has none: 0.7 s for every legal person of the city, 10 ms with it).
        # `reach` is the feature's box grown by more degrees than `d` metres span at its
        # highest latitude (≥ 110 000 m a degree of latitude, ≥ that × cos φ of longitude).
        at = "coalesce(%(at)s::timestamptz, now())"
        rows = _run(sql.SQL(
            "with f as (select geom, st_expand(geom, %(d)s / (110000.0 * cos(radians(least(89.0,"
            "   greatest(abs(st_ymin(geom)), abs(st_ymax(geom))) + %(d)s / 110000.0))))) reach"
            "  from {vt} where fid = %(fid)s and upper_inf(recorded) and "
            + contains_sql("valid", at) + " limit 1)"
            " select l.credit_code, l.name, l.industry_code, l.status,"
            "  round(st_distance(l.geom::geography, f.geom::geography)::numeric, 1) d"
            " from city.legal_persons_version l, f where l.geom && f.reach"
            " and upper_inf(l.recorded) and " + contains_sql("l.valid", at) +
            " and st_dwithin(l.geom::geography, f.geom::geography, %(d)s)"
            " order by d, l.credit_code").format(
                vt=sql.Identifier("city", coll.spec.version_table)),
            {"fid": str(fid), "at": when, "d": float(dist)})
        return "application/json", {"legal_persons": [
            {"credit_code": r[0], "name": r[1], "industry_code": r[2], "status": r[3],
             "distance_m": float(r[4])} for r in rows]}


class StatsTimeseries(BaseProcessor):
    """The command-centre statistics of /api/stats/{topic} (gisplatform/stats) as a
    process: the same parameters, checks and JSON. The city counted comes in the processor
    definition (`city`: the `StatsCity` fields), which the composition root passes to
    config.build through mount.ogc_app."""
    ID = "stats-timeseries"

    def __init__(self, processor_def):
        from gisplatform.stats import EVALUATION_GROUPS, TOPICS, StatsCity

        city = StatsCity(**processor_def["city"])

        def text(title, description, **schema):
            return {"title": title, "description": description,
                    "schema": {"type": "string", **schema}, "minOccurs": 0, "maxOccurs": 1}
        super().__init__(processor_def, _meta(
            self.ID, "Command-centre statistics: monthly series by area",
            f"Monthly series by admin area (6-digit GB/T 2260 code; {city.code} = the whole city): "
            "population, legal persons, buildings, cameras, cases, and the evaluation figures "
            "(on-time closing rate, overdue count, rework rate) per area, department or grid. "
            "Aggregates only; the same answer as GET /api/stats/{topic}.",
            {"topic": {**text("topic", "what to count", enum=list(TOPICS)), "minOccurs": 1},
             "from": text("from", f"first month, YYYY-MM (default {city.first_month})",
                          pattern=r"^\d{4}-\d{2}$"),
             "to": text("to", "last month, YYYY-MM (default the current month, UTC+8)",
                        pattern=r"^\d{4}-\d{2}$"),
             "area": text("area", "one area's 6-digit code (default all)", pattern=r"^\d{6}$"),
             "by": text("by", "evaluation only: group by", enum=list(EVALUATION_GROUPS)),
             "known_at": text("known_at", "instant: count what was known then")}, JSON_OUT,
            {"topic": "population", "from": "2024-01", "to": "2024-12", "area": "210402"}))
        self.city = city

    def authorize(self, inputs: dict) -> None:
        from gisplatform.stats import TOPICS, check_access

        if inputs.get("topic") in TOPICS:  # an unknown one is the 400 of execute
            check_access(inputs["topic"],
                         {c.layer: c.sharing for c in catalog.collections().values()})

    def execute(self, data, outputs=None):
        from gisplatform.stats import (
            StatsError,
            check_access,
            compute,
            make_query,
        )

        params = {k: data.get(k) for k in ("topic", "from", "to", "area", "by", "known_at")}
        for k, v in params.items():
            if v is not None and not isinstance(v, str):
                raise ProcessorExecuteError(user_msg=f"{k} must be a string")
        try:
            q = make_query(params["topic"] or "", params["from"], params["to"], params["area"],
                           params["by"], params["known_at"], city=self.city)
            check_access(q.topic, {c.layer: c.sharing for c in catalog.collections().values()})
            with catalog.pool().connection() as conn:
                return "application/json", compute(conn, q)
        except StatsError as e:
            raise ProcessorExecuteError(user_msg=str(e)) from None


class Geocode(BaseProcessor):
    """Geocoding (gisplatform/geocode) as a process: one address, or up to MAX_ADDRESSES,
    each answered as /api/geocode answers it. The layers read and the platform's public URL
    come in the processor definition (`sources`, `public_url`), from the composition root."""
    ID = "geocode"
    MAX_ADDRESSES = 1000

    def __init__(self, processor_def):
        from gisplatform.geocode import Source, Sources

        super().__init__(processor_def, _meta(
            self.ID, "Geocode Chinese addresses (地名地址匹配)",
            "Ranked candidates for each address as written (Chinese numerals, full-width "
            "characters, missing city or district, noise such as 楼下 or 附近, typos): score "
            "0–1 (≥ 0.8 a match), level, standard address, point, division and grid cell "
            "codes. The same answer as GET /api/geocode, for one address or a list.",
            {"address": {"title": "address", "description": "one address",
                         "schema": {"type": "string", "maxLength": 200},
                         "minOccurs": 0, "maxOccurs": 1},
             "addresses": {"title": "addresses", "description": f"up to {self.MAX_ADDRESSES}",
                           "schema": {"type": "array", "items": {"type": "string"},
                                      "maxItems": self.MAX_ADDRESSES},
                           "minOccurs": 0, "maxOccurs": 1},
             "limit": {"title": "limit", "description": "candidates per address (1..50)",
                       "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
                       "minOccurs": 0, "maxOccurs": 1},
             "datetime": {"title": "datetime", "description": "geocode against the city at "
                          "this instant (default now)", "schema": {"type": "string"},
                          "minOccurs": 0, "maxOccurs": 1}}, JSON_OUT,
            {"address": "新抚区榆林一路三十九号楼下", "limit": 3}))
        d = processor_def["sources"]
        self.sources = Sources(**{k: Source(**v) if v else None for k, v in d.items()})
        self.public_url = processor_def.get("public_url", "")

    def authorize(self, inputs: dict) -> None:
        require(current_principal.get(), self.sources.addresses.layer,
                self.sources.addresses.sharing)

    def execute(self, data, outputs=None):
        from gisplatform.geocode import AddressError, check_query, geocode
        from gisplatform.geocode.routes import feature, instant

        one, many = data.get("address"), data.get("addresses")
        limit = data.get("limit", 5)
        try:
            if (one is None) == (many is None):
                raise AddressError("give address (one) or addresses (a list)")
            texts = [one] if many is None else many
            if not isinstance(texts, list) or len(texts) > self.MAX_ADDRESSES:
                raise AddressError(f"addresses: a list of at most {self.MAX_ADDRESSES}")
            texts = [check_query(t) for t in texts]
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50:
                raise AddressError("limit: an integer 1..50")
            at = instant(data.get("datetime"))
            with catalog.pool().connection() as conn:
                answers = [{"type": "FeatureCollection", "query": t, "datetime": at.isoformat(),
                            "features": [feature(c, self.public_url) for c in geocode(
                                conn, self.sources, t, at, limit)]} for t in texts]
        except AddressError as e:
            raise ProcessorExecuteError(user_msg=str(e)) from None
        return "application/json", answers[0] if many is None else {"results": answers}


PROCESSES = (PopulationInPolygon, CamerasCovering, CaseHotspots, LegalPersonsNear, StatsTimeseries,
             Geocode)
