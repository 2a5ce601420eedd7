"""Render-or-cache one tile: the path shared by HTTP, seeding and export."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from .cache import Tile, TileCache, when_key
from .sources import TileSource, check_tile, tile_params, tile_sql

EMPTY = Tile.of(b"")


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

    async def tile(self, name: str, z: int, x: int, y: int, at: datetime | None = None,
                   known_at: datetime | None = None) -> tuple[Tile, bool]:
        """(tile, from_cache). An empty tile has empty data. The caller checked access."""
        src = self.sources[name]
        check_tile(z, x, y)
        if known_at is not None and at is None:
            at = known_at  # "as known at K" without a datetime: the city as it was at K
            # (CachedTileFastPath applies the same rule to find the key)
        key = (name, z, x, y, when_key(at, known_at))
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
            tile = await self._render(src, z, x, y, at, known_at)
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
                      at: datetime | None, known_at: datetime | None) -> Tile:
        query = tile_sql(src, z, known_at is not None)
        async with self._renders, self.pool.connection() as conn:
            cur = await conn.execute(query, tile_params(z, x, y, at, known_at), prepare=True)
            row = await cur.fetchone()
        data = bytes(row[0]) if row and row[0] else b""
        return Tile.of(data) if data else EMPTY
