"""Exports over HTTP, as jobs: a large layer takes longer than a request should.

    POST /api/exports {layer, format, datetime?, known_at?, crs?, history?}
         -> 202, Location: /api/exports/{id}
    GET  /api/exports/{id}         status: queued | running | done | failed, progress, error
    GET  /api/exports/{id}/file    the file (409 until done)

A small runner of our own rather than pygeoapi's async Processes: a job must run with the
requesting principal's grants (pygeoapi's manager runs processes without our per-request
principal), belong to its creator's token, and hand back a file of hundreds of MB by
streaming it (pygeoapi's job results are read into memory). So: a thread pool
(`GISPLATFORM_EXPORTS_WORKERS`) runs `gisplatform.exports.export` (files.py) with the principal
captured when the job was accepted; each job is a directory `<data dir>/exports/<id>/`
holding `job.json` (written atomically) and the file, so any worker process on the host
answers for it. Jobs and files are deleted `GISPLATFORM_EXPORTS_TTL_HOURS` after they were
asked for. A job belongs to the token that asked for it: another token, or none, gets 404
(job ids are not even confirmed to exist). Exports over HTTP need a token (anonymous
callers have no identity to own a job; public layers are open data, /opendata/).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from gisplatform.api.responses import errors
from gisplatform.errors import problem
from gisplatform.security import AuthError, Principal, current_principal

from .files import (
    FORMATS,
    MEDIA_TYPES,
    ExportError,
    ExportRequest,
    check_access,
    export,
    make_request,
)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ACTIVE = ("queued", "running")
BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["layer", "format"], "properties": {
        "layer": {"type": "string", "description": "layer id, e.g. persons"},
        "format": {"type": "string", "enum": list(FORMATS)},
        "datetime": {"type": "string", "description": "snapshot instant (ISO 8601); default now"},
        "known_at": {"type": "string", "description": "transaction-time instant"},
        "crs": {"type": "string", "description": "e.g. EPSG:4490 (default), EPSG:3857"},
        "history": {"type": "boolean", "description": "every version instead of a snapshot"},
    }}}}}}


class Cancelled(Exception):
    """The app is stopping: the running export gives up (its temporary file is removed)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z") if t else None


