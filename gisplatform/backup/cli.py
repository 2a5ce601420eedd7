"""`gisplatform backup …`: backups of the database and the platform's files.

    backup create [--to DIR]                      take one; the last line is its id alone
    backup list [--dir DIR]                       the complete backups (id, method, size)
    backup verify ID [--dir DIR]                  checksums, then a restore into a throwaway
                                                  cluster that must start and answer
    backup restore ID [--dir DIR] [--data-dir D] [--until T] [--wal-archive DIR]
                                                  into an empty data dir (the embedded
                                                  cluster; --until: point in time), or into
                                                  the empty database at DATABASE_URL

Backups live in GISPLATFORM_BACKUP_DIR (default <data dir>/backups). Exit codes: 1 = the
operation failed or was refused (a damaged backup: the files named), 2 = bad usage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from gisplatform.console import err, fail

from .manifest import backups_dir


def backup_app(stores_of: Callable[[Path], dict]) -> typer.Typer:
    """`stores_of(data_dir)`: the file stores a backup keeps (wiring.backup_stores)."""
    app = typer.Typer(help="Backups: create, list, verify, restore (point in time too).",
                      no_args_is_help=True)

    @app.command("create")
    def create_(to: Path = typer.Option(None, "--to", help="Directory of backups (default "
                                        "GISPLATFORM_BACKUP_DIR or <data dir>/backups)."),
                keep: int = typer.Option(0, help="Then keep only the newest N backups (and "
                                         "the WAL they need); 0 = keep all.")) -> None:
        """Back up the database and the platform's files; print the backup's id last."""
        from gisplatform.config import get_settings
        from gisplatform.db.embedded import EmbeddedError, database_url, from_settings

        from . import BackupError, create, prune

        settings = get_settings()
        try:
            url = database_url(settings)
        except EmbeddedError as e:
            raise fail(str(e)) from None
        embedded = None if settings.database_url else from_settings(settings)
        root = backups_dir(settings, to)
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      console=err, transient=True) as bar:
            tasks: dict = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total or 1)
                bar.update(tasks[phase], completed=done, total=total or 1)
            try:
                m = create(url, root, stores_of(settings.data_dir), embedded, progress)
                gone = prune(root, keep, embedded) if keep else []
            except BackupError as e:
                raise fail(str(e)) from None
        err.print(f"backup {m.id}: {m.method}, {len(m.files)} files, {m.size / 1e6:.1f} MB, "
                  f"migration {m.revision}, in {root}"
                  + (f"; removed {', '.join(gone)}" if gone else ""), highlight=False)
        typer.echo(m.id)

    @app.command("list")
    def list_(dir_: Path = typer.Option(None, "--dir", help="Directory of backups.")) -> None:
        """The complete backups, oldest first: id, method, size, migration, finished."""
        from gisplatform.config import get_settings

        from . import complete
        from .manifest import partial

        root = backups_dir(get_settings(), dir_)
        for m in complete(root):
            typer.echo(f"{m.id}\t{m.method}\t{m.size / 1e6:.1f} MB\t{m.revision}\t{m.finished}")
        for p in partial(root):
            err.print(f"not complete (ignored): {p.name}", highlight=False)

    @app.command("verify")
    def verify_(backup_id: str = typer.Argument(..., help="The backup's id."),
                dir_: Path = typer.Option(None, "--dir", help="Directory of backups.")) -> None:
        """Check every file's SHA-256, then restore into a throwaway cluster that must
        start and answer. Exit 1 naming what is wrong."""
        from gisplatform.config import get_settings

        from . import BackupError, Manifest, locate, verify

        settings = get_settings()
        try:
            d = locate(backups_dir(settings, dir_), backup_id)
            with err.status("verifying") as status:
                out = verify(d, Manifest.load(d), settings.pg_os_user,
                             progress=lambda phase: status.update(phase))
        except BackupError as e:
            raise fail(str(e)) from None
        typer.echo(f"{backup_id}: ok — files match the manifest; restored: migration "
                   f"{out['revision']}, {out['tables']} tables, {out['version_rows']} versions")

    @app.command("restore")
    def restore_(backup_id: str = typer.Argument(..., help="The backup's id."),
                 dir_: Path = typer.Option(None, "--dir", help="Directory of backups."),
                 data_dir: Path = typer.Option(None, "--data-dir", help="Restore into this "
                                               "data dir (must be empty; default the "
                                               "configured one)."),
                 until: str = typer.Option(None, help="Point in time: replay the WAL archive "
                                           "up to this instant (ISO 8601 with a zone)."),
                 wal_archive: Path = typer.Option(None, "--wal-archive", help="The WAL "
                                                  "archive (default: the backup's)."),
                 ) -> None:
        """Restore a backup into an empty data dir (or the empty database at DATABASE_URL)."""
        from gisplatform.config import get_settings
        from gisplatform.db.embedded import EmbeddedPostgres, free_port, from_settings
        from gisplatform.temporal import TemporalError, parse_instant

        from . import BackupError, Manifest, flush_wal, locate, restore_logical, restore_physical

        settings = get_settings()
        try:
            when = parse_instant(until) if until else None
        except TemporalError as e:
            raise fail(f"--until: {e}", 2) from None
        target = Path(data_dir or settings.data_dir).resolve()
        stores = stores_of(target)
        try:
            d = locate(backups_dir(settings, dir_), backup_id)
            m = Manifest.load(d)
            with err.status("restoring") as status:
                def progress(phase: str) -> None:
                    status.update(phase)
                if settings.database_url:
                    if when is not None:
                        raise BackupError("--until needs the embedded cluster's WAL archive; "
                                          "an external server's point-in-time recovery is "
                                          "its operator's")
                    restore_logical(d, m, settings.database_url, stores, progress)
                else:
                    source = from_settings(settings)
                    if when is not None and source.data_dir != target and source.is_running():
                        progress("archiving the source's last WAL")
                        flush_wal(source.url())
                    # recovery runs on a free port: the source may still hold the
                    # configured one (`gisplatform up` then serves the restored data dir)
                    pg = EmbeddedPostgres(target, free_port(), settings.pg_host,
                                          settings.pg_os_user,
                                          wal_archive_dir=settings.wal_archive_dir)
                    restore_physical(d, m, pg, stores, when, wal_archive, progress=progress)
        except BackupError as e:
            raise fail(str(e)) from None
        err.print(f"restored {backup_id}" + (f" to {when.isoformat()}" if when else "")
                  + f" into {target if not settings.database_url else 'DATABASE_URL'}",
                  highlight=False)
    return app
