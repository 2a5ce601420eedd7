"""`PATCH /ogc/collections/{id}/items/{item}`: OGC API Features Part 4 update, which
pygeoapi 0.24 does not route. Mounted on the app before `/ogc`; the write itself is the
provider's (`TemporalProvider.patch`), as for pygeoapi's own PUT and DELETE."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gisplatform.api.responses import errors
from gisplatform.errors import problem
from gisplatform.security import AuthError, current_principal

from . import catalog

# the route reads its body itself; this tells clients (and schemathesis) its shape
PATCH_BODY = {"requestBody": {"required": True, "content": {"application/geo+json": {"schema": {
    "type": "object", "description": "a partial GeoJSON Feature: the properties (and "
    "geometry) to change", "properties": {"properties": {"type": "object"},
                                          "geometry": {"type": "object"}}}}}}}


def patch_router() -> APIRouter:
    router = APIRouter(tags=["OGC API Features"])

    @router.patch("/ogc/collections/{collection_id}/items/{item_id}", status_code=204,
                  response_class=Response, responses=errors(400, 401, 403, 404, 409, 503),
                  openapi_extra=PATCH_BODY)
    async def patch_item(collection_id: str, item_id: str, request: Request):
        """OGC API Features Part 4 update (pygeoapi 0.24 routes no PATCH): a partial
        Feature merged over the current version and written as a new version."""
        from pygeoapi.provider.base import ProviderGenericError

        from .provider import TemporalProvider

        if current_principal.get().token_id is None:  # as every write: 401 before anything
            raise AuthError("writing needs a token with a write grant")
        if collection_id not in catalog.collections():
            return problem(404, "no such collection")
        body = await request.body()
        try:
            provider = TemporalProvider({"name": "gisplatform", "type": "feature",
                                         "data": collection_id})
            await run_in_threadpool(provider.patch, item_id, body)
        except ProviderGenericError as e:
            return problem(int(e.http_status_code), e.message, e.ogc_exception_code)
        return Response(status_code=204)
    return router
