"""/raster: titiler over the registered COGs only (ARCHITECTURE.md, "Serving").

titiler's stock endpoints open whatever `url=` a caller names — a local file, another
host, a cloud metadata address. Here the only way to a file is a dataset *name* looked up
in `city.rasters` (`TilerFactory(path_dependency=registered_cog)`): a name that is not
registered is a 404, a `url=` parameter is a 400 on every route, and the registered file
name is joined to this server's raster directory and refused if it would leave it.

Besides titiler's endpoints per dataset (`/raster/{name}/…`) there are two time series:
`/raster/ortho/{z}/{x}/{y}.png?datetime=T` (the latest orthophoto whose time is ≤ T) and
`/raster/dem/hillshade/{z}/{x}/{y}.png` (the latest DEM ≤ T, shaded).

Tile grids: those paths are WebMercatorQuad; `/raster/ortho/{tileMatrixSetId}/{z}/{x}/{y}.png`
and `/raster/dem/hillshade/{tileMatrixSetId}/…` name the grid (CGCS2000Quad for EPSG:4490
clients, gisplatform/crs/tile_grids.py), and titiler's per-dataset routes take
CGCS2000Quad besides morecantile's sets. The COGs are stored in EPSG:3857, so a
CGCS2000Quad tile is warped from them on each request (rio-tiler's tms=).
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the endpoints
# and dependencies defined inside raster_app, which string annotations would hide.

import logging
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gisplatform.crs.tile_grids import CGCS2000_QUAD, GRIDS, WEB_MERCATOR_QUAD, TileGrid
from gisplatform.temporal import BEIJING_TIME, TemporalError, parse_request_instant

from .raster import (
    COLUMNS,
    NAME_RE,
    RESERVED,
    Raster,
    RasterError,
    file_in,
    raster_dir,
)

log = logging.getLogger(__name__)

TMS = WEB_MERCATOR_QUAD
# Tiles of a name can change (`raster add --replace`): cache, but not for long.
CACHE_CONTROL = "public, max-age=300"
# Terrain algorithms, for DEMs only (an orthophoto's "hillshade" would be noise).
DEM_ALGORITHMS = ("hillshade", "slope", "contours", "terrarium", "terrainrgb")
# Query parameters through which stock titiler reads a caller-given location.
REFUSED_PARAMS = ("url",)


def when(value: str | None) -> datetime:
    """`datetime=` as the OGC endpoints read it: an instant with a zone, a bare date
    meaning 00:00 in the city's time (UTC+8); absent = now."""
    if value is None:
        return datetime.now(BEIJING_TIME)
    try:
        return parse_request_instant(value)
    except TemporalError as e:
        raise HTTPException(400, f"datetime: {e}") from None


