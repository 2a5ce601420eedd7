"""Tile sources and their SQL: one MVT per (source, z, x, y, instant), built in PostGIS.

A source is a layer's version table read as a snapshot (valid @> T, as known now or at
K), or the public population aggregate. The SQL is fixed text per (source, mode) with
bound parameters, so psycopg prepares it once per connection.

Dense tiles: below a source's `detail_zoom` features are clustered on a 16 × 16 grid
per tile (one point per cell carrying `count`); from `detail_zoom` on every feature is
in the tile. Nothing is dropped silently: a cluster counts what it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import morecantile

from gisplatform.temporal import contains_sql, spatial_first

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
EXTENT = 4096
BUFFER = 64  # tile units around the tile kept so lines and labels join across edges
CLUSTER_CELLS = 16  # per tile side, below detail zoom
MAX_ZOOM = 22
# Tiles are served in WebMercatorQuad only: MapLibre and Cesium render no other grid.


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


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise TileRequestError(f"zoom {z} is outside 0..{MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TileRequestError(f"tile {z}/{x}/{y} does not exist: x and y run 0..{n - 1} at zoom {z}")


def tile_params(z: int, x: int, y: int, at: datetime | None, known_at: datetime | None) -> dict:
    """Bound parameters: the tile's lon/lat envelope (with the buffer) for the index, its
    Web Mercator envelope for ST_AsMVTGeom, and the instants."""
    b = WEB_MERCATOR.xy_bounds(x, y, z)
    size = b.right - b.left
    pad = size * BUFFER / EXTENT
    w, s = WEB_MERCATOR.lnglat(b.left - pad, b.bottom - pad)
    e, n = WEB_MERCATOR.lnglat(b.right + pad, b.top + pad)
    return {"z": z, "x": x, "y": y, "w": w, "s": s, "e": e, "n": n,
            "cell": size / CLUSTER_CELLS, "tol": size / EXTENT * 2,
            "at": at, "known": known_at}


def _q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _time_filter(known: bool) -> str:
    rec = contains_sql("v.recorded", "%(known)s::timestamptz") if known else "upper_inf(v.recorded)"
    return f"{contains_sql('v.valid', 'coalesce(%(at)s::timestamptz, now())')} and {rec}"


def _envelope() -> str:
    return "st_makeenvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4490)"


def _in_tile(src: TileSource, columns: str) -> str:
    """The versions meeting the tile's envelope (with valid, recorded and `columns`), by
    the geometry index; the time filter follows (temporal.spatial_first says why)."""
    return spatial_first(f"city.{_q(src.version_table)}", "v", f"v.geom && {_envelope()}",
                         f"v.valid, v.recorded, {columns}")


def detail_sql(src: TileSource, known: bool, simplify: bool) -> str:
    geom = "st_transform(v.geom, 3857)"
    if simplify and src.polygonal:
        # a vertex closer than two tile units to the line would vanish in the grid anyway
        geom = f"st_simplify({geom}, %(tol)s, true)"
    cols = "".join(f", v.{_q(p)}" for p in src.properties)
    return f"""
        select st_asmvt(t.*, {_lit(src.name)}, {EXTENT}, 'geom', 'vid') from (
          select v.vid, v.fid, lower(v.valid)::text as valid_from, upper(v.valid)::text as valid_to
                 {cols},
                 st_asmvtgeom({geom}, st_tileenvelope(%(z)s, %(x)s, %(y)s), {EXTENT}, {BUFFER}, true)
                   as geom
          from {_in_tile(src, "v.vid, v.fid, v.geom" + cols)}
          where {_time_filter(known)}
          offset 0  -- keeps the outer filter from running st_asmvtgeom a second time
        ) t where t.geom is not null"""


def cluster_sql(src: TileSource, known: bool) -> str:
    point = "st_pointonsurface(v.geom)" if src.surface_point else "v.geom"
    return f"""
        select st_asmvt(t.*, {_lit(src.name)}, {EXTENT}, 'geom') from (
          select c.count, true as cluster,
                 st_asmvtgeom(c.g, st_tileenvelope(%(z)s, %(x)s, %(y)s), {EXTENT}, 0, true) as geom
          from (
            select count(*) as count, st_centroid(st_collect(p.g)) as g
            from (select st_transform({point}, 3857) as g
                  from {_in_tile(src, "v.geom")}
                  where {_time_filter(known)}) p
            where p.g && st_tileenvelope(%(z)s, %(x)s, %(y)s)
            group by st_snaptogrid(p.g, %(cell)s)
          ) c
        ) t where t.geom is not null"""


def population_sql(src: TileSource, by_area: bool) -> str:
    fn = "population_by_area" if by_area else "population_by_grid"
    return f"""
        select st_asmvt(t.*, {_lit(src.name)}, {EXTENT}, 'geom') from (
          select a.code, a.name, a.total, a.registered, a.floating,
                 st_asmvtgeom(st_simplify(st_transform(a.geom, 3857), %(tol)s, true),
                              st_tileenvelope(%(z)s, %(x)s, %(y)s), {EXTENT}, {BUFFER}, true) as geom
          from city.{fn}(coalesce(%(at)s::timestamptz, now()), {_envelope()}) a
        ) t where t.geom is not null"""


def tile_sql(src: TileSource, z: int, known: bool, pyramid: bool = False) -> str:
    """The statement for this source at zoom z (few distinct texts: each is prepared,
    but the pyramid's: tiles/service.py). `pyramid`: the source's pyramid is built for z
    (tiles/pyramid.py); used for current knowledge only."""
    if src.kind == "population":
        if known:
            raise TileRequestError(f"{src.name} is an aggregate of the current records; "
                                   "known_at is not available for it")
        return population_sql(src, by_area=z < POPULATION_AREA_BELOW)
    if z < src.detail_zoom:
        if pyramid and not known:
            from .pyramid import pyramid_sql

            return pyramid_sql(src)
        return cluster_sql(src, known)
    return detail_sql(src, known, simplify=z < 14)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
