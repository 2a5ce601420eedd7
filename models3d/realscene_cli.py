"""`gisplatform 3d import PATH --name N --time T [--replace]`: a real-scene 3D Tiles tileset.

One line per refusal (`error: …`): exit 2 for a bad option (name, time), 1 when the
source or the registry refuses; nothing is registered and no folder is left then.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from gisplatform.console import connection, err, fail


def import_command(
    path: Path = typer.Argument(..., help="A folder or .zip holding a 3D Tiles tileset "
                                "(tileset.json at the top or in its one top folder)."),
    name: str = typer.Option(..., "--name", help="Registered name: 1-63 lower-case letters, "
                             "digits, _ or -, starting with a letter or digit."),
    at: str = typer.Option(..., "--time", help="When it was captured, ISO 8601 with a zone, "
                           "e.g. 2020-07-01T00:00:00+08:00."),
    replace: bool = typer.Option(False, "--replace", help="Replace a real-scene tileset of "
                                 "the same name."),
) -> None:
    """Check and import a real-scene (oblique photography) 3D Tiles tileset, served at
    /3d/NAME/tileset.json. ContextCapture OSGB must be converted to 3D Tiles first."""
    import psycopg
    from rich import filesize
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    from gisplatform.config import get_settings
    from gisplatform.temporal import TemporalError, parse_instant

    from .realscene import import_realscene
    from .registry import TilesetError, check_name

    try:
        check_name(name)
    except TilesetError as e:
        raise fail(f"--name: {e}", 2)
    try:
        when = parse_instant(at)
    except TemporalError as e:
        raise fail(f"--time: {e}", 2)
    if not path.exists():
        raise fail(f"{path}: no such file or folder")
    settings = get_settings()
    t0 = time.perf_counter()
    conn = connection("gisplatform-3d", autocommit=True)
    warnings: list[str] = []
    with conn, Progress("[progress.description]{task.description}", BarColumn(),
                        TaskProgressColumn(), TextColumn("{task.fields[detail]}"),
                        TimeRemainingColumn(), console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            # copying counts bytes, checking counts files
            detail = (f"{filesize.decimal(done)}/{filesize.decimal(total)}"
                      if phase == "copying" else f"{done}/{total} files")
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{phase} {path.name}", total=total, detail="")
            bar.update(tasks[phase], completed=done, total=total, detail=detail)

        try:
            tileset, report = import_realscene(conn, settings.data_dir, path, name=name,
                                               at=when, replace=replace, on_progress=progress,
                                               on_warning=warnings.append)
        except TilesetError as e:
            bar.stop()
            raise fail(str(e))
        except psycopg.errors.UndefinedTable as e:
            bar.stop()
            raise fail(f"{str(e).strip().splitlines()[0]} (run `gisplatform db migrate`)")
    for w in warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    b = tileset.bounds
    where = (f"lon {b[0]:.5f}…{b[2]:.5f}, lat {b[1]:.5f}…{b[3]:.5f} (approximate envelope)"
             if b else "no bounds")
    err.print(f"{tileset.name}: real-scene 3D Tiles {'/'.join(sorted(report.versions))}, "
              f"{report.tiles:,} tiles ({report.contents:,} content files, "
              f"{report.tilesets} tileset JSON), {report.bytes / 1e6:,.1f} MB, {where}, "
              f"captured {when.isoformat()}, in {time.perf_counter() - t0:.1f}s "
              f"→ /3d/{tileset.name}/tileset.json", highlight=False)


def register_commands(app: typer.Typer) -> None:
    """Add `import` to the `gisplatform 3d` group."""
    app.command("import")(import_command)
