"""`gisplatform basemap …`: register, list, enable/disable and remove the external basemaps
that /basemaps proxies (tiles/basemaps.py).

As `gisplatform raster`: exit 2 for a bad option, 1 when the registry refuses (a taken or
unknown name); one line, nothing written. The key is never printed.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer

from gisplatform.console import connection, err, fail

from .basemaps import BasemapError

basemap_app = typer.Typer(help="External basemaps (XYZ or WMTS, e.g. 天地图) served through "
                          "the platform at /basemaps.", no_args_is_help=True)


@contextmanager
def _database():
    """(connection, data dir); connection and schema failures as one clear line."""
    import psycopg

    from gisplatform.config import get_settings

    with connection("gisplatform-basemap", autocommit=True) as conn:
        try:
            yield conn, get_settings().data_dir
        except psycopg.errors.UndefinedTable as e:
            raise fail(f"{str(e).strip().splitlines()[0]} (run `gisplatform db migrate`)")
        except BasemapError as e:
            raise fail(f"{e.option}: {e}" if e.option else str(e), 2 if e.option else 1)


@basemap_app.command("add")
def add(
    name: str = typer.Argument(..., help="Registered name: 1-63 lower-case letters, digits, _ "
                               "or -, starting with a letter or digit; not ortho, hillshade, dem."),
    kind: str = typer.Option(..., "--kind", help="xyz (a tile URL template) or wmts (a WMTS "
                             "service's KVP address)."),
    url: str = typer.Option(..., "--url", help="http(s). xyz: with {z}, {x}, {y}; both: {key} "
                            "where the key goes, e.g. …&tk={key}."),
    key: str = typer.Option(None, "--key", help="The source's key (天地图's tk), kept on the "
                            "server; '-' reads it from stdin (out of shell history)."),
    tms: str = typer.Option("WebMercatorQuad", "--tms", help="The grid the source's tiles are "
                            "in: WebMercatorQuad or CGCS2000Quad (天地图's c sets)."),
    layer: str = typer.Option(None, "--layer", help="wmts: LAYER (天地图: vec, img, cva, …)."),
    style: str = typer.Option(None, "--style", help="wmts: STYLE (default: default)."),
    format_: str = typer.Option(None, "--format", help="wmts: FORMAT (default: image/png; "
                                "天地图: tiles)."),
    matrix_set: str = typer.Option(None, "--matrix-set", help="wmts: TILEMATRIXSET "
                                   "(天地图: w or c)."),
    zoom_offset: int = typer.Option(0, "--zoom-offset", help="The source's level for zoom z "
                                    "is z + this (天地图's c sets: 1, their levels start at 1)."),
    min_zoom: int = typer.Option(0, "--min-zoom"),
    max_zoom: int = typer.Option(18, "--max-zoom"),
    title: str = typer.Option("", "--title", help="\"中文 English\", shown in the viewer "
                              "(default: the name)."),
    attribution: str = typer.Option("", "--attribution", help="Shown on the map, e.g. 天地图."),
    default: bool = typer.Option(False, "--default", help="Shown when the viewer opens "
                                 "(others start hidden in the layer tree)."),
    replace: bool = typer.Option(False, "--replace", help="Replace a basemap of the same name."),
) -> None:
    """Register NAME: a WMTS or XYZ source the platform proxies at /basemaps/NAME/…"""
    from .basemaps import Basemap, add_basemap, check

    if key == "-":
        key = sys.stdin.readline().strip()
    b = Basemap(name=name, title=title, kind=kind, url=url, layer=layer, style=style,
                format=format_, matrix_set=matrix_set, grid=tms, zoom_offset=zoom_offset,
                min_zoom=min_zoom, max_zoom=max_zoom, attribution=attribution, secret=key,
                is_default=default)
    try:
        check(b)  # before connecting: a bad option says so even with the database down
    except BasemapError as e:
        raise fail(f"{e.option}: {e}", 2) from None
    with _database() as (conn, data_dir):
        b = add_basemap(conn, b, replace_existing=replace, data_dir=data_dir)
    path = b.public("")["tiles"]
    err.print(f"{b.name}: {b.kind}, {b.grid} z{b.min_zoom}-{b.max_zoom}, key "
              f"{'kept' if b.secret else 'none'}{', shown by default' if b.is_default else ''}"
              f" → {path}", highlight=False)


@basemap_app.command("list")
def list_() -> None:
    """The registered basemaps (keys are never shown)."""
    from .basemaps import list_basemaps

    with _database() as (conn, _):
        basemaps = list_basemaps(conn)
    if not basemaps:
        err.print("no basemaps registered (gisplatform basemap add NAME --kind … --url …)")
        return
    rows = [("name", "kind", "grid", "zooms", "key", "state", "title", "url")]
    for b in basemaps:
        state = ("enabled" if b.enabled else "disabled") + (", default" if b.is_default else "")
        wmts = f" [{b.layer}/{b.style}/{b.format}/{b.matrix_set}]" if b.kind == "wmts" else ""
        rows.append((b.name, b.kind, b.grid, f"{b.min_zoom}-{b.max_zoom}",
                     "set" if b.secret else "-", state, b.title, b.url + wmts))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:  # plain columns, as `raster list`
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@basemap_app.command("enable")
def enable(name: str = typer.Argument(..., help="A registered name.")) -> None:
    """Serve NAME again (in the style, the viewer and /basemaps)."""
    _set_enabled(name, True)


@basemap_app.command("disable")
def disable(name: str = typer.Argument(..., help="A registered name.")) -> None:
    """Stop serving NAME, keeping its registration and key."""
    _set_enabled(name, False)


def _set_enabled(name: str, enabled: bool) -> None:
    from .basemaps import set_enabled

    with _database() as (conn, _):
        set_enabled(conn, name, enabled)
    err.print(f"{name}: {'enabled' if enabled else 'disabled'}")


@basemap_app.command("remove")
def remove(name: str = typer.Argument(..., help="A registered name.")) -> None:
    """Unregister NAME, its key and its cached tiles."""
    from .basemaps import remove_basemap

    with _database() as (conn, data_dir):
        remove_basemap(conn, name, data_dir)
    err.print(f"removed {name}")
