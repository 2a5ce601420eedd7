"""`/opendata/`: the published open data, read-only, and the schedule that publishes it.

    GET /opendata/                              layers with their versions (JSON)
    GET /opendata/{layer}/                      versions of one layer
    GET /opendata/{layer}/latest                307 to the newest version
    GET /opendata/{layer}/{version}/            its metadata.json, with file links
    GET /opendata/{layer}/{version}/{file}      a file: ETag = its SHA-256, immutable

Names are matched against fixed patterns before any path is built, and the resolved path
must stay under the open data directory: `..`, encoded slashes and the like are 404.
Publishing over HTTP is deliberately absent: it is an operator's act (`gisplatform opendata
publish`) or the schedule's, not something any token holder may trigger.

The schedule (`GISPLATFORM_OPENDATA_EVERY`, e.g. 24h; 0 = off) runs in the app's lifespan
as an asyncio task; each run takes a PostgreSQL advisory lock (pg_try_advisory_lock), so
with N replicas one publishes and the others skip that round. The first run is one period
after start, so restarts do not publish in a burst.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gisplatform.api.responses import errors
from gisplatform.db.connections import connect
from gisplatform.ogc import records

from . import publication as opendata

log = logging.getLogger("gisplatform.opendata")
TYPES = {".gpkg": "application/geopackage+sqlite3", ".geojson": "application/geo+json",
         ".csv": "text/csv; charset=utf-8", ".json": "application/json",
         "": "text/plain; charset=utf-8"}


def _not_found() -> JSONResponse:
    return JSONResponse(status_code=404, content={"code": "NotFound",
                                                  "description": "no such open data resource"})


def publish_locked(url: str, layers: list, data_dir: Path, keep: int, license: str,
                   public_url: str) -> list | None:
    """One scheduled round: publish under the advisory lock; None if another replica
    holds it."""
    with connect(url, "gisplatform-opendata", autocommit=True) as conn:
        if not conn.execute("select pg_try_advisory_lock(%s)",
                            (opendata.ADVISORY_LOCK,)).fetchone()[0]:
            return None
        try:
            return opendata.publish(url, layers, data_dir, keep=keep, license=license,
                                    public_url=public_url)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (opendata.ADVISORY_LOCK,))


def opendata_router(layers, url: str, settings) -> APIRouter:
    """`layers`: layer objects (`.spec`, `.sharing`, …), a live view (published layers
    come and go); `settings`: gisplatform.config.Settings."""
    from gisplatform.security import UNCONDITIONAL

    data_dir, public_url = Path(settings.data_dir), settings.public_url
    keep, license = settings.opendata_keep, settings.opendata_license
    # a bad setting fails at start, not at 3 a.m.
    period = opendata.parse_every(settings.opendata_every)

    def public() -> list:
        return [v for v in layers if v.sharing == UNCONDITIONAL]
    base = opendata.root(data_dir)
    # the catalogue lists what is published (gisplatform/ogc/records.py)
    records.EXTRA_RECORDS["opendata"] = lambda: opendata.catalogue_records(data_dir, public_url)

    async def schedule():
        while True:
            await asyncio.sleep(period)
            try:
                done = await run_in_threadpool(publish_locked, url, public(), data_dir, keep,
                                               license, public_url)
                if done is None:
                    log.info("open data: another replica is publishing; skipped")
                else:
                    log.info("open data: %s", ", ".join(
                        f"{p.layer} {'unchanged' if p.unchanged else p.version}" for p in done))
            except Exception:  # logged; the next round tries again
                log.exception("open data publication failed")

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(schedule()) if period > 0 else None
        try:
            yield
        finally:
            if task:
                task.cancel()

    router = APIRouter(prefix="/opendata", tags=["open data"], lifespan=lifespan)

    def versions_of(layer: str) -> list[str]:
        return opendata.versions(data_dir, layer) if opendata.LAYER.match(layer) else []

    @router.get("/", responses={200: {"description": "Published layers."}})
    async def index():
        """Every published layer: its newest version and all kept versions."""
        out = []
        names = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
        for name in names:
            vs = versions_of(name)
            if vs:
                out.append({"layer": name, "latest": vs[-1], "versions": vs,
                            "href": f"{public_url}/opendata/{name}/"})
        return {"layers": out, "license": license}

    @router.get("/{layer}/", responses={200: {"description": "Versions."}, **errors(404)})
    async def layer_versions(layer: str):
        """The kept versions of one layer, newest last."""
        vs = versions_of(layer)
        if not vs:
            return _not_found()
        return {"layer": layer, "latest": vs[-1], "versions": [
            {"version": v, "href": f"{public_url}/opendata/{layer}/{v}/"} for v in vs]}

    @router.get("/{layer}/latest", status_code=307, response_class=RedirectResponse,
                responses=errors(404))
    async def latest(layer: str):
        """Redirect to the newest version (not cacheable: it moves)."""
        vs = versions_of(layer)
        if not vs:
            return _not_found()
        return RedirectResponse(f"{public_url}/opendata/{layer}/{vs[-1]}/", status_code=307,
                                headers={"Cache-Control": "no-cache"})

    @router.get("/{layer}/{version}/", responses={200: {"description": "metadata.json "
                                                        "of the version."}, **errors(404)})
    async def version_index(layer: str, version: str):
        """A version's metadata (title, licence, extents, row counts, files, checksums)."""
        path = _resolve(base, layer, version, "metadata.json")
        if path is None:
            return _not_found()
        meta = json.loads(path.read_text())
        for f in meta.get("files", []):
            f["href"] = f"{public_url}/opendata/{layer}/{version}/{f['name']}"
        return JSONResponse(meta, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @router.get("/{layer}/{version}/{name}", response_class=FileResponse, responses={
        200: {"description": "The file.", "content": {t: {} for t in TYPES.values()}},
        304: {"description": "Not modified (If-None-Match)."}, **errors(404)})
    async def file(layer: str, version: str, name: str, request: Request):
        """A published file; its ETag is its SHA-256 and it never changes."""
        path = _resolve(base, layer, version, name)
        if path is None:
            return _not_found()
        etag = await run_in_threadpool(_etag, path.parent, name)
        headers = {"Cache-Control": "public, max-age=31536000, immutable",
                   **({"ETag": f'"{etag}"'} if etag else {})}
        if etag and request.headers.get("if-none-match", "").strip() in (f'"{etag}"', "*"):
            return Response(status_code=304, headers=headers)
        return FileResponse(path, media_type=TYPES[Path(name).suffix], headers=headers)

    return router


def _resolve(base: Path, layer: str, version: str, name: str) -> Path | None:
    """The file's path, or None unless every part is a well-formed name and the file is a
    regular file under `base` (no traversal, no symlink out)."""
    if not (opendata.LAYER.match(layer) and opendata.VERSION.match(version)
            and opendata.FILE.match(name)):
        return None
    path = (base / layer / version / name)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(base.resolve()) or not real.is_file():
        return None
    return real


def _etag(directory: Path, name: str) -> str | None:
    """The file's SHA-256 from its version's SHA256SUMS (the other files: their own)."""
    sums = directory / "SHA256SUMS"
    try:
        for line in sums.read_text().splitlines():
            digest, _, fname = line.partition("  ")
            if fname == name:
                return digest
    except OSError:
        return None
    if name in ("SHA256SUMS", "metadata.json"):
        import hashlib
        return hashlib.sha256((directory / name).read_bytes()).hexdigest()
    return None
