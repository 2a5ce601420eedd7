"""Registered external basemaps: XYZ or WMTS sources (a provincial 天地图 service, say)
that the platform proxies at /basemaps/{name}/… (tiles/basemap_routes.py).

A source's key (天地图's `tk`) is stored here and used only by the proxy: the URL is
registered as a template with `{key}` where the key goes, so neither the stored URL nor
anything listed or served ever holds the key itself. Registration checks everything up
front (`check`): a mistake is one line, and nothing is written.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg

from gisplatform.crs.tile_grids import GRIDS, WEB_MERCATOR_QUAD

KINDS = ("xyz", "wmts")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# the platform's own raster layers in the style and the viewer (ids, i18n keys)
RESERVED = ("ortho", "hillshade", "dem")
PLACEHOLDERS = {"xyz": ("{z}", "{x}", "{y}"), "wmts": ()}
ALLOWED = re.compile(r"\{(z|x|y|key)\}")
# query parameters that carry keys in common tile services: given a literal value, the key
# would be stored (and listed) in the URL instead of in --key
KEY_PARAMS = ("tk", "key", "apikey", "api_key", "access_token", "token", "ak")
MAX_TEXT = 300

COLUMNS = ("name, title, kind, url, layer, style, format, matrix_set, grid, zoom_offset,"
           " min_zoom, max_zoom, attribution, secret, is_default, enabled, created")


class BasemapError(Exception):
    """A basemap refused, with a message an operator can act on; `option` names the
    command-line option at fault (None: the registry refused)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Basemap:
    name: str
    title: str
    kind: str
    url: str  # the template, with {key} where the key goes: never the key
    layer: str | None = None  # WMTS only: LAYER, STYLE, FORMAT, TILEMATRIXSET
    style: str | None = None
    format: str | None = None
    matrix_set: str | None = None
    grid: str = WEB_MERCATOR_QUAD  # the platform's tile grid the source's tiles are in
    zoom_offset: int = 0  # the source's level for our zoom z is z + zoom_offset
    min_zoom: int = 0
    max_zoom: int = 18
    attribution: str = ""
    secret: str | None = None
    is_default: bool = False  # shown when the viewer opens
    enabled: bool = True
    created: datetime | None = None

    @classmethod
    def from_row(cls, row) -> Basemap:
        return cls(*row)

    def __repr__(self) -> str:  # a dataclass's repr would print the key into tracebacks
        return f"Basemap({self.name!r}, {self.kind}, {self.grid})"

    def upstream(self, z: int, x: int, y: int) -> str:
        """The URL of tile z/x/y (in `grid`) at the source, the key filled in."""
        level = z + self.zoom_offset
        url = self.url.replace("{key}", quote(self.secret or "", safe=""))
        if self.kind == "xyz":
            return url.replace("{z}", str(level)).replace("{x}", str(x)).replace("{y}", str(y))
        return url + ("&" if "?" in url else "?") + urlencode({
            "SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0",
            "LAYER": self.layer, "STYLE": self.style, "FORMAT": self.format,
            "TILEMATRIXSET": self.matrix_set, "TILEMATRIX": level,
            "TILEROW": y, "TILECOL": x})

    def public(self, public_url: str) -> dict:
        """What a client may know: no upstream URL, no key."""
        path = f"{self.name}/{{z}}/{{x}}/{{y}}.png" if self.grid == WEB_MERCATOR_QUAD \
            else f"{self.name}/{self.grid}/{{z}}/{{x}}/{{y}}.png"
        return {"name": self.name, "title": self.title, "tile_matrix_set": self.grid,
                "minzoom": self.min_zoom, "maxzoom": self.max_zoom,
                "attribution": self.attribution, "default": self.is_default,
                "tiles": f"{public_url}/basemaps/{path}"}


# ----------------------------------------------------------------------------- checks

