"""Terrain for CesiumJS (`models3d/terrain.py`): /3d/terrain/layer.json and quantized-mesh
tiles cut from the registered DEM, checked with a decoder written here from the
quantized-mesh-1.0 specification (not the encoder's code)."""

from __future__ import annotations

import gzip
import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
from conftest import fresh_database
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pyproj import Transformer
from rasterio.transform import from_origin

from gisplatform.app import create_app
from gisplatform.config import Settings
from models3d.terrain import terrain_router
from tiles.raster import add_raster, file_in, list_rasters, raster_dir

W, S, E, N = 123.85, 41.80, 124.05, 41.95  # the test DEM (EPSG:4326 source)
RES = 0.0005  # degrees: 400 × 300 pixels
HILL = (123.95, 41.87)
HOLE = (124.02, 41.93)  # nodata north-east of this corner
OLD_TIME, NEW_TIME = "2018-01-01T00:00:00+08:00", "2020-01-01T00:00:00+08:00"
NORMALS = ("application/vnd.quantized-mesh;extensions=octvertexnormals,"
           "application/octet-stream;q=0.9")  # what Cesium sends with requestVertexNormals


def height(lon, lat):
    return (150 + 400 * (lon - W)
            + 300 * np.exp(-(((lon - HILL[0]) / 0.025) ** 2 + ((lat - HILL[1]) / 0.02) ** 2)))


def dem_tif(path: Path, value: float | None = None) -> Path:
    w, h = round((E - W) / RES), round((N - S) / RES)
    lon = W + (np.arange(w) + 0.5) * RES
    lat = N - (np.arange(h) + 0.5) * RES
    lon, lat = np.meshgrid(lon, lat)
    data = np.full(lon.shape, value, "float32") if value is not None else height(lon, lat)
    data = data.astype("float32")
    if value is None:
        data[(lon > HOLE[0]) & (lat > HOLE[1])] = -9999
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                       crs="EPSG:4326", transform=from_origin(W, N, RES, RES),
                       nodata=-9999) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture(scope="module")
def terrain(pg, tmp_path_factory):
    """A database with two DEMs (a flat 50 m one in 2018, the hill in 2020) and the app."""
    url = fresh_database(pg, "terrain")
    data_dir = tmp_path_factory.mktemp("terrain-data")
    src = tmp_path_factory.mktemp("terrain-src")
    with psycopg.connect(url, autocommit=True) as c:
        add_raster(c, dem_tif(src / "old.tif", value=50.0), name="dem-old", kind="dem",
                   at=OLD_TIME, data_dir=data_dir)
        add_raster(c, dem_tif(src / "hill.tif"), name="dem-hill", kind="dem", at=NEW_TIME,
                   data_dir=data_dir)
        dems = {r.name: r for r in list_rasters(c, kind="dem")}
    with TestClient(create_app(Settings(data_dir=data_dir), db_url=url)) as client:
        layer = client.get("/3d/terrain/layer.json")
        assert layer.status_code == 200, layer.text
        yield client, layer.json(), dems, data_dir, url


# ----------------------------------------------------------------------------- decoding

