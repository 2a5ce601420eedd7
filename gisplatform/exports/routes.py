"""Exports over HTTP, as jobs: a large layer takes longer than a request should.

    POST /api/exports {layer, format, datetime?, known_at?, crs?, history?}
         -> 202, Location: /api/exports/{id}
    GET  /api/exports/{id}         status: queued | running | done | failed, progress, error
    GET  /api/exports/{id}/file    the file (409 until done)

The jobs are the platform's (gisplatform/api/jobs.py: why not pygeoapi's async Processes):
a thread pool (`GISPLATFORM_EXPORTS_WORKERS`) runs `gisplatform.exports.export` (files.py)
with the principal captured when the job was accepted; each job is a directory
`<data dir>/exports/<id>/` holding `job.json` and the file. Jobs and files are deleted
`GISPLATFORM_EXPORTS_TTL_HOURS` after they were asked for. A job belongs to the token that
asked for it: another token, or none, gets 404. Exports over HTTP need a token (anonymous
callers have no identity to own a job; public layers are open data, /opendata/).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from gisplatform.api.jobs import Jobs, owned, times, unfinished
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

BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["layer", "format"], "properties": {
        "layer": {"type": "string", "description": "layer id, e.g. persons"},
        "format": {"type": "string", "enum": list(FORMATS)},
        "datetime": {"type": "string", "description": "snapshot instant (ISO 8601); default now"},
        "known_at": {"type": "string", "description": "transaction-time instant"},
        "crs": {"type": "string", "description": "e.g. EPSG:4490 (default), EPSG:3857"},
        "history": {"type": "boolean", "description": "every version instead of a snapshot"},
    }}}}}}


class ExportJobs(Jobs):
    """Export jobs under `directory` (api/jobs.py), run by a thread pool in this process."""

    def __init__(self, url: str, layers: dict, directory: Path, ttl_hours: float, workers: int):
        super().__init__(directory, ttl_hours, workers, "export", expected=(ExportError,))
        self.url, self.layers = url, layers

    def submit(self, principal: Principal, req: ExportRequest, client: str | None) -> dict:
        job = self.new(principal, {**req.describe(), "size": None,
                                   "file": f"{req.layer}{FORMATS[req.format][0]}"})

        def work(job: dict, progress) -> None:
            target = self.dir / job["id"] / job["file"]
            r = export(self.url, self.layers[req.layer], req, principal, target,
                       progress=progress, client=client)
            os.chmod(target, 0o600)
            job.update(rows=r.rows, total=r.rows, size=target.stat().st_size,
                       datetime=r.at.isoformat(), unmasked=r.unmasked)
        self.start(job, work)
        return job


def view(job: dict, base: str) -> dict:
    """What the owner is shown (not the owner id, pid or host)."""
    out = {k: job.get(k) for k in ("id", "status", "layer", "format", "datetime", "known_at",
                                   "crs", "history", "error", "size")}
    out.update(times(job), progress={"rows": job["rows"], "total": job["total"]})
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

    router = APIRouter(prefix="/api/exports", tags=["platform"], lifespan=jobs.lifespan,
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
        job = await owned(jobs, job_id, "export")
        return view(job, base) if isinstance(job, dict) else job

    @router.get("/{job_id}/file", response_class=FileResponse, responses={
        200: {"description": "The exported file.", "content": {t: {} for t in
                                                              MEDIA_TYPES.values()}},
        **errors(404), 409: {"description": "The job has not finished, or failed."}})
    async def file(job_id: str):
        """The exported file, once the job is done (its owner's token only)."""
        job = await owned(jobs, job_id, "export")
        if not isinstance(job, dict):
            return job
        if (refusal := unfinished(job, "export")) is not None:
            return refusal
        path = jobs.dir / job["id"] / job["file"]
        stamp = dt.datetime.fromisoformat(job["datetime"]).astimezone(dt.UTC).strftime(
            "%Y%m%dT%H%M%SZ")
        return FileResponse(path, media_type=MEDIA_TYPES[job["format"]],
                            filename=f"{job['layer']}-{stamp}{FORMATS[job['format']][0]}",
                            headers={"Cache-Control": "private, no-store"})

    router.jobs = jobs  # for tests and the app's shutdown
    return router