def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BasemapError(f"name {name!r} must match ^[a-z0-9][a-z0-9_-]{{0,62}}$ "
                           "(lower-case letters, digits, _ and -)", "NAME")
    if name in RESERVED:
        raise BasemapError(f"name {name!r} is the platform's own raster layer", "NAME")
    return name


def check_url(url: str, kind: str) -> str:
    """An http(s) URL template with only the placeholders KIND uses, no credentials and
    no literal key. Messages never repeat the URL: it may hold a key pasted by mistake."""
    if len(url) > 2000:
        raise BasemapError("the URL is longer than 2000 characters", "--url")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise BasemapError("not a URL (its host or port cannot be read)", "--url") from None
    if parts.scheme not in ("http", "https"):
        raise BasemapError(f"{parts.scheme or 'a URL without a scheme'!r} is not http or "
                           "https", "--url")
    if parts.username is not None or parts.password is not None:
        raise BasemapError("credentials in the URL (user:password@) would be stored and "
                           "listed; give a key with --key and write {key} where it goes",
                           "--url")
    if not parts.hostname:
        raise BasemapError("the URL names no host", "--url")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise BasemapError("the URL has whitespace or control characters", "--url")
    unknown = set(re.findall(r"\{[^}]*\}", url)) - {m.group(0) for m in ALLOWED.finditer(url)}
    if unknown:
        raise BasemapError(f"unknown placeholder(s) {', '.join(sorted(unknown))}; "
                           "use {z}, {x}, {y} and {key}", "--url")
    needed = [p for p in PLACEHOLDERS[kind] if p not in url]
    if needed:
        raise BasemapError(f"an xyz URL needs {', '.join(needed)}", "--url")
    if kind == "wmts" and re.search(r"\{[zxy]\}", url):
        raise BasemapError("a wmts URL is the service's address: the proxy adds the tile's "
                           "TILEMATRIX, TILEROW and TILECOL (a RESTful WMTS template is "
                           "--kind xyz)", "--url")
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k.lower() in KEY_PARAMS and v != "{key}":
            raise BasemapError(f"the URL holds a value for {k}=: give the key with --key "
                               f"and write {k}={{key}} in the URL", "--url")
    return url


def check(b: Basemap) -> Basemap:
    """The whole registration checked; returns it with WMTS defaults filled in."""
    check_name(b.name)
    if b.kind not in KINDS:
        raise BasemapError(f"kind {b.kind!r} is not one of {', '.join(KINDS)}", "--kind")
    check_url(b.url, b.kind)
    if b.secret is not None and (not b.secret or any(c.isspace() or ord(c) < 32
                                                     for c in b.secret)
                                 or len(b.secret) > 512):
        raise BasemapError("the key is empty, too long or has whitespace", "--key")
    if b.secret is not None and "{key}" not in b.url:
        raise BasemapError("a key needs {key} in the URL where it goes (e.g. tk={key})",
                           "--url")
    if b.secret is None and "{key}" in b.url:
        raise BasemapError("the URL has {key}: give the key", "--key")
    if b.grid not in GRIDS:
        raise BasemapError(f"tile matrix set {b.grid!r} is not one of {', '.join(GRIDS)}",
                           "--tms")
    wmts = {"--layer": b.layer, "--style": b.style, "--format": b.format,
            "--matrix-set": b.matrix_set}
    if b.kind == "xyz":
        given = [o for o, v in wmts.items() if v is not None]
        if given:
            raise BasemapError(f"{', '.join(given)}: for --kind wmts only", given[0])
    else:
        b = replace(b, style=b.style or "default", format=b.format or "image/png")
        for option in ("--layer", "--matrix-set"):
            if not wmts[option]:
                raise BasemapError(f"a wmts source needs {option}", option)
        for option, value in (("--layer", b.layer), ("--style", b.style),
                              ("--format", b.format), ("--matrix-set", b.matrix_set)):
            if len(value) > 100 or any(c.isspace() for c in value):
                raise BasemapError(f"{value!r} is not a WMTS identifier", option)
    top = GRIDS[b.grid].maxzoom
    if not 0 <= b.min_zoom <= b.max_zoom <= top:
        raise BasemapError(f"zooms {b.min_zoom}..{b.max_zoom} are not within 0..{top} of "
                           f"{b.grid} (min ≤ max)", "--min-zoom")
    if not -5 <= b.zoom_offset <= 5:
        raise BasemapError("the zoom offset is -5..5", "--zoom-offset")
    for option, text in (("--title", b.title), ("--attribution", b.attribution)):
        if len(text) > MAX_TEXT:
            raise BasemapError(f"longer than {MAX_TEXT} characters", option)
    return replace(b, title=b.title or b.name)


