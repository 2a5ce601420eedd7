"""The one ASGI app (composition root): every HTTP surface is mounted here."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from . import __version__
from .config import Settings, get_settings
from .db.embedded import database_url
from .db.pool import make_pool
from .ogc import catalog
from .ogc.mount import ogc_app
from .ogc.provider import close_pools, pool
from .security import ANONYMOUS, AuthError, current_principal, personal_masks, principal_for_token


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
                prepare=_row_checker(layer) if kind == catalog.SNAPSHOT else None))
    for cid, level, title in (("population-grid", "grid", "人口网格统计 Population per grid cell"),
                              ("population-areas", "area", "人口区划统计 Population per district")):
        spec = LayerSpec(cid, "MultiPolygon", title=title, extra={"level": level},
                         description="Registered and floating residents at any datetime "
                                     "(public aggregate; never individual persons).")
        out.append(catalog.Collection(cid, catalog.AGGREGATE, spec, "unconditional",
                                      PERSONS.department, ("人口", "统计", "population")))
    return out


def _row_checker(layer):
    """OGC transactions check a feature exactly as `gisplatform import` checks a row."""
    from layers.importer import Mapping, Row, prepare

    def check(props: dict, geom):
        feats, rejects, _, _ = prepare(layer, [Row(1, geom, props)], lambda x, y: (x, y),
                                       Mapping(), lambda a: None, None, True)
        if rejects:
            raise ValueError(rejects[0].reason)
        return feats[0].fid, feats[0].properties, feats[0].geometry
    return check


def _token_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("token")  # for clients that cannot set headers


def create_app(settings: Settings | None = None, db_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()
    url = db_url or database_url(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = make_pool(url, settings.pool_min, settings.pool_max)
        await pool.open(wait=False)  # the app starts even if the database is down
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()
            close_pools()

    app = FastAPI(
        title="gisplatform", version=__version__, lifespan=lifespan,
        description="Fushun spatio-temporal city platform (全时空智慧城市综合信息应用平台)",
    )
    app.state.settings = settings

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        """Resolve the caller once per request; every read path asks current_principal."""
        secret = _token_of(request)
        principal = ANONYMOUS
        if secret:
            def lookup():
                with pool().connection() as conn:
                    return principal_for_token(conn, secret)
            try:
                principal = await run_in_threadpool(lookup)
            except AuthError as e:
                return JSONResponse(status_code=401, content={
                    "code": "Unauthorized", "description": str(e)},
                    headers={"WWW-Authenticate": "Bearer"})
        token = current_principal.set(principal)
        try:
            return await call_next(request)
        finally:
            current_principal.reset(token)

    @app.patch("/ogc/collections/{collection_id}/items/{item_id}", tags=["OGC API Features"])
    async def patch_item(collection_id: str, item_id: str, request: Request):
        """OGC API Features Part 4 update (pygeoapi 0.24 routes no PATCH): a partial
        Feature merged over the current version and written as a new version."""
        from pygeoapi.provider.base import ProviderGenericError

        from .ogc.provider import TemporalProvider

        if collection_id not in catalog.collections():
            return JSONResponse(status_code=404, content={"code": "NotFound",
                                                          "description": "no such collection"})
        body = await request.body()
        try:
            provider = TemporalProvider({"name": "gisplatform", "type": "feature",
                                         "data": collection_id})
            await run_in_threadpool(provider.patch, item_id, body)
        except ProviderGenericError as e:
            return JSONResponse(status_code=int(e.http_status_code),
                                content={"code": e.ogc_exception_code, "description": e.message})
        return Response(status_code=204)

    from layers.demo_common import START
    from layers.fushun import CITY_BBOX

    # the plan, and the layers' history, start on 2018-01-01 (UTC+8)
    app.mount("/ogc", ogc_app(ogc_collections(), url, settings.public_url, CITY_BBOX,
                              START, settings.data_dir / "ogc"))

    @app.get("/health", tags=["platform"])
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