class ExportJobs:
    """Jobs on disk under `directory`, run by a thread pool in this process."""

    def __init__(self, url: str, layers: dict, directory: Path, ttl_hours: float, workers: int):
        self.url, self.layers, self.dir = url, layers, Path(directory)
        self.ttl = dt.timedelta(hours=ttl_hours)
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                       thread_name_prefix="export")
        self.stopping = threading.Event()
        self.host = socket.gethostname()

    # ------------------------------------------------------------------ storage

    def _path(self, job_id: str) -> Path:
        return self.dir / job_id / "job.json"

    def _save(self, job: dict) -> None:
        path = self._path(job["id"])
        tmp = path.with_name(f".job.{threading.get_ident()}.json")
        tmp.write_text(json.dumps(job))
        tmp.replace(path)

    def _load(self, job_id: str) -> dict | None:
        if not JOB_ID.match(job_id):
            return None
        try:
            return json.loads(self._path(job_id).read_text())
        except (OSError, ValueError):
            return None

    def _stale(self, job: dict) -> bool:
        """An active job whose process (on this host) is gone: it will never finish."""
        if job["status"] not in ACTIVE or job.get("host") != self.host:
            return False
        try:
            os.kill(job["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def sweep(self) -> int:
        """Delete expired jobs (and their files); returns how many."""
        if not self.dir.is_dir():
            return 0
        now, n = _now(), 0
        for d in self.dir.iterdir():
            job = self._load(d.name)
            if job is None:
                # a directory without a readable job: a crash between mkdir and the first
                # save, or junk; judged by its age
                if d.is_dir() and time.time() - d.stat().st_mtime > self.ttl.total_seconds():
                    shutil.rmtree(d, ignore_errors=True)
                continue
            expired = dt.datetime.fromisoformat(job["expires"]) < now
            if expired and (job["status"] not in ACTIVE or self._stale(job)):
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        return n

    # ------------------------------------------------------------------ jobs

    def submit(self, principal: Principal, req: ExportRequest, client: str | None) -> dict:
        self.sweep()
        job_id = secrets.token_hex(16)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / job_id).mkdir(mode=0o700)
        created = _now()
        job = {"id": job_id, "status": "queued", **req.describe(),
               "owner": principal.token_id, "created": created.isoformat(),
               "expires": (created + self.ttl).isoformat(), "started": None, "finished": None,
               "rows": 0, "total": None, "size": None, "error": None,
               "file": f"{req.layer}{FORMATS[req.format][0]}",
               "pid": os.getpid(), "host": self.host}
        self._save(job)
        self.pool.submit(self._run, job, principal, req, client)
        return job

    def _run(self, job: dict, principal: Principal, req: ExportRequest, client: str | None):
        job.update(status="running", started=_now().isoformat())
        self._save(job)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self.stopping.is_set():
                raise Cancelled("the server is stopping")
            if time.monotonic() - last[0] > 1:
                last[0] = time.monotonic()
                job.update(rows=done, total=total)
                self._save(job)

        target = self.dir / job["id"] / job["file"]
        try:
            r = export(self.url, self.layers[req.layer], req, principal, target,
                       progress=progress, client=client)
            os.chmod(target, 0o600)
            job.update(status="done", rows=r.rows, total=r.rows, size=target.stat().st_size,
                       datetime=r.at.isoformat(), unmasked=r.unmasked)
        except ExportError as e:
            job.update(status="failed", error=str(e))
        except Cancelled as e:
            job.update(status="failed", error=str(e))
        except Exception as e:  # noqa: BLE001 -- reported to the owner, without internals
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            job.update(status="failed", error=f"{type(e).__name__}: {msg}"[:300])
        job["finished"] = _now().isoformat()
        self._save(job)

    def get(self, job_id: str, principal: Principal) -> dict | None:
        """The job if it exists and belongs to `principal`'s token."""
        job = self._load(job_id)
        if job is None or principal.token_id is None or job.get("owner") != principal.token_id:
            return None
        if self._stale(job):
            job.update(status="failed", error="the server stopped before the export finished")
        return job

    def close(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


def view(job: dict, base: str) -> dict:
    """What the owner is shown (not the owner id, pid or host)."""
    out = {k: job.get(k) for k in ("id", "status", "layer", "format", "datetime", "known_at",
                                   "crs", "history", "error", "size")}
    out.update(created=_iso(dt.datetime.fromisoformat(job["created"])),
               expires=_iso(dt.datetime.fromisoformat(job["expires"])),
               started=job["started"] and _iso(dt.datetime.fromisoformat(job["started"])),
               finished=job["finished"] and _iso(dt.datetime.fromisoformat(job["finished"])),
               progress={"rows": job["rows"], "total": job["total"]})
    if "unmasked" in job:
        out["personal_fields"] = "unmasked" if job["unmasked"] else "masked"
    out["links"] = [{"rel": "self", "type": "application/json", "href": f"{base}/{job['id']}"}]
    if job["status"] == "done":
        out["links"].append({"rel": "enclosure", "type": MEDIA_TYPES[job["format"]],
                             "title": job["file"], "href": f"{base}/{job['id']}/file"})
    return out


def exports_router(layers: dict, url: str, settings) -> APIRouter:
    """`layers`: name -> layer (`.spec`, `.sharing`); `settings`: gisplatform.config.Settings."""
    jobs = ExportJobs(url, layers, Path(settings.data_dir) / "exports",
                      settings.exports_ttl_hours, settings.exports_workers)
    public_url = settings.public_url

    @asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(jobs.sweep)
        try:
            yield
        finally:
            jobs.close()

    router = APIRouter(prefix="/api/exports", tags=["platform"], lifespan=lifespan,
                       responses=errors(401))
    base = f"{public_url}/api/exports"

    @router.post("", status_code=202, openapi_extra=BODY,
                 responses={202: {"description": "Accepted: the job's status; Location "
                                  "names it."}, **errors(400, 403)})
    async def create(request: Request):
        """Start an export job with the caller's grants (masking and audit as for any read)."""
        principal = current_principal.get()
        if principal.anonymous:
            raise AuthError("exports need a token (Authorization: Bearer …): a job "
                            "belongs to the token that asked for it")
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return problem(400, "the body must be a JSON object "
                                "{layer, format, datetime?, known_at?, crs?, history?}")
        unknown = set(body) - {"layer", "format", "datetime", "known_at", "crs", "history"}
        if unknown:
            return problem(400, f"unknown fields {sorted(unknown)}")
        if not all(isinstance(body.get(k), (str, type(None)))
                   for k in ("layer", "format", "datetime", "known_at", "crs")) \
                or not isinstance(body.get("history", False), bool):
            return problem(400, "layer, format, datetime, known_at and crs are strings; "
                                "history is a boolean")
        try:
            req = make_request(layers, body.get("layer"), body.get("format"),
                               body.get("datetime"), body.get("known_at"), body.get("crs"),
                               body.get("history", False))
            check_access(layers[req.layer], principal)
        except ExportError as e:
            return problem(e.status, str(e))
        client = request.client.host if request.client else None
        job = await run_in_threadpool(jobs.submit, principal, req, client)
        return JSONResponse(status_code=202, content=view(job, base),
                            headers={"Location": f"{base}/{job['id']}"})

    @router.get("/{job_id}", responses={200: {"description": "The job's status."},
                                        **errors(404)})
    async def status(job_id: str):
        """A job's status and progress (its owner's token only)."""
        job = await run_in_threadpool(jobs.get, job_id, current_principal.get())
        if job is None:
            return problem(404, "no such export job for this token")
        return view(job, base)

    @router.get("/{job_id}/file", response_class=FileResponse, responses={
        200: {"description": "The exported file.", "content": {t: {} for t in
                                                              MEDIA_TYPES.values()}},
        **errors(404), 409: {"description": "The job has not finished, or failed."}})
    async def file(job_id: str):
        """The exported file, once the job is done (its owner's token only)."""
        job = await run_in_threadpool(jobs.get, job_id, current_principal.get())
        if job is None:
            return problem(404, "no such export job for this token")
        if job["status"] != "done":
            why = f": {job['error']}" if job.get("error") else ""
            return problem(409, f"the export is {job['status']}{why}")
        path = jobs.dir / job["id"] / job["file"]
        stamp = dt.datetime.fromisoformat(job["datetime"]).astimezone(dt.UTC).strftime(
            "%Y%m%dT%H%M%SZ")
        return FileResponse(path, media_type=MEDIA_TYPES[job["format"]],
                            filename=f"{job['layer']}-{stamp}{FORMATS[job['format']][0]}",
                            headers={"Cache-Control": "private, no-store"})

    router.jobs = jobs  # for tests and the app's shutdown
    return router