# ----------------------------------------------------------------------------- registry

def add_basemap(conn: psycopg.Connection, b: Basemap, replace_existing: bool = False,
                data_dir: Path | None = None) -> Basemap:
    """Check and register B (replacing one of the same name when asked: a replaced
    source's cached tiles are dropped)."""
    b = check(b)
    with conn.transaction():
        taken = conn.execute("select 1 from city.basemaps where name = %s for update",
                             (b.name,)).fetchone()
        if taken and not replace_existing:
            raise BasemapError(f"a basemap named {b.name!r} exists; use --replace to "
                               "replace it")
        conn.execute("delete from city.basemaps where name = %s", (b.name,))
        names = [c.strip() for c in COLUMNS.split(",")][:-1]  # created: now()
        try:
            conn.execute(f"insert into city.basemaps ({', '.join(names)}) values"
                         f" ({', '.join(['%s'] * len(names))})",
                         [getattr(b, n) for n in names])
        except psycopg.errors.UniqueViolation:  # another `basemap add` got there first
            raise BasemapError(f"a basemap named {b.name!r} was registered meanwhile; "
                               "use --replace to replace it") from None
        except psycopg.errors.IntegrityError as e:  # its DETAIL would show the row: the key
            raise BasemapError(f"the registry refused it ({e.diag.constraint_name})") from None
    if taken and data_dir is not None:
        drop_cached(data_dir, b.name)
    return get_basemap(conn, b.name)


def get_basemap(conn: psycopg.Connection, name: str) -> Basemap | None:
    with conn.transaction():
        row = conn.execute(f"select {COLUMNS} from city.basemaps where name = %s",
                           (name,)).fetchone()
    return Basemap.from_row(row) if row else None


def list_basemaps(conn: psycopg.Connection) -> list[Basemap]:
    with conn.transaction():
        rows = conn.execute(f"select {COLUMNS} from city.basemaps order by name").fetchall()
    return [Basemap.from_row(r) for r in rows]


def set_enabled(conn: psycopg.Connection, name: str, enabled: bool) -> Basemap:
    with conn.transaction():
        row = conn.execute("update city.basemaps set enabled = %s where name = %s"
                           " returning name", (enabled, name)).fetchone()
    if row is None:
        raise BasemapError(f"no basemap named {name!r} (see `gisplatform basemap list`)")
    return get_basemap(conn, name)


def remove_basemap(conn: psycopg.Connection, name: str, data_dir: Path | None = None) -> None:
    with conn.transaction():
        row = conn.execute("delete from city.basemaps where name = %s returning name",
                           (name,)).fetchone()
    if row is None:
        raise BasemapError(f"no basemap named {name!r} (see `gisplatform basemap list`)")
    if data_dir is not None:
        drop_cached(data_dir, name)


def source_id(name: str) -> str:
    """The basemap's source id in the style and the tile cache: ':' is in no layer's
    name, so it never meets a vector layer's."""
    return f"basemap:{name}"


def drop_cached(data_dir: Path, name: str) -> None:
    """The basemap's tiles in the shared tile cache on disk (app.py: <data dir>/tiles).
    The app's memory copies are keyed by registration time, so they are never served
    for a newer registration."""
    shutil.rmtree(Path(data_dir) / "tiles" / source_id(name), ignore_errors=True)
