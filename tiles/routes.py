"""HTTP for vector tiles: /tiles/{layer}/{z}/{x}/{y}.mvt, TileJSON, a MapLibre style.

`/tiles/{layer}/{z}/{x}/{y}.mvt` is WebMercatorQuad (what it has always been);
`/tiles/{layer}/{tileMatrixSetId}/{z}/{x}/{y}.mvt` names the grid: `CGCS2000Quad` for
EPSG:4490 clients (gisplatform/crs/tile_grids.py), or `WebMercatorQuad` — the same tile as
the short path. Both answer through one handler: same time parameters, access decision,
cache and headers.

Every tile request asks the one security decision (`gisplatform.security.access`) before
touching the cache: a conditional layer needs a grant (401 anonymous, 403 without grant).
Tiles never carry personal attributes, so a cached tile serves every allowed caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path as FilePath
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from gisplatform.api.responses import Style, TileJSON, TileLayers, errors
from gisplatform.crs.tile_grids import WEB_MERCATOR, WEB_MERCATOR_QUAD
from gisplatform.errors import problem, refusal
from gisplatform.security import (
    ANONYMOUS,
    AccessDenied,
    AuthError,
    access,
    current_principal,
    presented_secret,
    require,
)
from gisplatform.temporal import TemporalError, parse_request_instant

from .cache import Key, Tile, when_key
from .service import TileService
from .sources import GRIDS, TileGrid, TileRequestError, TileSource, grid_named

MVT = "application/vnd.mapbox-vector-tile"
CORS = {"Access-Control-Allow-Origin": "*"}
FIELD_TYPES = {"integer": "Number", "bigint": "Number", "double precision": "Number",
               "numeric": "Number", "boolean": "Boolean"}

DATETIME_DOC = ("Instant (ISO 8601 with zone, e.g. 2020-06-01T00:00:00+08:00; a bare date is "
                "00:00 UTC+8): the city as it was then. Default: now.")
KNOWN_AT_DOC = "Instant: the records as they stood then (bitemporal); default: as known now."



def _instant(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if "/" in value:
        raise TileRequestError(f"{name}: a tile shows one instant, not an interval ({value!r})")
    try:
        return parse_request_instant(value)
    except TemporalError as e:
        raise TileRequestError(f"{name}: {e}") from None


def _denied(src: TileSource) -> JSONResponse | None:
    try:
        require(current_principal.get(), src.name, src.sharing)
    except (AuthError, AccessDenied) as e:
        return refusal(e, headers=CORS)
    return None


# Labels are drawn by MapLibre from this font, which the platform serves (the style's
# `font-faces`): Chinese and Latin alike, no glyph server, nothing from outside.
LABEL_FONT = "Droid Sans Fallback"


def tile_router(service: TileService, public_url: str, bounds: tuple[float, ...],
                basemaps: Callable[[Request], Awaitable[list[dict]]] | None = None,
                ogc_tiles: dict[str, str] | None = None,
                label_font: FilePath | None = None) -> APIRouter:
    """`basemaps`: the raster layers under the style for a request (id, tiles, bounds,
    opacity; minzoom, maxzoom, attribution, metadata, visible); `ogc_tiles`: OGC collection id → tile source, for OGC API Tiles' tile path;
    `label_font`: the TrueType file labels are drawn with (served at /tiles/fonts/)."""
    router = APIRouter(tags=["Vector tiles"], responses=errors(401))  # 401: unknown token
    sources = service.sources
    LAYER = Path(description="a tile layer (see /tiles/)",
                 json_schema_extra={"enum": sorted(sources)})

    TMS = Path(alias="tileMatrixSetId", description=(
        "the tile grid: CGCS2000Quad (EPSG:4490, lon/lat; 天地图-style) or WebMercatorQuad"),
        json_schema_extra={"enum": list(GRIDS)})

    def tile_url(name: str, request: Request, grid: str | None = None) -> str:
        keep = {k: v for k, v in request.query_params.items()
                if k in ("datetime", "known_at", "token")}
        where = f"{name}/{grid}" if grid else name
        return (f"{public_url}/tiles/{where}/{{z}}/{{x}}/{{y}}.mvt"
                + ("?" + urlencode(keep) if keep else ""))

    def readable(request: Request) -> list[TileSource]:
        p = current_principal.get()
        return [s for s in sources.values() if access(p, s.name, s.sharing).read]

    @router.get("/tiles/{layer}/{z}/{x}/{y}.mvt", response_class=Response,
                responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile"},
                           **errors(400, 403, 404)})
    async def get_tile(request: Request, layer: str = LAYER, z: int = ..., x: int = ...,
                       y: int = ...,
                       datetime_: str | None = Query(None, alias="datetime", description=DATETIME_DOC),
                       known_at: str | None = Query(None, description=KNOWN_AT_DOC)):
        """A Mapbox Vector Tile (WebMercatorQuad) of the layer at an instant."""
        return await answer(request, layer, WEB_MERCATOR, z, x, y, datetime_, known_at)

    @router.get("/tiles/{layer}/{tileMatrixSetId}/{z}/{x}/{y}.mvt", response_class=Response,
                responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile"},
                           **errors(400, 403, 404)})
    async def get_grid_tile(request: Request, layer: str = LAYER, tms: str = TMS,
                            z: int = ..., x: int = ..., y: int = ...,
                            datetime_: str | None = Query(None, alias="datetime",
                                                          description=DATETIME_DOC),
                            known_at: str | None = Query(None, description=KNOWN_AT_DOC)):
        """A Mapbox Vector Tile of the layer at an instant in a named tile grid: in
        CGCS2000Quad the tile is a lon/lat box and its coordinates are EPSG:4490's."""
        grid = grid_named(tms)
        if grid is None:
            return problem(404, f"no tile matrix set {tms!r}; offered: {', '.join(GRIDS)}",
                           headers=CORS)
        return await answer(request, layer, grid, z, x, y, datetime_, known_at)

    async def answer(request: Request, layer: str, grid: TileGrid, z: int, x: int, y: int,
                     datetime_: str | None, known_at: str | None) -> Response:
        src = sources.get(layer)
        if src is None:
            return problem(404, f"no tile layer {layer!r}; see /tiles/", headers=CORS)
        if (denied := _denied(src)) is not None:
            return denied
        try:
            at = _instant("datetime", datetime_)
            known = _instant("known_at", known_at)
            tile, hit = await service.tile(layer, z, x, y, at, known, grid)
        except TileRequestError as e:
            return problem(400, str(e), headers=CORS)
        status, headers = tile_response(src, tile, hit, at, known,
                                        request.headers.get("if-none-match"))
        return Response(tile.data if status == 200 else None, status_code=status, headers=headers)

    def ogc_tile_route(grid: TileGrid) -> None:
        """OGC API Tiles' tile path of one grid (a literal segment, so any other tile
        matrix set id still reaches pygeoapi, which refuses it)."""
        same = ("/tiles/{layer}/{z}/{col}/{row}.mvt" if grid.id == WEB_MERCATOR_QUAD
                else f"/tiles/{{layer}}/{grid.id}/{{z}}/{{col}}/{{row}}.mvt")

        @router.get(f"/ogc/collections/{{collection}}/tiles/{grid.id}/{{z}}/{{row}}/{{col}}",
                    response_class=Response, tags=["OGC API Tiles"],
                    description=f"OGC API Tiles: the same tile as {same}.",
                    responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile"},
                               **errors(400, 403, 404)})
        async def get_ogc_tile(request: Request, z: int, row: int, col: int,
                               collection: str = Path(
                                   json_schema_extra={"enum": sorted(ogc_tiles or {})}),
                               datetime_: str | None = Query(None, alias="datetime",
                                                             description=DATETIME_DOC),
                               known_at: str | None = Query(None, description=KNOWN_AT_DOC)):
            layer = (ogc_tiles or {}).get(collection)
            if layer is None:
                return problem(404, f"collection {collection!r} has no vector tiles",
                               headers=CORS)
            return await answer(request, layer, grid, z, col, row, datetime_, known_at)

    for g in GRIDS.values():
        ogc_tile_route(g)

    @router.get("/tiles/style.json", responses={200: {"model": Style}})
    async def style(request: Request):
        """A MapLibre style: the basemap plus every layer the caller may read."""
        rasters = await basemaps(request) if basemaps else []
        font = f"{public_url}/tiles/fonts/label.ttf" if label_font else None
        return JSONResponse(_style(readable(request), tile_url, request, bounds, rasters, font),
                            headers=CORS)

    @router.get("/tiles/fonts/label.ttf", response_class=FileResponse, responses={
        200: {"content": {"font/ttf": {}}, "description": "The labels' font."}, **errors(404)})
    async def font():
        """The font the style's labels are drawn with (its `font-faces`)."""
        if label_font is None or not label_font.is_file():
            return problem(404, "no label font installed (GISPLATFORM_LABEL_FONT)")
        return FileResponse(label_font, media_type="font/ttf",
                            headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/tiles/{layer}.json", responses={200: {"model": TileJSON}, **errors(403, 404)})
    async def tilejson(request: Request, layer: str = LAYER):
        """TileJSON 3.0 for one layer (carries datetime/known_at/token into the URLs)."""
        src = sources.get(layer)
        if src is None:
            return problem(404, f"no tile layer {layer!r}; see /tiles/", headers=CORS)
        if (denied := _denied(src)) is not None:
            return denied
        w, s, e, n = bounds
        return JSONResponse({
            "tilejson": "3.0.0", "name": src.name, "description": src.title,
            "scheme": "xyz", "tiles": [tile_url(src.name, request)],
            "minzoom": src.minzoom, "maxzoom": src.maxzoom, "bounds": list(bounds),
            "center": [(w + e) / 2, (s + n) / 2, 11],
            "vector_layers": [{"id": src.name, "description": src.description,
                               "minzoom": src.minzoom, "maxzoom": src.maxzoom,
                               "fields": _fields(src)}],
        }, headers=CORS)

    @router.get("/tiles/", responses={200: {"model": TileLayers}})
    @router.get("/tiles", include_in_schema=False)
    async def listing(request: Request):
        """The tile layers the caller may read, with their TileJSON links."""
        return JSONResponse({"layers": [
            {"id": s.name, "title": s.title, "theme": s.theme, "sharing": s.sharing,
             "geometry_type": s.geometry_type, "detail_zoom": s.detail_zoom,
             "tilejson": f"{public_url}/tiles/{s.name}.json",
             "tiles": tile_url(s.name, request),
             # the tiles in each tile matrix set (/ogc/tileMatrixSets/{id} defines it)
             "tile_matrix_sets": {g: tile_url(s.name, request, g) for g in GRIDS}}
            for s in readable(request)]}, headers=CORS)

    @router.get("/tiles/cache", include_in_schema=False)
    async def cache_stats():
        return service.cache.stats()

    return router


def tile_response(src: TileSource, tile: Tile, hit: bool, at, known,
                  if_none_match: str | None) -> tuple[int, dict[str, str]]:
    """Status and headers of a tile answer (shared with the cached fast path)."""
    headers = {**CORS, "ETag": tile.etag, "X-Cache": "hit" if hit else "miss",
               "Cache-Control": _cache_control(src, at, known)}
    if if_none_match == tile.etag:
        return 304, headers
    if not tile.data:
        return 204, headers
    return 200, {**headers, "Content-Type": MVT}


def _cache_control(src: TileSource, at: datetime | None, known: datetime | None) -> str:
    scope = "public" if src.sharing == "unconditional" else "private"
    now = datetime.now(UTC)
    if at is None and known is None:
        return f"{scope}, no-cache"  # revalidate: ETag makes that a 304
    if known is not None and known <= now and (at is None or at <= now) and src.kind == "layer":
        return f"{scope}, max-age=31536000, immutable"  # the past as recorded then never changes
    return f"{scope}, max-age=3600"  # the past as known now: a correction can still change it


def _fields(src: TileSource) -> dict[str, str]:
    if src.kind == "population":
        return {"code": "String", "name": "String", "total": "Number",
                "registered": "Number", "floating": "Number"}
    out = {"fid": "String", "valid_from": "String", "valid_to": "String",
           "count": "Number"}
    for p in src.properties:
        out[p] = FIELD_TYPES.get(src.property_types.get(p, "text"), "String")
    return out


def _style(srcs: list[TileSource], tile_url, request: Request, bounds, basemaps,
           font: str | None = None) -> dict:
    w, s, e, n = bounds
    style = {"version": 8, "name": "gisplatform",
             "center": [(w + e) / 2, (s + n) / 2], "zoom": 10,
             "sources": {}, "layers": [{"id": "background", "type": "background",
                                        "paint": {"background-color": "#f2efe9"}}]}
    labels = []  # drawn above every layer
    # raster basemaps: registered external ones (tiles/basemap_routes.py), then the
    # hillshade and orthophoto from /raster
    for b in basemaps:
        source = {"type": "raster", "tiles": [b["tiles"]], "tileSize": 256,
                  "bounds": b.get("bounds", list(bounds)), "maxzoom": b.get("maxzoom", 18)}
        source.update({k: b[k] for k in ("minzoom", "attribution") if b.get(k)})
        style["sources"][b["id"]] = source
        layer = {"id": b["id"], "type": "raster", "source": b["id"],
                 "paint": {"raster-opacity": b.get("opacity", 1.0)}}
        if "metadata" in b:
            layer["metadata"] = b["metadata"]
        if b.get("visible") is False:
            layer["layout"] = {"visibility": "none"}
        style["layers"].append(layer)
    for src in srcs:
        style["sources"][src.name] = {"type": "vector", "tiles": [tile_url(src.name, request)],
                                      "minzoom": src.minzoom, "maxzoom": src.maxzoom,
                                      "bounds": list(bounds)}
        base = {"source": src.name, "source-layer": src.name,
                "metadata": {"gisplatform:theme": src.theme, "gisplatform:title": src.title,
                             **({"gisplatform:fields": src.field_titles}
                                if src.field_titles else {})}}
        cluster = ["has", "count"]
        if src.kind == "population":
            style["layers"].append({**base, "id": f"{src.name}-fill", "type": "fill", "paint": {
                "fill-color": ["interpolate", ["linear"], ["get", "total"],
                               0, "#fff5f0", 2000, "#fc9272", 20000, "#a50f15"],
                "fill-opacity": 0.6}})
            continue
        if src.label and font:
            labels.append(_label(base, src, cluster))
        if src.linear:
            style["layers"].append(
                {**base, "id": f"{src.name}-line", "type": "line", "filter": ["!", cluster],
                 "paint": {"line-color": src.color, "line-width": [
                     "interpolate", ["exponential", 1.5], ["zoom"], 10, 1, 16, 8]}})
        elif src.polygonal:
            style["layers"] += [
                {**base, "id": f"{src.name}-fill", "type": "fill", "filter": ["!", cluster],
                 "paint": {"fill-color": src.color, "fill-opacity": 0.35}},
                {**base, "id": f"{src.name}-line", "type": "line", "filter": ["!", cluster],
                 "paint": {"line-color": src.color, "line-width": 1}}]
        else:
            style["layers"].append(
                {**base, "id": f"{src.name}-point", "type": "circle", "filter": ["!", cluster],
                 "paint": {"circle-color": src.color, "circle-radius": 3,
                           "circle-stroke-color": "#ffffff", "circle-stroke-width": 0.5}})
        style["layers"].append(
            {**base, "id": f"{src.name}-cluster", "type": "circle", "filter": cluster,
             "paint": {"circle-color": src.color, "circle-opacity": 0.7,
                       "circle-radius": ["interpolate", ["linear"], ["sqrt", ["get", "count"]],
                                         1, 3, 100, 24]}})
    style["layers"] += labels
    if labels:
        style["font-faces"] = {LABEL_FONT: font}
    return style


def _label(base: dict, src: TileSource, cluster: list) -> dict:
    """The symbol layer writing `src.label` beside each feature (along a line), in the
    platform's font."""
    layout = {"text-field": ["get", src.label], "text-font": [LABEL_FONT], "text-size": 12}
    if src.linear:
        layout["symbol-placement"] = "line"
    elif not src.polygonal:
        layout.update({"text-offset": [0, 0.9], "text-anchor": "top", "text-size": 11})
    return {**base, "id": f"{src.name}-label", "type": "symbol", "filter": ["!", cluster],
            "minzoom": src.detail_zoom, "layout": layout,
            "paint": {"text-color": "#333333", "text-halo-color": "#ffffff",
                      "text-halo-width": 1.2}}


class CachedTileFastPath:
    """ASGI middleware answering cached tiles of public layers before the framework runs.

    A warm tile is a dictionary lookup; routing, dependency injection and the auth
    middleware cost ~1 ms more per request, which capped cached tiles at ~1 000/s here.
    Only anonymous requests for unconditional layers take this path (nothing to decide
    about access); everything else — misses, tokens, bad parameters — goes on unchanged.
    """

    def __init__(self, app, service: TileService):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" \
                and scope["path"].startswith("/tiles/") and scope["path"].endswith(".mvt"):
            answer = self._cached(scope)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status,
                            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
                            + [(b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _cached(self, scope):
        parts = scope["path"][7:-4].split("/")
        if len(parts) == 5:  # /tiles/{layer}/{tileMatrixSetId}/{z}/{x}/{y}.mvt
            grid = parts.pop(1)
            if grid not in GRIDS:
                return None
        elif len(parts) == 4:
            grid = WEB_MERCATOR_QUAD
        else:
            return None
        src = self.service.sources.get(parts[0])
        if src is None or not access(ANONYMOUS, src.name, src.sharing).read:
            return None
        headers = dict(scope["headers"])
        try:
            z, x, y = int(parts[1]), int(parts[2]), int(parts[3])
            params = dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
            auth = headers.get(b"authorization")
            if presented_secret(auth.decode("latin-1") if auth else None, params.get("token")):
                return None  # a token: the auth middleware checks it (revoked → 401)
            at = _instant("datetime", params.get("datetime"))
            known = _instant("known_at", params.get("known_at"))
        except (ValueError, UnicodeDecodeError):
            return None  # the route gives the proper 4xx
        if known is not None and at is None:
            at = known
        tile = self.service.cache.get(Key(src.name, z, x, y, when_key(at, known), grid))
        if tile is None:
            return None
        inm = headers.get(b"if-none-match")
        status, out = tile_response(src, tile, True, at, known, inm.decode() if inm else None)
        return status, out, tile.data if status == 200 else b""
