"""HTTP: `GET /api/stats` (the topics and parameters) and `GET /api/stats/{topic}` (one
topic's series, JSON or CSV)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gisplatform.api.responses import errors
from gisplatform.errors import problem

from .query import StatsCity, StatsError, make_query
from .topics import TOPICS, check_access, compute, to_csv


def stats_router(sharing: Mapping[str, str], connect, city: StatsCity) -> APIRouter:
    """`sharing`: layer name -> sharing class (the composition root knows the layers);
    `connect()`: a pooled connection context manager; `city`: the city counted."""
    router = APIRouter(prefix="/api/stats", tags=["statistics"], responses=errors(401))

    @router.get("")
    async def topics():
        """The topics, their figures and the parameters every topic takes."""
        return {"topics": [{"id": t.name, "title": t.title, "figures": t.figures,
                            "href": f"/api/stats/{t.name}"} for t in TOPICS.values()],
                "parameters": {"from": f"YYYY-MM, default {city.first_month}",
                               "to": "YYYY-MM, default the current month (UTC+8)",
                               "area": f"6-digit GB/T 2260 code; {city.code} = the whole city; "
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
                           params.get("by"), params.get("known_at"), city=city)
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
        # serialized here: FastAPI's jsonable_encoder walked the ~170 k points of an
        # evaluation by grid for longer than the query took
        return Response(json.dumps(result, ensure_ascii=False, separators=(",", ":")),
                        media_type="application/json")

    return router
