"""Demo rasters: an orthophoto per year (2018, 2019, 2020) and a DEM of the municipality.

Real imagery cannot ship with the repository, and the time series needs years that differ
the way the city did: each year's ortho is drawn from the building footprints valid at
mid-year in `city.buildings_version` (built, renovated and demolished as the demo city
was), over fields, the Hun River and roads, with the sites of next year's buildings as
bare earth. The DEM is smooth deterministic terrain: the Hun River valley at about 80 m,
rising to about 1000 m in the east. Everything is drawn straight in EPSG:3857 (the store
CRS, so registration is a plain COG translation) from fixed seeds: same database, same
pixels. Both go through `tiles.raster.add_raster`, the door `gisplatform raster add` uses.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from gisplatform.db.connections import connect
from gisplatform.temporal import BEIJING_TIME
from layers.fushun import CITY_BBOX, DIVISIONS, URBAN_BBOX

from .raster import add_raster, get_raster

YEARS = (2018, 2019, 2020)
DEM_NAME = "dem-fushun"
DEM_TIME = datetime(2018, 1, 1, tzinfo=BEIJING_TIME)
SEED = 42
# ground metres per pixel (at the city's latitude)
RESOLUTION = {"small": {"ortho": 10.0, "dem": 90.0}, "city": {"ortho": 4.0, "dem": 30.0}}

# The Hun River (浑河) through the urban plain, upstream towards Qingyuan: lon, lat.
HUN_RIVER = ((123.60, 41.838), (123.72, 41.842), (123.82, 41.858), (123.90, 41.871),
             (123.98, 41.868), (124.06, 41.882), (124.15, 41.902), (124.24, 41.915),
             (124.34, 41.935), (124.50, 41.985), (124.70, 42.040), (124.92, 42.100),
             (125.15, 42.190), (125.55, 42.300))
# Arterial roads (lon, lat polylines) and the year each opened: the later ones are what
# makes the years differ outside the built-up blocks.
ROADS = (
    (2000, ((123.65, 41.900), (124.30, 41.905))),
    (2000, ((123.65, 41.830), (124.30, 41.845))),
    (2000, ((123.78, 41.78), (123.79, 41.98))),
    (2000, ((123.90, 41.78), (123.905, 41.98))),
    (2000, ((124.03, 41.78), (124.02, 41.98))),
    (2000, ((123.65, 41.862), (123.86, 41.866), (123.95, 41.879), (124.30, 41.874))),
    (2019, ((123.70, 41.80), (123.84, 41.815), (123.98, 41.815), (124.12, 41.84),
            (124.18, 41.90), (124.12, 41.95), (123.95, 41.962), (123.78, 41.955),
            (123.70, 41.93))),  # the ring road, opened 2019
    (2020, ((124.10, 41.78), (124.12, 41.87), (124.16, 41.98))),  # the eastern link, 2020
    (2020, ((123.96, 41.84), (123.965, 41.90))),  # a new bridge over the Hun, 2020
)
ROOFS = {  # by use: a few roof colours each (RGB)
    "residential": ((168, 82, 64), (150, 150, 158), (190, 110, 80), (120, 130, 150)),
    "commercial": ((200, 200, 205), (170, 180, 190), (215, 210, 195)),
    "office": ((185, 195, 205), (150, 165, 180)),
    "industrial": ((70, 110, 160), (95, 130, 170), (160, 160, 150)),
    "public": ((90, 140, 110), (200, 170, 120)),
    "mixed": ((175, 150, 130), (160, 160, 160)),
}
CROPS = ((120, 150, 70), (96, 128, 58), (196, 178, 104), (150, 118, 84), (136, 160, 88))
# Each flight differs a little (sun, sensor, season): a colour cast per year.
CAST = {2018: (1.06, 1.0, 0.92), 2019: (0.95, 1.0, 1.05), 2020: (1.0, 1.03, 0.97)}


def add_demo_rasters(conn_url_or_conn, data_dir: Path, size: str = "small",
                     replace: bool = False,
                     on_raster: Callable[[str, float], None] = lambda name, secs: None
                     ) -> list[str]:
    """Render and register the demo orthophotos (`ortho-2018` …) and `dem-fushun`.
    Names already registered are kept unless REPLACE. Returns the names added."""
    from rasterio.enums import ColorInterp
    from rasterio.io import MemoryFile

    if size not in RESOLUTION:
        raise ValueError(f"size is one of {', '.join(RESOLUTION)}")
    own = isinstance(conn_url_or_conn, str)
    conn = connect(conn_url_or_conn, "gisplatform-demo", autocommit=True) if own else conn_url_or_conn
    added = []
    try:
        jobs = [(f"ortho-{y}", "ortho", datetime(y, 7, 1, tzinfo=BEIJING_TIME),
                 lambda y=y: _ortho(conn, y, RESOLUTION[size]["ortho"])) for y in YEARS]
        jobs.append((DEM_NAME, "dem", DEM_TIME, lambda: _dem(RESOLUTION[size]["dem"])))
        for name, kind, at, render in jobs:
            if not replace and get_raster(conn, name) is not None:
                continue
            t = time.perf_counter()
            data, transform = render()
            profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
                       "count": data.shape[0], "dtype": data.dtype.name, "crs": "EPSG:3857",
                       "transform": transform}
            with MemoryFile() as mem:
                with mem.open(**profile) as ds:
                    ds.write(data)
                    if kind == "ortho":
                        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
                del data
                with mem.open() as ds:
                    add_raster(conn, ds, name=name, kind=kind, at=at, data_dir=data_dir,
                               area=CITY_BBOX, replace=replace)
            added.append(name)
            on_raster(name, time.perf_counter() - t)
    finally:
        if own:
            conn.close()
    return added


# ----------------------------------------------------------------------------- the grid

def _grid(bbox, ground_m: float):
    """EPSG:3857 transform and shape covering a lon/lat bbox at GROUND_M metres/pixel."""
    from pyproj import Transformer
    from rasterio.transform import from_origin

    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x0, y0 = to_merc.transform(bbox[0], bbox[1])
    x1, y1 = to_merc.transform(bbox[2], bbox[3])
    res = ground_m / math.cos(math.radians((bbox[1] + bbox[3]) / 2))  # Mercator stretch
    w, h = math.ceil((x1 - x0) / res), math.ceil((y1 - y0) / res)
    return from_origin(x0, y1, res, res), (h, w), to_merc


def _upsample(coarse: np.ndarray, shape) -> np.ndarray:
    """Catmull-Rom interpolation of a coarse grid to SHAPE, as two small matrix products:
    the slope is continuous and follows the data (no creases or flat spots at the knots,
    which a hillshade would show as a grid)."""
    def weights(n, m):  # n output samples over m knots
        pos = np.linspace(0, m - 1, n)
        i = np.minimum(pos.astype(int), m - 2)
        t = pos - i
        a = np.zeros((n, m), np.float32)
        rows = np.arange(n)
        for k, wk in ((-1, (-t ** 3 + 2 * t ** 2 - t) / 2), (0, (3 * t ** 3 - 5 * t ** 2 + 2) / 2),
                      (1, (-3 * t ** 3 + 4 * t ** 2 + t) / 2), (2, (t ** 3 - t ** 2) / 2)):
            np.add.at(a, (rows, np.clip(i + k, 0, m - 1)), wk)
        return a

    return weights(shape[0], coarse.shape[0]) @ coarse.astype(np.float32) @ weights(
        shape[1], coarse.shape[1]).T


def _smooth_noise(rng: np.random.Generator, shape, cells: tuple[int, int]) -> np.ndarray:
    """Value noise: standard normal values on a coarse grid, smoothly interpolated."""
    return _upsample(rng.standard_normal((cells[0] + 2, cells[1] + 2)), shape)


def _parcels(rng: np.random.Generator, shape, size: int) -> np.ndarray:
    """Blocky uniform noise: one value per SIZE×SIZE-pixel parcel (fields)."""
    h, w = shape
    coarse = rng.random((h // size + 1, w // size + 1), dtype=np.float32)
    return np.repeat(np.repeat(coarse, size, 0), size, 1)[:h, :w]


# ----------------------------------------------------------------------------- ortho

def _ortho(conn: psycopg.Connection, year: int, ground_m: float):
    import shapely
    from rasterio.features import rasterize

    transform, shape, to_merc = _grid(URBAN_BBOX, ground_m)
    stretch = transform.a / ground_m  # Mercator units per ground metre
    at = datetime(year, 7, 1, tzinfo=BEIJING_TIME)

    def burn(geoms) -> np.ndarray:
        return rasterize(geoms, out_shape=shape, transform=transform, dtype="uint8").astype(bool)

    img = _ground(transform, shape, year, ground_m)  # (3, h, w) uint8

    # the buildings standing at mid-year, and the sites of those built within a year
    rows = conn.execute(
        "select st_asbinary(st_transform(geom, 3857)), fid, vid, use,"
        "       lower(valid) > %(at)s as site"
        " from city.buildings_version"
        " where upper_inf(recorded)"
        "   and geom && st_makeenvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4490)"
        "   and (valid @> %(at)s or lower(valid) <@ tstzrange(%(at)s, %(next)s))"
        " order by vid",
        {"at": at, "next": at + timedelta(days=365), "x0": URBAN_BBOX[0], "y0": URBAN_BBOX[1],
         "x1": URBAN_BBOX[2], "y1": URBAN_BBOX[3]}).fetchall()
    geoms = shapely.from_wkb([r[0] for r in rows]) if rows else np.array([], object)
    site = np.array([r[4] for r in rows], bool)
    standing = geoms[~site]

    def paint(mask, colour):
        img[:, mask] = np.uint8(colour)[:, None]

    if len(standing):  # paved yards
        yards = burn(shapely.buffer(standing, 12 * stretch))
        img[:, yards] = img[:, yards] // 4 + (np.uint8((160, 158, 150)) // 4 * 3)[:, None]

    paint(burn([_line(HUN_RIVER, to_merc, 260 * stretch)]), (52, 78, 88))
    # roads: asphalt; opened this year: fresh concrete; opening next year: a bare-earth cut
    for opened, colour in ((lambda y: y == year + 1, (170, 136, 96)),
                           (lambda y: y < year, (86, 86, 84)),
                           (lambda y: y == year, (214, 210, 200))):
        lines = [_line(line, to_merc, 40 * stretch) for y, line in ROADS if opened(y)]
        if lines:
            paint(burn(lines), colour)

    if site.any():
        paint(burn(shapely.buffer(geoms[site], 6 * stretch)), (176, 142, 100))
    if len(standing):
        # roofs: one colour per building version (a renovation re-roofs); shadows to the NE
        ids = rasterize(((g, i + 1) for i, g in enumerate(geoms) if not site[i]),
                        out_shape=shape, transform=transform, dtype="int32")
        roof = ids > 0
        shift = max(1, round(8 / ground_m))
        shadow = np.zeros_like(roof)
        shadow[:-shift, shift:] = roof[shift:, :-shift]
        shadow &= ~roof
        img[:, shadow] = img[:, shadow] // 2
        lut = np.zeros((len(rows) + 1, 3), np.uint8)
        for i, (_, fid, vid, use, _site) in enumerate(rows):
            palette = ROOFS.get(use, ROOFS["mixed"])
            lut[i + 1] = palette[zlib.crc32(f"{fid}:{vid}".encode()) % len(palette)]
        img[:, roof] = lut[ids[roof]].T
    for band, gain in zip(img, CAST[year]):  # the flight's colour cast, as a lookup table
        band[...] = np.clip(np.arange(256) * gain, 0, 255).astype(np.uint8)[band]
    return img, transform


def _ground(transform, shape, year: int, ground_m: float) -> np.ndarray:
    """Woods that stay put, field parcels whose crops change from year to year, paved
    ground around the district seats; drawn at half resolution (it is smooth or blocky
    at 300 m parcels), then per-pixel grain."""
    h, w = shape
    hc, wc = (h + 1) // 2, (w + 1) // 2
    cshape, cm = (hc, wc), ground_m * 2
    km = cm / 1000
    parcel = max(1, round(300 / cm))
    land = _smooth_noise(np.random.default_rng(SEED), cshape,
                         (max(2, round(hc * km / 1.5)), max(2, round(wc * km / 1.5))))
    shade = _parcels(np.random.default_rng(SEED + 1), cshape, parcel)
    crop = _parcels(np.random.default_rng([SEED, year]), cshape, parcel) * len(CROPS)
    img = np.float32(CROPS)[crop.astype(np.uint8)]
    img += (shade[..., None] - 0.5) * np.float32((30, 24, 14))
    wood = np.clip((land - 0.45) * 3, 0, 1)[..., None]
    img = img * (1 - wood) + np.float32((58, 88, 52)) * wood
    town = np.clip(_upsample(_town(transform, (max(2, h // 25), max(2, w // 25)), shape),
                             cshape), 0, 1)[..., None]
    img = img * (1 - town) + np.float32((148, 146, 140)) * town
    coarse = np.clip(img, 8, 247).astype(np.uint8).transpose(2, 0, 1)
    full = np.repeat(np.repeat(coarse, 2, 1), 2, 2)[:, :h, :w]
    grain = np.random.default_rng([SEED, 7]).integers(0, 17, (h, w), dtype=np.uint8)
    full += grain  # clipped to 8..247 above: no wrap-around
    full -= 8
    return full


def _line(lonlat, to_merc, width: float):
    """A lon/lat polyline as a Mercator polygon WIDTH (Mercator units) wide."""
    import shapely

    xs, ys = to_merc.transform(*zip(*lonlat))
    return shapely.buffer(shapely.linestrings(np.column_stack([xs, ys])), width / 2)


def _town(transform, coarse, shape) -> np.ndarray:
    """How urban each place is (0..1): the district seats' built-up cores, on a coarse
    grid over the image (upsampled by the caller)."""
    ch, cw = coarse
    h, w = shape
    xs = transform.c + (np.arange(cw) + 0.5) * (w / cw) * transform.a
    ys = transform.f + (np.arange(ch) + 0.5) * (h / ch) * transform.e
    lon = np.degrees(xs / 6378137.0)[None, :]
    lat = np.degrees(2 * np.arctan(np.exp(ys / 6378137.0)) - np.pi / 2)[:, None]
    out = np.zeros((ch, cw), np.float32)
    for d in DIVISIONS:
        if d.kind == "district":
            km = np.hypot((lon - d.seat[0]) * 83.0, (lat - d.seat[1]) * 111.2)
            out = np.maximum(out, 0.9 * np.exp(-(km / 3.5) ** 2))
    return out


# ----------------------------------------------------------------------------- DEM

def _dem(ground_m: float):
    """Heights (m) over the municipality: drawn on a grid 2× coarser than the output
    (hills are smooth) and interpolated with a continuous slope, so hillshade is clean."""
    transform, shape, to_merc = _grid(CITY_BBOX, ground_m)
    h, w = shape
    hc, wc = max(8, h // 2), max(8, w // 2)
    sx, sy = transform.a * w / wc, transform.e * h / hc  # coarse cell size, Mercator units
    x = (transform.c + (np.arange(wc) + 0.5) * sx).astype(np.float32)
    y = (transform.f + (np.arange(hc) + 0.5) * sy).astype(np.float32)
    lon = np.degrees(x / 6378137.0)
    lat = np.degrees(2 * np.arctan(np.exp(y / 6378137.0)) - np.pi / 2)
    stretch = 1 / math.cos(math.radians((CITY_BBOX[1] + CITY_BBOX[3]) / 2))
    east = np.clip((lon - CITY_BBOX[0]) / (CITY_BBOX[2] - CITY_BBOX[0]), 0, 1)[None, :]
    north = np.clip((lat - CITY_BBOX[1]) / (CITY_BBOX[3] - CITY_BBOX[1]), 0, 1)[:, None]

    # distance (ground km) to the Hun River
    rx, ry = to_merc.transform(*zip(*HUN_RIVER))
    X, Y = np.meshgrid(x, y)
    dist = np.full((hc, wc), np.inf, np.float32)
    for ax, ay, bx, by in zip(rx, ry, rx[1:], ry[1:]):
        dx, dy = bx - ax, by - ay
        t = np.clip(((X - ax) * dx + (Y - ay) * dy) / (dx * dx + dy * dy), 0, 1)
        np.minimum(dist, np.hypot(X - (ax + t * dx), Y - (ay + t * dy)), out=dist)
    km = dist / stretch / 1000

    # hills: broad massifs (elongated NE-SW like the Changbai foothills) carrying rolling
    # hills of 0.7-12 km (fractal noise: amplitude grows with size)
    rng = np.random.default_rng([SEED, 1])
    cell_km = abs(sx) / stretch / 1000
    broad = np.zeros((hc, wc), np.float32)
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    for _ in range(150):
        cy, cx = rng.uniform(0, hc), rng.uniform(0, wc)
        r = rng.uniform(4.0, 12.0) / cell_km  # across, in coarse cells
        long = r * rng.uniform(1.0, 3.5)      # along
        ang = np.radians(rng.normal(40, 20))
        reach = 3 * long
        y0, y1 = int(max(0, cy - reach)), int(min(hc, cy + reach + 1))
        x0, x1 = int(max(0, cx - reach)), int(min(wc, cx + reach + 1))
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = cy - yy[y0:y1, x0:x1], xx[y0:y1, x0:x1] - cx  # dy northwards
        u = dx * np.cos(ang) + dy * np.sin(ang)
        v = -dx * np.sin(ang) + dy * np.cos(ang)
        broad[y0:y1, x0:x1] += rng.uniform(0.5, 1.0) * np.exp(-(u / long) ** 2 - (v / r) ** 2)
    detail = np.zeros((hc, wc), np.float32)
    for km_cell in (12.0, 6.0, 3.0, 1.5, 0.7):
        detail += km_cell ** 0.8 * _smooth_noise(
            rng, (hc, wc), (max(2, round(hc * cell_km / km_cell)),
                            max(2, round(wc * cell_km / km_cell))))
    detail = np.clip(0.5 + detail / (4 * detail.std()), 0, None)
    hills = 0.45 * broad / np.percentile(broad, 99) + 0.8 * detail
    hills = np.logaddexp(0, 8 * hills) / 8  # ≥ 0 without a kink
    envelope = 150 + 640 * east ** 1.2 + 60 * np.sin(north * np.pi)  # mountains in the east
    valley = 1 - np.exp(-(km / 7.0) ** 2)  # the plain along the river, then the slopes
    floor = 78 + 90 * east  # the river falls westwards: ~80 m in the city
    dem = floor + valley * envelope * hills
    return _upsample(dem, shape)[None], transform
