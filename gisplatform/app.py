"""The one ASGI app (composition root): every HTTP surface is mounted here."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from . import __version__
from .config import Settings, get_settings
from .db.embedded import database_url
from .db.pool import make_pool


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

    app = FastAPI(
        title="gisplatform", version=__version__, lifespan=lifespan,
        description="Fushun spatio-temporal city platform (全时空智慧城市综合信息应用平台)",
    )
    app.state.settings = settings

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
