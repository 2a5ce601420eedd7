"""`/api/layers`: the layer definitions, and publishing a dataset over HTTP.

- `GET /api/layers`, `GET /api/layers/{name}`: every layer's definition (built-in and
  published; catalogue metadata, no data).
- `POST /api/layers` (multipart/form-data): `name`, and either `file` (GeoPackage, zipped
  Shapefile, GeoJSON, FlatGeobuf, CSV: its definition inferred, as `gisplatform layer
  create --from`) with `department`, `sharing`, `id_field`, `title`, `title_en`,
  `public_field` (repeated), `crs`, `valid_from`, `source_layer`; or `definition` (TOML
  or JSON text), with or without a file. A token with `layers:publish` for the layer's
  department (security.require_publish). Bad names are 400 at once; the rest runs as a
  job (202 + Location): `GET /api/layers/jobs/{id}` says its progress and, when done, the
  layer's links. The layer is served by every worker within GISPLATFORM_LAYER_POLL_SECONDS.

The publishing itself (infer, register, create, import in one transaction) is handed in
by the composition root (layers/publishing.py): the kernel does not read files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from gisplatform.api.jobs import Jobs, owned, times
from gisplatform.api.responses import errors
from gisplatform.errors import problem
from gisplatform.security import current_principal, require_publish

from .definition import DefinitionError, LayerDefinition, parse, parse_toml

FIELDS = ("name", "department", "sharing", "id_field", "title", "title_en", "crs",
          "valid_from", "source_layer", "definition")
SUFFIXES = {".gpkg", ".geojson", ".json", ".zip", ".fgb", ".csv"}
MAX_UPLOAD = 500 << 20
CHUNK = 1 << 20

Publish = Callable[[dict, Path | None, object, Callable[[int, int], None]], str]


def check_name(name: object) -> str | None:
    """Why `name` cannot be a layer's name (the definition's rule), or None."""
    if not isinstance(name, str) or not name:
        return "name: the layer's collection id is required"
    try:
        parse({"name": name, "department": "-", "geometry_type": "Point", "builtin": True})
    except DefinitionError as e:
        return str(e)
    return None


def layers_router(publish: Publish, definitions: Callable[[], list[LayerDefinition]],
                  department_name: Callable[[str], str],
                  taken: Callable[[str], str | None], settings) -> APIRouter:
    """`publish(fields, file, principal, progress) -> summary` raises ValueError (nothing
    published); `definitions()`: every layer's definition; `department_name(code)`: a
    department's name (what a layer's definition records); `taken(name)`: why a new
    layer cannot have that name, or None."""
    # publishing jobs (api/jobs.py), one at a time, kept as long as export jobs
    jobs = Jobs(Path(settings.data_dir) / "layer-jobs", settings.exports_ttl_hours, 1,
                "publish", expected=(ValueError,))
    public_url = settings.public_url
    base = f"{public_url}/api/layers"

    router = APIRouter(prefix="/api/layers", tags=["platform"], lifespan=jobs.lifespan,
                       responses=errors(401))

    @router.get("", responses={200: {"description": "Every layer's definition (summary)."}})
    async def listing():
        """Every layer (built-in and published, not retired): name, titles, owner, sharing."""
        defs = await run_in_threadpool(definitions)
        return {"layers": [{"name": d.name, "title": d.title, "builtin": d.builtin,
                            "department": d.department, "sharing": d.sharing,
                            "geometry_type": d.geometry_type,
                            "href": f"{base}/{d.name}"} for d in defs]}

    @router.get("/{name}", responses={200: {"description": "The layer's definition."},
                                      **errors(404)})
    async def one(name: str):
        """A layer's definition (the TOML of `gisplatform layer show`, as JSON)."""
        for d in await run_in_threadpool(definitions):
            if d.name == name:
                return d.model_dump(mode="json", exclude_none=True)
        return problem(404, f"no layer {name}")

    @router.post("", status_code=202, responses={
        202: {"description": "Accepted: the publishing job; Location names it."},
        **errors(400, 403), 413: {"description": "The file is over 500 MB."}})
    async def create(request: Request):
        """Publish a dataset as a new time-versioned layer (a job)."""
        principal = current_principal.get()
        # 401 / 403 before the body is read: the token and its grant (its department below)
        require_publish(principal, principal.department)
        if (request.headers.get("content-type") or "").split(";")[0] != "multipart/form-data":
            return problem(415, "send multipart/form-data: name, file or definition, …")
        length = request.headers.get("content-length")
        if length is None:
            return problem(411, "Content-Length is required (a file up to 500 MB)",
                           code="LengthRequired")
        if not length.isdigit() or int(length) > MAX_UPLOAD + CHUNK:
            return problem(413, "the upload is over 500 MB")
        try:
            form = await request.form(max_files=1, max_fields=len(FIELDS) + 50)
        except Exception as e:  # noqa: BLE001 -- starlette's parser: a malformed body
            return problem(400, f"the form cannot be read ({type(e).__name__})")
        try:  # the uploaded file's temporary copy goes with the form
            fields = {k: form.get(k) for k in FIELDS if isinstance(form.get(k), str)}
            fields["public_field"] = [v for v in form.getlist("public_field")
                                      if isinstance(v, str)]
            unknown = set(form) - set(FIELDS) - {"public_field", "file"}
            if unknown:
                return problem(400, f"unknown fields {sorted(unknown)}")
            why = check_name(fields.get("name"))
            if why is None:
                why = await run_in_threadpool(taken, fields["name"])
            if why:
                return problem(400, why)
            own = await run_in_threadpool(department_name, principal.department)
            asked = fields.get("department")
            definition = fields.get("definition")
            if definition is not None:  # JSON or TOML, checked now: its department decides
                try:
                    parsed = (LayerDefinition.model_validate_json(definition)
                              if definition.lstrip().startswith("{") else parse_toml(definition))
                except (ValueError, DefinitionError) as e:
                    return problem(400, f"definition: {e}")
                if parsed.name != fields["name"]:
                    return problem(400, f"definition: it defines {parsed.name!r}")
                asked = parsed.department
                fields["definition"] = {**parsed.model_dump(mode="json"), "department": own}
            if asked not in (None, principal.department, own):  # the token's department only
                require_publish(principal, asked)
            fields["department"] = own  # stored by name, as the built-in layers
            upload = form.get("file")
            if upload is None and definition is None:
                return problem(400, "give a file (its definition is inferred) or a definition")
            job = await run_in_threadpool(jobs.new, principal, {
                "layer": fields["name"], "summary": None})
            work = jobs.dir / job["id"]
            source = None
            if upload is not None and not isinstance(upload, str):
                suffix = Path(upload.filename or "").suffix.lower()
                if suffix not in SUFFIXES:
                    shutil.rmtree(work, ignore_errors=True)
                    return problem(400, f"file: {suffix or 'no suffix'} is not one of "
                                        f"{sorted(SUFFIXES)} (a Shapefile as .zip)")
                source = work / f"upload{suffix}"
                size = await run_in_threadpool(_save, upload.file, source)
                if size > MAX_UPLOAD:
                    shutil.rmtree(work, ignore_errors=True)
                    return problem(413, "the file is over 500 MB")
        finally:
            await form.close()

        def run(job: dict, progress) -> None:
            try:
                job["summary"] = publish(fields, source, principal, progress)
            finally:
                if source is not None:
                    source.unlink(missing_ok=True)
        jobs.start(job, run)
        return _answer(202, job, base, {"Location": f"{base}/jobs/{job['id']}"})

    @router.get("/jobs/{job_id}", responses={200: {"description": "The job's status."},
                                             **errors(404)})
    async def status(job_id: str):
        """A publishing job's status and progress (its owner's token only)."""
        job = await owned(jobs, job_id, "publishing")
        return _view(job, base) if isinstance(job, dict) else job

    return router


def _save(stream, target: Path) -> int:
    """Copy the uploaded file, stopping past the limit; its size."""
    n = 0
    with open(target, "wb") as out:
        while chunk := stream.read(CHUNK):
            n += len(chunk)
            if n > MAX_UPLOAD:
                break
            out.write(chunk)
    return n


def _view(job: dict, base: str) -> dict:
    out = {k: job[k] for k in ("id", "status", "layer", "summary", "error")}
    when = times(job)
    out.update(created=when["created"], finished=when["finished"],
               progress={"rows": job["rows"], "total": job["total"]})
    out["links"] = [{"rel": "self", "type": "application/json",
                     "href": f"{base}/jobs/{job['id']}"}]
    if job["status"] == "done":
        root = base.removesuffix("/api/layers")
        out["links"] += [
            {"rel": "describedby", "type": "application/json", "href": f"{base}/{job['layer']}"},
            {"rel": "items", "type": "application/geo+json",
             "href": f"{root}/ogc/collections/{job['layer']}/items"}]
    return out


def _answer(status: int, job: dict, base: str, headers: dict):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content=_view(job, base), headers=headers)


__all__ = ["check_name", "layers_router"]
