"""/basemaps/{name}/{z}/{x}/{y}.png: the registered external basemaps (tiles/basemaps.py),
proxied, and their list at /api/basemaps.

The proxy asks the source for the tile with the key filled in here, so a client never
sees the key nor the source's address. Upstream it is careful: short timeouts (connect
2 s, the whole tile 5 s), redirects followed only on the same host, at most 4 MB, and
only an image (by content type and by its bytes). A tile the source fails to give —
error, timeout, not an image — is answered with the platform's own orthophoto tile of the
same z/x/y in the same grid (`X-Basemap-Fallback: ortho`), and the source is skipped for
BREAKER_SECONDS (per worker) so that a dead source costs one timeout, not one per tile.
Good tiles go into the platform's tile cache, keyed by the registration's time. Nothing
is fetched before a tile is asked for.

`/basemaps/{name}/{z}/{x}/{y}.png` is WebMercatorQuad, as every short tile path;
`/basemaps/{name}/{tileMatrixSetId}/{z}/{x}/{y}.png` names the grid, which must be the
source's own (tiles are passed through, never warped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path as FilePath

import httpx
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response

from gisplatform import __version__
from gisplatform.api.responses import Basemaps, errors
from gisplatform.crs.tile_grids import GRIDS, WEB_MERCATOR, TileGrid

from .basemaps import COLUMNS, NAME_RE, Basemap, source_id
from .cache import Key, Tile, TileCache, when_key
from .raster_routes import ortho_fallback

log = logging.getLogger("gisplatform.basemaps")

CONNECT_TIMEOUT = 2.0
TOTAL_TIMEOUT = 5.0
BREAKER_SECONDS = 30.0
MAX_BYTES = 4 << 20
MAX_REDIRECTS = 3
CACHE_CONTROL = "public, max-age=86400"  # a source's tiles change rarely
FALLBACK_CACHE_CONTROL = "public, max-age=30"  # ask again once the breaker has closed
CORS = {"Access-Control-Allow-Origin": "*"}
WORLD = [-180.0, -85.0511287798, 180.0, 85.0511287798]
IMAGE = {200: {"content": {t: {} for t in ("image/png", "image/jpeg", "image/webp",
                                           "image/gif")},
               "description": "The source's tile, or the platform's orthophoto tile "
                              "(`X-Basemap-Fallback: ortho`) when the source failed."}}


class UpstreamError(Exception):
    """The source failed (the breaker opens). Messages are ours: never its URL."""


class NoTile(Exception):
    """The source has no tile here (404, 204): this tile only, the source is fine."""


def image_type(data: bytes) -> str | None:
    """The image format of DATA by its first bytes (a content type can lie)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


class Breaker:
    """Sources that failed lately, each skipped until its time is up."""

    def __init__(self, seconds: float = BREAKER_SECONDS):
        self.seconds = seconds
        self._until: dict[tuple, float] = {}

    def is_open(self, key: tuple) -> bool:
        return time.monotonic() < self._until.get(key, 0.0)

    def trip(self, key: tuple) -> None:
        self._until[key] = time.monotonic() + self.seconds


