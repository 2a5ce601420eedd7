"""Jobs on disk, run by a thread pool in this process: work longer than a request should
take (exports, batch geocoding), with progress, owned by the token that asked.

A small runner of our own rather than pygeoapi's async Processes: a job must run with the
requesting principal's grants (pygeoapi's manager runs processes without our per-request
principal), belong to its creator's token, and hand back a file of hundreds of MB by
streaming it (pygeoapi's job results are read into memory). Each job is a directory
`<directory>/<id>/` holding `job.json` (written atomically) and its files, so any worker
process on the host answers for it. Jobs and files are deleted `ttl_hours` after they were
asked for. A job belongs to the token that asked for it: another token, or none, gets None
(the routes answer 404: job ids are not even confirmed to exist).
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ACTIVE = ("queued", "running")

Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """The app is stopping: the running job gives up."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime | None) -> str | None:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z") if t else None


class Jobs:
    """Jobs under `directory`, run by `workers` threads; `expected`: the exceptions whose
    message is the job's error as it stands (others are reported by type and first line,
    without internals)."""

    def __init__(self, directory: Path, ttl_hours: float, workers: int, name: str,
                 expected: tuple[type[Exception], ...] = ()):
        self.dir = Path(directory)
        self.ttl = dt.timedelta(hours=ttl_hours)
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)
        self.stopping = threading.Event()
        self.host = socket.gethostname()
        self.expected = (*expected, Cancelled)

    # ------------------------------------------------------------------ storage

    def _path(self, job_id: str) -> Path:
        return self.dir / job_id / "job.json"

    def save(self, job: dict) -> None:
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
        t, n = now(), 0
        for d in self.dir.iterdir():
            job = self._load(d.name)
            if job is None:
                # a directory without a readable job: a crash between mkdir and the first
                # save, or junk; judged by its age
                if d.is_dir() and time.time() - d.stat().st_mtime > self.ttl.total_seconds():
                    shutil.rmtree(d, ignore_errors=True)
                continue
            expired = dt.datetime.fromisoformat(job["expires"]) < t
            if expired and (job["status"] not in ACTIVE or self._stale(job)):
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        return n

    # ------------------------------------------------------------------ jobs

    def new(self, principal, fields: dict) -> dict:
        """A queued job of `principal`'s token with `fields`, and its directory."""
        self.sweep()
        job_id = secrets.token_hex(16)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / job_id).mkdir(mode=0o700)
        created = now()
        job = {"rows": 0, "total": None, "error": None, **fields,  # fields may set a total
               "id": job_id, "status": "queued", "owner": principal.token_id,
               "created": created.isoformat(), "expires": (created + self.ttl).isoformat(),
               "started": None, "finished": None, "pid": os.getpid(), "host": self.host}
        self.save(job)
        return job

    def start(self, job: dict, work: Callable[[dict, Progress], None]) -> None:
        """Run `work(job, progress)` in the pool; it updates `job` with what it made."""
        self.pool.submit(self._run, job, work)

    def _run(self, job: dict, work: Callable[[dict, Progress], None]) -> None:
        job.update(status="running", started=now().isoformat())
        self.save(job)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self.stopping.is_set():
                raise Cancelled("the server is stopping")
            job.update(rows=done, total=total)  # the final save has the last count
            if time.monotonic() - last[0] > 1:
                last[0] = time.monotonic()
                self.save(job)
        try:
            work(job, progress)
            job["status"] = "done"
        except self.expected as e:
            job.update(status="failed", error=str(e))
        except Exception as e:  # noqa: BLE001 -- reported to the owner, without internals
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            job.update(status="failed", error=f"{type(e).__name__}: {msg}"[:300])
        job["finished"] = now().isoformat()
        self.save(job)

    def get(self, job_id: str, principal) -> dict | None:
        """The job if it exists and belongs to `principal`'s token."""
        job = self._load(job_id)
        if job is None or principal.token_id is None or job.get("owner") != principal.token_id:
            return None
        if self._stale(job):
            job.update(status="failed", error="the server stopped before the job finished")
        return job

    def close(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def lifespan(self, app):
        """A router's lifespan: expired jobs swept as the app starts, the pool closed as
        it stops."""
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(self.sweep)
        try:
            yield
        finally:
            self.close()


def times(job: dict) -> dict:
    """created, expires, started, finished as the owner is shown them (UTC, seconds)."""
    return {k: job[k] and iso(dt.datetime.fromisoformat(job[k]))
            for k in ("created", "expires", "started", "finished")}


async def owned(jobs: Jobs, job_id: str, what: str):
    """The caller's job `job_id`, or the 404 to answer (another token's, none, or gone)."""
    from starlette.concurrency import run_in_threadpool

    from gisplatform.errors import problem
    from gisplatform.security import current_principal

    job = await run_in_threadpool(jobs.get, job_id, current_principal.get())
    return job if job is not None else problem(404, f"no such {what} job for this token")


def unfinished(job: dict, what: str):
    """The 409 to answer for a job's result before it is done (or after it failed), else None."""
    from gisplatform.errors import problem

    if job["status"] == "done":
        return None
    why = f": {job['error']}" if job.get("error") else ""
    return problem(409, f"the {what} is {job['status']}{why}")
