"""`GET /api/search?q=…`: find a place by address, building code, credit code or camera id.

One query per searchable layer over its current snapshot, only for layers the caller may
read (the same `security.access` decision as every other path); codes match by prefix
(an index range scan on the fid), names and addresses by substring. Labels carry no
personal field. Each hit says where it is (point, bbox) and links to its OGC item.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from psycopg import sql
from starlette.concurrency import run_in_threadpool

from gisplatform.security import access, current_principal

from .responses import SearchResults, errors


@dataclass(frozen=True)
class Searchable:
    layer: str
    sharing: str
    label: str  # SQL expression over the snapshot view's non-personal columns
    text: str | None = None  # a column matched by substring, besides the fid prefix


def search_router(searchables: list[Searchable], connect, public_url: str) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["platform"], responses=errors(401))  # unknown token

    @router.get("/search", responses={200: {"model": SearchResults}, **errors(400)})
    async def search(q: str = Query(..., min_length=2, max_length=100,
                                    description="address text, building code, credit code, "
                                                "legal person name or camera id"),
                     limit: int = Query(10, ge=1, le=50)):
        """Places matching `q` in the layers the caller may read, codes first."""
        principal = current_principal.get()
        layers = [s for s in searchables if access(principal, s.layer, s.sharing).read]
        text = q.strip()
        if "\x00" in text:  # PostgreSQL text cannot hold NUL (was a 500)
            return JSONResponse(status_code=400, content={
                "code": "InvalidParameterValue", "description": "q: no NUL characters"})
        if len(text) < 2:
            return JSONResponse(status_code=400, content={
                "code": "InvalidParameterValue", "description": "q: at least 2 characters"})

        def run():
            out = []
            with connect() as conn:
                for s in layers:
                    out += _search(conn, s, text, limit - len(out), public_url)
                    if len(out) >= limit:
                        break
            return out
        return {"query": text, "results": await run_in_threadpool(run)}

    return router


def _search(conn, s: Searchable, text: str, limit: int, public_url: str) -> list[dict]:
    view = sql.Identifier("city", s.layer.replace("-", "_"))
    like = sql.SQL(" or {} ilike %(pattern)s").format(sql.Identifier(s.text)) if s.text else sql.SQL("")
    q = sql.SQL("""
        select fid, {label}, st_x(p), st_y(p), st_xmin(e), st_ymin(e), st_xmax(e), st_ymax(e)
        from (select fid, {label_src}, st_pointonsurface(geom) as p, geom::box2d as e,
                     (fid >= %(lo)s and fid < %(hi)s) as by_code
              from {view}
              where (fid >= %(lo)s and fid < %(hi)s){like}
              limit %(limit)s) t
        order by by_code desc, fid""").format(
        label=sql.Identifier("label"), label_src=sql.SQL(s.label + " as label"), view=view, like=like)
    rows = conn.execute(q, {"lo": text, "hi": text + "\U0010ffff",
                            "pattern": f"%{_escape(text)}%", "limit": limit}).fetchall()
    return [{"layer": s.layer, "fid": fid, "label": label, "lon": x, "lat": y,
             "bbox": [w, so, e, n],
             "item": f"{public_url}/ogc/collections/{s.layer}/items/{fid}"}
            for fid, label, x, y, w, so, e, n in rows]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
