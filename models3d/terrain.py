"""Terrain for CesiumJS: quantized-mesh-1.0 tiles cut on request from the registered DEM.

`GET /3d/terrain/layer.json` describes the terrain of the latest DEM in `city.rasters`
(`datetime=T`: the latest whose time is ≤ T) the way Cesium's `CesiumTerrainProvider`
reads it; `GET /3d/terrain/{z}/{x}/{y}.terrain?v=<version>` is one tile in Cesium's
GeographicTilingScheme (EPSG:4326, two tiles at z0, TMS rows counted from the south).

A tile is a regular 65×65 grid of heights sampled at the tile's own lon/lat grid — the
corners and edges fall exactly on the tile's edges, so neighbours share their edge
vertices — each interpolated (bilinear) at its point in the COG overview that suits the
level (plain rasterio: rio-tiler's `part` warps per tile, 6–270 ms a read here against
4–8 ms, and its samples of a shared edge differ slightly between neighbours),
triangulated (two counter-clockwise triangles per cell) and encoded here per the
quantized-mesh-1.0 specification: header (tile centre, heights, bounding sphere, horizon
occlusion point in ellipsoid-scaled coordinates, computed as Cesium's EllipsoidalOccluder
does), zig-zag delta-coded u/v/height, high-water-mark-coded 16-bit indices (32-bit past
65 536 vertices, aligned), the four edge lists (Cesium hangs its skirts on them) and, when
the client asks for it in `Accept` (`extensions=octvertexnormals`, Cesium's
`requestVertexNormals: true`), oct-encoded vertex normals from central differences over a
one-sample border, so lighting has no seams at tile edges.

Why not the `quantized-mesh-encoder` package (0.5, installs here with numpy 2): it writes
the horizon occlusion point in ECEF metres, where the specification and Cesium want
ellipsoid-scaled coordinates (its PR #74 proposes the fix); it casts positions to float32
before it quantizes them (interior vertices off by up to 12 of the 32 767 steps at z14);
its vertex normals see only the tile's own triangles (lighting seams at tile edges); and
the caller must still put vertices in first-use order. The format is a page of numpy.

Heights are metres above the WGS84 ellipsoid as stored in the DEM (CGCS2000 and WGS84
differ by centimetres; the geoid is not applied). DEM nodata, and everything outside
the DEM, is height 0 — the ellipsoid Cesium shows without terrain. Levels 0..WORLD_LEVELS
are available everywhere (flat where there is no DEM), so whatever Cesium upsamples
outside the city comes from a tile no coarser than ~5.6°; deeper levels, up to a maxzoom
matched to the DEM's resolution (at most MAX_ZOOM), exist over the DEM's bounds only.

Tiles are immutable per DEM registration: the version (`<name>.<created, UTC>`) is in the
tile URL (`?v=`), the ETag and the disk cache path
`<data_dir>/3d-terrain-cache/<version>/<z>/<x>/<y>.terrain` (gzip'd; unbounded, the
folders of DEMs no longer registered are removed when layer.json is served).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from gisplatform.api.responses import TerrainLayer, errors
from gisplatform.errors import problem
from gisplatform.temporal import TemporalError, parse_request_instant
from tiles.raster import Raster, RasterError, file_in, list_rasters, raster_dir

GRID = 65  # samples per tile edge (Cesium's heightmap tiles use 65 too)
MAX_ZOOM = 14
WORLD_LEVELS = 5  # levels 0..5 are served (flat where no DEM) for the whole globe
QUANT = 32767
FORMAT = "qm1"  # part of the ETag: change it when the encoding changes
CACHE_DIR = "3d-terrain-cache"
MEDIA_TYPE = "application/vnd.quantized-mesh"
CORS = {"Access-Control-Allow-Origin": "*"}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"
UNVERSIONED = "public, max-age=300"  # a tile URL without ?v= follows the latest DEM
VERSION_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\.\d{8}T\d{12}Z$")
INT_RE = re.compile(r"^\d{1,9}$")
# The COGs are in EPSG:3857: samples beyond these latitudes are never read (they are 0).
MERCATOR_LAT = 85.0

# WGS84
A = 6378137.0
B = 6356752.314245179
E2 = 1 - (B * B) / (A * A)
RADII = np.array([A, A, B])


# ----------------------------------------------------------------------------- tiling

def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """West, south, east, north (degrees) of a GeographicTilingScheme tile, TMS y."""
    size = 180.0 / (1 << z)
    return -180.0 + x * size, -90.0 + y * size, -180.0 + (x + 1) * size, -90.0 + (y + 1) * size


def tile_exists(z: int, x: int, y: int) -> bool:
    return 0 <= z and 0 <= x < (2 << z) and 0 <= y < (1 << z)


def tile_range(z: int, bounds) -> tuple[int, int, int, int]:
    """startX, startY, endX, endY (TMS, inclusive) of the tiles at Z touching BOUNDS."""
    w, s, e, n = bounds
    size = 180.0 / (1 << z)
    x0 = max(0, math.floor((w + 180.0) / size))
    x1 = min((2 << z) - 1, math.ceil((e + 180.0) / size) - 1)
    y0 = max(0, math.floor((s + 90.0) / size))
    y1 = min((1 << z) - 1, math.ceil((n + 90.0) / size) - 1)
    return x0, y0, max(x0, x1), max(y0, y1)


def maxzoom_for(raster: Raster) -> int:
    """The first level whose sample spacing is no coarser than the DEM's pixels (finer
    levels would only interpolate), within WORLD_LEVELS..MAX_ZOOM."""
    w, s, e, n = raster.bounds
    pixel = min((e - w) / max(1, raster.width), (n - s) / max(1, raster.height))  # degrees
    if pixel <= 0:
        return MAX_ZOOM
    z = math.ceil(math.log2(180.0 / ((GRID - 1) * pixel)))
    return max(WORLD_LEVELS, min(MAX_ZOOM, z))


def availability(bounds, maxzoom: int) -> list[list[dict]]:
    out = []
    for z in range(maxzoom + 1):
        if z <= WORLD_LEVELS:
            x0, y0, x1, y1 = 0, 0, (2 << z) - 1, (1 << z) - 1
        else:
            x0, y0, x1, y1 = tile_range(z, bounds)
        out.append([{"startX": x0, "startY": y0, "endX": x1, "endY": y1}])
    return out


def version_of(raster: Raster) -> str:
    """`<name>.<registration time, UTC, µs>Z`: a `raster add --replace` makes a new one."""
    created = (raster.created or raster.at).astimezone(UTC)
    return f"{raster.name}.{created:%Y%m%dT%H%M%S%f}Z"


def layer_json(raster: Raster, public_url: str = "") -> dict:
    maxzoom = maxzoom_for(raster)
    version = version_of(raster)
    return {
        "tilejson": "2.1.0",
        "name": raster.name,
        "description": f"Terrain from the DEM {raster.name!r} ({raster.at.isoformat()}), "
                       "heights in metres above the WGS84 ellipsoid; 0 where there is no DEM",
        "version": version,  # Cesium puts it in the tile URLs' {version}
        "format": "quantized-mesh-1.0",
        "attribution": "",
        "scheme": "tms",
        "projection": "EPSG:4326",
        "tiles": ["{z}/{x}/{y}.terrain?v={version}"],
        "minzoom": 0,
        "maxzoom": maxzoom,
        "bounds": [round(v, 7) for v in raster.bounds],
        "available": availability(raster.bounds, maxzoom),
        "extensions": ["octvertexnormals"],
    }


# ----------------------------------------------------------------------------- heights

def sample_grid(tile, n: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes of the tile's samples plus a one-sample border:
    index k ↔ tile edge + (k - 1) · spacing, k = 0 … n + 1 (1 and n are the tile edges)."""
    w, s, e, _ = tile
    d = (e - w) / (n - 1)
    k = np.arange(n + 2) - 1
    return w + k * d, s + k * d


