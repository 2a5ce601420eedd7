"""HTTP for 3D: `/3d/` (listing), `/3d/{name}/tileset.json` and its content, by name only.

Files are served from the registered folder (`models3d.registry.file_in` refuses anything
that would leave it) with the 3D Tiles media types, CORS (Cesium on another origin), a
strong ETag from size + mtime and Cache-Control: content files are immutable within a
build (a rebuild writes a new folder), `tileset.json` is revalidated.

`datetime=` on the buildings tileset: every version of every building is in the tileset
with `valid_from`/`valid_to` as numbers (3D Tiles styles have no date type); the
tileset.json answered for `datetime=T` carries T (epoch seconds) in its `extras` for the
viewer's style `${valid_from} <= T && T < ${valid_to}`, and the listing says so.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from pathlib import Path

import psycopg
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from gisplatform.api.responses import Tileset3D, Tilesets3D, errors, media_types
from gisplatform.errors import problem
from gisplatform.temporal import TemporalError, parse_request_instant

from .registry import (
    Tileset,
    TilesetError,
    check_name,
    file_in,
    get_tileset,
    list_tilesets,
)

MEDIA = {".json": "application/json", ".glb": "model/gltf-binary", ".gltf": "model/gltf+json",
         ".b3dm": "application/octet-stream", ".i3dm": "application/octet-stream",
         ".pnts": "application/octet-stream", ".cmpt": "application/octet-stream",
         ".subtree": "application/octet-stream", ".png": "image/png", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg", ".ktx2": "image/ktx2", ".bin": "application/octet-stream"}
CORS = {"Access-Control-Allow-Origin": "*"}
IMMUTABLE = "public, max-age=31536000, immutable"



def _etag(path: Path) -> str:
    st = path.stat()
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


def threed_router(connect: Callable[[], psycopg.Connection], data_dir: Path,
                  public_url: str) -> APIRouter:
    """`connect()` gives a (pooled, sync) connection context manager to read the registry."""
    router = APIRouter(prefix="/3d", tags=["3D Tiles"], responses=errors(401))  # unknown token

    def lookup(name: str) -> Tileset | None:
        try:
            check_name(name)
        except TilesetError:
            return None
        with connect() as conn:
            return get_tileset(conn, name)

    @router.get("/", responses={200: {"model": Tilesets3D}})
    def listing():
        """Every registered tileset with its tileset.json link."""
        with connect() as conn:
            sets = list_tilesets(conn)
        return JSONResponse({"tilesets": [{
            "name": t.name, "kind": t.kind, "time": t.at.isoformat() if t.at else None,
            "bounds": list(t.bounds) if t.bounds else None, "tiles": t.tiles, "bytes": t.bytes,
            "updated": t.updated.isoformat() if t.updated else None,
            "tileset": f"{public_url}/3d/{t.name}/tileset.json",
            **({"time_filter": "features carry valid_from/valid_to (epoch seconds); "
                               "tileset.json?datetime=T puts T in extras.datetime_epoch"}
               if t.kind == "buildings" else {}),
        } for t in sets]}, headers=CORS)

    @router.get("/{name}/tileset.json", responses={200: {"model": Tileset3D}, **errors(400, 404)})
    def tileset_json(request: Request, name: str,
                     datetime_: str | None = Query(None, alias="datetime",
                                                   description="Instant the viewer shows "
                                                               "(buildings: extras.datetime_epoch)")):
        t = lookup(name)
        if t is None:
            return problem(404, f"no tileset {name!r}; see /3d/", headers=CORS)
        path = file_in(data_dir, t, "tileset.json")
        if path is None:
            return problem(404, f"tileset {name!r} has no tileset.json", headers=CORS)
        headers = {**CORS, "Cache-Control": "public, no-cache"}
        if datetime_ is None:
            etag = _etag(path)
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={**headers, "ETag": etag})
            return FileResponse(path, media_type="application/json",
                                headers={**headers, "ETag": etag})
        try:
            at = parse_request_instant(datetime_)
        except TemporalError as e:
            return problem(400, f"datetime: {e}", headers=CORS)
        doc = json.loads(path.read_text())
        doc.setdefault("extras", {})["datetime_epoch"] = at.timestamp()
        doc["extras"]["datetime"] = at.isoformat()
        return JSONResponse(doc, headers=headers)

    @router.get("/{name}/{relative:path}", response_class=Response,
                responses={**media_types(*sorted(set(MEDIA.values()))), **errors(404)})
    def content(request: Request, name: str, relative: str):
        t = lookup(name)
        path = file_in(data_dir, t, relative) if t is not None else None
        if path is None:
            return problem(404, f"no {relative!r} in tileset {name!r}", headers=CORS)
        etag = _etag(path)
        headers = {**CORS, "ETag": etag, "Cache-Control": IMMUTABLE}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        media = MEDIA.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] \
            or "application/octet-stream"
        return FileResponse(path, media_type=media, headers=headers)

    return router
