"""Tile cache: memory (LRU) in front of disk, both size-bounded, evicted by place and time.

A key is (source, z, x, y, when, grid): `when` is "current" for the live snapshot, or the
instant's UTC stamp (plus "@" + known_at) for a dated one; `grid` the tile matrix set
(WebMercatorQuad when left out: a 5-tuple key is a WebMercatorQuad key). The same z/x/y
is another place in another grid, so the grid is part of every key, file and index entry.
Every cached tile is also in an index source → grid → z → (x, y) → {when}, so a write's
envelope and valid span evict exactly the tiles it touches, in every grid: every
"current" tile intersecting the envelope, and the dated tiles whose instant lies in the
span.

Disk layout: <dir>/<source>/<z>/<x>/<y>/<when>.mvt for WebMercatorQuad (as before there
were grids: warm caches stay warm), <dir>/<source>/<grid>/<z>/<x>/<y>/<when>.mvt for the
others (empty file = empty tile). Several workers may share the directory; each keeps its
own index and tolerates files vanishing.

The disk is a help, never a condition: a directory that cannot be created (read-only
data dir) turns the disk cache off, and a write that fails (full disk) leaves no partial
file and is only logged — the tile is still served, from memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from gisplatform.crs.tile_grids import GRIDS, WEB_MERCATOR_QUAD

from .sources import BUFFER, EXTENT

CURRENT = "current"
log = logging.getLogger("gisplatform.tiles")


def when_key(at: datetime | None, known_at: datetime | None) -> str:
    if at is None and known_at is None:
        return CURRENT
    stamp = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    if known_at is not None:
        stamp += "@" + known_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return stamp


def _when_instant(when: str) -> datetime | None:
    if when == CURRENT:
        return None
    return datetime.strptime(when.split("@")[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Tile:
    data: bytes
    etag: str

    @classmethod
    def of(cls, data: bytes) -> Tile:
        return cls(data, '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"')


class Key(NamedTuple):
    source: str
    z: int
    x: int
    y: int
    when: str
    grid: str = WEB_MERCATOR_QUAD


def _key(key: tuple) -> Key:
    return key if type(key) is Key else Key(*key)


class TileCache:
    def __init__(self, directory: Path | None, memory_bytes: int, disk_bytes: int):
        self.dir = directory
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self._mem: OrderedDict[Key, Tile] = OrderedDict()
        self._mem_size = 0
        self._disk: OrderedDict[Key, int] = OrderedDict()  # LRU of files by key → size
        self._disk_size = 0
        # source → grid → z → (x, y) → {when}
        self._index: dict[str, dict[str, dict[int, dict[tuple[int, int], set[str]]]]] = {}
        self._epoch: dict[str, int] = {}
        self._evicted_at: dict[str, float] = {}  # wall clock of the last eviction per source
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = self.disk_errors = 0
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                log.warning("tile cache: cannot use %s (%s): tiles are cached in memory only",
                            directory, e.strerror or e)
                self.dir = None
            else:
                self._load_disk_index()

    # -- lookups -------------------------------------------------------------------
    def get(self, key: Key | tuple) -> Tile | None:
        key = _key(key)
        with self._lock:
            tile = self._mem.get(key)
            if tile is not None:
                self._mem.move_to_end(key)
                self.hits += 1
                return tile
            on_disk = key in self._disk
        if not on_disk:
            on_disk = self._adopt(key)
        if on_disk:
            try:
                data = self._path(key).read_bytes()
            except OSError:
                with self._lock:
                    self._forget_disk(key)
            else:
                tile = Tile.of(data)
                with self._lock:
                    self._disk.move_to_end(key)
                    self._put_mem(key, tile)
                    self.hits += 1
                return tile
        with self._lock:
            self.misses += 1
        return None

    def epoch(self, source: str) -> int:
        """Bumped by every eviction touching `source`: a tile rendered across an eviction
        may predate the write, so it is served but not stored."""
        return self._epoch.get(source, 0)

    def put(self, key: Key | tuple, tile: Tile, epoch: int) -> None:
        key = _key(key)
        with self._lock:
            if self._epoch.get(key[0], 0) != epoch:
                return
            self._put_mem(key, tile)
            self._add_index(key)
        if self.dir is not None and self.disk_bytes > 0:
            path = self._path(key)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(tile.data)
                os.replace(tmp, path)  # readers never see half a tile
            except OSError as e:  # a full or read-only disk: the memory cache still has it
                self._disk_failed(tmp, e)
                return
            with self._lock:
                if self._epoch.get(key[0], 0) != epoch:  # evicted while we wrote
                    path.unlink(missing_ok=True)
                    return
                self._disk_size += len(tile.data) - self._disk.pop(key, 0)
                self._disk[key] = len(tile.data)
                victims = []
                while self._disk_size > self.disk_bytes and self._disk:
                    old, size = self._disk.popitem(last=False)
                    self._disk_size -= size
                    victims.append(old)
            for old in victims:
                self._path(old).unlink(missing_ok=True)

    # -- invalidation ------------------------------------------------------------------
    def evict(self, source: str, bbox: tuple[float, float, float, float] | None,
              valid_lo: datetime | None = None, valid_hi: datetime | None = None) -> int:
        """Drop the tiles of `source` that a write inside `bbox` (lon/lat; None = anywhere)
        with validity [valid_lo, valid_hi) may have changed. Returns how many."""
        with self._lock:
            self._epoch[source] = self._epoch.get(source, 0) + 1
            self._evicted_at[source] = time.time()
            doomed = []
            for grid, zooms in self._index.get(source, {}).items():  # every grid's tiles
                for z, cells in zooms.items():
                    for xy in self._cells_in(cells, bbox, z, grid):
                        for when in list(cells[xy]):
                            at = _when_instant(when)
                            if at is None or ((valid_lo is None or valid_lo <= at)
                                              and (valid_hi is None or at < valid_hi)):
                                doomed.append(Key(source, z, xy[0], xy[1], when, grid))
            for key in doomed:
                tile = self._mem.pop(key, None)
                if tile is not None:
                    self._mem_size -= len(tile.data)
                self._disk_size -= self._disk.pop(key, 0)
                self._drop_index(key)
            self.evictions += len(doomed)
        for key in doomed:
            if self.dir is not None:
                self._path(key).unlink(missing_ok=True)
        return len(doomed)

    def clear(self, current_only: bool = False) -> None:
        """Forget everything (or every current tile): used when changes may have been
        missed (listener reconnects without a replay window)."""
        if not current_only:
            with self._lock:
                for s in self._index:
                    self._epoch[s] = self._epoch.get(s, 0) + 1
                self._mem.clear()
                self._disk.clear()
                self._index.clear()
                self._mem_size = self._disk_size = 0
            if self.dir is not None:
                for child in self.dir.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
            return
        for source in list(self._index):
            self._evict_current(source)

    def _evict_current(self, source: str) -> None:
        far = datetime.max.replace(tzinfo=UTC)
        self.evict(source, None, far, far)  # dated tiles never fall in an empty span

    def stats(self) -> dict:
        with self._lock:
            return {"memory_tiles": len(self._mem), "memory_bytes": self._mem_size,
                    "disk_tiles": len(self._disk), "disk_bytes": self._disk_size,
                    "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                    "disk_errors": self.disk_errors}

    def _disk_failed(self, tmp: Path, e: OSError) -> None:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # no partial file left behind
        with self._lock:
            self.disk_errors += 1
            first = self.disk_errors == 1
        if first:  # once per process, not once per tile; /metrics counts the rest
            log.warning("tile cache: cannot write under %s (%s): tiles are served from "
                        "memory; later writes are tried again", self.dir, e.strerror or e)

    def _adopt(self, key: Key) -> bool:
        """A file another process (`gisplatform tiles seed`) wrote after our index was
        built: take it unless it is older than our last eviction for its source — it may
        then have been rendered before a write we saw."""
        if self.dir is None:
            return False
        try:
            st = self._path(key).stat()
        except OSError:
            return False
        with self._lock:
            if st.st_mtime < self._evicted_at.get(key[0], 0.0):
                stale = True
            else:
                stale = False
                self._disk[key] = st.st_size
                self._disk_size += st.st_size
                self._add_index(key)
        if stale:
            self._path(key).unlink(missing_ok=True)
        return not stale

    # -- internals (caller holds the lock) --------------------------------------------
    def _put_mem(self, key: Key, tile: Tile) -> None:
        old = self._mem.pop(key, None)
        if old is not None:
            self._mem_size -= len(old.data)
        self._mem[key] = tile
        self._mem_size += len(tile.data)
        while self._mem_size > self.memory_bytes and self._mem:
            k, t = self._mem.popitem(last=False)
            self._mem_size -= len(t.data)
            if k not in self._disk:
                self._drop_index(k)

    def _forget_disk(self, key: Key) -> None:
        self._disk_size -= self._disk.pop(key, 0)
        if key not in self._mem:
            self._drop_index(key)

    def _add_index(self, key: Key) -> None:
        s, z, x, y, when, grid = key
        self._index.setdefault(s, {}).setdefault(grid, {}).setdefault(z, {}) \
            .setdefault((x, y), set()).add(when)

    def _drop_index(self, key: Key) -> None:
        s, z, x, y, when, grid = key
        cells = self._index.get(s, {}).get(grid, {}).get(z)
        if cells and (x, y) in cells:
            cells[(x, y)].discard(when)
            if not cells[(x, y)]:
                del cells[(x, y)]

    @staticmethod
    def _cells_in(cells: dict, bbox, z: int, grid: str) -> list[tuple[int, int]]:
        if bbox is None:
            return list(cells)
        x0, y0, x1, y1 = tile_range(bbox, z, grid)
        if (x1 - x0 + 1) * (y1 - y0 + 1) > len(cells):
            return [xy for xy in cells if x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1]
        return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1) if (x, y) in cells]

    def _path(self, key: Key) -> Path:
        s, z, x, y, when, grid = key
        folder = self.dir / s if grid == WEB_MERCATOR_QUAD else self.dir / s / grid
        return folder / str(z) / str(x) / str(y) / f"{when}.mvt"

    def _load_disk_index(self) -> None:
        found = []
        # <source>/<z>/… is WebMercatorQuad's; <source>/<grid>/<z>/… another grid's
        for pattern in ("*/*/*/*/*.mvt", "*/*/*/*/*/*.mvt"):
            for path in self.dir.glob(pattern):
                try:
                    st = path.stat()
                    if pattern.count("/") == 4:
                        (s, z, x, y), grid = path.parts[-5:-1], WEB_MERCATOR_QUAD
                    else:
                        s, grid, z, x, y = path.parts[-6:-1]
                        if grid == WEB_MERCATOR_QUAD or grid not in GRIDS:
                            continue
                    found.append((st.st_mtime, Key(s, int(z), int(x), int(y), path.stem, grid),
                                  st.st_size))
                except (OSError, ValueError):
                    continue
        for _, key, size in sorted(found):
            self._disk[key] = size
            self._disk_size += size
            self._add_index(key)


def tile_range(bbox: tuple[float, float, float, float], z: int,
               grid: str = WEB_MERCATOR_QUAD) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the tiles at z of `grid` whose buffered extent meets the lon/lat
    bbox."""
    if grid != WEB_MERCATOR_QUAD:
        return _grid_tile_range(bbox, z, grid)
    w, s, e, n = bbox
    n_tiles = 1 << z
    pad = BUFFER / EXTENT

    def fx(lon: float) -> float:
        return (lon + 180.0) / 360.0 * n_tiles

    def fy(lat: float) -> float:
        lat = max(min(lat, 85.0511287798), -85.0511287798)
        r = math.radians(lat)
        return (1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n_tiles

    clamp = lambda v: max(0, min(n_tiles - 1, v))  # noqa: E731
    return (clamp(math.floor(fx(w) - pad)), clamp(math.floor(fy(n) - pad)),
            clamp(math.floor(fx(e) + pad)), clamp(math.floor(fy(s) + pad)))


def _grid_tile_range(bbox: tuple[float, float, float, float], z: int,
                     grid: str) -> tuple[int, int, int, int]:
    """tile_range for a grid other than WebMercatorQuad, from its tile matrix (origin,
    tile span) by morecantile: the bbox's corners in the grid's CRS (the identity for
    CGCS2000Quad, whose CRS is the storage's)."""
    tms = GRIDS[grid].tms
    w, s, e, n = bbox
    origin = tms.xy_bounds(0, 0, z)  # the top-left tile: the matrix's origin and span
    span_x, span_y = origin.right - origin.left, origin.top - origin.bottom
    m = tms.matrix(z)
    corners = [tms.xy(lon, lat, truncate=True) for lon, lat in ((w, n), (e, s))]
    pad = BUFFER / EXTENT
    fx = [(c.x - origin.left) / span_x for c in corners]
    fy = [(origin.top - c.y) / span_y for c in corners]

    def clamp(v: int, size: int) -> int:
        return max(0, min(size - 1, v))
    return (clamp(math.floor(min(fx) - pad), m.matrixWidth),
            clamp(math.floor(min(fy) - pad), m.matrixHeight),
            clamp(math.floor(max(fx) + pad), m.matrixWidth),
            clamp(math.floor(max(fy) + pad), m.matrixHeight))


__all__ = ["CURRENT", "Key", "Tile", "TileCache", "tile_range", "when_key"]
