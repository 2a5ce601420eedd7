"""Who is calling: resolved once per HTTP request, before any route runs.

Not imported by `gisplatform.security` itself (it answers through gisplatform/errors.py,
which imports the security kernel): the app installs it with
`app.middleware("http")(authenticate(pool))`.
"""

from __future__ import annotations

import psycopg
from fastapi import Request

from gisplatform.errors import database_unavailable, refusal

from .principals import ANONYMOUS, AuthError, current_principal
from .tokens import presented_secret, principal_for_token_async


def authenticate(pool):
    """An HTTP middleware setting `current_principal` from the bearer token (header or
    `token=`), which every read and write path asks; `pool`: the app's async pool."""

    async def middleware(request: Request, call_next):
        secret = presented_secret(request.headers.get("authorization"),
                                  request.query_params.get("token"))
        principal = ANONYMOUS
        if secret:
            try:
                async with pool.connection() as conn:
                    principal = await principal_for_token_async(conn, secret)
            except psycopg.OperationalError as e:  # outside the routes' exception handlers
                return database_unavailable(e)
            except AuthError as e:
                return refusal(e)
        request.state.principal_token_id = principal.token_id  # for the access log
        token = current_principal.set(principal)
        try:
            return await call_next(request)
        finally:
            current_principal.reset(token)
    return middleware
