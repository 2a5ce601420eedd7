"""Restoring a backup (take.py) into an empty data directory, or an empty database.

- pg_basebackup backups: the base backup is unpacked as the data dir's `pgdata`, with the
  WAL it streamed; the cluster replays it to the end of the backup and comes up as it was.
  With `until`, the cluster replays the WAL archive onto it up to that instant
  (recovery_target_time, then it is promoted): the state just before a bad import or a bad
  DELETE. The recovery settings are removed once it is promoted.
- pg_dump backups: pg_restore into the database at the URL, which must hold no platform
  schema yet.

Nothing is written before the backup's files have been checked against its manifest, and
a target that is not empty is refused: a restore never mixes two states.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from gisplatform.db import connections, migrate
from gisplatform.db.embedded import EmbeddedPostgres, free_port

from .digest import differences, digest
from .manifest import BackupError, Manifest, check_files, walk
from .take import _tool

RECOVERY = ("restore_command", "recovery_target_time", "recovery_target_action")


def _nonempty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _check(directory: Path, manifest: Manifest) -> None:
    problems = check_files(directory, manifest)
    if problems:
        raise BackupError(f"backup {manifest.id} is damaged: " + "; ".join(problems[:5])
                          + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))


def _copy_stores(directory: Path, manifest: Manifest, stores: dict[str, Path]) -> None:
    for name in manifest.stores:
        if name not in stores:
            raise BackupError(f"backup {manifest.id} holds files of {name!r}, which this "
                              "version of the platform does not know")
        shutil.copytree(directory / "files" / name, stores[name], copy_function=shutil.copy2,
                        dirs_exist_ok=True)


def check_target(manifest: Manifest, stores: dict[str, Path],
                 pg: EmbeddedPostgres | None) -> None:
    """BackupError unless everything the restore writes is absent or empty."""
    taken = [str(p) for p in ([pg.pgdata, pg.password_file] if pg else [])
             + [stores[n] for n in manifest.stores if n in stores] if _nonempty(p)]
    if taken:
        raise BackupError("the restore target is not empty: " + ", ".join(taken)
                          + " (restore into a new data dir, or move these aside)")


def restore_physical(directory: Path, manifest: Manifest, pg: EmbeddedPostgres,
                     stores: dict[str, Path], until: datetime | None = None,
                     wal_archive: Path | None = None, timeout_s: float = 3600,
                     progress: Callable[[str], None] = lambda phase: None) -> None:
    """Unpack a pg_basebackup backup into `pg`'s (empty) data dir and bring the cluster to
    the end of the backup, or to `until` from the WAL archive; left stopped."""
    if manifest.method != "pg_basebackup":
        raise BackupError(f"backup {manifest.id} is a {manifest.method}: restore it into a "
                          "database (DATABASE_URL), not a data dir")
    check_target(manifest, stores, pg)
    progress("checking files")
    _check(directory, manifest)
    archive = Path(wal_archive or manifest.wal_archive or "")
    if until is not None:
        if until < datetime.fromisoformat(manifest.finished):
            raise BackupError(f"--until {until.isoformat()} is before backup {manifest.id} "
                              f"ended ({manifest.finished}): restore an older backup")
        if not archive.is_dir():
            raise BackupError(f"the WAL archive {archive} is not there (--wal-archive DIR)")
    progress("unpacking the database")
    pg.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        pg.pgdata.mkdir(mode=0o700)
        with tarfile.open(directory / "db" / "base.tar") as tar:
            tar.extractall(pg.pgdata, filter="tar")
        with tarfile.open(directory / "db" / "pg_wal.tar") as tar:
            tar.extractall(pg.pgdata / "pg_wal", filter="tar")
        os.chmod(pg.pgdata, 0o700)
        shutil.copy2(directory / "pg-password", pg.password_file)
        os.chmod(pg.password_file, 0o600)
        if until is not None:
            arch = str(archive.resolve()).replace("'", "''")
            with open(pg.pgdata / "postgresql.auto.conf", "a") as f:
                f.write(f"restore_command = 'cp \"{arch}/%f\" \"%p\"'\n"
                        f"recovery_target_time = '{until.isoformat()}'\n"
                        "recovery_target_action = 'promote'\n")
            (pg.pgdata / "recovery.signal").touch()
        pg._give_to_server_user(pg.pgdata, recursive=True)
        progress("copying files")
        _copy_stores(directory, manifest, stores)
        progress("replaying the WAL")
        _recover(pg, until is not None, timeout_s)
    except BaseException:
        pg.stop()
        shutil.rmtree(pg.pgdata, ignore_errors=True)
        pg.password_file.unlink(missing_ok=True)
        for name in manifest.stores:
            if name in stores:
                shutil.rmtree(stores[name], ignore_errors=True)
        raise


def _recover(pg: EmbeddedPostgres, targeted: bool, timeout_s: float) -> None:
    """Start the restored cluster, wait until it accepts writes (recovery done, promoted),
    clear the recovery settings, stop it."""
    def log_tail() -> str:
        lines = pg.logfile.read_text(errors="replace").strip().splitlines()
        return " | ".join(x for x in lines if "FATAL" in x or "PANIC" in x)[-600:] \
            or " | ".join(lines[-3:])
    try:
        pg.run()
    except Exception:
        raise BackupError(f"the restored cluster did not start: {log_tail()}") from None
    deadline = time.monotonic() + timeout_s
    while True:
        if not pg.is_running():
            raise BackupError(f"recovery stopped: {log_tail()}")
        try:
            with connections.connect(pg.url("postgres"), "gisplatform-restore",
                                     autocommit=True) as conn:
                if not conn.execute("select pg_is_in_recovery()").fetchone()[0]:
                    if targeted:
                        for name in RECOVERY:
                            conn.execute(f"alter system reset {name}")
                        conn.execute("select pg_reload_conf()")
                    break
        except psycopg.OperationalError:
            pass  # still starting
        if time.monotonic() > deadline:
            raise BackupError(f"recovery did not finish within {timeout_s:.0f} s")
        time.sleep(0.5)
    pg.stop()


def restore_logical(directory: Path, manifest: Manifest, url: str, stores: dict[str, Path],
                    progress: Callable[[str], None] = lambda phase: None) -> None:
    """pg_restore a pg_dump backup into the (empty) database at `url`, and its files."""
    if manifest.method != "pg_dump":
        raise BackupError(f"backup {manifest.id} is a {manifest.method}: restore it into a "
                          "data dir (the embedded cluster), not a DATABASE_URL")
    check_target(manifest, stores, None)
    with connections.connect(url, "gisplatform-restore") as conn:
        if conn.execute("select to_regnamespace('city')").fetchone()[0] is not None:
            raise BackupError("the database at DATABASE_URL already holds the platform's "
                              "schema city: restore into an empty database")
    progress("checking files")
    _check(directory, manifest)
    progress("restoring the database")
    with connections.connect(url, "gisplatform-restore", autocommit=True) as conn:
        for role in manifest.roles:  # the server's roles are not in a dump
            if conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is None:
                conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
    _tool("pg_restore", f"--dbname={url}", "--exit-on-error", "--no-owner", "--single-transaction",
          str(directory / "db" / "database.dump"))
    progress("copying files")
    _copy_stores(directory, manifest, stores)


def files_digest(stores: dict[str, Path]) -> dict[str, str]:
    """{store/relative path: sha256} of the platform's files, to compare after a restore."""
    from .manifest import sha256_file

    return {f"{n}/{p.relative_to(d)}": sha256_file(p)
            for n, d in sorted(stores.items()) if d.is_dir() for p in walk(d)}


