"""Collection extents from the data (gisplatform.temporal.extents), for pygeoapi's
collection documents and the Records catalogue. A few index lookups per version table,
cached for EXTENT_TTL_S so a listing of every collection does not repeat them."""

from __future__ import annotations

import threading
import time
from datetime import timezone

from gisplatform.temporal.extents import EMPTY, Extent, read_extent

from . import catalog

EXTENT_TTL_S = 30.0
WORLD = [-180.0, -90.0, 180.0, 90.0]  # the bbox of a collection with no geometry yet
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

_lock = threading.Lock()
_cache: dict[tuple[int, str], tuple[float, Extent]] = {}


def of(c: catalog.Collection) -> Extent:
    table = c.extent_table or c.spec.version_table
    key = (id(catalog.pool()), table)  # per app (tests build several in one process)
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < EXTENT_TTL_S:
        return hit[1]
    from .provider import connection  # the OGC pool (provider imports this package)

    with connection() as conn:
        ext = read_extent(conn, table)
    with _lock:
        _cache[key] = (time.monotonic(), ext)
    return ext


def config_extents(ext: Extent = EMPTY) -> dict:
    """`ext` in the form of a pygeoapi resource's `extents`."""
    return {"spatial": {"bbox": list(ext.bbox) if ext.bbox else WORLD, "crs": CRS84},
            "temporal": {"begin": ext.begin and ext.begin.astimezone(timezone.utc),
                         "end": ext.end and ext.end.astimezone(timezone.utc)}}


def interval(ext: Extent) -> list:
    """[begin, end] as RFC 3339 UTC text (None: open or unknown), as the collection
    documents write it (a session in Asia/Shanghai would show 1986–1991 in its DST)."""
    def utc(t):
        return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None
    return [utc(ext.begin), utc(ext.end)]