def decode(buf: bytes) -> dict:
    """quantized-mesh-1.0, from the specification."""
    header = struct.unpack_from("<3d2f4d3d", buf, 0)
    pos = 88
    (count,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    channels = []
    for _ in range(3):  # u, v, height: zig-zag coded deltas
        raw = struct.unpack_from(f"<{count}H", buf, pos)
        pos += 2 * count
        value, values = 0, []
        for r in raw:
            value += (r >> 1) ^ -(r & 1)
            values.append(value)
        channels.append(np.array(values))
    size = 4 if count > 65536 else 2
    if pos % size:
        pos += size - pos % size
    (triangles,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    code = "I" if size == 4 else "H"
    highest, indices = 0, []
    for c in struct.unpack_from(f"<{3 * triangles}{code}", buf, pos):  # high-water mark
        indices.append(highest - c)
        if c == 0:
            highest += 1
    pos += 3 * triangles * size
    edges = []
    for _ in range(4):  # west, south, east, north
        (k,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        edges.append(np.array(struct.unpack_from(f"<{k}{code}", buf, pos), dtype=np.int64))
        pos += k * size
    extensions = {}
    while pos < len(buf):
        ext_id, length = struct.unpack_from("<BI", buf, pos)
        extensions[ext_id] = buf[pos + 5:pos + 5 + length]
        pos += 5 + length
    assert pos == len(buf)
    u, v, hq = channels
    lo, hi = header[3], header[4]
    return {"center": np.array(header[0:3]), "min": lo, "max": hi,
            "sphere": (np.array(header[5:8]), header[8]), "hop": np.array(header[9:12]),
            "u": u, "v": v, "hq": hq, "h": lo + hq / 32767 * (hi - lo),
            "triangles": np.array(indices).reshape(-1, 3), "edges": edges,
            "extensions": extensions}


def geographic(z, x, y):
    size = 180 / 2 ** z
    return -180 + x * size, -90 + y * size, -180 + (x + 1) * size, -90 + (y + 1) * size


def tile_of(lon, lat, z):
    size = 180 / 2 ** z
    return z, math.floor((lon + 180) / size), math.floor((lat + 90) / size)


def lonlat(t, z, x, y):
    w, s, e, n = geographic(z, x, y)
    return w + t["u"] / 32767 * (e - w), s + t["v"] / 32767 * (n - s)


def ecef(lon, lat, h):
    a, b = 6378137.0, 6356752.314245179
    e2 = 1 - b * b / (a * a)
    lon, lat = np.radians(lon), np.radians(lat)
    nu = a / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    return np.stack([(nu + h) * np.cos(lat) * np.cos(lon), (nu + h) * np.cos(lat) * np.sin(lon),
                     (nu * (1 - e2) + h) * np.sin(lat)], axis=-1)


def oct_decode(data: bytes) -> np.ndarray:
    xy = np.frombuffer(data, np.uint8).reshape(-1, 2) / 255.0 * 2 - 1
    x, y = xy[:, 0], xy[:, 1]
    z = 1 - np.abs(x) - np.abs(y)
    fold = z < 0
    x, y = (np.where(fold, (1 - np.abs(y)) * np.where(x < 0, -1, 1), x),
            np.where(fold, (1 - np.abs(x)) * np.where(y < 0, -1, 1), y))
    out = np.stack([x, y, z], axis=1)
    return out / np.linalg.norm(out, axis=1)[:, None]


def get_tile(client, layer, z, x, y, **headers):
    r = client.get(f"/3d/terrain/{z}/{x}/{y}.terrain", params={"v": layer["version"]},
                   headers=headers)
    assert r.status_code == 200, r.text
    return r, decode(r.content)


# ----------------------------------------------------------------------------- layer.json

def test_layer_json(terrain):
    client, layer, dems, _, _ = terrain
    hill = dems["dem-hill"]
    assert layer["tilejson"] == "2.1.0" and layer["format"] == "quantized-mesh-1.0"
    assert layer["scheme"] == "tms" and layer["projection"] == "EPSG:4326"
    assert layer["tiles"] == ["{z}/{x}/{y}.terrain?v={version}"]
    assert layer["version"].startswith("dem-hill.") and layer["version"].endswith("Z")
    assert layer["bounds"] == pytest.approx(list(hill.bounds), abs=1e-6)
    assert layer["bounds"] == pytest.approx([W, S, E, N], abs=1e-3)
    # 0.0005° pixels: the first level whose 64 sample steps are no coarser is z13
    assert layer["minzoom"] == 0 and layer["maxzoom"] == 13
    available = layer["available"]
    assert len(available) == layer["maxzoom"] + 1
    for z, ranges in enumerate(available):
        (r,) = ranges
        if z <= 5:  # the whole globe, flat where there is no DEM
            assert r == {"startX": 0, "startY": 0, "endX": 2 ** (z + 1) - 1, "endY": 2 ** z - 1}
        else:  # exactly the tiles touching the DEM
            size = 180 / 2 ** z
            assert r["startX"] == math.floor((W + 180) / size)
            assert r["endX"] == math.floor((E + 180) / size)
            assert r["startY"] == math.floor((S + 90) / size)
            assert r["endY"] == math.floor((N + 90) / size)
    assert "octvertexnormals" in layer["extensions"]

    r = client.get("/3d/terrain/layer.json")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["content-type"].startswith("application/json")
    assert "no-cache" in r.headers["cache-control"] and r.headers["x-raster-name"] == "dem-hill"
    again = client.get("/3d/terrain/layer.json", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == r.headers["etag"]

    # datetime: the latest DEM whose time is <= it
    old = client.get("/3d/terrain/layer.json", params={"datetime": "2019-06-01"})
    assert old.status_code == 200 and old.json()["version"].startswith("dem-old.")
    assert old.headers["etag"] != r.headers["etag"]
    assert client.get("/3d/terrain/layer.json", params={"datetime": "2019-06-01T00:00"}
                      ).status_code == 400  # no zone
    none = client.get("/3d/terrain/layer.json", params={"datetime": "2010-01-01"})
    assert none.status_code == 404 and "ellipsoid" in none.json()["description"]


def test_no_dem_registered(pg):
    """No DEM at all: layer.json is a 404 that says the viewer shows the ellipsoid."""
    url = fresh_database(pg, "terrain_none")
    app = FastAPI()
    app.include_router(terrain_router(lambda: psycopg.connect(url), Path("/nonexistent"),
                                      "http://example.test"))
    client = TestClient(app)
    r = client.get("/3d/terrain/layer.json")
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "*"
    doc = r.json()
    assert doc["code"] == "NotFound" and "no DEM is registered" in doc["description"]
    assert "ellipsoid" in doc["description"]
    assert client.get("/3d/terrain/0/0/0.terrain").status_code == 404


# ----------------------------------------------------------------------------- tiles

def test_tile_over_the_dem(terrain):
    client, layer, dems, data_dir, _ = terrain
    z, x, y = tile_of(*HILL, layer["maxzoom"])
    r, t = get_tile(client, layer, z, x, y)
    assert r.headers["content-type"] == "application/vnd.quantized-mesh"
    assert r.headers["access-control-allow-origin"] == "*"
    n = 65
    count = n * n
    assert len(t["u"]) == count and len(t["triangles"]) == 2 * (n - 1) ** 2
    assert not t["extensions"]  # normals only when asked for

    # the grid: every (u, v) of a 65 × 65 lattice from 0 to 32767, once
    steps = np.rint(np.arange(n) * 32767 / (n - 1))
    assert set(zip(t["u"].tolist(), t["v"].tolist())) == {(a, b) for a in steps for b in steps}
    assert t["hq"].min() >= 0 and t["hq"].max() <= 32767

    # triangles: indices in range, every vertex used, all counter-clockwise seen from above
    tri = t["triangles"]
    assert tri.min() == 0 and tri.max() == count - 1 and len(np.unique(tri)) == count
    pu, pv = t["u"][tri].astype(float), t["v"][tri].astype(float)
    area = ((pu[:, 1] - pu[:, 0]) * (pv[:, 2] - pv[:, 0])
            - (pu[:, 2] - pu[:, 0]) * (pv[:, 1] - pv[:, 0]))
    assert (area > 0).all()
    assert area.sum() / 2 == pytest.approx(32767.0 ** 2)  # they tile the square

    # edges: west u=0 (sorted south to north), south v=0, east u=32767, north v=32767
    west, south, east, north = t["edges"]
    for ids, fixed, value, along in ((west, "u", 0, "v"), (south, "v", 0, "u"),
                                     (east, "u", 32767, "v"), (north, "v", 32767, "u")):
        assert len(ids) == n
        assert set(ids.tolist()) == set(np.nonzero(t[fixed] == value)[0].tolist())
        assert (np.diff(t[along][ids]) > 0).all()

    # heights: header bounds, and the DEM itself (its COG read with rasterio): a bilinear
    # sample lies between the four pixels around it
    h = t["h"]
    assert t["min"] == pytest.approx(h.min(), abs=1e-3)
    assert t["max"] == pytest.approx(h.max(), abs=1e-3)
    lon, lat = lonlat(t, z, x, y)
    cog = file_in(raster_dir(data_dir), dems["dem-hill"].path)
    with rasterio.open(cog) as src:
        grid = src.read(1, masked=True).filled(np.nan)
        mx, my = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
        tf = src.transform
        col, row = (np.asarray(mx) - tf.c) / tf.a, (np.asarray(my) - tf.f) / tf.e
    c0, r0 = np.floor(col - 0.5).astype(int), np.floor(row - 0.5).astype(int)
    around = np.stack([grid[r0 + dr, c0 + dc] for dr in (0, 1) for dc in (0, 1)])
    assert np.isfinite(around).all()
    step = (t["max"] - t["min"]) / 32767
    assert (h >= around.min(axis=0) - step - 0.01).all()
    assert (h <= around.max(axis=0) + step + 0.01).all()
    assert np.abs(h - height(lon, lat)).max() < 3  # and close to the surface drawn
    assert 400 < h.max() < 495  # the hill's top (150 + 40 m of slope + 300 m)

    # bounding sphere holds every vertex; the centre is the tile's
    pts = ecef(lon, lat, h)
    centre, radius = t["sphere"]
    assert np.linalg.norm(pts - centre, axis=1).max() <= radius + 1e-6
    assert np.linalg.norm(t["center"] - pts.mean(axis=0)) < radius

    # horizon occlusion point: whenever Cesium finds it hidden behind the ellipsoid, every
    # vertex is hidden too (checked geometrically with random cameras, in scaled space)
    radii = np.array([6378137.0, 6378137.0, 6356752.314245179])
    p, q = t["hop"], pts / radii
    rng = np.random.default_rng(7)
    up = q.mean(axis=0) / np.linalg.norm(q.mean(axis=0))
    hidden_cases = 0
    for _ in range(400):
        d = rng.normal(size=3)
        d -= d.dot(up) * up
        d /= np.linalg.norm(d)
        angle = rng.uniform(0.3, 2.5)
        cam = (np.cos(angle) * up + np.sin(angle) * d) * rng.uniform(1.00005, 1.6)
        vt = p - cam
        vt_dot_vc = -vt.dot(cam)
        limb2 = cam.dot(cam) - 1
        if not (vt_dot_vc > limb2 and vt_dot_vc ** 2 / vt.dot(vt) > limb2):
            continue  # Cesium would draw the tile
        hidden_cases += 1
        seg = q - cam  # closest point of each sight line to the centre
        s = np.clip(-(cam @ seg.T) / np.einsum("ij,ij->i", seg, seg), 0, 1)
        closest = cam + s[:, None] * seg
        assert (np.linalg.norm(closest, axis=1) < 1).all(), "a vertex would be culled"
    assert hidden_cases > 20


def test_neighbours_share_their_edges(terrain):
    client, layer, _, _, _ = terrain
    for zoom in (11, layer["maxzoom"]):
        z, x, y = tile_of(*HILL, zoom)
        _, a = get_tile(client, layer, z, x, y)
        _, east = get_tile(client, layer, z, x + 1, y)
        _, north = get_tile(client, layer, z, x, y + 1)
        tol = max(a["max"] - a["min"], east["max"] - east["min"]) / 32767 * 1.01 + 1e-3
        # a's east edge is its neighbour's west edge: same latitudes, same heights
        assert np.array_equal(a["v"][a["edges"][2]], east["v"][east["edges"][0]])
        assert np.abs(a["h"][a["edges"][2]] - east["h"][east["edges"][0]]).max() <= tol
        tol = max(a["max"] - a["min"], north["max"] - north["min"]) / 32767 * 1.01 + 1e-3
        assert np.abs(a["h"][a["edges"][3]] - north["h"][north["edges"][1]]).max() <= tol


def test_flat_outside_partial_at_the_edge_and_nodata(terrain):
    client, layer, _, _, _ = terrain
    # far from the DEM (the Atlantic at z5), and the western hemisphere at z0: flat, 0 m
    tiles = {}
    for z, x, y in ((5, 20, 18), (0, 0, 0)):
        _, t = tiles[z] = get_tile(client, layer, z, x, y)
        assert len(t["u"]) == 65 * 65 and t["min"] == t["max"] == 0
        assert (t["h"] == 0).all() and (t["hq"] == 0).all()
    assert np.isfinite(tiles[5][1]["hop"]).all() and 1 < np.linalg.norm(tiles[5][1]["hop"]) < 1.1
    # a hemisphere has no horizon occlusion point: NaN, which Cesium never culls
    assert np.isnan(tiles[0][1]["hop"]).all()
    # the eastern hemisphere's samples (2.8° apart) all miss this 0.2° DEM; at z6 (0.044°
    # apart) the tile holding it has the DEM among flat ground
    _, t = get_tile(client, layer, 0, 1, 0)
    assert t["max"] == 0
    _, t = get_tile(client, layer, *tile_of(*HILL, 6))
    assert t["min"] == 0 and t["max"] > 300

    # a tile across the DEM's west edge: 0 m west of it, the DEM east of it
    z, x, y = tile_of(W, HILL[1], 10)
    _, t = get_tile(client, layer, z, x, y)
    lon, lat = lonlat(t, z, x, y)
    assert (t["h"][lon < W - 0.002] == 0).all()
    east = (lon > W + 0.002) & (lat > S + 0.002) & (lat < N - 0.002)
    assert east.any() and (t["h"][east] > 100).all()

    # nodata (a hole in the north-east corner of the DEM): 0 m, like no DEM
    z, x, y = tile_of(124.04, 41.94, 12)
    _, t = get_tile(client, layer, z, x, y)
    lon, lat = lonlat(t, z, x, y)
    hole = (lon > HOLE[0] + 0.002) & (lat > HOLE[1] + 0.002) & (lon < E) & (lat < N)
    beside = (lon < HOLE[0] - 0.002) & (lon > W) & (lat < HOLE[1] - 0.002) & (lat > S)
    assert hole.any() and (t["h"][hole] == 0).all()
    assert beside.any() and (t["h"][beside] > 100).all()


def test_vertex_normals_on_request(terrain):
    client, layer, _, _, _ = terrain
    z, x, y = tile_of(*HILL, 12)
    plain, t0 = get_tile(client, layer, z, x, y)
    r, t = get_tile(client, layer, z, x, y, accept=NORMALS)
    assert r.headers["etag"] != plain.headers["etag"] and "Accept" in r.headers["vary"]
    assert set(t["extensions"]) == {1} and len(t["extensions"][1]) == 2 * len(t["u"])
    assert np.array_equal(t["h"], t0["h"])  # the same mesh
    normals = oct_decode(t["extensions"][1])
    lon, lat = lonlat(t, z, x, y)
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    up = np.stack([np.cos(lat_r) * np.cos(lon_r), np.cos(lat_r) * np.sin(lon_r),
                   np.sin(lat_r)], axis=1)
    tilt = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", normals, up), -1, 1)))
    assert tilt.max() < 20 and tilt.max() > 3  # the hill's slopes, never upside down
    # on the hill's west flank the ground rises eastwards: normals lean west
    east_dir = np.stack([-np.sin(lon_r), np.cos(lon_r), np.zeros_like(lon_r)], axis=1)
    flank = (lon > HILL[0] - 0.03) & (lon < HILL[0] - 0.01) & (np.abs(lat - HILL[1]) < 0.005)
    assert flank.any() and (np.einsum("ij,ij->i", normals, east_dir)[flank] < -0.02).all()
    # flat: the ellipsoid's normal (8-bit oct coding: within ~1°)
    _, flat = get_tile(client, layer, 5, 20, 18, accept=NORMALS)
    lon, lat = np.radians(lonlat(flat, 5, 20, 18))
    up = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    cos = np.einsum("ij,ij->i", oct_decode(flat["extensions"][1]), up)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.5


def test_headers_cache_and_versions(terrain):
    client, layer, _, data_dir, _ = terrain
    z, x, y = tile_of(*HILL, 9)
    path = f"/3d/terrain/{z}/{x}/{y}.terrain"
    first = client.get(path, params={"v": layer["version"]})
    assert first.status_code == 200
    assert first.headers["content-encoding"] == "gzip"  # TestClient accepts gzip
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = first.headers["etag"]
    assert layer["version"] in etag
    cached = data_dir / "3d-terrain-cache" / layer["version"] / str(z) / str(x) / f"{y}.terrain"
    assert gzip.decompress(cached.read_bytes()) == first.content
    second = client.get(path, params={"v": layer["version"]})
    assert second.headers["x-cache"] == "hit" and second.content == first.content
    r = client.get(path, params={"v": layer["version"]}, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.headers["etag"] == etag and not r.content
    assert r.headers["access-control-allow-origin"] == "*"
    # a client without gzip gets the raw bytes
    raw = client.get(path, params={"v": layer["version"]},
                     headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.content == first.content

    # without v: the latest DEM (datetime= picks another), revalidated after 5 minutes
    latest = client.get(path)
    assert latest.content == first.content
    assert latest.headers["cache-control"] == "public, max-age=300"
    old = client.get(path, params={"datetime": "2019-01-01"})
    assert old.headers["x-raster-name"] == "dem-old"
    assert decode(old.content)["max"] == pytest.approx(50, abs=0.5)
    # a version that is not (or no longer) registered, or malformed: 404
    for v in ("dem-hill.19990101T000000000000Z", "../../etc", "dem-hill"):
        r = client.get(path, params={"v": v})
        assert r.status_code == 404, v
    assert "reload layer.json" in client.get(path, params={"v": "dem-gone.20200101T000000000000Z"}
                                             ).json()["description"]
    # serving layer.json drops the cached tiles of DEMs no longer registered
    gone = data_dir / "3d-terrain-cache" / "dem-gone.20200101T000000000000Z" / "1" / "1"
    gone.mkdir(parents=True)
    (gone / "0.terrain").write_bytes(b"x")
    assert client.get("/3d/terrain/layer.json").status_code == 200
    assert not gone.parent.parent.exists() and cached.exists()


def test_bad_tiles_and_paths(terrain):
    client, layer, _, _, _ = terrain
    v = {"v": layer["version"]}
    maxzoom = layer["maxzoom"]
    z, x, y = tile_of(*HILL, maxzoom + 1)
    for path in (f"{z}/{x}/{y}.terrain",  # beyond maxzoom: Cesium upsamples
                 "0/2/0.terrain", "0/0/1.terrain", "3/16/0.terrain", "3/0/8.terrain",
                 "-1/0/0.terrain", "a/0/0.terrain", "1/0/0.5.terrain", "99/0/0.terrain",
                 "1/0/0.png", "1/0.terrain", "layer.xml", "foo/layer.json"):
        r = client.get(f"/3d/terrain/{path}", params=v)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/json"), path
        assert r.headers["access-control-allow-origin"] == "*"
    assert client.get("/3d/terrain/0/1/0.terrain", params=v).status_code == 200
    assert client.get("/3d/terrain/", params=v).json()["layer"].endswith("/3d/terrain/layer.json")


def test_speed(terrain):
    """Measured, not a benchmark: fresh tiles over the DEM (read, mesh, encode, gzip, store)
    and the same tiles from the disk cache, through the app in this process."""
    client, layer, _, data_dir, _ = terrain
    z, x, y = tile_of(*HILL, layer["maxzoom"])
    block = [(x - dx, y - dy) for dx in (1, 2, 3) for dy in (1, 2)]  # not fetched before
    times = {"miss": [], "hit": []}
    for expected in ("miss", "hit"):
        for tx, ty in block:
            t0 = time.perf_counter()
            r = client.get(f"/3d/terrain/{z}/{tx}/{ty}.terrain", params={"v": layer["version"]})
            times[expected].append(time.perf_counter() - t0)
            assert r.headers["x-cache"] == expected
            assert decode(r.content)["max"] > 150  # on the DEM
    size = np.median([(data_dir / "3d-terrain-cache" / layer["version"] / str(z) / str(tx)
                       / f"{ty}.terrain").stat().st_size for tx, ty in block])
    print(f"\nterrain z{z} tile: {1000 * np.median(times['miss']):.1f} ms generated, "
          f"{1000 * np.median(times['hit']):.1f} ms cached (medians of {len(block)}); "
          f"{len(r.content)} bytes, {size:.0f} gzip'd")
    assert np.median(times["miss"]) < 1.0


# ----------------------------------------------------------------------------- CesiumJS

ENGINE = Path(__file__).resolve().parent.parent / "node_modules/@cesium/engine/index.js"
CESIUM_SCRIPT = """
import { CesiumTerrainProvider, Cartographic, Math as CMath } from "%s";
const [base, checks] = [process.argv[2], JSON.parse(process.argv[3])];
const provider = await CesiumTerrainProvider.fromUrl(`${base}/3d/terrain/`,
                                                     { requestVertexNormals: true });
const ts = provider.tilingScheme;
const out = { normals: provider.hasVertexNormals, tiles: [] };
for (const [lon, lat, level] of checks) {
  const xy = ts.positionToTileXY(Cartographic.fromDegrees(lon, lat), level);
  const available = provider.getTileDataAvailable(xy.x, xy.y, level);
  const data = await provider.requestTileGeometry(xy.x, xy.y, level);
  const height = data.interpolateHeight(ts.tileXYToRectangle(xy.x, xy.y, level),
                                        CMath.toRadians(lon), CMath.toRadians(lat));
  out.tiles.push({ available, height, vertices: data._quantizedVertices.length / 3,
                   west: data._westIndices.length, north: data._northIndices.length,
                   normals: data._encodedNormals ? data._encodedNormals.length : 0,
                   min: data._minimumHeight, max: data._maximumHeight });
}
console.log(JSON.stringify(out));
"""


def test_cesium_reads_the_terrain(terrain, tmp_path):
    """CesiumJS's own CesiumTerrainProvider (node, from node_modules) reads layer.json and
    parses tiles served by `gisplatform serve`; heights where Cesium samples them."""
    import shutil
    import subprocess

    from conftest import serving
    from js import require

    require(browser=False)  # node + node_modules (make test installs them): fail, never skip
    assert ENGINE.exists() and shutil.which("node")
    _, layer, _, data_dir, url = terrain
    with serving(url, data_dir) as base:
        script = tmp_path / "terrain.mjs"
        script.write_text(CESIUM_SCRIPT % ENGINE.as_uri())
        checks = [[*HILL, layer["maxzoom"]], [123.9, 41.82, 12], [-90.0, 10.0, 0],
                  [-60.0, 10.0, 5], [-60.0, 10.0, 8]]
        run = subprocess.run(["node", str(script), base, json.dumps(checks)],
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["normals"] is True
    hill, slope, west, atlantic, beyond = out["tiles"]
    for t in (hill, slope, west, atlantic):
        assert t["available"] and t["vertices"] == 65 * 65 and t["west"] == t["north"] == 65
        assert t["normals"] == 2 * 65 * 65
    assert hill["height"] == pytest.approx(height(*HILL), abs=2)
    assert slope["height"] == pytest.approx(height(123.9, 41.82), abs=2)
    assert west["height"] == 0 and atlantic["height"] == 0 and atlantic["max"] == 0
    assert not beyond["available"]  # past level 5 only the DEM's tiles: Cesium upsamples