def verify(directory: Path, manifest: Manifest, os_user: str = "postgres",
           progress: Callable[[str], None] = lambda phase: None) -> dict:
    """Check every file against the manifest, then restore the backup into a throwaway
    cluster that must start and answer: its migration revision is the manifest's, and (a
    pg_dump backup) its digest equals the one taken with the dump. BackupError says what
    failed; the figures of the restored database otherwise."""
    progress("checking files")
    _check(directory, manifest)
    tmp = Path(tempfile.mkdtemp(prefix=f"gisplatform-verify-{manifest.id}-"))
    os.chmod(tmp, 0o755)  # the server user (when we are root) reaches pgdata through it
    pg = EmbeddedPostgres(tmp, port=free_port(), os_user=os_user, durable=False)
    stores = {n: tmp / "files" / n for n in manifest.stores}
    try:
        if manifest.method == "pg_basebackup":
            restore_physical(directory, manifest, pg, stores, progress=progress)
            pg.run()
        else:
            pg.start()
            restore_logical(directory, manifest, pg.url(), stores, progress=progress)
        progress("asking the restored database")
        url = pg.url()
        revision = migrate.current(url)
        if revision != manifest.revision:
            raise BackupError(f"the restored database is at migration {revision}, the "
                              f"manifest says {manifest.revision}")
        with connections.connect(url, "gisplatform-verify") as conn:
            got = digest(conn)
        if manifest.digest is not None and differences(manifest.digest, got):
            raise BackupError("the restored tables differ from the dump's snapshot: "
                              + "; ".join(differences(manifest.digest, got)[:5]))
        versions = {t: n for t, (n, _) in got.items() if t.endswith("_version")}
        return {"revision": revision, "tables": len(got), "version_rows": sum(versions.values())}
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
