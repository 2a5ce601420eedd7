"""The platform's own routes: `/` (opens the viewer), `/health`, `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gisplatform import __version__
from gisplatform.observability import Metrics

from .responses import Health, media_types


def runtime_gauges(app_pool, ogc_pool, tile_cache):
    """Pool and cache figures for /metrics, read at scrape time."""
    pools = {"async": app_pool.get_stats(), "ogc": ogc_pool.get_stats()}
    out = []
    for stat, help_ in (("pool_size", "connections open"), ("pool_available", "idle connections"),
                        ("requests_waiting", "requests waiting for a connection"),
                        ("connections_errors", "connection attempts that failed")):
        out.append((f"gisplatform_db_{stat}", help_,
                    {(("pool", name),): s.get(stat, 0) for name, s in pools.items()}))
    cache = tile_cache.stats()
    out.append(("gisplatform_tile_cache",
                "tile cache: tiles, bytes, hits, misses, evictions, disk write errors",
                {(("figure", k),): v for k, v in cache.items()}))
    return out


def platform_router(metrics: Metrics, backup_status=lambda: None) -> APIRouter:
    """`backup_status()`: the newest backup's state for /health (gisplatform/backup)."""
    router = APIRouter(tags=["platform"])

    @router.get("/", include_in_schema=False)
    async def index():
        return RedirectResponse("/viewer/", status_code=307)

    @router.get("/metrics", response_class=Response,
                responses=media_types("text/plain", description="Prometheus text format 0.0.4"))
    async def prometheus():
        """Prometheus text format: requests, latency, connection pools, tile cache
        (this worker's figures)."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @router.get("/health", responses={
        200: {"model": Health}, 503: {"model": Health, "description": "The database is unreachable."}})
    async def health(request: Request):
        """Database reachability and versions; 503 while the database is unreachable. The
        newest backup's age and size, with a warning when there is none or it is old (the
        platform still serves: never a failure)."""
        backup = await run_in_threadpool(backup_status)
        try:
            async with request.app.state.pool.connection(timeout=3) as conn:
                cur = await conn.execute(
                    "select current_setting('server_version'), postgis_lib_version()")
                pg, postgis = await cur.fetchone()
        except Exception as e:  # any failure here means "not healthy", reported, not raised
            return JSONResponse(status_code=503, content={
                "status": "unavailable", "version": __version__,
                "database": {"reachable": False, "error": type(e).__name__},
                "backup": backup})
        return {"status": "ok", "version": __version__,
                "database": {"reachable": True, "postgresql": pg, "postgis": postgis},
                "backup": backup}
    return router
