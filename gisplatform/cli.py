"""The `gisplatform` command (composition root for the command line)."""

from __future__ import annotations

import os
import shutil
import time
from functools import wraps
from pathlib import Path

import typer
from rich.console import Console

from layers.cli import layer_app
from models3d.cli import threed_app
from tiles.basemap_cli import basemap_app
from tiles.cli import tiles_app
from tiles.raster_cli import raster_app

from .backup.cli import backup_app
from .cases.cli import cases_app
from .changefeed import changes_app
from .config import get_settings
from .console import err, fail
from .db import migrate as migrations
from .db.connections import connect
from .db.embedded import EmbeddedError, database_url, find_bindir, from_settings
from .exports import export_command
from .geocode.cli import geocode_command
from .opendata import opendata_app
from .security.cli import analyst_app, token_app
from .stats import stats_app
from .wiring import (
    CLI_PARTS,
    all_layers,
    backup_stores,
    build_derived,
    city_bbox,
    geocode_sources,
    layers,
)

# no locals in a traceback: they would print secrets (basemap keys, database URLs)
app = typer.Typer(help="Fushun spatio-temporal city platform.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)


def _layers():
    """Built-in and published layers (the registry read from the database; the built-in
    ones alone when it cannot be reached, and the command says what it finds)."""
    import psycopg

    try:
        return all_layers(database_url(get_settings()))
    except psycopg.OperationalError:
        return layers()


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Fushun spatio-temporal city platform."""
    ctx.obj = CLI_PARTS  # what `tiles`, `3d` and `raster` need of the layers (wiring.py)


db_app = typer.Typer(help="The database: embedded PostGIS or DATABASE_URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(analyst_app, name="analyst")
app.add_typer(tiles_app, name="tiles")
app.add_typer(threed_app, name="3d")
app.add_typer(raster_app, name="raster")
app.add_typer(basemap_app, name="basemap")
app.add_typer(changes_app(_layers), name="changes")
app.command("export")(export_command(_layers))
app.add_typer(opendata_app(_layers), name="opendata")
app.add_typer(stats_app(_layers), name="stats")


def _geocode_sources():
    _layers()  # the published ones too (the base map's place names)
    return geocode_sources()


app.command("geocode")(geocode_command(_geocode_sources))
app.add_typer(layer_app, name="layer")
app.add_typer(cases_app, name="cases")
app.add_typer(backup_app(backup_stores), name="backup")
out = Console(soft_wrap=True)


def friendly(fn):
    """Known failures print one clear line and exit 1 instead of a traceback."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (EmbeddedError, migrations.DatabaseAhead) as e:
            raise fail(str(e)) from None
    return wrapper


def _check_data_dir() -> None:
    """`serve` and `up` write under the data directory as they start (the OGC configuration
    pygeoapi reads, the embedded database, the tile cache): one clear line and exit 1 when
    it cannot be written (read-only or full), instead of a traceback from deep inside.
    Once running, a disk that fills up only turns the caches to memory (tiles/cache.py)."""
    import tempfile

    d = get_settings().data_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".write-check-") as probe:
            probe.write(b"\0" * 4096)  # a full disk fails here, not only a read-only one
            probe.flush()
    except OSError as e:
        err.print(f"[red]error:[/red] cannot write in the data directory {d} ({e.strerror or e}):"
                  " make it writable and free space there, or set GISPLATFORM_DATA_DIR to"
                  " another directory")
        raise typer.Exit(1) from None


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
    rev, head = migrations.current(url), migrations.head()
    try:
        migrations.refuse_newer(url)
        advice = "" if rev == head else f" (newest is {head}: run `gisplatform db migrate`)"
    except migrations.DatabaseAhead:
        advice = f" (newer than this code's newest, {head}: run the release that migrated it)"
    out.print(f"migration revision: {rev or 'none'}{advice}")


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


