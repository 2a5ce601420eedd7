"""The `gisplatform` command (composition root for the command line)."""

from __future__ import annotations

import os
import shutil
import time
from functools import wraps

import typer
from rich.console import Console

from .config import get_settings
from .db import migrate as migrations
from .db.embedded import EmbeddedError, database_url, find_bindir, from_settings

app = typer.Typer(help="Fushun spatio-temporal city platform.", no_args_is_help=True)
db_app = typer.Typer(help="The database: embedded PostGIS or DATABASE_URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def friendly(fn):
    """Known failures print one clear line and exit 1 instead of a traceback."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EmbeddedError as e:
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(1) from None
    return wrapper


def _ensure_db() -> str:
    """Start the embedded cluster if we own it, apply migrations; return the URL."""
    settings = get_settings()
    t = time.perf_counter()
    url = database_url(settings, start=True)
    where = "DATABASE_URL" if settings.database_url else f"embedded PostGIS on port {settings.pg_port}"
    err.print(f"database: {where} ({time.perf_counter() - t:.1f}s)")
    migrations.upgrade(url)
    return url


@db_app.command("start")
@friendly
def db_start() -> None:
    """Create (first time) and start the embedded PostGIS, then apply migrations."""
    _ensure_db()


@db_app.command("stop")
@friendly
def db_stop() -> None:
    """Stop the embedded PostGIS cleanly (fast shutdown)."""
    settings = get_settings()
    if settings.database_url:
        err.print("DATABASE_URL is set: that database is not ours to stop.")
        raise typer.Exit(1)
    stopped = from_settings(settings).stop()
    err.print("stopped" if stopped else "not running")


@db_app.command("status")
@friendly
def db_status() -> None:
    """Whether the database is reachable, and its migration revision."""
    settings = get_settings()
    if not settings.database_url:
        pg = from_settings(settings)
        running = pg.is_running()
        out.print(f"embedded PostGIS at {pg.pgdata}: {'running' if running else 'stopped'}"
                  f" (port {pg.port})")
        if not running:
            raise typer.Exit(3)
    url = database_url(settings)
    out.print(f"migration revision: {migrations.current(url) or 'none'}")


@db_app.command("url")
@friendly
def db_url() -> None:
    """Print the libpq URL of the database (contains the password)."""
    print(database_url(get_settings()))


@db_app.command("migrate")
@friendly
def db_migrate(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default head)."""
    url = database_url(get_settings())
    migrations.upgrade(url, revision)
    out.print(f"migration revision: {migrations.current(url)}")


@db_app.command("psql")
@friendly
def db_psql() -> None:
    """Open psql on the database."""
    url = database_url(get_settings())
    psql = shutil.which("psql")
    if psql is None:
        try:
            psql = str(find_bindir() / "psql")
        except EmbeddedError:
            err.print("[red]error:[/red] psql not found (apt-get install postgresql-client)")
            raise typer.Exit(1) from None
    os.execv(psql, [psql, url])


@app.command()
@friendly
def serve(
    host: str = typer.Option(None, help="Bind address (default from settings: 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default 8000; PORT overrides)."),
    workers: int = typer.Option(None, help="Worker processes."),
) -> None:
    """Run the ASGI app (OGC APIs, tiles, 3D, platform API, viewer)."""
    import uvicorn

    s = get_settings()
    database_url(s)  # fail early and clearly if there is no database configured
    uvicorn.run("gisplatform.app:create_app", factory=True, host=host or s.host,
                port=port or s.port, workers=workers or s.workers, log_level="info")


@app.command()
@friendly
def up(
    host: str = typer.Option(None, help="Bind address."),
    port: int = typer.Option(None, help="Port (default 8000; PORT overrides)."),
    workers: int = typer.Option(None, help="Worker processes."),
) -> None:
    """Everything: start the database (embedded unless DATABASE_URL), migrate, serve."""
    _ensure_db()
    serve(host=host, port=port, workers=workers)


if __name__ == "__main__":
    app()
