"""WMTS 1.0.0 (KVP and RESTful) over the platform's tile grids: WebMercatorQuad and
CGCS2000Quad (gisplatform/crs/tile_grids.py, morecantile's arithmetic).

MapServer has no WMTS (MapCache is its tile server); here a tile of a layer is the WMS
GetMap of the tile's bounds, drawn by the same MapServer view (so the same access, masks
and styles), and the DEM hillshade is the raster tile /raster already renders. The
capabilities are written here from the grids.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from gisplatform.crs.tile_grids import GRIDS, TileGrid

from .ows import OwsError

__all__ = ["capabilities", "tile_request", "FORMATS"]

FORMATS = {"image/png": "png", "image/jpeg": "jpg"}
MAX_WMTS_ZOOM = 20


def _crs_urn(grid: TileGrid) -> str:
    return f"urn:ogc:def:crs:EPSG::{grid.srid}"


def _matrix_set(grid: TileGrid) -> str:
    tms = grid.tms
    out = [f"<TileMatrixSet><ows:Identifier>{grid.id}</ows:Identifier>"
           f"<ows:SupportedCRS>{_crs_urn(grid)}</ows:SupportedCRS>"]
    if grid.id == "WebMercatorQuad":
        out.append("<WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"
                   "</WellKnownScaleSet>")
    for z in range(0, min(grid.maxzoom, MAX_WMTS_ZOOM) + 1):
        m = tms.matrix(z)
        x0, y0 = m.pointOfOrigin
        # EPSG:4490's axis order is lat, lon: the corner is written in it
        corner = f"{y0} {x0}" if grid.srid == 4490 else f"{x0} {y0}"
        out.append(f"<TileMatrix><ows:Identifier>{z}</ows:Identifier>"
                   f"<ScaleDenominator>{m.scaleDenominator!r}</ScaleDenominator>"
                   f"<TopLeftCorner>{corner}</TopLeftCorner>"
                   f"<TileWidth>{m.tileWidth}</TileWidth><TileHeight>{m.tileHeight}</TileHeight>"
                   f"<MatrixWidth>{m.matrixWidth}</MatrixWidth>"
                   f"<MatrixHeight>{m.matrixHeight}</MatrixHeight></TileMatrix>")
    out.append("</TileMatrixSet>")
    return "".join(out)


def capabilities(base: str, layers: list[tuple[str, str]], bbox, token_query: str = "") -> str:
    """`layers`: (identifier, title) of what the caller may read; `bbox` lon/lat."""
    w, s, e, n = bbox
    q = escape(token_query)
    items = []
    for name, title in layers:
        links = "".join(f"<TileMatrixSetLink><TileMatrixSet>{g}</TileMatrixSet>"
                        "</TileMatrixSetLink>" for g in GRIDS)
        urls = "".join(
            f'<ResourceURL format="{mt}" resourceType="tile" template="{escape(base)}/wmts/'
            f'1.0.0/{escape(name)}/{{Style}}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileRow}}/'
            f'{{TileCol}}.{ext}{q}"/>' for mt, ext in FORMATS.items())
        items.append(
            f"<Layer><ows:Title>{escape(title)}</ows:Title>"
            f"<ows:WGS84BoundingBox><ows:LowerCorner>{w} {s}</ows:LowerCorner>"
            f"<ows:UpperCorner>{e} {n}</ows:UpperCorner></ows:WGS84BoundingBox>"
            f"<ows:Identifier>{escape(name)}</ows:Identifier>"
            f'<Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>'
            + "".join(f"<Format>{mt}</Format>" for mt in FORMATS)
            + "<Dimension><ows:Identifier>Time</ows:Identifier><Default>current</Default>"
              "<Current>true</Current><Value>current</Value></Dimension>"
            + links + urls + "</Layer>")
    kvp = escape(f"{base}/wmts?")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Capabilities xmlns="http://www.opengis.net/wmts/1.0" '
        'xmlns:ows="http://www.opengis.net/ows/1.1" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.0.0" '
        'xsi:schemaLocation="http://www.opengis.net/wmts/1.0 '
        'http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd">'
        "<ows:ServiceIdentification><ows:Title>全时空智慧城市综合信息应用平台 Fushun city platform"
        "</ows:Title><ows:ServiceType>OGC WMTS</ows:ServiceType>"
        "<ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion></ows:ServiceIdentification>"
        "<ows:OperationsMetadata>"
        + "".join(f'<ows:Operation name="{op}"><ows:DCP><ows:HTTP><ows:Get xlink:href="{kvp}">'
                  "<ows:Constraint name=\"GetEncoding\"><ows:AllowedValues><ows:Value>KVP"
                  "</ows:Value></ows:AllowedValues></ows:Constraint></ows:Get></ows:HTTP>"
                  "</ows:DCP></ows:Operation>" for op in ("GetCapabilities", "GetTile"))
        + "</ows:OperationsMetadata><Contents>" + "".join(items)
        + "".join(_matrix_set(g) for g in GRIDS.values())
        + f'</Contents><ServiceMetadataURL xlink:href="{escape(base)}/wmts/1.0.0/'
          'WMTSCapabilities.xml"/></Capabilities>\n')


def tile_request(layer: str, style: str, tms: str, matrix: str, row: str, col: str,
                 fmt: str) -> tuple[TileGrid, int, int, int, tuple[float, float, float, float]]:
    """The checked tile: its grid, z, x (column), y (row) and bounds in the grid's CRS."""
    if style not in ("default", ""):
        raise OwsError("InvalidParameterValue", "the one style is 'default'", "Style")
    if fmt not in FORMATS:
        raise OwsError("InvalidParameterValue", f"Format must be one of {', '.join(FORMATS)}",
                       "Format")
    grid = GRIDS.get(tms)
    if grid is None:
        raise OwsError("InvalidParameterValue", f"TileMatrixSet must be one of {', '.join(GRIDS)}",
                       "TileMatrixSet")
    try:
        z, y, x = int(matrix), int(row), int(col)
    except ValueError:
        raise OwsError("InvalidParameterValue", "TileMatrix, TileRow and TileCol are whole "
                       "numbers", "TileMatrix") from None
    if not 0 <= z <= min(grid.maxzoom, MAX_WMTS_ZOOM):
        raise OwsError("InvalidParameterValue", f"TileMatrix runs 0..{MAX_WMTS_ZOOM}",
                       "TileMatrix")
    cols, rows = grid.matrix_size(z)
    if not 0 <= x < cols:
        raise OwsError("TileOutOfRange", f"TileCol runs 0..{cols - 1} at {z}", "TileCol")
    if not 0 <= y < rows:
        raise OwsError("TileOutOfRange", f"TileRow runs 0..{rows - 1} at {z}", "TileRow")
    b = grid.tms.xy_bounds(x, y, z)
    return grid, z, x, y, (b.left, b.bottom, b.right, b.top)
