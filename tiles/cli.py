"""`gisplatform tiles seed|export`: warm the shared tile cache, or write tiles to a file.

Both render through the same TileService as the server (same SQL, same cache directory),
with a progress bar. While seeding, the process LISTENs for writes like the server does,
so a tile rendered across a write is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import sqlite3
import time
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from gisplatform.config import get_settings
from gisplatform.console import connection, err, fail
from gisplatform.db.connections import make_pool
from gisplatform.db.embedded import database_url
from gisplatform.temporal import TemporalError, parse_instant

from .cache import TileCache, tile_range
from .invalidation import TileInvalidator
from .service import TileService
from .sources import MAX_ZOOM, TileSource

tiles_app = typer.Typer(help="Vector tiles: seed the cache, export PMTiles / MBTiles.",
                        no_args_is_help=True)


def _zooms(text: str) -> range:
    try:
        lo, _, hi = text.partition("-")
        zs = range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give a zoom (14) or a range (10-16)") from None
    if not zs or zs.start < 0 or zs.stop - 1 > MAX_ZOOM:
        raise typer.BadParameter(f"{text!r}: zooms run 0..{MAX_ZOOM}, low to high")
    return zs


def _bbox(text: str | None, default) -> tuple[float, float, float, float]:
    if not text:
        return default
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give west,south,east,north in degrees") from None
    if not (-180 <= w < e <= 180 and -85.06 <= s < n <= 85.06):
        raise typer.BadParameter(f"{text!r}: need west < east and south < north, in degrees")
    return w, s, e, n


def _instant(text: str | None, name: str):
    if not text:
        return None
    try:
        return parse_instant(text)
    except TemporalError as e:
        raise typer.BadParameter(f"{name}: {e}") from None


def _tiles(source: TileSource, zooms: range, bbox, at) -> list[tuple[int, int, int]]:
    """The tiles of `zooms` over `bbox` that can hold a feature: the layer's features are
    grouped per deepest-zoom tile width and only the tiles their extents meet are listed
    (a city-wide z15 range is ~34 000 tiles; the buildings cover a few thousand)."""
    boxes = [bbox] if source.kind != "layer" else _occupied(source, zooms.stop - 1, bbox, at)
    out = set()
    for z in zooms:
        for box in boxes:
            x0, y0, x1, y1 = tile_range(box, z)
            out.update((z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1))
    return sorted(out)


def _occupied(source: TileSource, z: int, bbox, at) -> list[tuple[float, float, float, float]]:
    w, s, e, n = bbox
    with connection("gisplatform-tiles") as conn:
        rows = conn.execute(f"""
            select st_xmin(b), st_ymin(b), st_xmax(b), st_ymax(b) from (
              select st_extent(v.geom) as b from city."{source.version_table}" v
              where v.geom && st_makeenvelope(%s, %s, %s, %s, 4490)
                and v.valid @> coalesce(%s::timestamptz, now()) and upper_inf(v.recorded)
              group by st_snaptogrid(st_pointonsurface(st_envelope(v.geom)), %s)) g""",
            (w, s, e, n, at, 360.0 / (1 << z))).fetchall()
    return [(max(a, w), max(b, s), min(c, e), min(d, n)) for a, b, c, d in rows]


def _parts(ctx: typer.Context):
    """What the composition root (gisplatform/cli.py) hands these commands: the tile
    sources, which sources a layer's writes change, the city's bbox (gisplatform/wiring.py)."""
    if ctx.obj is None:
        raise RuntimeError("the tiles commands run under `gisplatform`, which provides the layers")
    return ctx.obj


def _layer(ctx: typer.Context, name: str) -> TileSource:
    sources = _parts(ctx).tile_sources()
    if name not in sources:
        raise typer.BadParameter(f"no tile layer {name!r}; one of: {', '.join(sources)}")
    return sources[name]


async def _run(source: TileSource, tiles: list, at, known_at, concurrency: int, on_tile,
               label: str, dependents) -> dict:
    s = get_settings()
    url = database_url(s)
    pool = make_pool(url, 1, concurrency)
    await pool.open(wait=True, timeout=30)
    cache = TileCache(s.data_dir / "tiles", s.tile_cache_memory_mb << 20, s.tile_cache_disk_mb << 20)
    service = TileService({source.name: source}, cache, pool)
    listener = TileInvalidator(url, cache, dependents, None, replay=False)
    follow = asyncio.create_task(listener.run())
    counts = {"tiles": 0, "cached": 0, "empty": 0, "bytes": 0}
    queue: asyncio.Queue = asyncio.Queue()
    for t in tiles:
        queue.put_nowait(t)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err) as bar:
        task = bar.add_task(label, total=len(tiles))

        async def work():
            while not queue.empty():
                z, x, y = queue.get_nowait()
                tile, hit = await service.tile(source.name, z, x, y, at, known_at)
                counts["tiles"] += 1
                counts["cached"] += hit
                counts["empty"] += not tile.data
                counts["bytes"] += len(tile.data)
                on_tile(z, x, y, tile.data)
                bar.advance(task)

        try:
            await asyncio.gather(*(work() for _ in range(concurrency)))
        finally:
            follow.cancel()
            await pool.close()
    return counts


@tiles_app.command()
def seed(
    ctx: typer.Context,
    layer: str = typer.Argument(..., help="Tile layer (see /tiles/)."),
    zoom: str = typer.Option("10-16", help="Zoom or range, e.g. 14 or 10-16."),
    bbox: str = typer.Option(None, help="west,south,east,north (degrees); default the city."),
    datetime_: str = typer.Option(None, "--datetime", help="Instant (ISO 8601 with zone); default now."),
    concurrency: int = typer.Option(4, min=1, max=32, help="Tiles rendered at once."),
) -> None:
    """Render tiles into the shared cache (data_dir/tiles) so the first visitors get them warm."""
    parts = _parts(ctx)
    src = _layer(ctx, layer)
    at = _instant(datetime_, "--datetime")
    tiles = _tiles(src, _zooms(zoom), _bbox(bbox, parts.city_bbox()), at)
    t0 = time.perf_counter()
    counts = asyncio.run(_run(src, tiles, at, None, concurrency, lambda *a: None,
                              f"seeding {layer} z{zoom}", parts.tile_dependents))
    secs = time.perf_counter() - t0
    err.print(f"{layer}: {counts['tiles']:,} tiles ({counts['cached']:,} already cached, "
              f"{counts['empty']:,} empty), {counts['bytes'] / 1e6:,.1f} MB in {secs:.1f}s "
              f"({counts['tiles'] / secs:,.0f} tiles/s)")


@tiles_app.command()
def export(
    ctx: typer.Context,
    layer: str = typer.Argument(..., help="Tile layer (see /tiles/)."),
    out: Path = typer.Argument(..., help="Output file: .pmtiles or .mbtiles."),
    zoom: str = typer.Option("10-15", help="Zoom or range."),
    bbox: str = typer.Option(None, help="west,south,east,north (degrees); default the city."),
    datetime_: str = typer.Option(None, "--datetime", help="Instant (ISO 8601 with zone); default now."),
    concurrency: int = typer.Option(4, min=1, max=32),
    force: bool = typer.Option(False, help="Overwrite an existing file."),
) -> None:
    """Write a layer's tiles to one PMTiles or MBTiles file (gzip-compressed MVT)."""
    parts = _parts(ctx)
    kind = out.suffix.lower()
    if kind not in (".pmtiles", ".mbtiles"):
        raise typer.BadParameter(f"{out.name}: the file must end in .pmtiles or .mbtiles")
    if out.exists() and not force:
        raise typer.BadParameter(f"{out} exists; pass --force to overwrite")
    if not out.parent.is_dir():
        raise typer.BadParameter(f"{out.parent} is not a directory")
    src = _layer(ctx, layer)
    zooms, box = _zooms(zoom), _bbox(bbox, parts.city_bbox())
    at = _instant(datetime_, "--datetime")
    found: dict[tuple[int, int, int], bytes] = {}
    t0 = time.perf_counter()

    def keep(z, x, y, data):
        if data:
            found[(z, x, y)] = gzip.compress(data, 6, mtime=0)

    counts = asyncio.run(_run(src, _tiles(src, zooms, box, at), at, None, concurrency, keep,
                              f"exporting {layer} z{zoom}", parts.tile_dependents))
    if not found:
        err.print(f"[red]error:[/red] {layer} has no features in z{zoom} over {box}: no file written")
        raise typer.Exit(1)
    meta = {"name": layer, "description": src.title, "format": "pbf", "type": "overlay",
            "bounds": ",".join(map(str, box)), "minzoom": zooms.start, "maxzoom": zooms.stop - 1,
            "generator": "gisplatform", "datetime": at.isoformat() if at else "exported now",
            "json": json.dumps({"vector_layers": [{"id": layer, "minzoom": zooms.start,
                                                    "maxzoom": zooms.stop - 1}]})}
    tmp = out.with_name(f".{out.name}.part")  # never a half-written file at `out`
    try:
        (_write_pmtiles if kind == ".pmtiles" else _write_mbtiles)(tmp, found, meta, box, zooms)
        tmp.replace(out)
    except (OSError, sqlite3.Error) as e:  # a full or read-only disk: say so, leave nothing
        err.print(f"[red]error:[/red] cannot write {out} ({getattr(e, 'strerror', None) or e}):"
                  " no file written", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        for part in (tmp, tmp.with_name(tmp.name + "-journal")):  # sqlite's journal too
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
    err.print(f"{out}: {len(found):,} tiles of {counts['tiles']:,} ({counts['empty']:,} empty "
              f"skipped), {out.stat().st_size / 1e6:,.1f} MB in {time.perf_counter() - t0:.1f}s")


@tiles_app.command()
def pyramid(
    ctx: typer.Context,
    layer: list[str] = typer.Option(None, "--layer", help="Only these layers (repeatable)."),
    rebuild: bool = typer.Option(False, help="Rebuild even where one is built for these zooms."),
) -> None:
    """Build the tile pyramids behind low-zoom tiles at any datetime (tiles/pyramid.py):
    those missing or built for other zooms, or with --rebuild all that are asked for."""
    from .pyramid import build, ensure, usable, zooms

    sources = _parts(ctx).tile_sources()
    unknown = sorted(set(layer or ()) - set(sources))
    if unknown:
        raise typer.BadParameter(f"no tile layer {', '.join(unknown)}; one of: {', '.join(sources)}")
    chosen = [sources[n] for n in (layer or sources) if zooms(sources[n]) is not None]

    def report(name: str, secs: float) -> None:
        err.print(f"{name}: built in {secs:.1f}s")

    with connection("gisplatform-tiles") as conn:
        if not usable(conn):
            raise fail("no tile pyramid here (migration 0015 missing, or Citus)")
        if rebuild:
            for src in chosen:
                report(src.name, build(conn, src))
        elif not ensure(conn, chosen, on_layer=report):
            err.print("every pyramid is built for its zooms")


def _write_mbtiles(path: Path, tiles: dict, meta: dict, box, zooms) -> None:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.executescript("""
            create table metadata (name text, value text);
            create table tiles (zoom_level integer, tile_column integer, tile_row integer,
                                tile_data blob);
            create unique index tile_index on tiles (zoom_level, tile_column, tile_row);""")
        db.executemany("insert into metadata values (?, ?)", [(k, str(v)) for k, v in meta.items()])
        # MBTiles rows count from the south (TMS)
        db.executemany("insert into tiles values (?, ?, ?, ?)",
                       [(z, x, (1 << z) - 1 - y, d) for (z, x, y), d in tiles.items()])
        db.commit()
    finally:
        db.close()


def _write_pmtiles(path: Path, tiles: dict, meta: dict, box, zooms) -> None:
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    w, s, e, n = box
    with open(path, "wb") as f:
        writer = Writer(f)
        for (z, x, y), data in sorted(tiles.items(), key=lambda kv: zxy_to_tileid(*kv[0])):
            writer.write_tile(zxy_to_tileid(z, x, y), data)
        writer.finalize({
            "tile_type": TileType.MVT, "tile_compression": Compression.GZIP,
            "min_zoom": zooms.start, "max_zoom": zooms.stop - 1,
            "min_lon_e7": int(w * 1e7), "min_lat_e7": int(s * 1e7),
            "max_lon_e7": int(e * 1e7), "max_lat_e7": int(n * 1e7),
            "center_zoom": zooms.start, "center_lon_e7": int((w + e) / 2 * 1e7),
            "center_lat_e7": int((s + n) / 2 * 1e7)},
            {**meta, "vector_layers": json.loads(meta["json"])["vector_layers"]})
