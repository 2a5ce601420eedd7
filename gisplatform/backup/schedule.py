"""Scheduled backups in the server (GISPLATFORM_BACKUP_EVERY, GISPLATFORM_BACKUP_KEEP), and
the state of the newest backup for /metrics and /health.

One replica takes each scheduled backup: the round runs under a session advisory lock, as
open data's does; a replica that finds it held skips the round. A failed round is logged
and the next one tries again; /health then shows the newest backup growing old (a warning,
never a failure: the platform still serves).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from gisplatform.db.connections import connect
from gisplatform.opendata.publication import parse_every

from .manifest import ID, Manifest
from .take import create, prune

log = logging.getLogger("gisplatform.backup")
ADVISORY_LOCK = 0x6770_6275  # 'gpbu': one scheduled backup at a time across replicas


def newest(root: Path) -> Manifest | None:
    """The newest complete backup under `root` (read from its manifest alone)."""
    if not root.is_dir():
        return None
    for d in sorted((d for d in root.iterdir() if ID.match(d.name)), reverse=True):
        if (d / "manifest.json").is_file():
            try:
                return Manifest.load(d)
            except Exception:
                continue
    return None


def age_s(m: Manifest) -> float:
    """Seconds since backup `m` ended."""
    return (datetime.now(UTC) - datetime.fromisoformat(m.finished or m.created)).total_seconds()


def status(root: Path, period_s: float) -> dict:
    """The newest backup's id, age and size, and a warning when there is none or it is
    older than twice the schedule (or than a day, without a schedule)."""
    m = newest(root)
    if m is None:
        return {"last": None, "warning": "no backup yet (gisplatform backup create)"}
    age = age_s(m)
    out = {"last": m.id, "age_s": round(age), "size_bytes": m.size, "method": m.method}
    limit = 2 * period_s if period_s > 0 else 86400
    if age > limit:
        out["warning"] = f"the newest backup is {age / 3600:.1f} h old"
    return out


def gauges(root: Path):
    """/metrics: the newest backup's age and size (absent until there is one)."""
    m = newest(root)
    if m is None:
        return []
    age = age_s(m)
    return [("gisplatform_backup_last_age_seconds", "seconds since the newest backup ended",
             {(): round(age)}),
            ("gisplatform_backup_last_size_bytes", "bytes of the newest backup", {(): m.size})]


def backup_round(url: str, root: Path, stores: dict, embedded, keep: int) -> Manifest | None:
    """One scheduled backup and its pruning, under the advisory lock; None if another
    replica holds it."""
    with connect(url, "gisplatform-backup", autocommit=True) as conn:
        if not conn.execute("select pg_try_advisory_lock(%s)", (ADVISORY_LOCK,)).fetchone()[0]:
            return None
        try:
            m = create(url, root, stores, embedded)
            prune(root, keep, embedded)
            return m
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK,))


def scheduler(url: str, root: Path, stores: dict, embedded, every: str, keep: int):
    """A lifespan running `backup_round` every `every` ("0": never). A bad period fails
    at start, not at 3 a.m."""
    period = parse_every(every)

    async def loop():
        while True:
            await asyncio.sleep(period)
            try:
                m = await run_in_threadpool(backup_round, url, root, stores, embedded, keep)
                if m is None:
                    log.info("backup: another replica is taking it; skipped")
                else:
                    log.info("backup %s: %d files, %.1f MB", m.id, len(m.files), m.size / 1e6)
            except Exception:  # logged; the next round tries again
                log.exception("scheduled backup failed")

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(loop()) if period > 0 else None
        try:
            yield
        finally:
            if task:
                task.cancel()
    return lifespan
