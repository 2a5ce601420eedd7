"""Render-or-cache one tile: the path shared by HTTP, seeding and export."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from gisplatform.crs.tile_grids import WEB_MERCATOR, WEB_MERCATOR_QUAD, TileGrid

from .cache import Key, Tile, TileCache, when_key
from .pyramid import BUILT_SQL, zooms
from .sources import TileSource, check_tile, tile_params, tile_sql

EMPTY = Tile.of(b"")
PYRAMIDS_TTL_S = 30.0  # how soon a pyramid built by `gisplatform tiles pyramid` is used


class TileService:
    def __init__(self, sources: dict[str, TileSource], cache: TileCache,
                 pool: AsyncConnectionPool, renders: int = 0):
        self.sources = sources
        self.cache = cache
        self.pool = pool
        # at most this many renders at once (0: one per CPU): the database's cores are
        # shared with every other request, and a render is CPU-bound in PostGIS
        self._renders = asyncio.Semaphore(renders or os.cpu_count() or 2)
        self._inflight: dict[tuple, asyncio.Future] = {}
        self._pyramids: dict[str, tuple[int, int]] = {}
        self._pyramids_read = -PYRAMIDS_TTL_S

    async def tile(self, name: str, z: int, x: int, y: int, at: datetime | None = None,
                   known_at: datetime | None = None,
                   grid: TileGrid = WEB_MERCATOR) -> tuple[Tile, bool]:
        """(tile, from_cache) of z/x/y in `grid`. An empty tile has empty data. The caller
        checked access."""
        src = self.sources[name]
        check_tile(z, x, y, grid)
        if known_at is not None and at is None:
            at = known_at  # "as known at K" without a datetime: the city as it was at K
            # (CachedTileFastPath applies the same rule to find the key)
        key = Key(name, z, x, y, when_key(at, known_at), grid.id)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        # one render per key at a time: a map opening sends the same tiles many times
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), False
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            epoch = self.cache.epoch(name)
            tile = await self._render(src, z, x, y, at, known_at, grid)
            self.cache.put(key, tile, epoch)
            future.set_result(tile)
            return tile, False
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._inflight[key]

    async def _render(self, src: TileSource, z: int, x: int, y: int,
                      at: datetime | None, known_at: datetime | None,
                      grid: TileGrid = WEB_MERCATOR) -> Tile:
        async with self._renders, self.pool.connection() as conn:
            # the pyramid counts WebMercatorQuad's tile cells: other grids read the versions
            z_range = (await self._built(conn)).get(src.name) \
                if grid.id == WEB_MERCATOR_QUAD else None
            pyramid = z_range is not None and z_range == zooms(src) and z_range[0] <= z <= z_range[1]
            query = tile_sql(src, z, known_at is not None, pyramid, grid)
            params = {**tile_params(z, x, y, at, known_at, grid), "layer": src.name}
            # prepared, a statement gets a generic plan after five runs: for the pyramid's
            # that plan reads the month so far through the geometry index (1.7 s against
            # 35 ms for a city-size tile); unprepared, it is planned for its instant (~2 ms)
            cur = await conn.execute(query, params, prepare=not pyramid)
            row = await cur.fetchone()
        data = bytes(row[0]) if row and row[0] else b""
        return Tile.of(data) if data else EMPTY

    async def _built(self, conn) -> dict[str, tuple[int, int]]:
        """The layers with a pyramid (tiles/pyramid.py), re-read every PYRAMIDS_TTL_S."""
        if time.monotonic() - self._pyramids_read >= PYRAMIDS_TTL_S:
            cur = await conn.execute("select to_regclass('city.tile_pyramid_layers') is not null")
            if (await cur.fetchone())[0]:
                cur = await conn.execute(BUILT_SQL)
                self._pyramids = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
            else:
                self._pyramids = {}
            self._pyramids_read = time.monotonic()
        return self._pyramids
