"""Raster registry and COG conversion: what `gisplatform raster add` does and /raster reads.

titiler reads only what is registered here (by name; see `tiles.raster_routes`), so every
raster goes through one door: `add_raster` checks it, converts it to a Cloud Optimized
GeoTIFF under `<data_dir>/rasters` and records it in `city.rasters` — or leaves nothing
behind (no row, no file) when anything fails.

CRS choice: every COG is stored in EPSG:3857. The platform serves raster tiles in
WebMercatorQuad (the viewer, MapLibre, QGIS XYZ): with the COG in the tile grid's own CRS a
tile is a windowed read of the right overview, whereas a CGCS2000 / Gauss-Krüger COG would
be warped again on every tile request. The cost is one resampling at import, at about the
source's resolution (GDAL's default warp size keeps the pixel count), and a COG that is
not in the city's storage CRS — the registry keeps the bounds in EPSG:4490 like every layer.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from gisplatform.temporal import TemporalError, parse_instant

KINDS = ("ortho", "dem")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RESERVED = KINDS  # /raster/ortho/… and /raster/dem/… are the time series
STORE_CRS = "EPSG:3857"
RASTER_DIR = "rasters"
# COG file names: <name>.<random>.tif, a fresh one per registration (see add_raster)
FILE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*\.tif$")

COLUMNS = ("name, kind, at, st_xmin(bounds), st_ymin(bounds), st_xmax(bounds), st_ymax(bounds),"
           " crs, path, width, height, bands, dtype, created")


class RasterError(Exception):
    """A raster refused, with a message a user can act on."""


@dataclass(frozen=True)
class Raster:
    name: str
    kind: str
    at: datetime
    bounds: tuple[float, float, float, float]  # lon/lat (EPSG:4490), minx miny maxx maxy
    crs: str
    path: str  # file name inside the raster directory
    width: int
    height: int
    bands: int
    dtype: str
    created: datetime | None = None

    @classmethod
    def from_row(cls, row) -> Raster:
        name, kind, at, x0, y0, x1, y1, crs, path, w, h, b, dtype, created = row
        return cls(name, kind, at, (x0, y0, x1, y1), crs, path, w, h, b, dtype, created)


def raster_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RASTER_DIR


def file_in(root: Path, file_name: str) -> Path:
    """The registered file inside `root`; anything that is not a plain file name there
    (a path, `..`, a URL) is refused, whatever the database holds."""
    if not FILE_RE.fullmatch(file_name or "") or ".." in file_name:
        raise RasterError(f"registered path {file_name!r} is not a file name")
    root = Path(root).resolve()
    path = (root / file_name).resolve()
    if path.parent != root:
        raise RasterError(f"registered path {file_name!r} leaves the raster directory")
    return path


# ----------------------------------------------------------------------------- checks

def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RasterError(f"name {name!r} must match ^[a-z0-9][a-z0-9_-]{{0,62}}$ "
                          "(lower-case letters, digits, _ and -)")
    if name in RESERVED:
        raise RasterError(f"name {name!r} is reserved for the /raster/{name}/ time series")
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise RasterError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def check_time(at: str | datetime) -> datetime:
    try:
        return parse_instant(at)
    except TemporalError as e:
        raise RasterError(str(e)) from None


# ----------------------------------------------------------------------------- registry

# Each function below runs in `conn.transaction()`: on an idle connection that is its own
# transaction, committed on return (files are deleted only after the row is gone).

def list_rasters(conn: psycopg.Connection, kind: str | None = None) -> list[Raster]:
    with conn.transaction():
        rows = conn.execute(f"select {COLUMNS} from city.rasters where %(kind)s::text is null"
                            " or kind = %(kind)s order by kind, at, name", {"kind": kind}).fetchall()
    return [Raster.from_row(r) for r in rows]


def get_raster(conn: psycopg.Connection, name: str) -> Raster | None:
    with conn.transaction():
        row = conn.execute(f"select {COLUMNS} from city.rasters where name = %s",
                           (name,)).fetchone()
    return Raster.from_row(row) if row else None


def remove_raster(conn: psycopg.Connection, name: str, data_dir: Path) -> Raster:
    """Unregister NAME and delete its COG (the row first: a reader never meets a
    registered name without its file)."""
    with conn.transaction():
        row = conn.execute(f"delete from city.rasters where name = %s returning {COLUMNS}",
                           (name,)).fetchone()
    if row is None:
        raise RasterError(f"no raster named {name!r} (see `gisplatform raster list`)")
    raster = Raster.from_row(row)
    _unlink(raster_dir(data_dir), raster.path)
    return raster


def _unlink(root: Path, file_name: str) -> None:
    try:
        file_in(root, file_name).unlink(missing_ok=True)
    except RasterError:
        pass  # never delete outside the raster directory


# ----------------------------------------------------------------------------- conversion

def add_raster(conn: psycopg.Connection, source, *, name: str, kind: str, at: str | datetime,
               data_dir: Path, area: tuple[float, float, float, float] | None = None,
               replace: bool = False,
               status: Callable[[str], None] = lambda msg: None) -> Raster:
    """Check SOURCE (a path, or an open rasterio dataset), convert it to a COG in
    EPSG:3857 under `<data_dir>/rasters` and register it as NAME. `area`: the city's
    bbox in EPSG:4490, which the raster must overlap (None: anywhere). All or nothing:
    on any failure no row is written and no file is left. CONN should be idle (or in
    autocommit): the registration commits before a replaced COG is deleted."""
    import rasterio
    from rasterio.errors import RasterioIOError

    name, kind, at = check_name(name), check_kind(kind), check_time(at)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise RasterError(f"{path}: no such file")
        if not path.is_file():
            raise RasterError(f"{path}: not a file")
    if not replace and get_raster(conn, name) is not None:
        raise RasterError(f"a raster named {name!r} exists; use --replace to replace it")

    root = raster_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    file_name = f"{name}.{secrets.token_hex(4)}.tif"
    part = root / f".{file_name}.part"
    final = root / file_name
    try:
        if isinstance(source, (str, os.PathLike)):
            try:
                src = rasterio.open(source)
            except RasterioIOError:
                raise RasterError(f"{source}: not a raster GDAL can read") from None
            with src:
                meta = _to_cog(src, part, kind, area, status)
        else:
            meta = _to_cog(source, part, kind, area, status)
        os.replace(part, final)
        status("registering")
        raster = Raster(name, kind, at, meta["bounds"], STORE_CRS, file_name, meta["width"],
                        meta["height"], meta["bands"], meta["dtype"])
        with conn.transaction():
            old = conn.execute("select path from city.rasters where name = %s for update",
                               (name,)).fetchone()
            if old is not None and not replace:
                raise RasterError(f"a raster named {name!r} exists; use --replace to replace it")
            if old is not None:
                conn.execute("delete from city.rasters where name = %s", (name,))
            try:
                conn.execute(
                    "insert into city.rasters (name, kind, at, bounds, crs, path, width,"
                    " height, bands, dtype) values (%s, %s, %s,"
                    " st_makeenvelope(%s, %s, %s, %s, 4490), %s, %s, %s, %s, %s, %s)",
                    (name, kind, at, *raster.bounds, raster.crs, file_name, raster.width,
                     raster.height, raster.bands, raster.dtype))
            except psycopg.errors.UniqueViolation:  # another `raster add` got there first
                raise RasterError(f"a raster named {name!r} was registered meanwhile; "
                                  "use --replace to replace it") from None
    except BaseException:
        part.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise
    if old is not None and old[0] != file_name:
        _unlink(root, old[0])
    return get_raster(conn, name)


def _to_cog(src, dst: Path, kind: str, area, status: Callable[[str], None]) -> dict:
    """Write SRC as a validated COG in EPSG:3857 at DST; returns what the registry keeps."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.errors import CRSError
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform, transform_bounds
    from rio_cogeo.cogeo import cog_translate, cog_validate
    from rio_cogeo.profiles import cog_profiles

    where = getattr(src, "name", "the raster")
    if src.crs is None:
        raise RasterError(f"{where}: has no CRS; set one first (gdal_edit.py -a_srs EPSG:…)")
    if src.transform.is_identity and not src.gcps[0]:
        raise RasterError(f"{where}: is not georeferenced (no geotransform)")
    alpha = [i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha]
    data_bands = [i for i in src.indexes if i not in alpha]
    if kind == "dem" and len(data_bands) != 1:
        raise RasterError(f"{where}: a DEM has one band (heights), this has {len(data_bands)}")
    try:
        lonlat = transform_bounds(src.crs, "EPSG:4490", *src.bounds, densify_pts=21)
    except (CRSError, ValueError) as e:  # PROJ refuses: no way from this CRS to the globe
        raise RasterError(f"{where}: cannot transform its bounds to EPSG:4490 ({e})") from None
    x0, y0, x1, y1 = area or (-180, -90, 180, 90)
    if not (lonlat[0] < x1 and lonlat[2] > x0 and lonlat[1] < y1 and lonlat[3] > y0):
        raise RasterError(f"{where}: lies outside the city ({', '.join(f'{v:.4f}' for v in lonlat)}"
                          f" in EPSG:4490; the city is {', '.join(map(str, area))})")

    dtype = src.dtypes[data_bands[0] - 1]
    rgb = kind == "ortho" and dtype == "uint8" and len(data_bands) == 3
    if rgb:
        profile = cog_profiles.get("jpeg")
        profile.update(jpeg_quality=85)
    else:
        profile = cog_profiles.get("deflate")
        profile.update(predictor=3 if dtype.startswith("float") else 2)
    nodata = src.nodata
    # Outside the source (corners after reprojection) must read as "no data", never as 0 m
    # or black: a DEM keeps / gets a nodata value, an image gets an internal mask.
    if kind == "dem" and nodata is None:
        nodata = -9999.0 if dtype.startswith("float") else _int_nodata(dtype)
    add_mask = nodata is None
    resampling = Resampling.bilinear
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        if src.crs == CRS.from_string(STORE_CRS):
            source, vrt = src, None
        else:
            status(f"reprojecting {src.crs.to_string()} → {STORE_CRS}")
            transform, width, height = calculate_default_transform(
                src.crs, STORE_CRS, src.width, src.height, *src.bounds)
            params = {"crs": STORE_CRS, "transform": transform, "width": width,
                      "height": height, "resampling": resampling}
            if nodata is not None:
                params.update(nodata=nodata, src_nodata=src.nodata)
            elif not alpha:
                params.update(add_alpha=True)
            vrt = source = WarpedVRT(src, **params)
        try:
            status(f"writing a COG ({'JPEG' if rgb else 'DEFLATE'}, overviews)")
            cog_translate(source, str(dst), profile, indexes=data_bands, nodata=nodata,
                          add_mask=add_mask, overview_resampling="average",
                          resampling=resampling.name, quiet=True, in_memory=False,
                          config={"GDAL_NUM_THREADS": "ALL_CPUS"})
        finally:
            if vrt is not None:
                vrt.close()
    status("validating")
    valid, errors, _ = cog_validate(str(dst), quiet=True)
    if not valid:
        raise RasterError(f"{where}: the COG written is not valid: {'; '.join(errors)}")
    with rasterio.open(dst) as cog:
        return {"bounds": tuple(float(v) for v in lonlat), "width": cog.width,
                "height": cog.height, "bands": cog.count, "dtype": cog.dtypes[0]}


def _int_nodata(dtype: str) -> int:
    import numpy as np

    info = np.iinfo(dtype)
    return int(info.min) if info.min < 0 else int(info.max)
