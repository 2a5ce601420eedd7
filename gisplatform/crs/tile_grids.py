"""The tile grids (OGC 2D Tile Matrix Sets) the platform serves tiles in.

Two, both defined with morecantile so that tile ↔ coordinate arithmetic is the library's,
never ours:

- **WebMercatorQuad** (EPSG:3857): what MapLibre, Cesium and QGIS's XYZ layers render;
  the grid of every `/tiles/{layer}/{z}/{x}/{y}.mvt` and of the raster basemaps.
- **CGCS2000Quad** (EPSG:4490): the geographic quad grid of Chinese map clients
  (天地图-style 经纬度 tiles): at zoom 0 two 256 × 256 tiles covering lon −180..180 and
  lat −90..90, each zoom doubling both ways — OGC's WorldCRS84Quad grid (cell sizes,
  origin at lon −180 / lat 90, the GoogleCRS84Quad scale set), in CGCS2000. The data is
  stored in EPSG:4490, so its tiles are cut without any reprojection.

Why the id `CGCS2000Quad`: OGC's tile matrix sets are named <CRS or datum><layout>
(WorldCRS84Quad, EuropeanETRS89_LAEAQuad, UTM31WGS84Quad), and OGC's example sets
(schemas.opengis.net/tms/2.0, shipped with morecantile) call the EPSG:4326 twin of
WorldCRS84Quad — the same grid with the authority's lat, lon axis order — `WGS1984Quad`;
the same grid on the CGCS2000 datum is therefore `CGCS2000Quad`. 天地图's WMTS calls its
grid `c` (`w` for Web Mercator): a one-letter matrix set name, not an identifier a client
could recognise elsewhere. Two differences from 天地图 a client should know: its levels
count from 1 (its level n is our zoom n − 1: the same tiles), and its capabilities state
scale denominators at 96 dpi where OGC tile matrix sets use 0.28 mm pixels (×1.058; the
cell sizes, hence the tiles, agree).
The set is not registered with OGC, so it has no OGC URI: the served definition
(`/ogc/tileMatrixSets/CGCS2000Quad`) is its reference.

Zooms: CGCS2000Quad's zoom z has WebMercatorQuad's z + 1 scale (its zoom 0 is 2 × 1 tiles
of 180°), so it stops at 21 where WebMercatorQuad stops at 22, and the per-layer density
rules (clusters below a detail zoom, simplification, population districts) compare the
WebMercatorQuad zoom of the same scale (`TileGrid.scale_zoom`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import morecantile
import pyproj

WEB_MERCATOR_QUAD = "WebMercatorQuad"
CGCS2000_QUAD = "CGCS2000Quad"
GOOGLE_CRS84_QUAD = "http://www.opengis.net/def/wkss/OGC/1.0/GoogleCRS84Quad"
MAX_ZOOM = 22  # the finest WebMercatorQuad zoom the platform renders


@dataclass(frozen=True)
class TileGrid:
    id: str
    tms: morecantile.TileMatrixSet
    srid: int  # the PostGIS SRID of the grid's CRS: tile envelopes and MVT geometry in it
    maxzoom: int
    uri: str | None  # the OGC registry's URI, when the set is registered there
    title: str

    @cached_property
    def zoom_offset(self) -> int:
        """WebMercatorQuad's zoom of the same scale minus this grid's (0 or 1 here),
        from the two sets' zoom-0 scale denominators."""
        web = morecantile.tms.get(WEB_MERCATOR_QUAD).matrix(0).scaleDenominator
        return round(math.log2(web / self.tms.matrix(0).scaleDenominator))

    def scale_zoom(self, z: int) -> int:
        """The WebMercatorQuad zoom whose scale this grid's zoom z has."""
        return z + self.zoom_offset

    def matrix_size(self, z: int) -> tuple[int, int]:
        """(columns, rows) of zoom z."""
        m = self.tms.matrix(z)
        return m.matrixWidth, m.matrixHeight


def _cgcs2000_quad() -> morecantile.TileMatrixSet:
    return morecantile.TileMatrixSet.custom(
        [-180.0, -90.0, 180.0, 90.0], pyproj.CRS.from_epsg(4490),
        matrix_scale=[2, 1],  # two tiles across at zoom 0, as WorldCRS84Quad
        minzoom=0, maxzoom=MAX_ZOOM - 1,
        id=CGCS2000_QUAD, title="CGCS2000 (EPSG:4490) geographic quad grid for the world",
        orderedAxes=["Lat", "Lon"],  # EPSG:4490's axis order (pointOfOrigin is [90, -180])
        wellKnownScaleSet=GOOGLE_CRS84_QUAD)


GRIDS: dict[str, TileGrid] = {g.id: g for g in (
    TileGrid(WEB_MERCATOR_QUAD, morecantile.tms.get(WEB_MERCATOR_QUAD), 3857, MAX_ZOOM,
             "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
             "Google Maps Compatible for the World"),
    TileGrid(CGCS2000_QUAD, _cgcs2000_quad(), 4490, MAX_ZOOM - 1, None,
             "CGCS2000 (EPSG:4490) geographic quad grid for the world"),
)}
WEB_MERCATOR = GRIDS[WEB_MERCATOR_QUAD]
CGCS2000 = GRIDS[CGCS2000_QUAD]


def tile_matrix_set_document(grid: TileGrid) -> dict:
    """The OGC Two Dimensional Tile Matrix Set (2.0) JSON of a grid, as served."""
    doc = grid.tms.model_dump(mode="json", exclude_none=True)
    if grid.uri:
        doc["uri"] = grid.uri
    return doc


__all__ = ["CGCS2000", "CGCS2000_QUAD", "GRIDS", "MAX_ZOOM", "TileGrid", "WEB_MERCATOR",
           "WEB_MERCATOR_QUAD", "tile_matrix_set_document"]
