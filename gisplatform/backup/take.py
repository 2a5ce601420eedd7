"""Taking a backup: the database and the platform's files, with a manifest (manifest.py).

Which tool, and why:
- the embedded cluster: **pg_basebackup** (tar format, WAL streamed into the backup). A
  physical copy restores in the time it takes to unpack, gives back the database exactly
  (every table, index, sequence and role), and is the base that point-in-time recovery
  replays the WAL archive onto (embedded.py archives every segment).
- an external DATABASE_URL: **pg_dump, custom format**. The platform may not reach the
  server's files or its WAL, and a logical dump restores into any PostgreSQL with PostGIS
  of the same or a newer version. It is taken in an exported snapshot, and the same snapshot
  gives the manifest its digest (digest.py), which a restore must reproduce. Point-in-time
  recovery of an external server is its operator's (their WAL archive and base backups).

Files: each store (rasters, 3D tilesets, open data versions, case photos: what
wiring.backup_stores lists) is copied whole. Caches (tiles, terrain) and job files are not
kept: they are rebuilt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from gisplatform import __version__
from gisplatform.db import connections, migrate
from gisplatform.db.embedded import EmbeddedPostgres, find_bindir

from .digest import digest
from .manifest import PARTIAL, BackupError, Manifest, new_id, sha256_file, walk

Progress = Callable[[str, int, int], None]  # (phase, done, total): a bar per phase


def _tool(name: str, *args: str) -> None:
    proc = subprocess.run([str(find_bindir() / name), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackupError(f"{name} failed ({proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-2000:]}")


def _start_wal(base_tar: Path) -> str | None:
    """The first WAL segment the base backup needs (its backup_label)."""
    with tarfile.open(base_tar) as tar:
        member = tar.extractfile("backup_label")
        for line in (member.read().decode() if member else "").splitlines():
            if line.startswith("START WAL LOCATION:") and "(file " in line:
                return line.split("(file ")[1].rstrip(")")
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create(url: str, root: Path, stores: dict[str, Path], embedded: EmbeddedPostgres | None,
           progress: Progress = lambda phase, done, total: None) -> Manifest:
    """A complete backup under `root` (its manifest); nothing listed when it fails. `embedded`:
    the embedded cluster behind `url` (pg_basebackup), None for an external server (pg_dump)."""
    root.mkdir(parents=True, exist_ok=True)
    backup_id = new_id()
    while (root / backup_id).exists() or (root / (backup_id + PARTIAL)).exists():
        time.sleep(0.2)  # one backup per second at most: ids are seconds
        backup_id = new_id()
    work = root / (backup_id + PARTIAL)
    (work / "db").mkdir(parents=True)
    started = datetime.now(UTC)
    try:
        with connections.connect(url, "gisplatform-backup") as conn:
            version = conn.execute("show server_version").fetchone()[0]
        manifest = Manifest(backup_id, started.isoformat(), "pg_basebackup" if embedded
                            else "pg_dump", __version__, migrate.current(url), version,
                            sorted(n for n, p in stores.items() if p.is_dir()))
        progress("database", 0, 1)
        if embedded is not None:
            _tool("pg_basebackup", f"--dbname={url}", "-D", str(work / "db"), "-Ft",
                  "-X", "stream", "-c", "fast", "-l", f"gisplatform {backup_id}", "--no-password")
            manifest.wal_archive = str(embedded.wal_archive)
            manifest.start_wal = _start_wal(work / "db" / "base.tar")
            shutil.copy2(embedded.password_file, work / "pg-password")
            os.chmod(work / "pg-password", 0o600)
        else:
            manifest.digest = _dump(url, work / "db" / "database.dump")
            manifest.roles = grantees(url)
        progress("database", 1, 1)
        files = [(name, p) for name, d in stores.items() if d.is_dir() for p in walk(d)]
        total = sum(p.stat().st_size for _, p in files)
        done = 0
        for name, p in files:
            dest = work / "files" / name / p.relative_to(stores[name])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
            done += p.stat().st_size
            progress("files", done, total)
        progress("files", total, total)
        kept = walk(work)
        total, done = sum(p.stat().st_size for p in kept), 0
        for p in kept:
            size = p.stat().st_size
            manifest.files[str(p.relative_to(work))] = {"sha256": sha256_file(p), "size": size}
            done += size
            progress("checksums", done, total)
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        manifest.finished = datetime.now(UTC).isoformat()
        manifest.save(work)
        _fsync_dir(work)
        work.rename(root / backup_id)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _dump(url: str, out: Path) -> dict:
    """pg_dump of `url` in a snapshot this connection exports, and the digest of that
    same snapshot."""
    with connections.connect(url, "gisplatform-backup") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            snapshot = conn.execute("select pg_export_snapshot()").fetchone()[0]
            _tool("pg_dump", f"--dbname={url}", "-Fc", f"--snapshot={snapshot}",
                  "-f", str(out), "--no-password")
            return digest(conn)


# The roles the platform's grants name (the analyst group, its members): pg_dump keeps the
# grants but not the roles, which belong to the server; a restore creates those missing.
GRANTEES = """
    select distinct r.rolname from pg_class c, aclexplode(c.relacl) a join pg_roles r
      on r.oid = a.grantee
    where c.relnamespace = 'city'::regnamespace and r.rolname <> current_user
      and r.rolname not like 'pg\\_%' order by 1"""


def grantees(url: str) -> list[str]:
    with connections.connect(url, "gisplatform-backup") as conn:
        return [r[0] for r in conn.execute(GRANTEES)]


def prune(root: Path, keep: int, embedded: EmbeddedPostgres | None) -> list[str]:
    """Delete all but the newest `keep` complete backups (and any partial one older than
    the newest complete); then the archived WAL older than the oldest backup kept, which no
    restore can use. The ids deleted."""
    from .manifest import complete, partial

    backups = complete(root)
    gone = [m.id for m in backups[:-keep]] if keep > 0 else []
    for backup_id in gone:
        shutil.rmtree(root / backup_id)
    if backups:
        for p in partial(root):
            if p.name < backups[-1].id:
                shutil.rmtree(p, ignore_errors=True)
    kept = [m for m in backups if m.id not in gone]
    if embedded is not None and kept and kept[0].start_wal and embedded.wal_archive.is_dir():
        _tool("pg_archivecleanup", str(embedded.wal_archive), kept[0].start_wal)
    return gone


def flush_wal(url: str, timeout_s: float = 60) -> str | None:
    """Close the current WAL segment and wait until the archiver has copied it, so a
    point-in-time restore can reach the last changes (else up to archive_timeout is
    missing). The segment's name; None when nothing was written since the last switch."""
    with connections.connect(url, "gisplatform-backup", autocommit=True) as conn:
        lsn = conn.execute("select pg_switch_wal()").fetchone()[0]
        name = conn.execute("select pg_walfile_name(%s)", (lsn,)).fetchone()[0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done, failed = conn.execute("select last_archived_wal, last_failed_wal"
                                        " from pg_stat_archiver").fetchone()
            if done is not None and done >= name:
                return name
            if failed is not None and failed >= name:
                raise BackupError(f"the archiver failed on {failed}: see the server log")
            time.sleep(0.2)
    raise BackupError(f"WAL segment {name} was not archived within {timeout_s:.0f} s")
