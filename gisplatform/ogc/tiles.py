"""OGC API Tiles for the collections: metadata through pygeoapi, tiles from /tiles.

pygeoapi lists each collection's tilesets and their metadata from this provider: one per
tile grid the platform serves (gisplatform/crs/tile_grids.py) — WebMercatorQuad and
CGCS2000Quad. The tiles themselves
(`/ogc/collections/{id}/tiles/{tileMatrixSetId}/{z}/{row}/{col}`) are answered by routes
of the app placed before the pygeoapi mount, one per grid, through the same cache and
access check as `/tiles/{layer}/…`; `get_tiles` here only refuses other tile matrix sets.
`offer_tile_matrix_sets` adds CGCS2000Quad to pygeoapi's `/TileMatrixSets` documents
(which list only the sets pygeoapi ships) and the spelling OGC API Tiles gives those
paths, `/tileMatrixSets`.
(pygeoapi's MVTPostgreSQLProvider has these documents too but needs geoalchemy2 and a
table engine we do not use.)
"""

from __future__ import annotations

from enum import Enum

from pygeoapi.models.provider.base import (
    LinkType,
    TileMatrixSetEnum,
    TileMatrixSetEnumType,
    TileSetMetadata,
)
from pygeoapi.provider.base import ProviderItemNotFoundError
from pygeoapi.provider.base_mvt import BaseMVTProvider
from pygeoapi.util import url_join

from gisplatform.crs.tile_grids import GRIDS, TileGrid, tile_matrix_set_document

MVT = "application/vnd.mapbox-vector-tile"
# pygeoapi's own definitions (the sets it ships, WebMercatorQuad among them), by id
PYGEOAPI_SETS = {e.value.tileMatrixSet: e.value for e in TileMatrixSetEnum}
_schemes: dict[str, TileMatrixSetEnumType] = {}  # grid id → its entry, once offered


def scheme(grid: TileGrid) -> TileMatrixSetEnumType:
    """A grid as pygeoapi describes a tile matrix set: its own definition for a set
    pygeoapi ships, else ours (offer_tile_matrix_sets)."""
    return _schemes.get(grid.id) or PYGEOAPI_SETS.get(grid.id) or _entry(grid, "")


def _entry(grid: TileGrid, ogc_url: str) -> TileMatrixSetEnumType:
    doc = tile_matrix_set_document(grid)
    # an unregistered set has no OGC URI; pygeoapi requires one: its served definition
    uri = grid.uri or f"{ogc_url}/tileMatrixSets/{grid.id}"
    return TileMatrixSetEnumType(
        tileMatrixSet=grid.id, tileMatrixSetURI=uri, crs=doc["crs"],
        title=doc.get("title", grid.title), orderedAxes=doc.get("orderedAxes", []),
        wellKnownScaleSet=doc.get("wellKnownScaleSet", ""), tileMatrices=doc["tileMatrices"])


def offer_tile_matrix_sets(tiles_api, app, ogc_url: str) -> None:
    """pygeoapi's /TileMatrixSets and /TileMatrixSets/{id} list the sets it ships (read
    into an Enum at import): add the platform's others, and answer the paths as OGC API
    Tiles spells them too (/tileMatrixSets; pygeoapi's own listing links there).
    `tiles_api`: pygeoapi.api.tiles; `app`: pygeoapi's Starlette app; `ogc_url`: the
    public URL of the mount."""
    for grid in GRIDS.values():
        if grid.id not in PYGEOAPI_SETS:
            _schemes[grid.id] = _entry(grid, ogc_url)
    members = {e.name: e.value for e in TileMatrixSetEnum}
    members.update({gid.upper(): s for gid, s in _schemes.items()})
    tiles_api.TileMatrixSetEnum = Enum("TileMatrixSetEnum", members)
    from starlette.routing import Mount, Route

    for routes in [app.router.routes] + [m.routes for m in app.router.routes
                                         if isinstance(m, Mount)]:
        by_path = {r.path: r for r in routes if isinstance(r, Route)}
        for upper, lower in (("/TileMatrixSets", "/tileMatrixSets"),
                             ("/TileMatrixSets/{tileMatrixSetId}",
                              "/tileMatrixSets/{tileMatrixSetId}")):
            if upper in by_path and lower not in by_path:
                routes.insert(routes.index(by_path[upper]),
                              Route(lower, by_path[upper].endpoint, methods=["GET"]))


class PlatformTileProvider(BaseMVTProvider):
    def __init__(self, provider_def):
        super().__init__(provider_def)
        self.layer = provider_def["layer"]

    def __repr__(self):
        return f"<PlatformTileProvider> {self.layer}"

    def get_layer(self):
        return self.layer

    def get_tiling_schemes(self):
        # WebMercatorQuad: MapLibre, Cesium and QGIS's XYZ vector tiles render it;
        # CGCS2000Quad: EPSG:4490 (天地图-style) clients
        return [scheme(g) for g in GRIDS.values()]

    def get_tiles_service(self, baseurl=None, servicepath=None, dirpath=None, tile_type=None):
        self._service_url = servicepath
        links = self.get_tms_links()
        links["links"].append({
            "type": "application/json", "rel": "alternate",
            "title": "TileJSON of the same tiles (/tiles: XYZ order, datetime=, known_at=)",
            "href": self.data.split("/{z}/")[0] + ".json"})
        return links

    def get_default_metadata(self, dataset, server_url, layer, tileset, title, description,
                             keywords, **kwargs):
        grid = GRIDS.get(tileset)
        if grid is None:
            raise ProviderItemNotFoundError(user_msg=_unknown(tileset))
        tms = scheme(grid)
        tiles = url_join(server_url, f"collections/{dataset}/tiles/{tileset}",
                         "{tileMatrix}/{tileRow}/{tileCol}")
        content = TileSetMetadata(title=title, description=description, keywords=keywords,
                                  crs=tms.crs, tileMatrixSetURI=tms.tileMatrixSetURI)
        content.links = [
            LinkType(href=url_join(server_url, "TileMatrixSets", grid.id),
                     rel="http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                     type="application/json", title=f"{grid.id} tile matrix set"),
            LinkType(href=tiles, rel="item", type=MVT, title=f"{tileset} vector tiles of {layer}"),
        ]
        return content.model_dump(exclude_none=True, by_alias=True)

    def get_html_metadata(self, dataset, server_url, layer, tileset, title, description,
                          keywords, **kwargs):
        if tileset not in GRIDS:
            raise ProviderItemNotFoundError(user_msg=_unknown(tileset))
        return {"id": dataset, "title": title, "tileset": tileset,
                "collections_path": url_join(server_url, f"collections/{dataset}/tiles/{tileset}",
                                             "{tileMatrix}/{tileRow}/{tileCol}"),
                "json_url": url_join(server_url,
                                     f"collections/{dataset}/tiles/{tileset}/metadata") + "?f=json"}

    def get_tiles(self, layer=None, tileset=None, z=None, y=None, x=None, format_=None):
        # the platform's routes answer the grids it serves; pygeoapi passes on any other id
        raise ProviderItemNotFoundError(user_msg=_unknown(tileset))


def _unknown(tileset) -> str:
    return f"no tile matrix set {tileset!r}: offered are {', '.join(GRIDS)}"