def read_heights(path: Path, tile, dem_bounds, n: int = GRID) -> np.ndarray:
    """Heights (m) at the tile's samples with the border: shape (n + 2, n + 2), rows from
    south to north, columns west to east; 0 where the DEM has no data or does not reach.

    Each sample is interpolated bilinearly at its own point (EPSG:3857 coordinates) in the
    coarsest overview of the COG whose pixels are still no larger than the sample spacing
    (or the full resolution): overviews are averages, so a coarse tile is not aliased.
    Neighbouring tiles at one level sample their shared edge at the same points in the
    same overview: equal heights, no seams. Only samples within one spacing of the DEM's
    bounds are read (the rest is 0), so tiles at z0–2 never ask Web Mercator for the
    poles."""
    import rasterio
    from rasterio.windows import Window

    out = np.zeros((n + 2, n + 2))
    lons, lats = sample_grid(tile, n)
    d = lons[1] - lons[0]
    bw, bs, be, bn = dem_bounds
    cols = np.nonzero((lons >= bw - d) & (lons <= be + d))[0]
    rows = np.nonzero((lats >= max(bs - d, -MERCATOR_LAT)) & (lats <= min(bn + d, MERCATOR_LAT)))[0]
    if not len(cols) or not len(rows):
        return out
    i0, i1, j0, j1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
    mx = A * np.radians(lons[i0:i1 + 1])
    my = A * np.log(np.tan(np.pi / 4 + np.radians(lats[j0:j1 + 1]) / 2))
    # sample spacing in Mercator metres: east-west (north-south it is 1/cos(lat) more)
    spacing = A * math.radians(d)
    with rasterio.open(path) as src:
        level = None
        for k, factor in enumerate(src.overviews(1)):
            if abs(src.res[0]) * factor <= spacing:
                level = k
        ds = src if level is None else rasterio.open(path, overview_level=level)
        try:
            t = ds.transform
            fc = (mx - t.c) / t.a - 0.5  # fractional pixel column / row of each sample
            fr = (my - t.f) / t.e - 0.5
            c0, c1 = max(0, math.floor(fc.min())), min(ds.width - 1, math.floor(fc.max()) + 1)
            r0, r1 = max(0, math.floor(fr.min())), min(ds.height - 1, math.floor(fr.max()) + 1)
            if c0 > c1 or r0 > r1:
                return out
            block = ds.read(1, window=Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1), masked=True)
        finally:
            if ds is not src:
                ds.close()
    grid = np.ma.filled(block.astype("float64"), np.nan)
    grid[~np.isfinite(grid)] = np.nan
    col, row = np.meshgrid(fc - c0, fr - r0)  # (samples north-south, samples west-east)
    cf, rf = np.floor(col), np.floor(row)
    ax, ay = col - cf, row - rf
    total, weight = np.zeros(col.shape), np.zeros(col.shape)
    for dr in (0, 1):
        for dc in (0, 1):
            rr, cc = (rf + dr).astype(np.int64), (cf + dc).astype(np.int64)
            inside = (rr >= 0) & (rr < grid.shape[0]) & (cc >= 0) & (cc < grid.shape[1])
            value = grid[np.clip(rr, 0, grid.shape[0] - 1), np.clip(cc, 0, grid.shape[1] - 1)]
            ok = inside & np.isfinite(value)
            wgt = (ax if dc else 1 - ax) * (ay if dr else 1 - ay) * ok
            total += wgt * np.where(ok, value, 0.0)
            weight += wgt
    # nodata neighbours are left out (weights renormalised); none valid: 0 (the ellipsoid)
    with np.errstate(invalid="ignore", divide="ignore"):
        heights = np.where(weight > 1e-9, total / weight, 0.0)
    out[j0:j1 + 1, i0:i1 + 1] = heights
    return out