def raster_app(pool: Callable[[], object], data_dir: Path) -> FastAPI:
    """The /raster sub-application. POOL returns the platform's async connection pool
    (opened by the main app's lifespan); DATA_DIR holds `rasters/`."""
    from titiler.core.algorithm import Algorithms, default_algorithms
    from titiler.core.errors import DEFAULT_STATUS_CODES
    from titiler.core.factory import TilerFactory

    from gisplatform.errors import install as install_error_handlers
    from gisplatform.errors import problem

    root = raster_dir(data_dir)
    app = FastAPI(title="gisplatform raster", description=(
        "titiler over the registered COGs (orthophotos per year, DEMs). Datasets are "
        "addressed by registered name only; see `/raster/` for the list."))
    # titiler's exceptions by class, in the platform's one error shape (gisplatform/errors.py)
    install_error_handlers(app, {k: v for k, v in DEFAULT_STATUS_CODES.items()
                                 if k is not Exception})
    app.add_middleware(_LinksUnderMount)

    @app.middleware("http")
    async def refuse_locations(request: Request, call_next):
        for key in request.query_params:
            if key.lower() in REFUSED_PARAMS:
                return problem(400, f"{key}= is not accepted: this server serves registered "
                                    "rasters by name only (see /raster/)")
        response = await call_next(request)
        if response.status_code == 200 and response.headers.get(
                "content-type", "").startswith("image/"):
            response.headers.setdefault("Cache-Control", CACHE_CONTROL)
        return response

    async def fetch(query: str, params: tuple) -> list[Raster]:
        async with pool().connection() as conn:
            cur = await conn.execute(f"select {COLUMNS} from city.rasters {query}", params)
            return [Raster.from_row(r) for r in await cur.fetchall()]

    def cog_file(raster: Raster) -> str:
        try:
            path = file_in(root, raster.path)
        except RasterError as e:  # a row written by hand: never follow it
            log.error("raster %s: %s", raster.name, e)
            raise HTTPException(404, f"no raster named {raster.name!r}") from None
        if not path.is_file():
            raise HTTPException(500, f"raster {raster.name!r} is registered but its file "
                                     "is missing")
        return str(path)

    async def latest(kind: str, at: datetime) -> Raster:
        found = await latest_raster(pool(), kind, at)
        if found is None:
            raise HTTPException(404, f"no {kind} raster at or before {at.isoformat()}")
        return found

    # ------------------------------------------------------------------ dependencies

    async def registered(name: Annotated[str, PathParam(
            description="A registered raster name (see /raster/)")]) -> Raster:
        if not NAME_RE.fullmatch(name) or name in RESERVED:
            raise HTTPException(404, f"no raster named {name!r}")
        found = await fetch("where name = %s", (name,))
        if not found:
            raise HTTPException(404, f"no raster named {name!r}")
        return found[0]

    def registered_cog(raster: Annotated[Raster, Depends(registered)]) -> str:
        """titiler's path dependency: the registered name's COG, and nothing else."""
        return cog_file(raster)

    terrain = Algorithms({k: default_algorithms[k] for k in DEM_ALGORITHMS})

    def dem_algorithm(raster: Annotated[Raster, Depends(registered)],
                      algorithm: Annotated[object, Depends(terrain.dependency)]):
        if algorithm is not None and raster.kind != "dem":
            raise HTTPException(400, f"algorithm= applies to DEMs; {raster.name!r} is an "
                                     f"{raster.kind}")
        return algorithm

    # ------------------------------------------------------------------ listing, series

    def links(request: Request, name: str) -> dict:
        base = str(request.base_url).rstrip("/")
        return {"tilejson": f"{base}/{name}/{TMS}/tilejson.json?tile_format=png",
                "tiles": f"{base}/{name}/tiles/{TMS}/{{z}}/{{x}}/{{y}}.png",
                "info": f"{base}/{name}/info",
                "tile_matrix_sets": {g: f"{base}/{name}/tiles/{g}/{{z}}/{{x}}/{{y}}.png"
                                     for g in GRIDS}}

    def grid_urls(base: str, series: str) -> dict:
        return {g: f"{base}/{series}/{g}/{{z}}/{{x}}/{{y}}.png?datetime={{datetime}}"
                for g in GRIDS}

    @app.get("/", tags=["raster"])
    async def listing(request: Request):
        """Every registered raster with its links, and the time series."""
        base = str(request.base_url).rstrip("/")
        return {
            "rasters": [{
                "name": r.name, "kind": r.kind, "time": r.at.astimezone(BEIJING_TIME).isoformat(),
                "bounds": list(r.bounds), "crs": r.crs, "width": r.width, "height": r.height,
                "bands": r.bands, "dtype": r.dtype, "links": links(request, r.name),
            } for r in await fetch("order by kind, at, name", ())],
            "series": {
                "ortho": {"tiles": f"{base}/ortho/{{z}}/{{x}}/{{y}}.png?datetime={{datetime}}",
                          "tilejson": f"{base}/ortho/tilejson.json?datetime={{datetime}}",
                          "rule": "the latest ortho whose time <= datetime (default now)",
                          "tile_matrix_sets": grid_urls(base, "ortho")},
                "hillshade": {
                    "tiles": f"{base}/dem/hillshade/{{z}}/{{x}}/{{y}}.png?datetime={{datetime}}",
                    "tilejson": f"{base}/dem/hillshade/tilejson.json?datetime={{datetime}}",
                    "rule": "the latest dem whose time <= datetime (default now), shaded",
                    "tile_matrix_sets": grid_urls(base, "dem/hillshade")},
            },
        }

    Datetime = Annotated[str | None, Query(
        description="Instant with a zone (a bare date = 00:00 UTC+8); default now")]
    Grid = Annotated[str, PathParam(
        alias="tileMatrixSetId",
        description="the tile grid: CGCS2000Quad (EPSG:4490, lon/lat) or WebMercatorQuad",
        json_schema_extra={"enum": list(GRIDS)})]
    Azimuth = Annotated[int, Query(ge=0, le=360)]
    Altitude = Annotated[float, Query(ge=0, le=90)]
    Exaggeration = Annotated[float, Query(gt=0, le=100, description=(
        "Vertical exaggeration over true slopes"))]

    def grid_of(tms: str) -> TileGrid:
        if tms not in GRIDS:
            raise HTTPException(404, f"no tile matrix set {tms!r}; offered: {', '.join(GRIDS)}")
        return GRIDS[tms]

    def check_grid_tile(grid: TileGrid, z: int, x: int, y: int) -> None:
        """A tile outside a named grid is a 404, as rio-tiler answers one outside
        WebMercatorQuad (TileOutsideBounds); WebMercatorQuad's own path is left to it."""
        if grid.id == TMS:
            return
        if not 0 <= z <= grid.maxzoom:
            raise HTTPException(404, f"zoom {z} is outside {grid.id}'s 0..{grid.maxzoom}")
        cols, rows = grid.matrix_size(z)
        if not (0 <= x < cols and 0 <= y < rows):
            raise HTTPException(404, f"tile {z}/{x}/{y} is outside {grid.id}: x runs "
                                     f"0..{cols - 1} and y 0..{rows - 1} at zoom {z}")

    @app.get("/ortho/{z}/{x}/{y}.png", tags=["raster"], response_class=Response)
    async def ortho_tile(z: int, x: int, y: int, datetime: Datetime = None):
        """The orthophoto of the city at `datetime`: the latest ortho whose time ≤ it."""
        return await ortho(GRIDS[TMS], z, x, y, datetime)

    @app.get("/ortho/{tileMatrixSetId}/{z}/{x}/{y}.png", tags=["raster"],
             response_class=Response)
    async def ortho_grid_tile(tms: Grid, z: int, x: int, y: int, datetime: Datetime = None):
        """The orthophoto series in a named tile grid (CGCS2000Quad: warped to EPSG:4490)."""
        return await ortho(grid_of(tms), z, x, y, datetime)

    async def ortho(grid: TileGrid, z: int, x: int, y: int, datetime: str | None):
        check_grid_tile(grid, z, x, y)
        raster = await latest("ortho", when(datetime))
        png = await run_in_threadpool(_series_png, cog_file(raster), z, x, y, None, grid)
        return Response(png, media_type="image/png", headers={"X-Raster-Name": raster.name})

    @app.get("/dem/hillshade/{z}/{x}/{y}.png", tags=["raster"], response_class=Response)
    async def hillshade_tile(z: int, x: int, y: int, datetime: Datetime = None,
                             azimuth: Azimuth = 315, altitude: Altitude = 45.0,
                             exaggeration: Exaggeration = 3.0):
        """Hillshade of the latest DEM whose time ≤ `datetime` (titiler's algorithm, with
        the tile's ground pixel size so slopes are true, times `exaggeration`)."""
        return await hillshade(GRIDS[TMS], z, x, y, datetime, azimuth, altitude, exaggeration)

    @app.get("/dem/hillshade/{tileMatrixSetId}/{z}/{x}/{y}.png", tags=["raster"],
             response_class=Response)
    async def hillshade_grid_tile(tms: Grid, z: int, x: int, y: int,
                                  datetime: Datetime = None, azimuth: Azimuth = 315,
                                  altitude: Altitude = 45.0, exaggeration: Exaggeration = 3.0):
        """The hillshade series in a named tile grid. A CGCS2000Quad pixel is not square
        on the ground (east-west it is cos(latitude) of north-south): slopes are taken
        with each axis's own ground size."""
        return await hillshade(grid_of(tms), z, x, y, datetime, azimuth, altitude,
                               exaggeration)

    async def hillshade(grid: TileGrid, z: int, x: int, y: int, datetime: str | None,
                        azimuth: int, altitude: float, exaggeration: float):
        from titiler.core.algorithm import HillShade

        check_grid_tile(grid, z, x, y)
        raster = await latest("dem", when(datetime))
        if grid.id == TMS:
            shade = HillShade(azimuth=azimuth, angle_altitude=altitude, buffer=3,
                              z_exaggeration=exaggeration / _ground_pixel_m(z, y))
        else:
            dx, dy = _ground_pixel_xy_m(grid, z, x, y)
            shade = _GroundHillShade(azimuth=azimuth, angle_altitude=altitude, buffer=3,
                                     z_exaggeration=exaggeration, pixel_x_m=dx, pixel_y_m=dy)
        png = await run_in_threadpool(_series_png, cog_file(raster), z, x, y, shade, grid)
        return Response(png, media_type="image/png", headers={"X-Raster-Name": raster.name})

    async def series_tilejson(request: Request, kind: str, tiles: str, datetime: str | None):
        at = when(datetime)
        raster = await latest(kind, at)
        minzoom, maxzoom = await run_in_threadpool(_zooms, cog_file(raster))
        base = str(request.base_url).rstrip("/")
        stamp = at.isoformat().replace("+", "%2B")
        return {"tilejson": "3.0.0", "name": raster.name, "bounds": list(raster.bounds),
                "minzoom": minzoom, "maxzoom": maxzoom, "scheme": "xyz",
                "tiles": [f"{base}/{tiles}/{{z}}/{{x}}/{{y}}.png?datetime={stamp}"]}

    @app.get("/ortho/tilejson.json", tags=["raster"])
    async def ortho_tilejson(request: Request, datetime: Datetime = None):
        return await series_tilejson(request, "ortho", "ortho", datetime)

    @app.get("/dem/hillshade/tilejson.json", tags=["raster"])
    async def hillshade_tilejson(request: Request, datetime: Datetime = None):
        return await series_tilejson(request, "dem", "dem/hillshade", datetime)

    # ------------------------------------------------------------------ titiler per name

    cog = TilerFactory(router_prefix="/{name}", path_dependency=registered_cog,
                       reader=_guarded_reader(),
                       # morecantile's sets (as before) and the platform's CGCS2000Quad
                       supported_tms=_tile_matrix_sets(),
                       process_dependency=dem_algorithm,
                       add_viewer=False,  # its page loads Leaflet from a CDN
                       add_part=False)    # /bbox, /feature: arbitrary-size exports
    app.include_router(cog.router, prefix="/{name}", tags=["raster"])
    return app


