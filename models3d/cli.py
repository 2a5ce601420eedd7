"""`gisplatform 3d …`: build the buildings tileset, import real-scene tilesets, list, remove."""

from __future__ import annotations

import typer

from gisplatform.console import connection, err

threed_app = typer.Typer(help="3D city: buildings as 3D Tiles, real-scene tilesets, terrain.",
                         no_args_is_help=True)


@threed_app.command("list")
def list_() -> None:
    """The registered tilesets."""
    from .registry import list_tilesets

    with connection("gisplatform-3d") as conn:
        for t in list_tilesets(conn):
            print(f"{t.name}\t{t.kind}\t{t.at.isoformat() if t.at else '-'}\t{t.tiles} tiles\t"
                  f"{t.bytes / 1e6:.1f} MB\t{t.directory}")


@threed_app.command("remove")
def remove(name: str = typer.Argument(..., help="Tileset name.")) -> None:
    """Unregister a tileset and delete its files."""
    from gisplatform.config import get_settings

    from .registry import TilesetError
    from .registry import remove as remove_tileset

    s = get_settings()
    try:
        with connection("gisplatform-3d") as conn:
            old = remove_tileset(conn, s.data_dir, name)
    except TilesetError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    err.print(f"removed {old.name} ({old.kind}, {old.tiles} tiles)")


@threed_app.command("build")
def build_(
    ctx: typer.Context,
    layer: str = typer.Argument("buildings", help="What to build: buildings."),
    name: str = typer.Option("buildings", help="Tileset name (served at /3d/NAME/)."),
    full: bool = typer.Option(False, help="Rebuild every tile (default: only what changed)."),
    workers: int = typer.Option(None, min=1, help="Processes writing tiles (default: cores)."),
) -> None:
    """Build the buildings tileset (3D Tiles 1.1, glb); later runs redo only changed tiles."""
    import resource
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from gisplatform.config import get_settings

    from .buildings import build
    from .registry import TilesetError, check_name

    if layer != "buildings":
        err.print(f"[red]error:[/red] cannot build {layer!r}: only buildings are generated "
                  "(real-scene tilesets are imported with `gisplatform 3d import`)")
        raise typer.Exit(2)
    try:
        check_name(name)
    except TilesetError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    s = get_settings()
    t0 = time.perf_counter()
    with connection("gisplatform-3d") as conn, Progress(
            TextColumn("writing tiles"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=err) as bar:
        task = bar.add_task("tiles", total=None)
        report = build(conn, s.data_dir, ctx.obj.city_bbox(), name=name, full=full, workers=workers,
                       progress=lambda done, total: bar.update(task, completed=done, total=total))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    err.print(f"{report.name}: {report.features:,} building versions in {report.tiles:,} tiles "
              f"({report.written:,} written, {report.reused:,} unchanged), "
              f"{report.bytes / 1e6:,.1f} MB in {time.perf_counter() - t0:.1f}s, "
              f"peak memory {peak:,.0f} MB (this process) → /3d/{report.name}/tileset.json")


from .realscene_cli import register_commands  # noqa: E402 -- `3d import`, after threed_app exists

register_commands(threed_app)
