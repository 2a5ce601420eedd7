"""The web viewer (issue 7): static files built from gisplatform/viewer/{index.html,src,css}
and npm packages (MapLibre GL JS, CesiumJS) into gisplatform/viewer/dist by
`node gisplatform/viewer/build.mjs` (scripts/bootstrap.sh runs it; `make run` ends with it
built). Served at /viewer/ by the app; everything it loads comes from the same origin."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles

DIST = Path(__file__).resolve().parent / "dist"


def viewer_app(dist: Path = DIST):
    """An ASGI app serving `dist` (index.html for the folder), or a 503 saying how to build
    it while it is missing — checked per request, so a build after start is picked up."""
    static = StaticFiles(directory=dist, html=True, check_dir=False)

    async def app(scope, receive, send):
        if scope["type"] == "http" and not (dist / "index.html").is_file():
            response = PlainTextResponse(
                "the viewer is not built: run make run (builds the viewer), or "
                "node gisplatform/viewer/build.mjs after npm ci\n", status_code=503)
            return await response(scope, receive, send)
        return await static(scope, receive, send)
    return app
