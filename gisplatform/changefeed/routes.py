"""`GET /api/changes?layer=…&since=<cursor>&limit=N`: a page of the change feed as JSON,
with a `next` link (feed.py reads it; a refusal is answered by gisplatform.errors)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gisplatform.api.responses import Problem, errors
from gisplatform.errors import problem
from gisplatform.security import current_principal

from .feed import DEFAULT_LIMIT, MAX_LIMIT, CursorError, CursorGone, FeedLayer, Page, read_page

__all__ = ["changes_router"]


def changes_router(layers: Mapping[str, FeedLayer],
                   connect: Callable[[], object], public_url: str) -> APIRouter:
    """`layers`: collection id (a layer and its -history collection) -> its feed layer."""
    router = APIRouter(prefix="/api", tags=["platform"])
    gone = {410: {"model": Problem, "description": "The cursor is older than the retained "
                                                   "change log: resynchronise, then follow."}}

    @router.get("/changes", response_class=Response,
                responses={200: {"description": "a page of changes", "content": {
                    "application/json": {}}}, **errors(400, 401, 403, 503), **gone})
    async def changes(request: Request,
                      layer: str | None = Query(None, description="collection id, e.g. persons"),
                      since: str | None = Query(None, description="the `next` cursor of the "
                                                "previous page; omitted: from the beginning"),
                      limit: str | None = Query(None, description=f"1..{MAX_LIMIT}, default "
                                                f"{DEFAULT_LIMIT}")):
        """The versions of a layer opened or closed since a cursor, in commit-safe
        transaction order; every change exactly once across pages."""
        if not layer or layer not in layers:
            return problem(400, f"layer: one of {', '.join(sorted(layers))}")
        try:
            n = DEFAULT_LIMIT if limit is None else int(limit)
        except ValueError:
            n = -1
        if not 1 <= n <= MAX_LIMIT:
            return problem(400, f"limit: an integer 1..{MAX_LIMIT}")
        principal = current_principal.get()
        feed = layers[layer]

        def run() -> Page:
            with connect() as conn:
                return read_page(conn, feed, principal, since, n, client=_client(request))
        try:
            page = await run_in_threadpool(run)  # a refusal is answered by gisplatform.errors
        except CursorError as e:
            return problem(400, str(e))
        except CursorGone as e:
            return problem(410, str(e))
        href = f"{public_url}/api/changes?" + urlencode(
            {"layer": layer, "since": page.next, "limit": n})
        head = {"layer": feed.name, "since": since, "next": page.next, "more": page.more,
                "numberReturned": len(page.changes),
                "links": [{"rel": "next", "href": href, "type": "application/json"}]}
        body = json.dumps(head, ensure_ascii=False)[:-1] + ',"changes":[' \
            + ",".join(page.changes) + "]}"
        return Response(body, media_type="application/json",
                        headers={"Link": f'<{href}>; rel="next"'})

    return router


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None
