"""One error model for every HTTP path: exception class → status, and one body shape,
`{"code", "description"}` (the OGC API exception's; pygeoapi adds `type`).

`install(app)` puts the handlers on the app, on `/raster` (titiler's own app) and on any
other sub-application; routes that answer an error themselves build it with `problem()`.
As titiler and tipg keep theirs in one `errors.py`. The OGC mount answers through
pygeoapi, whose exceptions carry the same two fields (gisplatform/ogc/guards.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gisplatform.security import AccessDenied, AuthError, MaskedFieldInput

CODES = {400: "InvalidParameterValue", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
         405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 413: "PayloadTooLarge",
         415: "UnsupportedMediaType", 500: "ServerError", 503: "ServiceUnavailable"}

# The kernel's exceptions and the status each one is.
STATUS: dict[type[Exception], int] = {AuthError: 401, AccessDenied: 403, MaskedFieldInput: 400}


def problem(status: int, description: str, code: str | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The error answer. A 401 says how to authenticate (`WWW-Authenticate: Bearer`); a 503
    when to retry."""
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    if status == 503:
        extra.setdefault("Retry-After", "5")
    return JSONResponse(status_code=status, headers=extra, content={
        "code": code or CODES.get(status, "Error"), "description": description})


def refusal(exc: Exception, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The answer to one of the kernel's exceptions (STATUS)."""
    status = next(s for cls, s in STATUS.items() if isinstance(exc, cls))
    return problem(status, str(exc), headers=headers)


def database_unavailable(exc: Exception | None = None) -> JSONResponse:
    """The database down, restarting or out of connections (psycopg's OperationalError, the
    pools' PoolTimeout among them): 503, never a traceback. The pools reconnect by
    themselves (gisplatform/db/connections.py): the client retries."""
    what = f" ({type(exc).__name__})" if exc is not None else ""
    return problem(503, f"the database is unavailable{what}; retry shortly")


def install(app, status_codes: Mapping[type[Exception], int] | None = None) -> None:
    """The handlers, on a FastAPI/Starlette app: the kernel's refusals, the database being
    unavailable, Starlette's own HTTP errors (unknown route, titiler's HTTPException) and
    a library's exceptions by class (`status_codes`, e.g. titiler's DEFAULT_STATUS_CODES),
    all in the one body shape."""
    async def on_refusal(request, exc):
        return refusal(exc)

    def by_status(status: int):
        async def on_library(request, exc):
            if status == 204:  # titiler: an empty tile
                return Response(status_code=204)
            return problem(status, str(exc))
        return on_library

    for cls, status in (status_codes or {}).items():
        app.add_exception_handler(cls, by_status(status))

    async def on_database(request, exc):
        return database_unavailable(exc)

    async def on_http(request, exc: StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    for cls in STATUS:
        app.add_exception_handler(cls, on_refusal)
    app.add_exception_handler(psycopg.OperationalError, on_database)
    app.add_exception_handler(StarletteHTTPException, on_http)


class NoNulInPath:
    """A NUL byte in the path (`/items/abc%00def`) names nothing: 404 for every route, before
    a path parameter reaches SQL (PostgreSQL text cannot hold NUL: psycopg raised a 500)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "\x00" in scope["path"]:
            await problem(404, "no such resource")(scope, receive, send)
            return
        await self.app(scope, receive, send)
