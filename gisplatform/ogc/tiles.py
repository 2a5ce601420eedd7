"""OGC API Tiles for the collections: metadata through pygeoapi, tiles from /tiles.

pygeoapi lists each collection's tilesets and their metadata from this provider. The
tiles themselves (`/ogc/collections/{id}/tiles/WebMercatorQuad/{z}/{row}/{col}`) are
answered by a route of the app placed before the pygeoapi mount, through the same cache
and access check as `/tiles/{layer}/{z}/{x}/{y}.mvt`; `get_tiles` here only refuses
other tile matrix sets.
(pygeoapi's MVTPostgreSQLProvider has these documents too but needs geoalchemy2 and a
table engine we do not use.)
"""

from __future__ import annotations

from pygeoapi.models.provider.base import LinkType, TileMatrixSetEnum, TileSetMetadata
from pygeoapi.provider.base import ProviderItemNotFoundError
from pygeoapi.provider.base_mvt import BaseMVTProvider
from pygeoapi.util import url_join

MVT = "application/vnd.mapbox-vector-tile"
WEBMERCATOR = TileMatrixSetEnum.WEBMERCATORQUAD.value


class PlatformTileProvider(BaseMVTProvider):
    def __init__(self, provider_def):
        super().__init__(provider_def)
        self.layer = provider_def["layer"]

    def __repr__(self):
        return f"<PlatformTileProvider> {self.layer}"

    def get_layer(self):
        return self.layer

    def get_tiling_schemes(self):
        # MapLibre, Cesium and QGIS's XYZ vector tiles render Web Mercator only
        return [WEBMERCATOR]

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
        tiles = url_join(server_url, f"collections/{dataset}/tiles/{tileset}",
                         "{tileMatrix}/{tileRow}/{tileCol}")
        content = TileSetMetadata(title=title, description=description, keywords=keywords,
                                  crs=WEBMERCATOR.crs,
                                  tileMatrixSetURI=WEBMERCATOR.tileMatrixSetURI)
        content.links = [
            LinkType(href=url_join(server_url, "TileMatrixSets", WEBMERCATOR.tileMatrixSet),
                     rel="http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                     type="application/json", title="WebMercatorQuad tile matrix set"),
            LinkType(href=tiles, rel="item", type=MVT, title=f"{tileset} vector tiles of {layer}"),
        ]
        return content.model_dump(exclude_none=True, by_alias=True)

    def get_html_metadata(self, dataset, server_url, layer, tileset, title, description,
                          keywords, **kwargs):
        return {"id": dataset, "title": title, "tileset": tileset,
                "collections_path": url_join(server_url, f"collections/{dataset}/tiles/{tileset}",
                                             "{tileMatrix}/{tileRow}/{tileCol}"),
                "json_url": url_join(server_url,
                                     f"collections/{dataset}/tiles/{tileset}/metadata") + "?f=json"}

    def get_tiles(self, layer=None, tileset=None, z=None, y=None, x=None, format_=None):
        # the platform's route answers WebMercatorQuad; pygeoapi passes on any other id
        raise ProviderItemNotFoundError(
            user_msg=f"no tile matrix set {tileset!r}: only WebMercatorQuad is offered")
