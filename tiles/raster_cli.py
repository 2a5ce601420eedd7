"""`gisplatform raster …`: register, list and remove the COGs that /raster serves.

Registration is the only way a raster reaches the tile server (see tiles.raster), so the
command checks everything up front and says in one line what is wrong: exit 2 for a bad
option (name, kind, time), 1 when the file or the registry refuses; nothing is written then.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import typer

from gisplatform.console import connection, err, fail
from gisplatform.temporal import BEIJING_TIME

from .raster import RasterError

raster_app = typer.Typer(help="Rasters (orthophotos per year, DEMs) served at /raster.",
                         no_args_is_help=True)


@contextmanager
def _database():
    """(connection, data dir); connection and schema failures as one clear line."""
    import psycopg

    from gisplatform.config import get_settings

    with connection("gisplatform-raster", autocommit=True) as conn:
        try:
            yield conn, get_settings().data_dir
        except psycopg.errors.UndefinedTable as e:
            raise fail(f"{str(e).strip().splitlines()[0]} (run `gisplatform db migrate`)")


@raster_app.command("add")
def add(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A raster GDAL reads (GeoTIFF, JPEG2000, …) with a CRS."),
    name: str = typer.Option(..., "--name", help="Registered name: 1-63 lower-case letters, digits, _ or -, "
                            "starting with a letter or digit."),
    kind: str = typer.Option(..., "--kind", help="ortho (an orthophoto) or dem (heights, 1 band)."),
    at: str = typer.Option(..., "--time", help="When it shows the city, ISO 8601 with a zone, "
                           "e.g. 2019-07-01T00:00:00+08:00."),
    replace: bool = typer.Option(False, "--replace", help="Replace a raster of the same name."),
) -> None:
    """Convert FILE to a COG (EPSG:3857) under the data dir and register it as NAME."""
    from .raster import add_raster, check_kind, check_name, check_time

    for option, check, value in (("--name", check_name, name), ("--kind", check_kind, kind),
                                 ("--time", check_time, at)):
        try:
            check(value)
        except RasterError as e:
            raise fail(f"{option}: {e}", 2)
    t = time.perf_counter()
    with _database() as (conn, data_dir), err.status(f"converting {file.name}") as status:
        try:
            raster = add_raster(conn, file, name=name, kind=kind, at=at, data_dir=data_dir,
                                area=ctx.obj.city_bbox(), replace=replace,
                                status=lambda msg: status.update(f"{file.name}: {msg}"))
        except RasterError as e:
            status.stop()
            raise fail(str(e))
    err.print(f"{raster.name}: {raster.kind} at {raster.at.astimezone(BEIJING_TIME).isoformat()}, {raster.width}×"
              f"{raster.height}×{raster.bands} {raster.dtype}, {raster.crs}, "
              f"{time.perf_counter() - t:.1f}s → /raster/{raster.name}/", highlight=False)


@raster_app.command("list")
def list_() -> None:
    """The registered rasters."""
    from .raster import file_in, list_rasters, raster_dir

    with _database() as (conn, data_dir):
        rasters = list_rasters(conn)
    if not rasters:
        err.print("no rasters registered (gisplatform raster add FILE --name … --kind … --time …)")
        return
    rows = [("name", "kind", "time", "pixels", "MB", "bounds lon/lat (EPSG:4490)")]
    for r in rasters:
        try:
            mb = f"{file_in(raster_dir(data_dir), r.path).stat().st_size / 1e6:.1f}"
        except (OSError, RasterError):
            mb = "missing"
        rows.append((r.name, r.kind, r.at.astimezone(BEIJING_TIME).isoformat(timespec="minutes"),
                     f"{r.width}×{r.height}×{r.bands} {r.dtype}", mb,
                     " ".join(f"{v:.4f}" for v in r.bounds)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:  # plain columns: readable in a terminal, greppable in a script
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@raster_app.command("remove")
def remove(name: str = typer.Argument(..., help="A registered name.")) -> None:
    """Unregister NAME and delete its COG."""
    from .raster import remove_raster

    with _database() as (conn, data_dir):
        try:
            raster = remove_raster(conn, name, data_dir)
        except RasterError as e:
            raise fail(str(e))
    err.print(f"removed {raster.name}")
