"""What a caller's WMS / WFS request becomes: its view of the layers (access decided by the
security kernel, never here), that view's mapfile, and MapServer's answer.

A view is per class of caller, not per caller: the layers it reads and which of them it
unmasks. Anonymous callers share one view; tokens with the same grants share theirs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from gisplatform.security import Principal, access, mask_sql
from gisplatform.temporal.extents import read_extent

from .mapfile import Column, OwsLayer, RasterLayer, View, write_config, write_mapfile
from .mapserv import MapServerPool, Reply

__all__ = ["ServedLayer", "OwsService", "CallerView"]

log = logging.getLogger("gisplatform.services")
VIEW_TTL_S = 60.0


@dataclass(frozen=True)
class ServedLayer:
    sharing: str
    layer: OwsLayer  # every column, unmasked
    personal: Mapping[str, str | None]  # personal column → mask kind


@dataclass(frozen=True)
class CallerView:
    view: View
    unmasked: frozenset[str]  # layers whose personal columns this view shows plain
    masked: Mapping[str, tuple[str, ...]]  # layer → the personal fields it receives masked


def _column_sql(name: str) -> str:
    return "v." + sql.Identifier(name).as_string(None)


class OwsService:
    def __init__(self, layers: Callable[[], Mapping[str, ServedLayer]],
                 rasters: Callable[[object], list[RasterLayer]], connection: Callable,
                 database_url: str, public_url: str, directory: Path, font: Path | None,
                 extent: tuple[float, float, float, float], processes: int = 2,
                 hillshade: Callable[[], bool] = lambda: False):
        self.layers, self.rasters, self.connection = layers, rasters, connection
        self.database_url, self.public_url, self.directory = database_url, public_url, directory
        self.font, self.extent, self.hillshade = font, extent, hillshade
        self.pool = MapServerPool(write_config(directory), processes)
        self._lock = threading.Lock()
        self._time: dict[str, tuple[float, str | None]] = {}
        self._mapfiles: dict[tuple, Path] = {}

    def _time_extent(self, layer: OwsLayer) -> str | None:
        """The layer's validity as WMS advertises it (day resolution, so a view's mapfile
        changes at most daily)."""
        hit = self._time.get(layer.name)
        if hit and time.monotonic() - hit[0] < VIEW_TTL_S:
            return hit[1]
        try:
            with self.connection() as conn:
                ext = read_extent(conn, layer.version_table)
        except Exception as e:  # noqa: BLE001 -- the dimension is optional; the map is not
            log.warning("time extent of %s not read: %s", layer.name, e)
            return None
        end = ext.end or datetime.now(UTC)
        text = (f"{ext.begin.astimezone(UTC):%Y-%m-%d}/{end.astimezone(UTC):%Y-%m-%d}"
                if ext.begin else None)
        self._time[layer.name] = (time.monotonic(), text)
        return text

    def view(self, principal: Principal, at=None) -> CallerView:
        chosen, unmasked, masked = [], set(), {}
        for name, served in sorted(self.layers().items()):
            acc = access(principal, name, served.sharing)
            if not acc.read:
                continue
            cols = []
            for c in served.layer.columns:
                kind = served.personal.get(c.name, "-")
                if kind == "-" or acc.unmask:
                    cols.append(c)
                elif not principal.anonymous:  # anonymous: no personal column at all
                    cols.append(Column(c.name, mask_sql(kind).format(c=_column_sql(c.name))))
            if served.personal and acc.unmask:
                unmasked.add(name)
            if served.personal and not acc.unmask:
                masked[name] = tuple(served.personal)
            chosen.append(replace(served.layer, columns=tuple(cols)))
        times = {lr.name: self._time_extent(lr) for lr in chosen}
        view = View(tuple(chosen), tuple(self.rasters(at)), self.extent,
                    {k: v for k, v in times.items() if v})
        return CallerView(view, frozenset(unmasked), masked)

    def mapfile(self, view: View) -> Path:
        key = (view, tuple(sorted(view.time_extent.items())))
        with self._lock:
            path = self._mapfiles.get(key)
            if path is None or not path.exists():
                if len(self._mapfiles) > 256:
                    self._mapfiles.clear()
                path = self._mapfiles[key] = write_mapfile(
                    self.directory, view, self.database_url, self.public_url, self.font)
            return path

    def ask(self, view: View, query: Mapping[str, str]) -> Reply:
        from urllib.parse import urlencode

        return self.pool.ask({"MS_MAPFILE": str(self.mapfile(view)), "REQUEST_METHOD": "GET",
                              "QUERY_STRING": urlencode(query), "SERVER_NAME": "localhost",
                              "SERVER_PORT": "80", "SCRIPT_NAME": "/mapserv"})

    def close(self) -> None:
        self.pool.close()