# ----------------------------------------------------------------------------- encoding

def to_ecef(lon, lat, h) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    sin_lat, cos_lat = np.sin(lat), np.cos(lat)
    nu = A / np.sqrt(1 - E2 * sin_lat ** 2)
    return np.stack([(nu + h) * cos_lat * np.cos(lon), (nu + h) * cos_lat * np.sin(lon),
                     (nu * (1 - E2) + h) * sin_lat], axis=-1)


def surface_normal(lon, lat) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def horizon_occlusion_point(ecef: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cesium's EllipsoidalOccluder.computeHorizonCullingPoint: the point (ellipsoid-scaled
    space) along DIRECTION that is below the horizon only when every position is. NaN when
    none exists (a hemisphere-sized tile): Cesium then never culls the tile by horizon."""
    d = direction / RADII
    norm = np.linalg.norm(d)
    if not norm:
        return np.full(3, np.nan)
    d = d / norm
    p = ecef / RADII
    m2 = np.einsum("ij,ij->i", p, p)
    m = np.sqrt(m2)
    unit = p / m[:, None]
    m2, m = np.maximum(m2, 1.0), np.maximum(m, 1.0)  # below the ellipsoid counts as on it
    cos_a = unit @ d
    sin_a = np.linalg.norm(np.cross(unit, d), axis=1)
    cos_b = 1.0 / m
    sin_b = np.sqrt(m2 - 1.0) * cos_b
    denom = cos_a * cos_b - sin_a * sin_b
    if (denom <= 0).any():
        return np.full(3, np.nan)
    magnitude = float((1.0 / denom).max())
    if not math.isfinite(magnitude) or magnitude <= 0:
        return np.full(3, np.nan)
    return d * magnitude


def oct_encode(normals: np.ndarray) -> np.ndarray:
    """Cesium's AttributeCompression.octEncode: unit vectors → 2 bytes each."""
    n = normals / np.abs(normals).sum(axis=1)[:, None]
    x, y = n[:, 0].copy(), n[:, 1].copy()
    below = n[:, 2] < 0
    sx, sy = np.where(x < 0, -1.0, 1.0), np.where(y < 0, -1.0, 1.0)
    x[below], y[below] = ((1 - np.abs(n[below, 1])) * sx[below],
                          (1 - np.abs(n[below, 0])) * sy[below])
    xy = np.stack([x, y], axis=1)
    return np.rint((np.clip(xy, -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8)  # toSNorm


def _zigzag_delta(values: np.ndarray) -> bytes:
    delta = np.diff(values.astype(np.int32), prepend=0)
    return (((delta << 1) ^ (delta >> 31)) & 0xFFFF).astype("<u2").tobytes()


def _grid_triangles(n: int) -> np.ndarray:
    """Two counter-clockwise triangles (seen from above: u east, v north) per cell of an
    n × n grid whose vertex id is row · n + column, rows from the south."""
    j, i = np.mgrid[0:n - 1, 0:n - 1]
    a = (j * n + i).ravel()
    b, c, d = a + 1, a + n, a + n + 1  # east, north, north-east of a
    return np.stack([np.stack([a, b, d], 1), np.stack([a, d, c], 1)], 1).reshape(-1, 3)


def encode_tile(heights: np.ndarray, tile, normals: bool = False) -> bytes:
    """A quantized-mesh-1.0 tile from HEIGHTS as `read_heights` returns them (with the
    one-sample border, which only the normals use)."""
    n = heights.shape[0] - 2
    w, s, e, nn = tile
    h = heights[1:-1, 1:-1].ravel()
    q = np.rint(np.arange(n) * QUANT / (n - 1)).astype(np.int64)
    v_grid, u_grid = np.meshgrid(q, q, indexing="ij")
    u, v = u_grid.ravel(), v_grid.ravel()

    # heights: float32 bounds in the header, quantized against exactly those
    lo, hi = np.float32(h.min()), np.float32(h.max())
    if lo > h.min():
        lo = np.nextafter(lo, np.float32(-np.inf))
    if hi < h.max():
        hi = np.nextafter(hi, np.float32(np.inf))
    span = float(hi) - float(lo)
    hq = (np.clip(np.rint((h - float(lo)) / span * QUANT), 0, QUANT).astype(np.int64)
          if span > 0 else np.zeros(h.shape, np.int64))

    # vertices in order of first use, as high-water-mark coding requires
    tri = _grid_triangles(n)
    uniq, first = np.unique(tri.ravel(), return_index=True)
    order = uniq[np.argsort(first, kind="stable")]
    remap = np.empty(n * n, np.int64)
    remap[order] = np.arange(order.size)
    tri = remap[tri]
    u, v, hq = u[order], v[order], hq[order]

    # what Cesium will reconstruct, in ECEF: bounding sphere, centre, occlusion point
    lon = w + u / QUANT * (e - w)
    lat = s + v / QUANT * (nn - s)
    hd = float(lo) + hq / QUANT * span
    ecef = to_ecef(lon, lat, hd)
    centre = (ecef.min(axis=0) + ecef.max(axis=0)) / 2
    radius = float(np.sqrt(((ecef - centre) ** 2).sum(axis=1).max()))
    hop = horizon_occlusion_point(ecef, centre)

    count = order.size
    out = bytearray(struct.pack("<3d2f4d3d", *centre, lo, hi, *centre, radius, *hop))
    out += struct.pack("<I", count)
    out += _zigzag_delta(u) + _zigzag_delta(v) + _zigzag_delta(hq)

    wide = count > 65536
    index_type = "<u4" if wide else "<u2"
    align = 4 if wide else 2
    out += bytes(-len(out) % align)
    flat = tri.ravel()
    highest = np.concatenate([[0], np.maximum.accumulate(flat)[:-1] + 1])
    out += struct.pack("<I", len(tri)) + (highest - flat).astype(index_type).tobytes()

    for edge, along in ((u == 0, v), (v == 0, u), (u == QUANT, v), (v == QUANT, u)):
        ids = np.nonzero(edge)[0]
        ids = ids[np.argsort(along[ids], kind="stable")]
        out += struct.pack("<I", ids.size) + ids.astype(index_type).tobytes()

    if normals:
        enc = oct_encode(_vertex_normals(heights, tile)[order])
        out += struct.pack("<BI", 1, enc.nbytes) + enc.tobytes()
    return bytes(out)


def _vertex_normals(heights: np.ndarray, tile) -> np.ndarray:
    """Unit normals (ECEF) at the tile's samples from central differences over the border
    samples; the ellipsoid's normal where that is degenerate (at the poles)."""
    n = heights.shape[0] - 2
    lons, lats = sample_grid(tile, n)
    lon, lat = np.meshgrid(lons, lats)
    p = to_ecef(lon, lat, heights)
    east = p[1:-1, 2:] - p[1:-1, :-2]
    north = p[2:, 1:-1] - p[:-2, 1:-1]
    normal = np.cross(east, north).reshape(-1, 3)
    length = np.linalg.norm(normal, axis=1)
    up = surface_normal(lon[1:-1, 1:-1], lat[1:-1, 1:-1]).reshape(-1, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        normal = normal / length[:, None]
    bad = ~np.isfinite(normal).all(axis=1) | (np.einsum("ij,ij->i", normal, up) < 0.05)
    normal[bad] = up[bad]
    return normal


def build_tile(path: Path | None, dem_bounds, z: int, x: int, y: int,
               normals: bool = False) -> bytes:
    """The encoded tile (not compressed); PATH None = flat (no DEM)."""
    tile = tile_bounds(z, x, y)
    if path is None:
        heights = np.zeros((GRID + 2, GRID + 2))
    else:
        heights = read_heights(path, tile, dem_bounds)
    return encode_tile(heights, tile, normals)


# ----------------------------------------------------------------------------- HTTP


def _not_modified(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match")
    if not given:
        return False
    tags = {t.strip().removeprefix("W/") for t in given.split(",")}
    return etag in tags or "*" in tags


def _latest(dems: list[Raster], at: datetime | None) -> Raster | None:
    found = [r for r in dems if at is None or r.at <= at]
    if not found:
        return None
    return max(found, key=lambda r: (r.at, r.created or r.at, r.name))


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(data)
        os.replace(part, path)
    except OSError:  # a full disk or a pruned folder: serve it uncached
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass


def terrain_router(connect: Callable[[], object], data_dir: Path, public_url: str) -> APIRouter:
    """`/3d/terrain/…`. `connect()` gives a (pooled, sync) psycopg connection context
    manager to read `city.rasters`. Include it before the `/3d/{name}/…` routes."""
    router = APIRouter(prefix="/3d/terrain", tags=["3D terrain"],
                       responses=errors(401))  # 401: an unknown token
    data_dir = Path(data_dir)
    cache_root = data_dir / CACHE_DIR

    def no_dem(at: datetime | None = None) -> str:
        when = f" with a time at or before {at.isoformat()}" if at else ""
        return (f"no DEM is registered{when} (`gisplatform raster add FILE --kind dem …`; "
                f"see {public_url}/raster/); a viewer shows the WGS84 ellipsoid without terrain")

    def dems() -> list[Raster]:
        with connect() as conn:
            return list_rasters(conn, kind="dem")

    def parse_at(value: str | None):
        if value is None:
            return None
        return parse_request_instant(value)

    def prune(keep: set[str]) -> None:
        """Remove cached tiles of DEM registrations that are gone (best effort)."""
        try:
            stale = [p for p in cache_root.iterdir() if p.is_dir() and p.name not in keep]
        except OSError:
            return
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)

    @router.get("/layer.json", summary="Cesium terrain layer (quantized-mesh-1.0)",
                responses={200: {"model": TerrainLayer}, **errors(400, 404)})
    def layer(request: Request,
              datetime_: str | None = Query(None, alias="datetime",
                                            description="the latest DEM whose time ≤ this "
                                                        "(default: the latest)")):
        try:
            at = parse_at(datetime_)
        except TemporalError as e:
            return problem(400, f"datetime: {e}", headers=CORS)
        registered = dems()
        raster = _latest(registered, at)
        if raster is None:
            return problem(404, no_dem(at), headers=CORS)
        prune({version_of(r) for r in registered})
        body = json.dumps(layer_json(raster, public_url), separators=(",", ":")).encode()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {**CORS, "ETag": etag, "Cache-Control": REVALIDATE,
                   "X-Raster-Name": raster.name}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @router.get("/{z}/{x}/{y}.terrain", summary="A quantized-mesh-1.0 terrain tile",
                response_class=Response,
                responses={200: {"content": {MEDIA_TYPE: {}}}, **errors(400, 404)})
    def tile(request: Request, z: str, x: str, y: str,
             v: str | None = Query(None, description="the terrain version from layer.json"),
             datetime_: str | None = Query(None, alias="datetime",
                                           description="without v: the latest DEM ≤ this")):
        if not (INT_RE.match(z) and INT_RE.match(x) and INT_RE.match(y)):
            return problem(404, "a terrain tile is /3d/terrain/{z}/{x}/{y}.terrain "
                           "with non-negative integers", headers=CORS)
        zi, xi, yi = int(z), int(x), int(y)
        if zi > MAX_ZOOM or not tile_exists(zi, xi, yi):
            return problem(404, f"no tile {z}/{x}/{y} in the geographic tiling "
                           "scheme (2 tiles at z0, TMS rows from the south)", headers=CORS)
        if v is not None:
            if not VERSION_RE.match(v):
                return problem(404, f"terrain version {v!r} is malformed", headers=CORS)
            raster = next((r for r in dems() if version_of(r) == v), None)
            if raster is None:
                return problem(404, f"terrain version {v!r} is not registered "
                               "(the DEM was replaced or removed); reload "
                               "layer.json", headers=CORS)
        else:
            try:
                at = parse_at(datetime_)
            except TemporalError as e:
                return problem(400, f"datetime: {e}", headers=CORS)
            raster = _latest(dems(), at)
            if raster is None:
                return problem(404, no_dem(at), headers=CORS)
        if zi > maxzoom_for(raster):
            return problem(404, f"terrain goes to z{maxzoom_for(raster)} (see "
                           "layer.json); Cesium upsamples beyond", headers=CORS)
        version = version_of(raster)
        normals = "octvertexnormals" in request.headers.get("accept", "")
        suffix = "-n" if normals else ""
        etag = f'"{FORMAT}-{version}-{zi}-{xi}-{yi}{suffix}"'
        headers = {**CORS, "ETag": etag, "Vary": "Accept, Accept-Encoding",
                   "Cache-Control": IMMUTABLE if v is not None else UNVERSIONED,
                   "X-Raster-Name": raster.name}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)

        cached = cache_root / version / str(zi) / str(xi) / f"{yi}{suffix}.terrain"
        try:
            packed = cached.read_bytes()
            headers["X-Cache"] = "hit"
        except OSError:
            tb = tile_bounds(zi, xi, yi)
            w, s, e, n = raster.bounds
            inside = tb[0] <= e and tb[2] >= w and tb[1] <= n and tb[3] >= s
            path = None
            if inside:
                try:
                    path = file_in(raster_dir(data_dir), raster.path)
                except RasterError:
                    return problem(404, f"DEM {raster.name!r} has no usable file", headers=CORS)
                if not path.is_file():
                    return problem(500, f"DEM {raster.name!r} is registered "
                                   "but its file is missing", headers=CORS)
            packed = gzip.compress(build_tile(path, raster.bounds, zi, xi, yi, normals),
                                   compresslevel=6, mtime=0)
            _write_atomic(cached, packed)
            headers["X-Cache"] = "miss"
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = packed
        else:
            body = gzip.decompress(packed)
        return Response(body, media_type=MEDIA_TYPE, headers=headers)

    @router.get("/{rest:path}", include_in_schema=False)
    def other(rest: str):
        if rest == "":
            return JSONResponse({"layer": f"{public_url}/3d/terrain/layer.json",
                                 "tiles": f"{public_url}/3d/terrain/{{z}}/{{x}}/{{y}}.terrain",
                                 "format": "quantized-mesh-1.0"}, headers=CORS)
        return problem(404, f"no /3d/terrain/{rest}; the terrain is "
                       "/3d/terrain/layer.json and its tiles", headers=CORS)

    return router
