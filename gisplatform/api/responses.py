"""What the platform's routes declare they answer, for its OpenAPI document (/openapi.json).

Every failure is `{"code", "description"}` (the OGC API exception shape); `errors(...)`
declares the statuses a route gives. The success shapes here document, they do not filter:
routes return their own JSON. schemathesis checks answers against all of it
(tests/test_fuzz.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Problem(BaseModel):
    code: str
    description: str


MEANING = {
    400: "A parameter has an invalid value.",
    401: "The token is unknown, revoked or expired, or the layer is shared on condition "
         "and no token was given.",
    403: "The token has no grant for this layer.",
    404: "No such resource.",
    409: "The write conflicts with the current version.",
    415: "The request body's media type is not accepted.",
    503: "The database is unreachable.",
}


def errors(*statuses: int) -> dict:
    return {s: {"model": Problem, "description": MEANING[s]} for s in statuses}


class _Open(BaseModel):
    """Documents the fields every answer has; answers may carry more."""
    model_config = ConfigDict(extra="allow")


class Health(_Open):
    status: str
    version: str
    database: dict
    backup: dict | None = None  # the newest backup (a warning when old or none; not a failure)


class SearchHit(_Open):
    layer: str
    fid: str
    label: str | None
    lon: float
    lat: float
    bbox: list[float]
    item: str


class SearchResults(_Open):
    query: str
    results: list[SearchHit]


class TileLayer(_Open):
    id: str
    title: str
    tilejson: str
    tiles: str


class TileLayers(_Open):
    layers: list[TileLayer]


class TileJSON(_Open):
    tilejson: str
    tiles: list[str]
    minzoom: int
    maxzoom: int
    bounds: list[float]


class Style(_Open):
    version: int
    sources: dict
    layers: list[dict]


class Basemap(_Open):
    name: str
    title: str
    tile_matrix_set: str
    minzoom: int
    maxzoom: int
    attribution: str
    default: bool
    tiles: str


class Basemaps(_Open):
    basemaps: list[Basemap]


class Tileset3D(_Open):
    """3D Tiles 1.x tileset.json: the required members."""
    asset: dict
    geometricError: float
    root: dict


class Tilesets3D(_Open):
    tilesets: list[dict]


class TerrainLayer(_Open):
    """Cesium's layer.json for quantized-mesh terrain."""
    tilejson: str
    format: str
    tiles: list[str]
    version: str
    available: list


def media_types(*media: str, description: str = "OK") -> dict:
    """A 200 whose body is one of these (binary or text) media types."""
    return {200: {"description": description, "content": {m: {} for m in media}}}