@app.command("import")
@friendly
def import_(
    layer: str = typer.Argument(..., help="Layer id, e.g. buildings, persons, cameras."),
    file: Path = typer.Argument(..., help="GeoJSON, GeoPackage, Shapefile, FlatGeobuf or CSV."),
    crs: str = typer.Option(None, help="Input CRS when the file has none or is wrong: CRS84, "
                            "EPSG:4326, EPSG:4490, EPSG:3857, EPSG:4529/4530/4550/4551, GCJ02, BD09."),
    valid_from: str = typer.Option(None, help="When the rows became true (ISO 8601 with zone); default now."),
    mapping: Path = typer.Option(None, help="Column mapping file (TOML or JSON)."),
    dry_run: bool = typer.Option(False, help="Check and count everything, write nothing."),
    retire_missing: bool = typer.Option(False, help="Retire current features absent from the file."),
    all_or_nothing: bool = typer.Option(False, help="Reject the whole file on the first bad row."),
    rejects: Path = typer.Option(None, help="Where to write rejected rows (default ./<file>.rejects.csv)."),
    source_layer: str = typer.Option(None, help="Layer inside a multi-layer file (GeoPackage)."),
) -> None:
    """Import a file into a layer as versions; bad rows go to a reject file with reasons."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
    )

    from layers.importer import ImportFailed, run_import, write_rejects

    url = database_url(get_settings())
    known = _layers()
    if layer not in known:
        err.print(f"[red]error:[/red] unknown layer {layer!r}; layers: {', '.join(known)}")
        raise typer.Exit(2)
    target = known[layer]
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        def factory(total: int):
            task = bar.add_task(f"checking {file.name}", total=total)
            return lambda n: bar.advance(task, n)
        try:
            with connect(url, "gisplatform-import") as conn:
                report = run_import(conn, target, file, crs=crs, valid_from=valid_from,
                                    mapping_path=mapping, dry_run=dry_run,
                                    retire_missing=retire_missing, all_or_nothing=all_or_nothing,
                                    source_layer=source_layer, progress_factory=factory)
        except ImportFailed as e:
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(1) from None
    for w in report.warnings[:20]:
        err.print(f"[yellow]warning:[/yellow] {w}")
    if len(report.warnings) > 20:
        err.print(f"[yellow]warning:[/yellow] … {len(report.warnings) - 20} more")
    if report.rejected:
        path = rejects or Path(f"{file.name}.rejects.csv")
        try:
            write_rejects(path, report.rejected)
        except OSError as e:  # the import itself is done (or was a dry run); say so
            err.print(f"[red]error:[/red] cannot write the reject file {path} ({e.strerror or e}),"
                      f" no file left there; {report.summary()}: rerun with --rejects elsewhere"
                      " to get the list (rows already in stay unchanged)")
            raise typer.Exit(1) from None
        first = report.rejected[0]
        err.print(f"{report.summary()}; first: row {first.number}: {first.reason}; all in {path}"
                  + ("; --all-or-nothing: nothing written" if all_or_nothing else ""))
        raise typer.Exit(1)
    err.print(report.summary())


@app.command()
@friendly
def demo(
    size: str = typer.Option("small", help="small (seconds; tests, make run) or city (Fushun-sized)."),
    seed: int = typer.Option(42, help="Same seed, same city."),
    until: str = typer.Option(None, help="Cut-off instant (ISO 8601 with zone); default today 00:00 +08:00."),
    replace: bool = typer.Option(False, help="Wipe the layers first if they hold data."),
) -> None:
    """Load the deterministic demo city (2018 → today), every layer, in one transaction."""
    import resource

    from gisplatform.temporal import TemporalError, parse_instant
    from layers.demo import DemoRefused, load_demo

    try:
        cut = parse_instant(until) if until else None
    except TemporalError as e:
        err.print(f"[red]error:[/red] --until: {e}")
        raise typer.Exit(2) from None
    url = database_url(get_settings())
    t = time.perf_counter()
    try:
        with connect(url, "gisplatform-demo") as conn, err.status("generating and loading the demo city") as st:
            counts = load_demo(conn, size, seed, cut, replace, on_layer=lambda name, n, secs: (
                err.print(f"  {name:<22}{n:>10,} rows {secs:7.1f}s"),
                st.update(f"loading after {name}")))
    except DemoRefused as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    secs = time.perf_counter() - t
    rows = sum(counts.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    err.print(f"demo {size} seed {seed}: {rows:,} rows in {secs:.1f}s ({rows / secs:,.0f} rows/s), "
              f"peak memory {peak:,.0f} MB")
    _demo_rasters(url, size, replace)
    _demo_realscene(url)
    _build_buildings3d(url)


def _demo_rasters(url: str, size: str, replace: bool) -> None:
    """The demo orthophotos (2018-2020, drawn from the demo buildings) and DEM."""
    from tiles.raster_demo import add_demo_rasters

    t = time.perf_counter()
    with err.status("drawing the demo rasters") as st:
        names = add_demo_rasters(url, get_settings().data_dir, size, replace=replace,
                                 on_raster=lambda name, secs: (
                                     err.print(f"  {name:<22}{secs:>17.1f}s"),
                                     st.update(f"drawing the demo rasters after {name}")))
    if names:
        err.print(f"demo rasters: {len(names)} in {time.perf_counter() - t:.1f}s at /raster/")


def _demo_realscene(url: str) -> None:
    """The demo real-scene block: a textured 3D Tiles patch of the urban core (~1 s)."""
    from models3d.realscene_demo import add_demo_realscene

    t = time.perf_counter()
    with err.status("building the demo real-scene block"):
        name = add_demo_realscene(url, get_settings().data_dir)
    err.print(f"demo real-scene: {name} in {time.perf_counter() - t:.1f}s "
              f"at /3d/{name}/tileset.json")


def _build_buildings3d(url: str) -> None:
    """The buildings tileset, built or brought up to date (only changed tiles are redone)."""
    from models3d.buildings import build

    t = time.perf_counter()
    with connect(url, "gisplatform-3d") as conn, err.status("building the 3D buildings tileset"):
        r = build(conn, get_settings().data_dir, city_bbox())
    err.print(f"3D buildings: {r.features:,} versions, {r.tiles} tiles ({r.written} written) in "
              f"{time.perf_counter() - t:.1f}s at /3d/{r.name}/tileset.json")


@app.command("qgis-project")
def qgis_project(
    out: Path = typer.Argument(..., help="The project to write (.qgz); replaced if it exists."),
    token: str = typer.Option(None, envvar="GISPLATFORM_TOKEN", show_envvar=True,
                              help="The layers this token may read, the token in every URL "
                              "(the file then holds it: a secret); default: anonymous, the "
                              "public layers."),
    base_url: str = typer.Option(None, "--base-url", help="The platform as QGIS reaches it "
                                 "(default: GISPLATFORM_PUBLIC_URL, else http://host:port)."),
) -> None:
    """Write a QGIS project of every layer the token may read, as GET /qgis/project.qgz
    serves it: OGC API Features and vector tiles in the platform's colours, the history
    collections with the temporal controller set, the orthophoto basemap.

    Exit codes: 1 = refused or failed (unknown token, database, unwritable file), 2 = bad
    usage (not .qgz, a base URL that is not http(s))."""
    from .console import database_url as console_database_url
    from .console import principal as principal_of
    from .security import ANONYMOUS
    from .services.qgis_project import project
    from .wiring import qgis_sources

    if out.suffix.lower() != ".qgz":
        raise fail(f"{out}: the project file must end in .qgz", 2)
    base = (base_url or get_settings().public_url).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise fail(f"--base-url {base!r}: an http:// or https:// URL", 2)
    who = principal_of(console_database_url(), token) if token else ANONYMOUS
    _layers()  # the published layers too
    made = project(qgis_sources(), who, base, token.strip() if token else None)
    tmp = out.with_name(f".{out.name}.tmp")
    try:  # whole or not at all
        tmp.write_bytes(made.qgz)
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise fail(f"cannot write {out}: {e.strerror or e}") from None
    err.print(f"{len(made.layers)} layers ({'token ' + str(who.token_id) if token else 'anonymous'}"
              f", {base}) → {out}" + ("; it holds the token: keep it as you would the token"
                                       if token else ""), highlight=False)


@app.command()
@friendly
def serve(
    host: str = typer.Option(None, help="Bind address (default from settings: 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default 8000; PORT overrides)."),
    workers: int = typer.Option(None, help="Worker processes."),
) -> None:
    """Run the ASGI app (OGC APIs, tiles, 3D, platform API, viewer)."""
    import uvicorn

    # The app (in each worker) reads its settings from the environment: pass the
    # options that way so links in OGC documents name the address actually served.
    if host:
        os.environ["GISPLATFORM_HOST"] = host
    if port:
        os.environ["PORT"] = str(port)  # PORT wins over GISPLATFORM_PORT
    get_settings.cache_clear()
    s = get_settings()
    _check_data_dir()
    url = database_url(s)  # fail early and clearly if there is no database configured
    migrations.refuse_newer(url, unreachable_ok=True)  # nor one a newer release migrated
    uvicorn.run("gisplatform.app:create_app", factory=True, host=s.host, port=s.port,
                workers=workers or s.workers, log_level="info",
                access_log=False)  # gisplatform.observability logs each request as JSON


@app.command()
@friendly
def up(
    host: str = typer.Option(None, help="Bind address."),
    port: int = typer.Option(None, help="Port (default 8000; PORT overrides)."),
    workers: int = typer.Option(None, help="Worker processes."),
) -> None:
    """Everything: start the database (embedded unless DATABASE_URL), migrate, load the
    small demo city when the layers are empty (its rasters when none are registered, the
    demo real-scene block when it is not), bring the 3D buildings tileset up to date, build
    the tile pyramids and statistics rollups that are missing, serve."""
    from layers.demo import is_empty
    from models3d.realscene_demo import NAME as REALSCENE_DEMO
    from models3d.registry import get_tileset
    from tiles.raster import list_rasters

    _check_data_dir()
    url = _ensure_db()
    with connect(url) as conn:
        empty = is_empty(conn)
        no_rasters = not list_rasters(conn)
        no_realscene = get_tileset(conn, REALSCENE_DEMO) is None
    if empty:
        demo(size="small", seed=42, until=None, replace=False)
    else:
        if no_rasters:
            _demo_rasters(url, "small", replace=False)
        if no_realscene:
            _demo_realscene(url)
        _build_buildings3d(url)  # writes since the last start: only those tiles are redone
    build_derived(url, err.print)  # tile pyramids, statistics rollups
    serve(host=host, port=port, workers=workers)


if __name__ == "__main__":
    app()
