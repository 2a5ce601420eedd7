"""The one ASGI app (composition root): every HTTP surface is mounted here."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from tiles.cache import TileCache
from tiles.invalidation import TileInvalidator
from tiles.routes import CachedTileFastPath, tile_router
from tiles.service import TileService

from . import __version__
from .api.responses import Health, errors, media_types
from .config import Settings, get_settings
from .db.embedded import database_url
from .db.pool import make_pool
from .errors import database_unavailable, problem, refusal
from .errors import install as install_error_handlers
from .observability import Metrics, RequestLog, configure_logging
from .ogc import catalog
from .ogc.mount import ogc_app
from .ogc.provider import close_pools, pool
from .security import (
    ANONYMOUS,
    AuthError,
    current_principal,
    personal_masks,
    presented_secret,
    principal_for_token_async,
)

# the PATCH route reads its body itself; this tells clients (and schemathesis) its shape
PATCH_BODY = {"requestBody": {"required": True, "content": {"application/geo+json": {"schema": {
    "type": "object", "description": "a partial GeoJSON Feature: the properties (and "
    "geometry) to change", "properties": {"properties": {"type": "object"},
                                          "geometry": {"type": "object"}}}}}}}


def ogc_collections() -> list[catalog.Collection]:
    """Every layer as a snapshot and a history collection, plus the population aggregates."""
    from gisplatform.temporal import LayerSpec
    from layers import LAYERS
    from layers.population import PERSONS

    out = []
    for layer in LAYERS.values():
        personal = personal_masks(layer.spec.attributes)
        for kind, cid in ((catalog.SNAPSHOT, layer.name), (catalog.HISTORY, f"{layer.name}-history")):
            out.append(catalog.Collection(
                cid, kind, layer.spec, layer.sharing, layer.department, layer.keywords, personal,
                prepare=_row_checker(layer) if kind == catalog.SNAPSHOT else None,
                tiles=layer.name if kind == catalog.SNAPSHOT else None))
    for cid, level, title in (("population-grid", "grid", "人口网格统计 Population per grid cell"),
                              ("population-areas", "area", "人口区划统计 Population per district")):
        spec = LayerSpec(cid, "MultiPolygon", title=title, extra={"level": level},
                         description="Registered and floating residents at any datetime "
                                     "(public aggregate; never individual persons).")
        out.append(catalog.Collection(cid, catalog.AGGREGATE, spec, "unconditional",
                                      PERSONS.department, ("人口", "统计", "population"),
                                      tiles="population-grid" if level == "grid" else None,
                                      extent_table=PERSONS.spec.version_table))
    return out


def tile_sources() -> dict:
    """Every layer as a vector tile source (declared in the layer's `tiles` settings),
    plus the population aggregate: districts at low zoom, grid cells from z12."""
    from layers import LAYERS
    from layers.population import PERSONS
    from tiles.sources import TileSource

    out = {}
    for layer in LAYERS.values():
        t, personal = layer.tiles, set(layer.personal)
        props = tuple(a.name for a in layer.spec.attributes if a.name not in personal
                      and (t.properties is None or a.name in t.properties))
        out[layer.name] = TileSource(
            layer.name, layer.spec.title, layer.spec.geometry_type, layer.sharing,
            version_table=layer.spec.version_table, properties=props,
            property_types={a.name: a.type for a in layer.spec.attributes},
            detail_zoom=t.detail_zoom, minzoom=t.minzoom, maxzoom=t.maxzoom, color=t.color,
            theme=layer.theme, description=layer.spec.description)
    out["population-grid"] = TileSource(
        "population-grid", "人口统计 Population (districts, then grid cells from z12)",
        "MultiPolygon", "unconditional", kind="population", theme=PERSONS.theme,
        detail_zoom=0, description="Registered and floating residents: a public aggregate.")
    return out


# Writes to a layer also change the tiles of the sources derived from it.
TILE_DEPENDENTS = {"persons": ("population-grid",), "grid-cells": ("population-grid",),
                   "admin-areas": ("population-grid",)}


def _runtime_gauges(app_pool, tile_cache):
    """Pool and cache figures for /metrics, read at scrape time."""
    pools = {"async": app_pool.get_stats(), "ogc": pool().get_stats()}
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


def _basemaps(app_pool, public_url: str):
    """The style's raster layers: hillshade of the DEM, then the orthophoto of the year the
    map shows — only those registered with a time not after the map's datetime, so a map
    of a year before the first photo asks for no tiles that cannot exist."""
    from urllib.parse import quote

    from gisplatform.temporal import TemporalError, parse_request_instant

    async def basemaps(request: Request) -> list[dict]:
        dt = request.query_params.get("datetime")
        try:
            at = parse_request_instant(dt) if dt else None
        except TemporalError:
            at = None  # the tile URLs will say what is wrong with it
        async with app_pool.connection() as conn:
            cur = await conn.execute("""
                select kind, st_xmin(e), st_ymin(e), st_xmax(e), st_ymax(e) from (
                  select kind, st_extent(bounds) as e from city.rasters
                  where at <= coalesce(%s::timestamptz, now()) group by kind) k""", (at,))
            rows = {r[0]: list(r[1:]) for r in await cur.fetchall()}
        q = f"?datetime={quote(dt)}" if dt else ""
        out = []
        if "dem" in rows:
            out.append({"id": "hillshade", "bounds": rows["dem"], "opacity": 0.5,
                        "tiles": f"{public_url}/raster/dem/hillshade/{{z}}/{{x}}/{{y}}.png{q}"})
        if "ortho" in rows:
            out.append({"id": "ortho", "bounds": rows["ortho"],
                        "tiles": f"{public_url}/raster/ortho/{{z}}/{{x}}/{{y}}.png{q}"})
        return out
    return basemaps


def _row_checker(layer):
    """OGC transactions check a feature exactly as `gisplatform import` checks a row."""
    from layers.importer import Mapping, Row, prepare

    def check(props: dict, geom):
        key = None
        if layer.fid_needs_key:  # the database's pseudonym key (persons: fid from ID number)
            from gisplatform.security import read_pseudonym_key

            from .ogc.provider import connection
            with connection() as conn:
                key = read_pseudonym_key(conn)
        feats, rejects, _, _ = prepare(layer, [Row(1, geom, props)], lambda x, y: (x, y),
                                       Mapping(), lambda a: None, None, True, fid_key=key)
        if rejects:
            raise ValueError(rejects[0].reason)
        return feats[0].fid, feats[0].properties, feats[0].geometry
    return check


def _token_of(request: Request) -> str | None:
    return presented_secret(request.headers.get("authorization"),
                            request.query_params.get("token"))


class NoNulInPath:
    """A NUL byte in the path (`/items/abc%00def`) names nothing: 404 for every route, before
    a path parameter reaches SQL (PostgreSQL text cannot hold NUL: psycopg raised a 500)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "\x00" in scope["path"]:
            await problem(404, "no such resource")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, db_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()
    url = db_url or database_url(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await app_pool.open(wait=False)  # the app starts even if the database is down
        # pygeoapi runs every OGC request in the loop's default executor, which has
        # cpu + 4 threads (6 here): under load a few slow processes would queue every
        # items/history request behind them. One thread per OGC pool connection, and some.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(
            max_workers=2 * settings.pool_max, thread_name_prefix="ogc"))
        listener = asyncio.create_task(invalidator.run())
        hooks = asyncio.create_task(webhooks.run())  # change-feed webhooks (api/webhooks.py)
        try:
            yield
        finally:
            listener.cancel()
            hooks.cancel()
            webhooks.close()
            await app_pool.close()
            close_pools()

    app = FastAPI(
        title="gisplatform", version=__version__, lifespan=lifespan,
        description="Fushun spatio-temporal city platform (全时空智慧城市综合信息应用平台)",
    )
    app.state.settings = settings
    install_error_handlers(app)  # one error model (gisplatform/errors.py)
    configure_logging()
    app_pool = app.state.pool = make_pool(url, settings.pool_min, settings.pool_max,
                                          settings.pool_timeout)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        """Resolve the caller once per request; every read path asks current_principal."""
        secret = _token_of(request)
        principal = ANONYMOUS
        if secret:
            try:
                async with app_pool.connection() as conn:
                    principal = await principal_for_token_async(conn, secret)
            except psycopg.OperationalError as e:  # outside the routes' exception handlers
                return database_unavailable(e)
            except AuthError as e:
                return refusal(e)
        request.state.principal_token_id = principal.token_id  # for the access log
        token = current_principal.set(principal)
        try:
            return await call_next(request)
        finally:
            current_principal.reset(token)

    @app.patch("/ogc/collections/{collection_id}/items/{item_id}", tags=["OGC API Features"],
               status_code=204, response_class=Response,
               responses=errors(400, 401, 403, 404, 409, 503), openapi_extra=PATCH_BODY)
    async def patch_item(collection_id: str, item_id: str, request: Request):
        """OGC API Features Part 4 update (pygeoapi 0.24 routes no PATCH): a partial
        Feature merged over the current version and written as a new version."""
        from pygeoapi.provider.base import ProviderGenericError

        from .ogc.provider import TemporalProvider

        if current_principal.get().token_id is None:  # as every write: 401 before anything
            return problem(401, "writing needs a token with a write grant")
        if collection_id not in catalog.collections():
            return problem(404, "no such collection")
        body = await request.body()
        try:
            provider = TemporalProvider({"name": "gisplatform", "type": "feature",
                                         "data": collection_id})
            await run_in_threadpool(provider.patch, item_id, body)
        except ProviderGenericError as e:
            return problem(int(e.http_status_code), e.message, e.ogc_exception_code)
        return Response(status_code=204)

    from layers.fushun import CITY_BBOX

    collections = ogc_collections()
    cache_dir = settings.data_dir / "tiles"
    tile_cache = TileCache(cache_dir, settings.tile_cache_memory_mb << 20,
                           settings.tile_cache_disk_mb << 20)
    tiles = app.state.tiles = TileService(tile_sources(), tile_cache, app_pool,
                                           settings.tile_renders)
    invalidator = app.state.tile_invalidator = TileInvalidator(
        url, tile_cache, TILE_DEPENDENTS, cache_dir / "state.json")
    # before the /ogc mount: OGC API Tiles requests for tiles are answered here
    app.include_router(tile_router(
        tiles, settings.public_url, CITY_BBOX, basemaps=_basemaps(app_pool, settings.public_url),
        ogc_tiles={c.id: c.tiles for c in collections if c.tiles}))
    app.add_middleware(CachedTileFastPath, service=tiles)  # outermost: before auth

    app.mount("/ogc", ogc_app(collections, url, settings.public_url, settings.data_dir / "ogc"))

    from layers import LAYERS

    from .api.search import Searchable, search_router

    app.include_router(search_router([
        Searchable(name, LAYERS[name].sharing, label, text) for name, label, text in (
            ("addresses", "address", "address"),
            ("buildings", "fid || coalesce(' ' || name, '')", "name"),
            ("legal-persons", "name || ' ' || fid", "name"),
            ("cameras", "name || ' ' || fid", None))],
        lambda: pool().connection(), settings.public_url))
    # command-centre statistics: monthly series by area (aggregates only)
    from .api.stats import sharing_of, stats_router
    app.include_router(stats_router(sharing_of(LAYERS), lambda: pool().connection()))

    # the change feed and its webhooks, per layer (a layer and its -history collection)
    from datetime import timedelta

    from .api.changes import FeedLayer, changes_router
    from .api.webhooks import WebhookDeliverer

    feeds = {c.id: FeedLayer(c.layer, c.spec, c.sharing, c.personal) for c in collections
             if c.kind != catalog.AGGREGATE}
    app.include_router(changes_router(feeds, lambda: pool().connection(), settings.public_url))
    webhooks = WebhookDeliverer(url, {f.name: f for f in feeds.values()},
                                settings.webhook_retry_seconds,
                                retention=timedelta(days=settings.change_retention_days))

    # exports as jobs (api/exports.py); open data downloads and their schedule (api/opendata.py)
    from .api.exports import exports_router
    from .api.opendata import opendata_router
    app.include_router(exports_router(LAYERS, url, settings))
    app.include_router(opendata_router(LAYERS.values(), url, settings))

    # 3D Tiles by registered name only (models3d/)
    from models3d.routes import threed_router
    from models3d.terrain import terrain_router

    # Cesium terrain from the registered DEM; before /3d/{name}/… ("terrain" is reserved)
    app.include_router(terrain_router(lambda: pool().connection(), settings.data_dir,
                                      settings.public_url))
    app.include_router(threed_router(lambda: pool().connection(), settings.data_dir,
                                     settings.public_url))

    # titiler over the registered COGs only, by name (tiles/raster_routes.py)
    from tiles.raster_routes import raster_app
    rasters = raster_app(lambda: app.state.pool, settings.data_dir)
    # titiler's own app: raster_app installs the same error model on it
    app.mount("/raster", rasters)

    metrics = app.state.metrics = Metrics()
    metrics.add_source(lambda: _runtime_gauges(app_pool, tile_cache))

    @app.get("/metrics", tags=["platform"], response_class=Response,
             responses=media_types("text/plain", description="Prometheus text format 0.0.4"))
    async def prometheus():
        """Prometheus text format: requests, latency, connection pools, tile cache
        (this worker's figures)."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(NoNulInPath)
    app.add_middleware(RequestLog, metrics=metrics)  # outermost: sees every request

    # the web viewer (gisplatform/viewer, built into its dist/); / opens it
    from fastapi.responses import RedirectResponse

    from .viewer import viewer_app
    app.mount("/viewer", viewer_app())

    @app.get("/", include_in_schema=False)
    async def index():
        return RedirectResponse("/viewer/", status_code=307)

    @app.get("/health", tags=["platform"], responses={
        200: {"model": Health}, 503: {"model": Health, "description": "The database is unreachable."}})
    async def health(request: Request):
        """Database reachability and versions; 503 while the database is unreachable."""
        try:
            async with request.app.state.pool.connection(timeout=3) as conn:
                cur = await conn.execute(
                    "select current_setting('server_version'), postgis_lib_version()")
                pg, postgis = await cur.fetchone()
        except Exception as e:  # any failure here means "not healthy", reported, not raised
            return JSONResponse(status_code=503, content={
                "status": "unavailable", "version": __version__,
                "database": {"reachable": False, "error": type(e).__name__}})
        return {"status": "ok", "version": __version__,
                "database": {"reachable": True, "postgresql": pg, "postgis": postgis}}

    return app
