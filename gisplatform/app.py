"""The one ASGI app (composition root): every HTTP surface is mounted here."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from fastapi import APIRouter, FastAPI

from models3d.routes import threed_router
from models3d.terrain import terrain_router
from tiles.basemap_routes import basemap_router, style_basemaps
from tiles.cache import TileCache
from tiles.invalidation import TileInvalidator
from tiles.raster_routes import basemaps, raster_app
from tiles.routes import CachedTileFastPath, tile_router
from tiles.service import TileService

from . import __version__, wiring
from .api.platform import platform_router, runtime_gauges
from .api.search import search_router
from .backup.manifest import backups_dir
from .backup.schedule import gauges as backup_gauges
from .backup.schedule import scheduler as backup_scheduler
from .backup.schedule import status as backup_status
from .cases.routes import cases_router
from .changefeed import WebhookDeliverer, changes_router
from .config import Settings, get_settings
from .db.connections import make_pool, make_sync_pool
from .db.embedded import database_url
from .db.embedded import from_settings as embedded_from_settings
from .errors import NoNulInPath
from .errors import install as install_error_handlers
from .exports import exports_router
from .geocode.routes import geocode_router
from .observability import Metrics, RequestLog, configure_logging
from .ogc.mount import ogc_app, reconfigure
from .ogc.transactions import patch_router
from .opendata import opendata_router, parse_every
from .registry.routes import layers_router
from .security.middleware import authenticate
from .services.qgis_project import qgis_router
from .services.routes import ows_router
from .services.service import OwsService
from .stats import stats_router
from .viewer import viewer_app


def _build_derived(url: str) -> None:
    log = logging.getLogger("gisplatform.app")
    try:
        wiring.build_derived(url, log.info)
    except Exception as e:  # noqa: BLE001 -- the database may be down: requests still work
        log.warning("building tile pyramids and statistics rollups failed: %s", e)


async def _watch_layers(url: str, every: float, reload) -> None:
    """Serve published layers as they change, without a restart: every `every` seconds,
    where the layer registry stands (wiring.registry_mark); on a change, `reload()` in a
    thread. Each worker watches for itself, so every worker picks a change up."""
    log = logging.getLogger("gisplatform.app")
    mark = None
    try:
        mark = await asyncio.to_thread(wiring.registry_mark, url)
    except Exception as e:  # noqa: BLE001 -- the database may be down: watch on
        log.warning("layer registry not read: %s", e)
    while True:
        await asyncio.sleep(every)
        try:
            now = await asyncio.to_thread(wiring.registry_mark, url)
            if now != mark:
                await asyncio.to_thread(reload)
                log.info("published layers reloaded: %s", ", ".join(wiring.layers()))
                mark = now
        except Exception as e:  # noqa: BLE001 -- try again at the next look
            log.warning("published layers not reloaded: %s", e)


def create_app(settings: Settings | None = None, db_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()
    url = db_url or database_url(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await app_pool.open(wait=False)  # the app starts even if the database is down
        ogc_pool.open(wait=False)
        # pygeoapi runs every OGC request in the loop's default executor, which has
        # cpu + 4 threads (6 here): under load a few slow processes would queue every
        # items/history request behind them. One thread per OGC pool connection, and some.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(
            max_workers=2 * settings.pool_max, thread_name_prefix="ogc"))
        # tile pyramids and statistics rollups a first request would otherwise pay for; a
        # daemon thread: a shutdown does not wait for a build (its transaction rolls back)
        threading.Thread(target=_build_derived, args=(url,), name="build-derived",
                         daemon=True).start()
        listener = asyncio.create_task(invalidator.run())
        hooks = asyncio.create_task(webhooks.run())  # change-feed webhooks (changefeed/webhooks.py)
        watcher = asyncio.create_task(_watch_layers(url, settings.layer_poll_seconds,
                                                    reload_layers))
        try:
            yield
        finally:
            listener.cancel()
            hooks.cancel()
            watcher.cancel()
            webhooks.close()
            ows.close()
            await app_pool.close()
            ogc_pool.close()

    app = FastAPI(
        title="gisplatform", version=__version__, lifespan=lifespan,
        description="Fushun spatio-temporal city platform (全时空智慧城市综合信息应用平台)",
    )
    app.state.settings = settings
    install_error_handlers(app)  # one error model (gisplatform/errors.py)
    configure_logging()
    # the connection pools, sized from these settings (db/connections.py): async for the
    # routes, sync for pygeoapi's threads (OGC providers, processes) and the sync routes
    app_pool = app.state.pool = make_pool(url, settings.pool_min, settings.pool_max,
                                          settings.pool_timeout)
    ogc_pool = app.state.ogc_pool = make_sync_pool(url, max_size=settings.pool_max,
                                                   timeout=settings.pool_timeout)

    app.middleware("http")(authenticate(app_pool))  # who calls: current_principal
    app.include_router(patch_router())  # before the /ogc mount, which routes no PATCH

    try:  # the published layers (layers/published.py), served with the built-in ones
        wiring.load_published(url)
    except Exception as e:  # noqa: BLE001 -- the database may be down: the built-in ones serve
        logging.getLogger("gisplatform.app").warning("published layers not read: %s", e)
    served = app.state.served = wiring.Served.now()
    collections = served.collections
    cache_dir = settings.data_dir / "tiles"
    tile_cache = TileCache(cache_dir, settings.tile_cache_memory_mb << 20,
                           settings.tile_cache_disk_mb << 20)
    tiles = app.state.tiles = TileService(served.tile_sources, tile_cache, app_pool,
                                           settings.tile_renders)
    invalidator = app.state.tile_invalidator = TileInvalidator(
        url, tile_cache, wiring.TILE_DEPENDENTS, cache_dir / "state.json")
    # before the /ogc mount: OGC API Tiles requests for tiles are answered here
    # the style's rasters: registered external basemaps under the hillshade and orthophoto
    style_rasters = style_basemaps(app_pool, settings.public_url,
                                   basemaps(app_pool, settings.public_url))
    app.include_router(tile_router(
        tiles, settings.public_url, wiring.city_bbox(), basemaps=style_rasters,
        ogc_tiles=served.ogc_tiles, label_font=settings.label_font))
    app.add_middleware(CachedTileFastPath, service=tiles)  # outermost: before auth

    app.mount("/ogc", ogc_app(collections, ogc_pool, settings.public_url,
                              settings.data_dir / "ogc", wiring.ogc_processors(settings.public_url)))

    def reload_layers() -> None:
        """The published layers read again and served: every router holds `served`'s
        containers, updated in place; pygeoapi gets a new configuration."""
        wiring.load_published(url)
        served.refresh()
        reconfigure(served.collections, ogc_pool, settings.public_url,
                    settings.data_dir / "ogc", wiring.ogc_processors(settings.public_url))

    layers = served.layers
    app.include_router(search_router(served.searchables, ogc_pool.connection,
                                     settings.public_url))
    # the case workflow of digital city management (数字城管)
    app.include_router(cases_router(partial(wiring.case_setup, settings.case_working_hours),
                                    ogc_pool.connection, settings,
                                    classes=wiring.case_classes))
    # geocoding and reverse geocoding of Chinese addresses, at any instant
    app.include_router(geocode_router(wiring.geocode_sources, ogc_pool.connection, url,
                                      settings, wiring.city_bbox()))
    # command-centre statistics: monthly series by area (aggregates only)
    app.include_router(stats_router(served.stats_sharing, ogc_pool.connection,
                                    wiring.stats_city()))
    # the change feed and its webhooks
    app.include_router(changes_router(served.feeds, ogc_pool.connection, settings.public_url))
    webhooks = WebhookDeliverer(url, served.webhook_layers, settings.webhook_retry_seconds,
                                retention=timedelta(days=settings.change_retention_days))
    # export jobs; open data downloads and their schedule
    app.include_router(exports_router(layers, url, settings))
    app.include_router(opendata_router(layers.values(), url, settings))
    # layer definitions; publishing a dataset as a layer (a job; the watcher serves it)
    app.include_router(layers_router(
        wiring.layer_publisher(url), lambda: wiring.layer_definitions(url),
        lambda code: wiring.department_name(url, code),
        lambda name: wiring.layer_name_taken(url, name), settings))
    # a QGIS project of what the caller may read (OGC API Features, vector tiles, history)
    app.include_router(qgis_router(
        lambda: wiring.qgis_sources(served.collections, served.tile_sources),
        settings.public_url))
    # 3D: Cesium terrain from the registered DEM before /3d/{name}/… ("terrain" is
    # reserved), then 3D Tiles by registered name
    app.include_router(terrain_router(ogc_pool.connection, settings.data_dir,
                                      settings.public_url))
    app.include_router(threed_router(ogc_pool.connection, settings.data_dir,
                                     settings.public_url))
    # WMS 1.3.0 and WFS 2.0 through MapServer, WMTS over its drawing (gisplatform/services)
    ows = app.state.ows = OwsService(
        lambda: served.ows, wiring.ows_rasters(ogc_pool.connection, settings.data_dir),
        ogc_pool.connection, url, settings.public_url, settings.data_dir / "ows",
        settings.label_font if settings.label_font.is_file() else None, wiring.city_bbox(),
        settings.ows_processes, wiring.ows_hillshade(ogc_pool.connection))
    app.include_router(ows_router(ows, ogc_pool.connection))
    # titiler over the registered COGs only, by name; its own app, with the same error model
    app.mount("/raster", raster_app(lambda: app.state.pool, settings.data_dir))
    # registered external basemaps (天地图 …) through the platform, keys kept here; the
    # orthophoto answers when a source fails
    app.include_router(basemap_router(app_pool, settings.data_dir, settings.public_url,
                                      tile_cache))

    # backups (gisplatform/backup): scheduled by GISPLATFORM_BACKUP_EVERY; the newest one's
    # age and size in /metrics and /health
    backups = backups_dir(settings)
    app.include_router(APIRouter(lifespan=backup_scheduler(
        url, backups, wiring.backup_stores(settings.data_dir),
        None if settings.database_url else embedded_from_settings(settings),
        settings.backup_every, settings.backup_keep)))
    metrics = app.state.metrics = Metrics()
    metrics.add_source(lambda: runtime_gauges(app_pool, ogc_pool, tile_cache))
    metrics.add_source(lambda: backup_gauges(backups))
    app.include_router(platform_router(  # /, /health, /metrics
        metrics, lambda: backup_status(backups, parse_every(settings.backup_every))))

    app.add_middleware(NoNulInPath)
    app.add_middleware(RequestLog, metrics=metrics)  # outermost: sees every request

    # the web viewer (gisplatform/viewer, built into its dist/); / opens it
    app.mount("/viewer", viewer_app())

    return app
