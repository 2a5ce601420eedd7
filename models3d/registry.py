"""The 3D tileset registry (`city.tilesets`): what `/3d/{name}/…` may serve.

A tileset is a folder `<data_dir>/3d/<directory>` holding `tileset.json` and its content.
Writers (the building builder, the real-scene importer) fill a fresh folder and then
`register` it; the previous folder of the same name is deleted after the commit, so a
reader never sees half a tileset.
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KINDS = ("buildings", "realscene")
RESERVED = ("terrain",)
DIR_3D = "3d"


class TilesetError(Exception):
    """A tileset refused, with a message a user can act on."""


@dataclass(frozen=True)
class Tileset:
    name: str
    kind: str
    at: datetime | None
    directory: str
    bounds: tuple[float, float, float, float] | None
    tiles: int
    bytes: int
    source: str | None
    updated: datetime | None = None


def root(data_dir: Path) -> Path:
    return Path(data_dir) / DIR_3D


def check_name(name: str) -> str:
    if not NAME_RE.match(name or "") or name in RESERVED:
        raise TilesetError(f"{name!r} is not a tileset name: 1-63 lower-case letters, digits, "
                           f"_ or -, starting with a letter or digit, not {', '.join(RESERVED)}")
    return name


def new_directory(data_dir: Path, name: str) -> Path:
    """A fresh, empty folder for a (re)build of `name`."""
    check_name(name)
    path = root(data_dir) / f"{name}.{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    return path


_COLS = ("name, kind, at, directory, st_xmin(bounds), st_ymin(bounds), st_xmax(bounds), "
         "st_ymax(bounds), tiles, bytes, source, updated")


def _row(r) -> Tileset:
    bounds = None if r[4] is None else (r[4], r[5], r[6], r[7])
    return Tileset(r[0], r[1], r[2], r[3], bounds, r[8], r[9], r[10], r[11])


def list_tilesets(conn: psycopg.Connection) -> list[Tileset]:
    return [_row(r) for r in conn.execute(f"select {_COLS} from city.tilesets order by name")]


def get_tileset(conn: psycopg.Connection, name: str) -> Tileset | None:
    r = conn.execute(f"select {_COLS} from city.tilesets where name = %s", (name,)).fetchone()
    return _row(r) if r else None


def register(conn: psycopg.Connection, data_dir: Path, *, name: str, kind: str, directory: Path,
             at: datetime | None, bounds: tuple[float, float, float, float] | None,
             tiles: int, size: int, source: str | None) -> Tileset:
    """Record `directory` (made by `new_directory`) as tileset `name`, replacing any
    previous one, whose folder is removed after the commit."""
    check_name(name)
    if kind not in KINDS:
        raise TilesetError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    directory = Path(directory)
    if directory.parent.resolve() != root(data_dir).resolve() or not (directory / "tileset.json").is_file():
        raise TilesetError(f"{directory} is not a built tileset folder under {root(data_dir)}")
    old = get_tileset(conn, name)
    poly = None if bounds is None else "st_makeenvelope(%s, %s, %s, %s, 4490)"
    with conn.transaction():
        conn.execute(
            f"""insert into city.tilesets (name, kind, at, directory, bounds, tiles, bytes, source)
                values (%s, %s, %s, %s, {poly or 'null'}, %s, %s, %s)
                on conflict (name) do update set kind = excluded.kind, at = excluded.at,
                  directory = excluded.directory, bounds = excluded.bounds,
                  tiles = excluded.tiles, bytes = excluded.bytes, source = excluded.source,
                  updated = now()""",
            (name, kind, at, directory.name, *(bounds or ()), tiles, size, source))
    conn.commit()
    if old is not None and old.directory != directory.name:
        shutil.rmtree(root(data_dir) / old.directory, ignore_errors=True)
    return get_tileset(conn, name)


def remove(conn: psycopg.Connection, data_dir: Path, name: str) -> Tileset:
    old = get_tileset(conn, name)
    if old is None:
        raise TilesetError(f"no tileset {name!r}")
    conn.execute("delete from city.tilesets where name = %s", (name,))
    conn.commit()
    shutil.rmtree(root(data_dir) / old.directory, ignore_errors=True)
    return old


def file_in(data_dir: Path, tileset: Tileset, relative: str) -> Path | None:
    """The file `relative` inside the tileset's folder, or None if it would leave it or
    does not exist (URL paths from callers end here)."""
    base = (root(data_dir) / tileset.directory).resolve()
    if not relative or "\x00" in relative:
        return None
    path = (base / relative).resolve()
    if base not in path.parents or not path.is_file():
        return None
    return path