async def latest_raster(pool, kind: str, at: datetime) -> Raster | None:
    """The series' raster at AT: the latest of KIND whose time is ≤ AT."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"select {COLUMNS} from city.rasters where kind = %s"
                                 " and at <= %s order by at desc, name limit 1", (kind, at))
        row = await cur.fetchone()
    return Raster.from_row(row) if row else None


async def ortho_fallback(pool, data_dir: Path, grid: TileGrid, z: int, x: int,
                         y: int) -> tuple[bytes, str | None]:
    """The orthophoto series' tile z/x/y of GRID now, and its raster's name, for an
    external basemap whose source failed (tiles/basemap_routes.py): a transparent tile
    where the platform has no orthophoto."""
    from rio_tiler.errors import TileOutsideBounds

    raster = await latest_raster(pool, "ortho", datetime.now(BEIJING_TIME))
    if raster is not None:
        try:
            path = file_in(raster_dir(data_dir), raster.path)
            if path.is_file():
                png = await run_in_threadpool(_series_png, str(path), z, x, y, None, grid)
                return png, raster.name
        except (RasterError, TileOutsideBounds):
            pass
    return _transparent_png(), None


def basemaps(pool, public_url: str):
    """The style's raster layers: hillshade of the DEM, then the orthophoto of the year the
    map shows — only those registered with a time not after the map's datetime, so a map
    of a year before the first photo asks for no tiles that cannot exist. `pool`: the
    app's async pool."""

    async def basemaps(request: Request) -> list[dict]:
        dt = request.query_params.get("datetime")
        try:
            at = parse_request_instant(dt) if dt else None
        except TemporalError:
            at = None  # the tile URLs will say what is wrong with it
        async with pool.connection() as conn:
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


