"""/wms and /wfs: the caller's view, the checked request, MapServer's answer, or an OGC
exception report (never a 500, never MapServer's own text when it could name the SQL)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gisplatform.security import (
    READ_PERSONAL_ACTION,
    AccessDenied,
    AuthError,
    access,
    audit,
    current_principal,
    require,
)

from .mapserv import MapServerError, MapServerMissing
from .ows import OwsError, exception_report, parse
from .service import OwsService
from .wmts import capabilities, tile_request

__all__ = ["ows_router"]

log = logging.getLogger("gisplatform.services")
# MapServer's exception text may quote its SQL or connection: only these codes and a
# safe text leave; the whole text goes to the log
_EXCEPTION = re.compile(rb'(?:code|exceptionCode)="([A-Za-z]+)"')
_SAFE_TEXT = re.compile(r"^[\w\s.,:;'()/=<>-]{0,300}$")


_XML = {"text/xml": {}, "application/xml": {}}
_REPORT = {"description": "an OGC exception report (WMS ServiceExceptionReport, OWS "
                          "ExceptionReport)", "content": _XML}
# what the OpenAPI document says these routes answer (schemathesis checks it)
OWS_RESPONSES = {
    200: {"description": "capabilities, a map, a tile, features or feature info",
          "content": {**_XML, "image/png": {}, "image/jpeg": {}, "application/json": {},
                      "text/plain": {}, "application/gml+xml": {}}},
    400: _REPORT, 401: _REPORT, 403: _REPORT, 404: _REPORT, 502: _REPORT, 503: _REPORT}


def _blank(width: int, height: int, fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    img = Image.new("RGBA" if fmt == "image/png" else "RGB", (width, height), (255, 255, 255, 0))
    img.save(out, "PNG" if fmt == "image/png" else "JPEG")
    return out.getvalue()


def ows_router(service: OwsService, connection) -> APIRouter:
    router = APIRouter(tags=["OGC services"])

    def answer(kind: str, err: OwsError) -> Response:
        body, media = exception_report(kind, err)
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
        return Response(body, err.status, media_type=media, headers=headers)

    def run(kind: str, request: Request, query: list[tuple[str, str]] | None = None) -> Response:
        principal = current_principal.get()
        names = service.layers()
        rasters = {r.name: r for r in service.rasters(None)}

        def readable(name: str) -> None:
            if name in rasters and kind == "WMS":
                return
            served = names.get(name)
            if served is None:
                raise OwsError("LayerNotDefined" if kind == "WMS" else "InvalidParameterValue",
                               f"no layer {name!r}", "LAYERS" if kind == "WMS" else "TYPENAMES")
            try:
                require(principal, name, served.sharing)
            except (AuthError, AccessDenied) as e:
                raise OwsError("Unauthorized" if isinstance(e, AuthError) else "Forbidden",
                               str(e), status=e.status) from None

        caller = service.view(principal)
        req = parse(kind, query or list(request.query_params.multi_items()), readable,
                    lambda layer: caller.masked.get(layer, ()))
        if req.at is not None and any(n in rasters for n in req.layers):
            caller = service.view(principal, req.at)  # the orthophoto of that instant
        shown = {r.name for r in caller.view.rasters}
        if "LAYERS" in req.forward:
            kept = [n for n in req.forward["LAYERS"].split(",") if n in names or n in shown]
            if not kept:  # only rasters, none registered yet at that instant
                return Response(_blank(req.width, req.height, req.format), 200,
                                media_type=req.format)
            req.forward["LAYERS"] = ",".join(kept)
        token = request.query_params.get("token")
        if token and req.request == "GetFeature":
            # MapServer builds WFS's `next` link from the parameters it got: a caller who
            # authenticates with `token=` pages on with it
            req.forward["token"] = token
        try:
            reply = service.ask(caller.view, req.forward)
        except MapServerMissing as e:
            raise OwsError("NoApplicableCode", str(e), status=503) from None
        except MapServerError as e:
            log.warning("%s %s: %s", kind, req.request, e)
            raise OwsError("NoApplicableCode", "the map server did not answer; retry",
                           status=503) from None
        body = reply.body
        if b"ExceptionReport" in body[:600] or b"ServiceExceptionReport" in body[:600]:
            log.info("mapserver %s %s: %s", kind, req.request, body[:2000].decode("utf-8", "replace"))
            code = _EXCEPTION.search(body)
            text = re.search(rb"<(?:ows:ExceptionText|ServiceException)(?:\s[^>]*)?>\s*(.*?)\s*<",
                             body, re.S)
            message = text.group(1).decode("utf-8", "replace") if text else ""
            if not _SAFE_TEXT.match(message) or re.search(r"select|connect|password|sql",
                                                          message, re.IGNORECASE):
                message = "the map server could not answer this request"
            if code is None:  # MapServer failed on its own (a query, a file): ours to fix
                raise OwsError("NoApplicableCode", "the map server could not draw or read "
                               "this layer; the failure is logged", status=502)
            raise OwsError(code.group(1).decode(), message)
        if req.returns_attributes:
            for layer in set(req.layers) & caller.unmasked:
                with connection() as conn:
                    audit(conn, principal, layer, READ_PERSONAL_ACTION,
                          {"service": kind, "request": req.request},
                          request.client.host if request.client else None)
        media = reply.content_type
        return Response(body, reply.status if reply.status < 500 else 502, media_type=media,
                        headers={"Cache-Control": "private, max-age=60"
                                 if not principal.anonymous else "public, max-age=60"})

    async def handle(kind: str, request: Request) -> Response:
        try:
            return await asyncio.to_thread(run, kind, request)
        except OwsError as e:
            return answer(kind, e)

    async def wmts_tile(request: Request, layer: str, style: str, tms: str, matrix: str,
                        row: str, col: str, fmt: str) -> Response:
        """A tile: the GetMap of its bounds (hillshade: /raster's tile of it)."""
        grid, z, x, y, (w, s, e, n) = tile_request(layer, style, tms, matrix, row, col, fmt)
        p = {k.upper(): v for k, v in request.query_params.items()}
        if layer == "hillshade":
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=request.app),
                                         base_url="http://platform") as client:
                r = await client.get(f"/raster/dem/hillshade/{grid.id}/{z}/{x}/{y}.png",
                                     params={"datetime": p["TIME"]} if p.get("TIME") else None)
            if r.status_code != 200:
                raise OwsError("InvalidParameterValue", r.json().get("description", "no tile")
                               if r.headers.get("content-type", "").startswith("application/json")
                               else "no hillshade tile here", "TileMatrix", status=r.status_code
                               if 400 <= r.status_code < 500 else 502)
            return Response(r.content, 200, media_type="image/png",
                            headers={"Cache-Control": "public, max-age=3600"})
        query = [("SERVICE", "WMS"), ("VERSION", "1.1.1"), ("REQUEST", "GetMap"),
                 ("LAYERS", layer), ("STYLES", ""), ("SRS", f"EPSG:{grid.srid}"),
                 ("BBOX", f"{w!r},{s!r},{e!r},{n!r}"), ("WIDTH", "256"), ("HEIGHT", "256"),
                 ("FORMAT", fmt), ("TRANSPARENT", "TRUE" if fmt == "image/png" else "FALSE")]
        query += [(k, p[k]) for k in ("TIME", "KNOWN_AT") if p.get(k)]
        return await asyncio.to_thread(run, "WMS", request, query)

    def wmts_layers(principal) -> list[tuple[str, str]]:
        out = [(r.name, r.title) for r in service.rasters(None)]
        if service.hillshade():
            out.append(("hillshade", "地形晕渲 Hillshade"))
        names = service.layers()
        out += [(n, s.layer.title) for n, s in sorted(names.items())
                if access(principal, n, s.sharing).read]
        return out

    def wmts_capabilities(request: Request) -> Response:
        principal = current_principal.get()
        token = request.query_params.get("token")
        body = capabilities(service.public_url, wmts_layers(principal), service.extent,
                            f"?{urlencode({'token': token})}" if token else "")
        return Response(body, 200, media_type="application/xml; charset=UTF-8")

    @router.get("/wmts", response_class=Response, responses=OWS_RESPONSES,
                summary="WMTS 1.0.0, KVP (GetCapabilities, GetTile)")
    async def wmts(request: Request) -> Response:
        p = {k.upper(): v for k, v in request.query_params.items()}
        try:
            if p.get("SERVICE", "WMTS").upper() != "WMTS":
                raise OwsError("InvalidParameterValue", "SERVICE must be WMTS at /wmts",
                               "SERVICE")
            req = p.get("REQUEST", "").upper()
            if req == "GETCAPABILITIES":
                return await asyncio.to_thread(wmts_capabilities, request)
            if req != "GETTILE":
                raise OwsError("OperationNotSupported" if req else "MissingParameterValue",
                               "REQUEST is GetCapabilities or GetTile", "REQUEST")
            missing = [k for k in ("LAYER", "TILEMATRIXSET", "TILEMATRIX", "TILEROW", "TILECOL")
                       if not p.get(k)]
            if missing:
                raise OwsError("MissingParameterValue", f"{missing[0]} is required", missing[0])
            return await wmts_tile(request, p["LAYER"], p.get("STYLE", "default"),
                                   p["TILEMATRIXSET"], p["TILEMATRIX"], p["TILEROW"],
                                   p["TILECOL"], p.get("FORMAT", "image/png"))
        except OwsError as e:
            return answer("WMTS", e)

    @router.get("/wmts/1.0.0/WMTSCapabilities.xml", response_class=Response, responses=OWS_RESPONSES,
                summary="WMTS 1.0.0 RESTful capabilities")
    async def wmts_rest_capabilities(request: Request) -> Response:
        return await asyncio.to_thread(wmts_capabilities, request)

    @router.get("/wmts/1.0.0/{layer}/{style}/{tms}/{matrix}/{row}/{col}.{ext}", response_class=Response, responses=OWS_RESPONSES,
                summary="WMTS 1.0.0 RESTful tile")
    async def wmts_rest_tile(request: Request, layer: str, style: str, tms: str, matrix: str,
                             row: str, col: str, ext: str) -> Response:
        fmt = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}.get(ext, ext)
        try:
            return await wmts_tile(request, layer, style, tms, matrix, row, col, fmt)
        except OwsError as e:
            return answer("WMTS", e)

    @router.get("/wms", response_class=Response, responses=OWS_RESPONSES,
                summary="WMS 1.3.0 (GetCapabilities, GetMap, GetFeatureInfo, "
                "GetLegendGraphic), through MapServer")
    async def wms(request: Request) -> Response:
        return await handle("WMS", request)

    @router.get("/wfs", response_class=Response, responses=OWS_RESPONSES,
                summary="WFS 2.0 (GetCapabilities, DescribeFeatureType, GetFeature), "
                "through MapServer")
    async def wfs(request: Request) -> Response:
        return await handle("WFS", request)

    return router