async def fetch_tile(client: httpx.AsyncClient, url: str) -> bytes:
    """The image at URL, or UpstreamError / NoTile."""
    origin = httpx.URL(url)
    try:
        async with asyncio.timeout(TOTAL_TIMEOUT):  # httpx's timeouts are per read
            for _ in range(MAX_REDIRECTS + 1):
                async with client.stream("GET", url) as r:
                    if r.is_redirect:
                        url = r.url.join(r.headers["location"])
                        if (url.scheme, url.host, url.port) != (origin.scheme, origin.host,
                                                                origin.port):
                            raise UpstreamError(f"redirected to another host ({url.host})")
                        continue
                    return await _image(r)
            raise UpstreamError(f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise UpstreamError(f"no tile within {TOTAL_TIMEOUT:g} s") from None
    except httpx.TimeoutException:
        raise UpstreamError("timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as e:
        raise UpstreamError(f"request failed ({type(e).__name__})") from None


async def _image(r: httpx.Response) -> bytes:
    if r.status_code in (204, 404):
        raise NoTile()
    if r.status_code != 200:
        raise UpstreamError(f"answered HTTP {r.status_code}")
    ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.startswith("image/"):
        raise UpstreamError(f"answered {ctype or 'no content type'}, not an image")
    body = bytearray()
    async for chunk in r.aiter_bytes():
        body += chunk
        if len(body) > MAX_BYTES:
            raise UpstreamError(f"a tile over {MAX_BYTES >> 20} MB")
    if image_type(body) is None:
        raise UpstreamError(f"answered {ctype} whose bytes are no PNG, JPEG, WebP or GIF")
    return bytes(body)


class _OriginOnly(logging.Filter):
    """httpx logs each request's URL at INFO, and a basemap's URL carries its key: the
    log keeps the origin only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(f"{a.scheme}://{a.netloc.decode('ascii')}/…"
                                if isinstance(a, httpx.URL) else a for a in record.args)
        return True


_ORIGIN_ONLY = _OriginOnly()


async def enabled_basemaps(pool, name: str | None = None) -> list[Basemap]:
    async with pool.connection() as conn:
        cur = await conn.execute(f"select {COLUMNS} from city.basemaps where enabled"
                                 " and (%(n)s::text is null or name = %(n)s) order by name",
                                 {"n": name})
        return [Basemap.from_row(r) for r in await cur.fetchall()]


def basemap_router(pool, data_dir: FilePath, public_url: str,
                   cache: TileCache | None = None) -> APIRouter:
    """The proxy and /api/basemaps. POOL: the app's async pool; DATA_DIR holds the
    orthophotos the fallback reads; CACHE: the platform's tile cache (None: no caching)."""
    client: list[httpx.AsyncClient] = []  # made at the first tile, closed at shutdown
    breaker = Breaker()
    if _ORIGIN_ONLY not in logging.getLogger("httpx").filters:
        logging.getLogger("httpx").addFilter(_ORIGIN_ONLY)

    @asynccontextmanager
    async def lifespan(app):
        yield
        if client:
            await client.pop().aclose()

    router = APIRouter(tags=["Basemaps"], lifespan=lifespan)

    def http() -> httpx.AsyncClient:
        if not client:
            client.append(httpx.AsyncClient(
                timeout=httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT),
                follow_redirects=False,  # fetch_tile follows those on the same host
                headers={"User-Agent": f"gisplatform/{__version__}", "Accept": "image/*"}))
        return client[0]

    NAME = Path(description="a registered basemap (see /api/basemaps)")
    TMS = Path(alias="tileMatrixSetId", description=(
        "the tile grid: the basemap's own, CGCS2000Quad (EPSG:4490) or WebMercatorQuad"),
        json_schema_extra={"enum": list(GRIDS)})

    @router.get("/basemaps/{name}/{z}/{x}/{y}.png", response_class=Response,
                responses={**IMAGE, **errors(404, 503)})
    async def get_tile(z: int, x: int, y: int, name: str = NAME):
        """A tile of a registered basemap in WebMercatorQuad, through the platform."""
        return await answer(name, WEB_MERCATOR, z, x, y)

    @router.get("/basemaps/{name}/{tileMatrixSetId}/{z}/{x}/{y}.png", response_class=Response,
                responses={**IMAGE, **errors(404, 503)})
    async def get_grid_tile(z: int, x: int, y: int, name: str = NAME, tms: str = TMS):
        """A tile of a registered basemap in its tile grid (CGCS2000Quad for 天地图's
        `c` sets), through the platform."""
        if tms not in GRIDS:
            raise HTTPException(404, f"no tile matrix set {tms!r}; offered: {', '.join(GRIDS)}")
        return await answer(name, GRIDS[tms], z, x, y)

    async def answer(name: str, grid: TileGrid, z: int, x: int, y: int) -> Response:
        found = await enabled_basemaps(pool, name) if NAME_RE.fullmatch(name) else []
        if not found:
            raise HTTPException(404, f"no basemap named {name!r}; see /api/basemaps")
        b = found[0]
        if b.grid != grid.id:
            raise HTTPException(404, f"basemap {name!r} is in {b.grid}: "
                                     f"{b.public(public_url)['tiles']}")
        if not b.min_zoom <= z <= b.max_zoom:
            raise HTTPException(404, f"zoom {z} is outside basemap {name!r}'s zooms "
                                     f"{b.min_zoom}..{b.max_zoom}")
        cols, rows = grid.matrix_size(z)
        if not (0 <= x < cols and 0 <= y < rows):
            raise HTTPException(404, f"tile {z}/{x}/{y} is outside {grid.id}")
        key = Key(source_id(name), z, x, y, when_key(b.created, None), grid.id)
        tile = cache.get(key) if cache is not None else None
        if tile is not None:
            return _image_response(tile.data, "hit")
        source = (b.name, b.created)
        if not breaker.is_open(source):
            epoch = cache.epoch(key.source) if cache is not None else 0
            try:
                data = await fetch_tile(http(), b.upstream(z, x, y))
            except NoTile:
                pass
            except UpstreamError as e:
                breaker.trip(source)
                log.warning("basemap %s: %s; the orthophoto answers for it for %g s",
                            name, e, breaker.seconds)
            else:
                if cache is not None:
                    cache.put(key, Tile.of(data), epoch)
                return _image_response(data, "miss")
        png, raster = await ortho_fallback(pool, data_dir, grid, z, x, y)
        return Response(png, media_type="image/png", headers={
            **CORS, "Cache-Control": FALLBACK_CACHE_CONTROL, "X-Basemap-Fallback": "ortho",
            **({"X-Raster-Name": raster} if raster else {})})

    @router.get("/api/basemaps", responses={200: {"model": Basemaps}, **errors(503)})
    async def listing():
        """The registered external basemaps a client may show: tile URLs through the
        platform (never the source's address or key), grid, zooms, attribution."""
        return {"basemaps": [b.public(public_url) for b in await enabled_basemaps(pool)]}

    return router


def _image_response(data: bytes, cache_state: str) -> Response:
    return Response(data, media_type=image_type(data), headers={
        **CORS, "Cache-Control": CACHE_CONTROL, "X-Cache": cache_state})


def style_basemaps(pool, public_url: str,
                   own: Callable[[Request], Awaitable[list[dict]]]):
    """The style's raster layers: the registered WebMercatorQuad basemaps (MapLibre draws
    that grid only), hidden unless marked default, under the platform's own (OWN)."""

    async def basemaps(request: Request) -> list[dict]:
        out = []
        for b in await enabled_basemaps(pool):
            if b.grid != WEB_MERCATOR.id:
                continue
            out.append({"id": source_id(b.name), "tiles": b.public(public_url)["tiles"],
                        "bounds": WORLD, "minzoom": b.min_zoom, "maxzoom": b.max_zoom,
                        "attribution": b.attribution, "visible": b.is_default,
                        "metadata": {"gisplatform:theme": "basemap",
                                     "gisplatform:title": b.title}})
        return out + await own(request)
    return basemaps
