"""Tile sources and their SQL: one MVT per (source, z, x, y, instant), built in PostGIS.

A source is a layer's version table read as a snapshot (valid @> T, as known now or at
K), or the public population aggregate. The SQL is fixed text per (source, mode) with
bound parameters, so psycopg prepares it once per connection.

Dense tiles: below a source's `detail_zoom` features are clustered on a 16 × 16 grid
per tile (one point per cell carrying `count`); from `detail_zoom` on every feature is
in the tile. Nothing is dropped silently: a cluster counts what it stands for.

The tile grid is a parameter of the SQL (gisplatform/crs/tile_grids.py): the tile's
envelope and the geometry ST_AsMVTGeom cuts are in the grid's CRS — Web Mercator for
WebMercatorQuad (the versions transformed to 3857, the envelope ST_TileEnvelope's), the
storage CRS itself for CGCS2000Quad (a lon/lat box, the versions as stored). Zoom
thresholds compare the WebMercatorQuad zoom of the same scale (`TileGrid.scale_zoom`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gisplatform.crs import STORAGE_SRID
from gisplatform.crs.tile_grids import GRIDS, WEB_MERCATOR_QUAD, TileGrid
from gisplatform.crs.tile_grids import WEB_MERCATOR as WEB_MERCATOR_GRID
from gisplatform.temporal import contains_sql, spatial_first

WEB_MERCATOR = WEB_MERCATOR_GRID.tms
EXTENT = 4096
BUFFER = 64  # tile units around the tile kept so lines and labels join across edges
CLUSTER_CELLS = 16  # per tile side, below detail zoom
MAX_ZOOM = WEB_MERCATOR_GRID.maxzoom
# WebMercatorQuad is what MapLibre, Cesium and QGIS's XYZ layers render; CGCS2000Quad is
# for Chinese (天地图-style) clients drawing in EPSG:4490.


@dataclass(frozen=True)
class TileSource:
    name: str
    title: str
    geometry_type: str
    sharing: str
    # layer: a version table; population: the aggregate by area (low zoom) / grid cell
    kind: str = "layer"
    version_table: str = ""
    properties: tuple[str, ...] = ()
    property_types: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    detail_zoom: int = 12
    minzoom: int = 0
    maxzoom: int = 16
    color: str = "#3388ff"
    theme: str = ""
    # layers whose writes change this source's tiles (a layer always depends on itself)
    depends_on: tuple[str, ...] = ()
    description: str = ""
    # attribute → "中文 English" title (a layer definition's), for popups and legends
    field_titles: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    label: str | None = None  # the attribute the style writes beside each feature

    @property
    def linear(self) -> bool:
        return "LineString" in self.geometry_type

    @property
    def surface_point(self) -> bool:
        """Whether a feature's point (clusters, the pyramid) is st_pointonsurface: for
        every geometry but a single point (a line's is on the line)."""
        return self.geometry_type != "Point"

    @property
    def polygonal(self) -> bool:
        return "Polygon" in self.geometry_type


POPULATION_AREA_BELOW = 12  # population-grid tiles show districts below this zoom


class TileRequestError(ValueError):
    """Bad z/x/y, datetime or known_at: HTTP 400."""


def grid_named(name: str) -> TileGrid | None:
    """A tile grid by its tile matrix set id (case as the OGC registry spells it)."""
    return GRIDS.get(name)


def check_tile(z: int, x: int, y: int, grid: TileGrid = WEB_MERCATOR_GRID) -> None:
    where = "" if grid.id == WEB_MERCATOR_QUAD else f" in {grid.id}"
    if not 0 <= z <= grid.maxzoom:
        raise TileRequestError(f"zoom {z} is outside 0..{grid.maxzoom}{where}")
    cols, rows = grid.matrix_size(z)
    if not (0 <= x < cols and 0 <= y < rows):
        runs = (f"x and y run 0..{cols - 1}" if cols == rows
                else f"x runs 0..{cols - 1} and y 0..{rows - 1}")
        raise TileRequestError(f"tile {z}/{x}/{y} does not exist{where}: {runs} at zoom {z}")


def tile_params(z: int, x: int, y: int, at: datetime | None, known_at: datetime | None,
                grid: TileGrid = WEB_MERCATOR_GRID) -> dict:
    """Bound parameters: the tile's lon/lat envelope (with the buffer) for the index, its
    envelope in the grid's CRS for ST_AsMVTGeom (tx0 … ty1; WebMercatorQuad's is
    PostGIS's ST_TileEnvelope of z, x, y), its cluster cell and simplification tolerance
    in the grid's units, and the instants."""
    tms = grid.tms
    b = tms.xy_bounds(x, y, z)
    size = b.right - b.left
    pad = size * BUFFER / EXTENT
    if grid.srid == STORAGE_SRID:  # the grid's coordinates are the storage's lon/lat
        w, s, e, n = b.left - pad, b.bottom - pad, b.right + pad, b.top + pad
    else:
        w, s = tms.lnglat(b.left - pad, b.bottom - pad)
        e, n = tms.lnglat(b.right + pad, b.top + pad)
    return {"z": z, "x": x, "y": y, "w": w, "s": s, "e": e, "n": n,
            "tx0": b.left, "ty0": b.bottom, "tx1": b.right, "ty1": b.top,
            "cell": size / CLUSTER_CELLS, "tol": size / EXTENT * 2,
            "at": at, "known": known_at}


def _q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _time_filter(known: bool) -> str:
    rec = contains_sql("v.recorded", "%(known)s::timestamptz") if known else "upper_inf(v.recorded)"
    return f"{contains_sql('v.valid', 'coalesce(%(at)s::timestamptz, now())')} and {rec}"


def _envelope() -> str:
    return "st_makeenvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4490)"


def _tile_envelope(grid: TileGrid) -> str:
    """The tile's bounds in the grid's CRS, as ST_AsMVTGeom takes them."""
    if grid.id == WEB_MERCATOR_QUAD:  # PostGIS's own: the text WebMercatorQuad tiles have had
        return "st_tileenvelope(%(z)s, %(x)s, %(y)s)"
    return f"st_makeenvelope(%(tx0)s, %(ty0)s, %(tx1)s, %(ty1)s, {grid.srid})"


def _in_grid(grid: TileGrid, geom: str) -> str:
    """A stored (EPSG:4490) geometry in the grid's CRS: no transformation when it is the
    storage CRS."""
    return geom if grid.srid == STORAGE_SRID else f"st_transform({geom}, {grid.srid})"


def _in_tile(src: TileSource, columns: str) -> str:
    """The versions meeting the tile's envelope (with valid, recorded and `columns`), by
    the geometry index; the time filter follows (temporal.spatial_first says why)."""
    return spatial_first(f"city.{_q(src.version_table)}", "v", f"v.geom && {_envelope()}",
                         f"v.valid, v.recorded, {columns}")


def detail_sql(src: TileSource, known: bool, simplify: bool,
               grid: TileGrid = WEB_MERCATOR_GRID) -> str:
    geom = _in_grid(grid, "v.geom")
    if simplify and src.polygonal:
        # a vertex closer than two tile units to the line would vanish in the grid anyway
        geom = f"st_simplify({geom}, %(tol)s, true)"
    cols = "".join(f", v.{_q(p)}" for p in src.properties)
    return f"""
        select st_asmvt(t.*, {_lit(src.name)}, {EXTENT}, 'geom', 'vid') from (
          select v.vid, v.fid, lower(v.valid)::text as valid_from, upper(v.valid)::text as valid_to
                 {cols},
                 st_asmvtgeom({geom}, {_tile_envelope(grid)}, {EXTENT}, {BUFFER}, true)
                   as geom
          from {_in_tile(src, "v.vid, v.fid, v.geom" + cols)}
          where {_time_filter(known)}
          offset 0  -- keeps the outer filter from running st_asmvtgeom a second time
        ) t where t.geom is not null"""


def cluster_sql(src: TileSource, known: bool, grid: TileGrid = WEB_MERCATOR_GRID) -> str:
    point = "st_pointonsurface(v.geom)" if src.surface_point else "v.geom"
    envelope = _tile_envelope(grid)
    return f"""
        select st_asmvt(t.*, {_lit(src.name)}, {EXTENT}, 'geom') from (
          select c.count, true as cluster,
                 st_asmvtgeom(c.g, {envelope}, {EXTENT}, 0, true) as geom
          from (
            select count(*) as count, st_centroid(st_collect(p.g)) as g
            from (select {_in_grid(grid, point)} as g
                  from {_in_tile(src, "v.geom")}
                  where {_time_filter(known)}) p
            where p.g && {envelope}
            group by st_snaptogrid(p.g, %(cell)s)
          ) c
        ) t where t.geom is not null"""


def population_sql(src: TileSource, by_area: bool, grid: TileGrid = WEB_MERCATOR_GRID) -> str:
    fn = "population_by_area" if by_area else "population_by_grid"
    return f"""
        select st_asmvt(t.*, {_lit(src.name)}, {EXTENT}, 'geom') from (
          select a.code, a.name, a.total, a.registered, a.floating,
                 st_asmvtgeom(st_simplify({_in_grid(grid, "a.geom")}, %(tol)s, true),
                              {_tile_envelope(grid)}, {EXTENT}, {BUFFER}, true) as geom
          from city.{fn}(coalesce(%(at)s::timestamptz, now()), {_envelope()}) a
        ) t where t.geom is not null"""


def tile_sql(src: TileSource, z: int, known: bool, pyramid: bool = False,
             grid: TileGrid = WEB_MERCATOR_GRID) -> str:
    """The statement for this source at zoom z of `grid` (few distinct texts: each is
    prepared, but the pyramid's: tiles/service.py). `pyramid`: the source's pyramid is
    built for z (tiles/pyramid.py; WebMercatorQuad's cells, so for that grid only); used
    for current knowledge only. Thresholds compare the WebMercatorQuad zoom of the same
    scale, so a layer is as dense on a CGCS2000Quad map as on a Web Mercator one."""
    level = grid.scale_zoom(z)
    if src.kind == "population":
        if known:
            raise TileRequestError(f"{src.name} is an aggregate of the current records; "
                                   "known_at is not available for it")
        return population_sql(src, by_area=level < POPULATION_AREA_BELOW, grid=grid)
    if level < src.detail_zoom:
        if pyramid and not known and grid.id == WEB_MERCATOR_QUAD:
            from .pyramid import pyramid_sql

            return pyramid_sql(src)
        return cluster_sql(src, known, grid)
    return detail_sql(src, known, simplify=level < 14, grid=grid)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
