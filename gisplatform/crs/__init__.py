"""The coordinate reference systems the platform accepts, and conversion to storage.

Everything is stored in CGCS2000 geographic, EPSG:4490. Input is converted on import
with :func:`to_storage`; output (later) with :func:`from_storage`.

Axis order: the functions here always take and return coordinates in *traditional GIS
order* (x = easting/longitude, y = northing/latitude), as found in Shapefile, GeoJSON
and GeoPackage files; pyproj is used with ``always_xy=True``. ``CRSInfo.latlon_axis_order``
records the *authority* order (EPSG:4326/4490 are lat,lon; the EPSG Gauss-Kruger CRSs
are X = northing first) for the protocols that must honour it (WFS 2.0, GML, OGC API
``crs=`` output); swapping is the caller's job, at that boundary only.

WGS 84 vs CGCS2000: PROJ has no published transformation between them and uses a null
"ballpark" step; the realisations agree to a few centimetres, far below the accuracy
of any data the platform imports. GCJ-02/BD-09 input is de-obfuscated to WGS 84 with
:mod:`.chinese_offsets` and then taken as CGCS2000 on the same grounds.

No PROJ grids or network access are needed for any supported pair.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj
import shapely
from pyproj.exceptions import CRSError as _ProjCRSError
from pyproj.exceptions import ProjError

from . import chinese_offsets

STORAGE_SRID = 4490
STORAGE_CRS = "EPSG:4490"

CoordFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class CRSError(ValueError):
    """Unsupported/unknown CRS, or coordinates that cannot be transformed."""


@dataclass(frozen=True)
class CRSInfo:
    key: str  # canonical name, also what pyproj is given (except GCJ02/BD09)
    srid: int | None  # PostGIS SRID; None for the non-EPSG obfuscated systems
    uri: str | None  # OGC URI; None where no authority defines one
    title: str
    # Authority axis order has latitude (geographic) or northing (projected) first.
    latlon_axis_order: bool
    obfuscated: bool = False  # GCJ-02 / BD-09: accepted as input only


def _epsg(srid: int, title: str, latlon: bool) -> CRSInfo:
    return CRSInfo(
        key=f"EPSG:{srid}",
        srid=srid,
        uri=f"http://www.opengis.net/def/crs/EPSG/0/{srid}",
        title=title,
        latlon_axis_order=latlon,
    )


# Titles are the EPSG names as reported by pyproj (checked in tests/test_crs.py).
# 4529/4530 carry the zone number as a prefix of the easting (41 500 000 m false
# easting); 4550/4551 are the same projections with a plain 500 000 m false easting.
# All four have EPSG axis order X = northing, Y = easting.
REGISTRY: dict[str, CRSInfo] = {
    info.key: info
    for info in (
        CRSInfo(
            key="OGC:CRS84",
            srid=None,  # PostGIS has no CRS84 row; data are converted, never stored as such
            uri="http://www.opengis.net/def/crs/OGC/1.3/CRS84",
            title="WGS 84 (CRS84)",
            latlon_axis_order=False,
        ),
        _epsg(4326, "WGS 84", latlon=True),
        _epsg(4490, "China Geodetic Coordinate System 2000", latlon=True),
        _epsg(3857, "WGS 84 / Pseudo-Mercator", latlon=False),
        _epsg(4529, "CGCS2000 / 3-degree Gauss-Kruger zone 41", latlon=True),
        _epsg(4530, "CGCS2000 / 3-degree Gauss-Kruger zone 42", latlon=True),
        _epsg(4550, "CGCS2000 / 3-degree Gauss-Kruger CM 123E", latlon=True),
        _epsg(4551, "CGCS2000 / 3-degree Gauss-Kruger CM 126E", latlon=True),
        # AMap/Tencent and Baidu APIs publish these as "lng,lat".
        CRSInfo("GCJ02", None, None, "GCJ-02 (AMap, Tencent; obfuscated WGS 84)", False, True),
        CRSInfo("BD09", None, None, "BD-09 (Baidu; obfuscated GCJ-02)", False, True),
    )
}

_ALIASES = {
    "CRS84": "OGC:CRS84",
    "OGC:CRS84": "OGC:CRS84",
    "CRS:84": "OGC:CRS84",
    "GCJ02": "GCJ02",
    "BD09": "BD09",
    "BD09LL": "BD09",  # Baidu's own name for its lon/lat system
}

_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/(EPSG|OGC)/[^/]+/([^/]+)/?$", re.I)
_URN = re.compile(r"^urn:ogc:def:crs:(EPSG|OGC):[^:]*:(.+)$", re.I)
_EPSG = re.compile(r"^(?:EPSG:)?(\d+)$", re.I)


def _unsupported(text: object, detail: str = "") -> CRSError:
    supported = ", ".join(REGISTRY)
    return CRSError(
        f"unsupported CRS {text!r}{detail}. Supported: {supported} "
        "(also written as e.g. '4490', 'CRS84', 'GCJ-02', 'BD-09', "
        "'http://www.opengis.net/def/crs/EPSG/0/4490', 'urn:ogc:def:crs:EPSG::4490')"
    )


def _by_epsg(code: str, text: object) -> CRSInfo:
    key = f"EPSG:{int(code)}"
    if key in REGISTRY:
        return REGISTRY[key]
    try:
        name = pyproj.CRS.from_epsg(int(code)).name
    except _ProjCRSError:
        raise _unsupported(text, f" ({key} is not an EPSG CRS)") from None
    raise _unsupported(text, f" ({key} '{name}' is a valid EPSG CRS but not supported here)")


def resolve_crs(text: str | int | CRSInfo) -> CRSInfo:
    """The registry entry for any accepted spelling; :class:`CRSError` otherwise."""
    if isinstance(text, CRSInfo):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        return _by_epsg(str(text), text)
    if not isinstance(text, str):
        raise _unsupported(text)
    s = text.strip()
    name = re.sub(r"[\s_-]", "", s).upper()
    if name in _ALIASES:
        return REGISTRY[_ALIASES[name]]
    if m := _EPSG.match(s):
        return _by_epsg(m.group(1), text)
    if m := (_URI.match(s) or _URN.match(s)):
        authority, code = m.group(1).upper(), m.group(2)
        if authority == "EPSG" and code.isdigit():
            return _by_epsg(code, text)
        if authority == "OGC" and code.upper() == "CRS84":
            return REGISTRY["OGC:CRS84"]
    raise _unsupported(text)


@lru_cache(maxsize=None)
def _pipeline(src: str, dst: str) -> str:
    """The PROJ pipeline for a CRS pair: choosing it searches proj.db (~0.5 s), once."""
    return pyproj.Transformer.from_crs(src, dst, always_xy=True).definition


_per_thread = threading.local()


def _transformer(src: str, dst: str) -> pyproj.Transformer:
    """This thread's Transformer. A shared pyproj Transformer is rebuilt, as slowly as the
    first time, in every thread that uses it (OGC requests run in a pool of threads); one
    built from the chosen pipeline costs ~1 ms and gives the same numbers."""
    cache = _per_thread.__dict__.setdefault("transformers", {})
    if (src, dst) not in cache:
        cache[src, dst] = pyproj.Transformer.from_pipeline(_pipeline(src, dst))
    return cache[src, dst]


def _pyproj_fn(src: str, dst: str) -> CoordFn:
    _pipeline(src, dst)  # an impossible pair fails here, when the function is made

    def fn(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            # errcheck: raise instead of silently returning inf (NaN still passes).
            return _transformer(src, dst).transform(
                np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), errcheck=True
            )
        except ProjError as e:
            raise CRSError(
                f"coordinates cannot be transformed from {src} to {dst}: {e}; check the "
                "declared CRS and that x is easting/longitude, y northing/latitude"
            ) from None

    return fn


def _identity(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _gcj02_to_storage(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # WGS 84 taken as CGCS2000 (few cm; see module docstring).
    return chinese_offsets.gcj02_to_wgs84(x, y)


def _bd09_to_storage(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return chinese_offsets.bd09_to_wgs84(x, y)


def to_storage(crs: CRSInfo | str) -> CoordFn:
    """``fn(x, y) -> (lon, lat)`` in EPSG:4490, inputs in traditional x/y order."""
    info = resolve_crs(crs)
    if info.key == STORAGE_CRS:
        return _identity
    if info.key == "GCJ02":
        return _gcj02_to_storage
    if info.key == "BD09":
        return _bd09_to_storage
    return _pyproj_fn(info.key, STORAGE_CRS)


def from_storage(crs: CRSInfo | str) -> CoordFn:
    """``fn(lon, lat) -> (x, y)`` from EPSG:4490 to ``crs``, output in x/y order."""
    info = resolve_crs(crs)
    if info.obfuscated:
        # Producing GCJ-02/BD-09 is map publishing territory (GB 20263); we only import.
        raise CRSError(f"{info.key} is accepted as input only; the platform does not produce it")
    if info.key == STORAGE_CRS:
        return _identity
    return _pyproj_fn(STORAGE_CRS, info.key)


def transform_geometry(geom, fn: CoordFn):
    """Apply ``fn`` to x/y of a shapely geometry (or array of them), keeping type and Z.

    Z is passed through untouched: the supported CRSs differ only horizontally.
    """
    if fn is _identity:  # already in the storage CRS: a third of an import's row time
        return geom

    def xy(x, y, z=None):
        nx, ny = fn(x, y)
        return (nx, ny) if z is None else (nx, ny, z)

    return shapely.transform(geom, xy, include_z=None, interleaved=False)


# 3-degree Gauss-Kruger zones over Liaoning -> (EPSG with zone prefix, EPSG without).
# Codes checked against pyproj.CRS.from_epsg(n).name in tests/test_crs.py. Zone 40
# (CM 120E) is listed for callers near the western edge but is not in REGISTRY.
_GK_ZONES = {40: (4528, 4549), 41: (4529, 4550), 42: (4530, 4551)}


def gk_zone_for_lon(lon: float) -> int:
    """3-degree zone number: zone n is centred on 3n degrees E (123E -> 41)."""
    if not math.isfinite(lon) or not -180.0 <= lon <= 180.0:
        raise ValueError(f"longitude out of range: {lon!r}")
    return math.floor((lon + 1.5) / 3.0)


def srid_for_gk_zone(zone: int, with_prefix: bool = True) -> int:
    """EPSG code of CGCS2000 3-degree GK ``zone``; ``with_prefix`` picks the variant whose
    easting starts with the zone number (e.g. 41 579 000 vs 579 000)."""
    try:
        prefixed, plain = _GK_ZONES[zone]
    except KeyError:
        raise CRSError(
            f"3-degree GK zone {zone} is outside the supported zones {sorted(_GK_ZONES)}"
        ) from None
    return prefixed if with_prefix else plain


__all__ = [
    "STORAGE_CRS",
    "STORAGE_SRID",
    "REGISTRY",
    "CRSError",
    "CRSInfo",
    "CoordFn",
    "from_storage",
    "gk_zone_for_lon",
    "resolve_crs",
    "srid_for_gk_zone",
    "to_storage",
    "transform_geometry",
]