class _LinksUnderMount:
    """Mounted, Starlette keeps `request.base_url` at the parent app's root; links built
    here (and titiler's tilejson) must include the mount path (/raster)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope = dict(scope, app_root_path=scope.get("root_path", ""))
        await self.app(scope, receive, send)


def _coarser_error():
    from rio_tiler.errors import TileOutsideBounds

    class CoarserThanOverviews(TileOutsideBounds):
        pass
    return CoarserThanOverviews


CoarserThanOverviews = _coarser_error()


@cache
def _transparent_png() -> bytes:
    import numpy
    from rio_tiler.models import ImageData
    from titiler.core.utils import render_image

    img = ImageData(numpy.ma.masked_all((1, 256, 256), dtype="uint8"))
    return render_image(img, output_format=_png())[0]


def _guarded_reader():
    """rio-tiler's Reader refusing tiles coarser than the COG's overviews reach: such a
    tile reads the full-resolution raster (a z0 orthophoto tile took minutes and 11 GB)."""
    from rio_tiler.io import Reader

    class OverviewBoundReader(Reader):
        def tile(self, tile_x, tile_y, tile_z, *args, **kwargs):
            if tile_z < self.minzoom - 1:
                raise CoarserThanOverviews(
                    f"zoom {tile_z} is coarser than this raster serves (from z{self.minzoom - 1})")
            return super().tile(tile_x, tile_y, tile_z, *args, **kwargs)
    return OverviewBoundReader


def _series_png(path: str, z: int, x: int, y: int, algorithm=None,
                grid: TileGrid | None = None) -> bytes:
    """The series' tiles (basemaps): a zoom coarser than the overviews is an empty
    transparent tile, not an error, so a map zoomed out draws nothing there quietly."""
    try:
        return _tile_png(path, z, x, y, algorithm, grid)
    except CoarserThanOverviews:
        return _transparent_png()


def _tile_png(path: str, z: int, x: int, y: int, algorithm=None,
              grid: TileGrid | None = None) -> bytes:
    import numpy
    from titiler.core.utils import render_image

    # heights are resampled cubic: bilinear has slope jumps a hillshade shows as a grid
    method = "cubic" if algorithm else "bilinear"
    # the COGs are in EPSG:3857: another grid's tile is warped from them, with the same
    # resampling (rio-tiler's default warp is nearest: steps a hillshade shows as terraces)
    reader, warp = ({}, {}) if grid is None or grid.id == TMS else \
        ({"tms": grid.tms}, {"reproject_method": method})
    with _guarded_reader()(path, **reader) as src:
        img = src.tile(x, y, z, buffer=getattr(algorithm, "buffer", None) or None,
                       resampling_method=method, **warp)
    if algorithm is not None:
        valid = ~numpy.ma.getmaskarray(img.array)[0]
        img = algorithm(img)
        b = algorithm.buffer
        if b:
            valid = valid[b:-b, b:-b]
        img.array.mask = ~valid[None]  # keep "no data" transparent
    content, _ = render_image(img, output_format=_png())
    return content


def _ground_pixel_m(z: int, y: int, tilesize: int = 256) -> float:
    """Ground metres per pixel of WebMercatorQuad tile row Y at zoom Z (its centre)."""
    import math

    lat = math.atan(math.sinh(math.pi * (1 - 2 * (y + 0.5) / 2 ** z)))
    return 2 * math.pi * 6378137.0 / (tilesize * 2 ** z) * math.cos(lat)


def _ground_pixel_xy_m(grid: TileGrid, z: int, x: int, y: int,
                       tilesize: int = 256) -> tuple[float, float]:
    """Ground metres per pixel east-west and north-south of a tile of a geographic grid
    (CGCS2000Quad), at its centre: a degree of longitude is cos(latitude) of one of
    latitude (on the sphere _ground_pixel_m uses, radius 6 378 137 m)."""
    import math

    b = grid.tms.xy_bounds(x, y, z)
    per_degree = 2 * math.pi * 6378137.0 / 360
    lat = math.radians((b.top + b.bottom) / 2)
    return ((b.right - b.left) / tilesize * per_degree * math.cos(lat),
            (b.top - b.bottom) / tilesize * per_degree)


def _hillshade_class():
    from titiler.core.algorithm import HillShade

    class GroundHillShade(HillShade):
        """titiler's HillShade (the same formula, buffer and output) with each axis's own
        ground pixel size in metres, so slopes are true where pixels are not square on
        the ground (a geographic grid); `z_exaggeration` is then the plain exaggeration."""

        pixel_x_m: float = 1.0
        pixel_y_m: float = 1.0

        def __call__(self, img):
            import numpy
            from rasterio import windows
            from rio_tiler.models import ImageData

            # titiler: x, y = numpy.gradient(heights) — per pixel; here per metre
            x, y = numpy.gradient(img.array[0], self.pixel_y_m, self.pixel_x_m)
            x *= self.z_exaggeration
            y *= self.z_exaggeration
            slope = numpy.pi / 2.0 - numpy.arctan(numpy.sqrt(x * x + y * y))
            aspect = numpy.arctan2(-x, y)
            azimuth = numpy.deg2rad(360.0 - self.azimuth)
            altitude = numpy.deg2rad(self.angle_altitude)
            shaded = numpy.sin(altitude) * numpy.sin(slope) + numpy.cos(altitude) \
                * numpy.cos(slope) * numpy.cos(azimuth - aspect)
            data = 255 * (shaded + 1) / 2
            data[data < 0] = 0
            bounds = img.bounds
            if self.buffer:
                data = data[self.buffer:-self.buffer, self.buffer:-self.buffer]
                bounds = windows.bounds(windows.Window(col_off=self.buffer, row_off=self.buffer,
                                                       width=data.shape[1],
                                                       height=data.shape[0]), img.transform)
            return ImageData(data.astype(self.output_dtype), assets=img.assets, crs=img.crs,
                             bounds=bounds, band_descriptions=["hillshade"])
    return GroundHillShade


_GroundHillShade = _hillshade_class()


def _tile_matrix_sets():
    """titiler's supported sets: morecantile's, and the platform's CGCS2000Quad."""
    import morecantile

    return morecantile.tms.register({CGCS2000_QUAD: GRIDS[CGCS2000_QUAD].tms})


def _png():
    from titiler.core.resources.enums import ImageType

    return ImageType.png


def _zooms(path: str) -> tuple[int, int]:
    from rio_tiler.io import Reader

    with Reader(path) as src:
        return src.minzoom, src.maxzoom

