"""Keep the tile cache true to the database: LISTEN for writes, evict what they touched.

Migration 0005 logs each write's envelopes and valid span in `city.tile_changes` and
NOTIFYs `gisplatform_tiles` at commit with the seq range. This task reads those rows and
evicts the tiles of the layer and of the sources derived from it (persons →
population-grid). Writes from any process count, `gisplatform import` included.

While not listening (server down, connection lost) writes are not seen; on (re)connect
the task LISTENs first, then replays the log from shortly before it last knew it was
listening (`state.json` in the cache directory). Without that state, or when the log no
longer reaches back that far, every current tile is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from gisplatform.db.connections import aconnect

from .cache import TileCache

log = logging.getLogger("gisplatform.tiles")

CHANNEL = "gisplatform_tiles"
REPLAY_MARGIN = timedelta(hours=1)  # transactions longer than this may be missed on restart
KEEP_LOG = timedelta(days=7)


class TileInvalidator:
    def __init__(self, url: str, cache: TileCache, dependents: Mapping[str, tuple[str, ...]],
                 state_file: Path | None, replay: bool = True):
        """replay=False: follow new writes only (a seeding run that starts with a cache
        the server keeps true)."""
        self.url = url
        self.replay = replay
        self.cache = cache
        self.dependents = dependents  # layer → sources whose tiles it changes
        self.state_file = state_file
        self.listening = asyncio.Event()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await aconnect(self.url, "gisplatform-tiles",
                                          autocommit=True) as conn:
                    await conn.execute(f"listen {CHANNEL}")
                    if self.replay:
                        await self._replay(conn)
                    self.listening.set()
                    delay = 0.5
                    await self._follow(conn)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database went away: keep trying, never crash the app
                log.warning("tile invalidation listener lost the database (%s); retrying", e)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    async def _follow(self, conn: psycopg.AsyncConnection) -> None:
        while True:
            ranges = []
            async for n in conn.notifies(timeout=30, stop_after=1):
                ranges.append(n.payload)
            for payload in ranges:
                _, lo, hi = payload.split()
                await self._apply(conn, "seq between %s and %s", (int(lo), int(hi)))
            await self._save_state(conn)

    async def _replay(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute("delete from city.tile_changes where at < now() - %s", (KEEP_LOG,))
        since = self._load_state()
        cur = await conn.execute("select now()")
        now = (await cur.fetchone())[0]
        if since is None or since - REPLAY_MARGIN < now - KEEP_LOG:  # the log may not reach
            self.cache.clear(current_only=True)
        else:
            n = await self._apply(conn, "at >= %s", (since - REPLAY_MARGIN,))
            log.info("tile cache: replayed writes since %s, %d tiles evicted", since, n)
        await self._save_state(conn)

    async def _apply(self, conn: psycopg.AsyncConnection, where: str, params: tuple) -> int:
        cur = await conn.execute(
            "select layer, st_xmin(bbox), st_ymin(bbox), st_xmax(bbox), st_ymax(bbox),"
            f" valid_lo, valid_hi from city.tile_changes where {where} order by seq", params)
        evicted = 0
        for layer, w, s, e, n, lo, hi in await cur.fetchall():
            for source in (layer, *self.dependents.get(layer, ())):
                evicted += await asyncio.to_thread(self.cache.evict, source, (w, s, e, n), lo, hi)
        return evicted

    def _load_state(self) -> datetime | None:
        if self.state_file is None:
            return None
        try:
            return datetime.fromisoformat(json.loads(self.state_file.read_text())["listening_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    async def _save_state(self, conn: psycopg.AsyncConnection) -> None:
        if self.state_file is None:
            return
        cur = await conn.execute("select now()")
        now = (await cur.fetchone())[0]
        tmp = self.state_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"listening_at": now.isoformat()}))
            tmp.replace(self.state_file)
        except OSError as e:  # a full or read-only disk: no half-written file left behind
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning("tile cache state not saved (%s): a restart will drop current tiles", e)
