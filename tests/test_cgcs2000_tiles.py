"""Tiles in the CGCS2000 (EPSG:4490) quad grid, `CGCS2000Quad`, beside WebMercatorQuad.

A small city of our own (two buildings — one standing, one demolished in 2020 — an address
point, a camera, an orthophoto and a DEM) served by `gisplatform serve`: the same feature
lands at the same place in a CGCS2000Quad tile and in a WebMercatorQuad tile (both decoded
back to lon/lat with morecantile); the tile matrix set is served as OGC API Tiles clients
read it; datetime, known_at, the access decision, range checks and the cache (keys and
eviction) work in the new grid exactly as in the old one, and never mix the two; the
orthophoto and the hillshade come in the new grid too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import mapbox_vector_tile
import morecantile
import numpy as np
import psycopg
import pytest
import shapely
from conftest import fresh_database, serving
from shapely.geometry import shape
from test_raster import decode as decode_png
from test_raster import geotiff

from gisplatform.crs.tile_grids import CGCS2000, GRIDS, WEB_MERCATOR
from gisplatform.security import create_token
from gisplatform.temporal import Feature, TemporalStore
from layers import LAYERS
from tiles.cache import Key, Tile, TileCache, tile_range
from tiles.raster import add_raster

T0 = "2015-01-01T00:00:00+08:00"
DEMOLISHED = "2020-01-01T00:00:00+08:00"
PAST = "2019-06-01T00:00:00+08:00"
HERE = (123.9, 41.87)  # Xinfu district; the buildings lie in both grids' tiles here
Z4490, Z3857 = 15, 16  # the same scale (tile_grids.py: CGCS2000Quad z = WebMercatorQuad z + 1)
CRS4490 = "http://www.opengis.net/def/crs/EPSG/0/4490"
ORTHO_AT, GREEN = (123.905, 41.872), (30, 200, 30)  # the rasters' top-left corner, colour


def tile_of(grid, lon, lat, z):
    t = grid.tms.tile(lon, lat, z)
    return t.z, t.x, t.y


def lonlat_bounds(grid, lon, lat, z):
    return grid.tms.bounds(grid.tms.tile(lon, lat, z))


def path(grid, layer, z, x, y):
    return f"/tiles/{layer}/{grid.id}/{z}/{x}/{y}.mvt"


@pytest.fixture(scope="module")
def city(pg, tmp_path_factory):
    """Buildings placed inside both grids' tiles at HERE (no clipping to compare), a
    camera (conditional layer), an address point; an orthophoto of one colour and a DEM
    of a hill (EPSG:4550 GeoTIFFs, registered as the platform's COGs)."""
    a = lonlat_bounds(CGCS2000, *HERE, Z4490)
    b = lonlat_bounds(WEB_MERCATOR, *HERE, Z3857)
    w, s, e, n = max(a.left, b.left), max(a.bottom, b.bottom), min(a.right, b.right), min(a.top, b.top)
    assert w < e and s < n
    d = min(e - w, n - s) / 8
    cx, cy = (w + e) / 2, (s + n) / 2
    standing = shapely.Polygon([(cx - d, cy - d), (cx + d, cy - d), (cx + d, cy),
                                (cx, cy + d), (cx - d, cy + d)])  # not a box: its shape counts
    demolished = shapely.box(cx + 1.5 * d, cy - d, cx + 2.5 * d, cy + d)
    address = shapely.Point(cx - 2 * d, cy + 2 * d)
    url = fresh_database(pg, "cgcs2000_tiles")
    with psycopg.connect(url, autocommit=True) as c:
        store = TemporalStore(LAYERS["buildings"].spec)
        store.insert(c, [Feature(code, shapely.MultiPolygon([poly]), {
            "building_code": code, "floors": floors, "height": 3.0 * floors, "use": "residential"})
            for code, poly, floors in (("210402001000001", standing, 6),
                                       ("210402001000002", demolished, 2))], T0)
        store.retire(c, ["210402001000002"], DEMOLISHED)
        TemporalStore(LAYERS["addresses"].spec).insert(c, [Feature(
            "抚顺市新抚区榆林1路39号", address, {"address": "抚顺市新抚区榆林1路39号"})], T0)
        TemporalStore(LAYERS["cameras"].spec).insert(c, [Feature(
            "21040200001320000001", shapely.Point(cx + d, cy + 2 * d),
            {"device_id": "21040200001320000001", "name": "榆林路口", "sector": "public_security",
             "status": "ON", "stream_url": "rtsp://10.0.0.1/secret"})], T0)
        data_dir, src = tmp_path_factory.mktemp("cgcs2000"), tmp_path_factory.mktemp("tifs")
        add_raster(c, geotiff(src / "ortho.tif", value=GREEN, at=ORTHO_AT), name="ortho-2019",
                   kind="ortho", at="2019-07-01T00:00:00+08:00", data_dir=data_dir)
        add_raster(c, geotiff(src / "dem.tif", bands=1, dtype="float32", res=20.0, at=ORTHO_AT),
                   name="hills", kind="dem", at="2018-01-01T00:00:00+08:00", data_dir=data_dir)
        ortho = c.execute("select st_xmin(bounds), st_ymin(bounds), st_xmax(bounds),"
                          " st_ymax(bounds) from city.rasters where name = 'ortho-2019'"
                          ).fetchone()
        _, granted = create_token(c, "gongan", [("cameras", "read")], label="cgcs-cam")
        _, other = create_token(c, "gongan", [("persons", "read")], label="cgcs-other")
    time.sleep(0.01)
    assert shapely.box(*a).contains(standing) and shapely.box(*b).contains(standing)
    return {"url": url, "centre": (cx, cy), "standing": standing, "demolished": demolished,
            "address": address,
            "camera": shapely.Point(cx + d, cy + 2 * d), "granted": granted, "other": other,
            "recorded": datetime.now(UTC), "data_dir": data_dir, "ortho": ortho}


@pytest.fixture(scope="module")
def live(city):
    with serving(city["url"], city["data_dir"]) as base:
        yield base


def get(base, url, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(base + url, params=params, headers=headers, timeout=30)


def decode(grid, data: bytes, z: int, x: int, y: int) -> dict:
    """{layer: [(properties, geometry in lon/lat)]}: tile units → the grid's CRS by the
    tile's bounds → lon/lat by morecantile (the identity for CGCS2000Quad)."""
    b = grid.tms.xy_bounds(x, y, z)
    out = {}
    for name, layer in mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}).items():
        ext = layer["extent"]

        def to_lonlat(coords, ext=ext):
            return [tuple(grid.tms.lnglat(b.left + px / ext * (b.right - b.left),
                                          b.top - py / ext * (b.top - b.bottom)))
                    for px, py in coords]
        out[name] = [(f["properties"],
                      shapely.transform(shape(f["geometry"]), lambda a: np.array(to_lonlat(a))))
                     for f in layer["features"]]
    return out


def features(base, grid, layer, z, x, y, token=None, **params):
    r = get(base, path(grid, layer, z, x, y), token, **params)
    assert r.status_code in (200, 204), r.text
    return r, (decode(grid, r.content, z, x, y).get(layer, []) if r.status_code == 200 else [])


def unit(grid, z, x, y) -> float:
    """The largest size, in degrees, of one of the tile's 4096 units (lon or lat)."""
    lon = grid.tms.bounds(x, y, z)
    return max(lon.right - lon.left, lon.top - lon.bottom) / 4096


# ---------------------------------------------------------------- the grid itself

def test_tile_matrix_set_served_as_ogc_clients_read_it(live):
    listing = get(live, "/ogc/tileMatrixSets", f="json")
    assert listing.status_code == 200
    ids = {t["id"] for t in listing.json()["tileMatrixSets"]}
    assert {"WebMercatorQuad", "CGCS2000Quad"} <= ids
    assert ids == {t["id"] for t in get(live, "/ogc/TileMatrixSets", f="json").json()["tileMatrixSets"]}
    doc = get(live, "/ogc/tileMatrixSets/CGCS2000Quad", f="json").json()
    assert doc == get(live, "/ogc/TileMatrixSets/CGCS2000Quad", f="json").json()
    assert doc["id"] == "CGCS2000Quad" and doc["crs"] == CRS4490
    assert doc["orderedAxes"] == ["Lat", "Lon"]
    assert doc["wellKnownScaleSet"].endswith("/GoogleCRS84Quad")
    m = doc["tileMatrices"]
    assert [t["id"] for t in m] == [str(z) for z in range(22)]
    for z, t in enumerate(m):
        assert (t["matrixWidth"], t["matrixHeight"]) == (2 << z, 1 << z)
        assert (t["tileWidth"], t["tileHeight"]) == (256, 256)
        assert t["cellSize"] == 0.703125 / 2 ** z  # exact: a power of two
        assert t["scaleDenominator"] == pytest.approx(279541132.014358 / 2 ** z, rel=1e-12)
        assert t["pointOfOrigin"] == [90, -180]  # EPSG:4490's order: lat, lon
    # what morecantile (titiler, tipg) reads from it is the grid the tiles are cut in
    tms = morecantile.TileMatrixSet.model_validate(doc)
    for z in (0, 9, Z4490, 21):
        assert tms.tile(*HERE, z) == CGCS2000.tms.tile(*HERE, z)
        assert tms.xy_bounds(3, 1, z) == CGCS2000.tms.xy_bounds(3, 1, z)
    assert tms.bounds(0, 0, 0) == (-180, -90, 0, 90) and tms.bounds(1, 0, 0) == (0, -90, 180, 90)
    web = get(live, "/ogc/tileMatrixSets/WebMercatorQuad", f="json").json()
    assert web["crs"].endswith("/EPSG/0/3857")  # pygeoapi's own definition, unchanged
    assert get(live, "/ogc/tileMatrixSets/NoSuchQuad", f="json").status_code in (400, 404)
    for url in ("/ogc/tileMatrixSets", "/ogc/tileMatrixSets/CGCS2000Quad"):  # pygeoapi's pages
        page = get(live, url, f="html")
        assert page.status_code == 200 and "CGCS2000Quad" in page.text


def test_each_collection_lists_both_tilesets(live):
    doc = get(live, "/ogc/collections/buildings/tiles", f="json").json()
    sets = {t["tileMatrixSetURI"].rsplit("/", 1)[-1]: t for t in doc["tilesets"]}
    assert set(sets) == {"WebMercatorQuad", "CGCS2000Quad"}
    assert sets["CGCS2000Quad"]["crs"] == CRS4490 and sets["CGCS2000Quad"]["dataType"] == "vector"
    for tms_id, ts in sets.items():
        scheme = next(x["href"] for x in ts["links"] if x["rel"].endswith("/tiling-scheme"))
        assert httpx.get(scheme, timeout=30).json()["id"] == tms_id  # resolvable
    meta = get(live, "/ogc/collections/buildings/tiles/CGCS2000Quad", f="json").json()
    assert meta["crs"] == CRS4490
    assert any(x["rel"] == "item" and "/tiles/CGCS2000Quad/{tileMatrix}/{tileRow}/{tileCol}"
               in x["href"] for x in meta["links"])
    assert get(live, "/ogc/collections/buildings/tiles/NoSuchQuad", f="json").status_code == 404
    layers = {x["id"]: x for x in get(live, "/tiles/").json()["layers"]}
    assert layers["buildings"]["tile_matrix_sets"]["CGCS2000Quad"].endswith(
        "/tiles/buildings/CGCS2000Quad/{z}/{x}/{y}.mvt")


# ---------------------------------------------------------------- the same place

def test_the_same_features_land_at_the_same_place_in_both_grids(live, city):
    got = {}
    for grid, z in ((CGCS2000, Z4490), (WEB_MERCATOR, Z3857)):
        zxy = tile_of(grid, *HERE, z)
        r, feats = features(live, grid, "buildings", *zxy)
        assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
        (props, geom), = [(p, g) for p, g in feats if p["fid"] == "210402001000001"]
        assert props["floors"] == 6 and props["building_code"] == "210402001000001"
        # every vertex within one tile unit of the stored one (the 4096 grid rounds)
        assert geom.hausdorff_distance(city["standing"]) < unit(grid, *zxy), grid.id
        _, points = features(live, grid, "addresses", *zxy)
        (_, point), = points
        assert point.distance(city["address"]) < unit(grid, *zxy)
        got[grid.id] = (geom, point, unit(grid, *zxy) * 4096 / 256)
    (g1, p1, pixel1), (g2, p2, pixel2) = got["CGCS2000Quad"], got["WebMercatorQuad"]
    pixel = min(pixel1, pixel2)  # a 256-pixel tile's pixel, in degrees
    assert g1.hausdorff_distance(g2) < pixel and p1.distance(p2) < pixel
    # and the 4490 tile is a lon/lat box: the building's MVT shape is not Mercator's
    raw = [mapbox_vector_tile.decode(get(live, path(g, "buildings", *tile_of(g, *HERE, z))).content)
           ["buildings"]["features"][0]["geometry"]["coordinates"]
           for g, z in ((CGCS2000, Z4490), (WEB_MERCATOR, Z3857))]
    assert raw[0] != raw[1]


def test_low_zoom_clusters_and_population_render_in_the_grid(live):
    # buildings cluster below WebMercatorQuad z13, i.e. below CGCS2000Quad z12
    r, clusters = features(live, CGCS2000, "buildings", *tile_of(CGCS2000, *HERE, 11))
    assert [p["count"] for p, _ in clusters] == [1] and clusters[0][0]["cluster"] is True
    _, clusters = features(live, CGCS2000, "buildings", *tile_of(CGCS2000, *HERE, 11),
                           datetime=PAST)
    assert sum(p["count"] for p, _ in clusters) == 2
    _, detail = features(live, CGCS2000, "buildings", *tile_of(CGCS2000, *HERE, 12))
    assert [p["fid"] for p, _ in detail] == ["210402001000001"]
    for z in (8, 14):  # districts, then grid cells: the SQL runs in 4490 (no area here: empty)
        assert get(live, path(CGCS2000, "population-grid", *tile_of(CGCS2000, *HERE, z))
                   ).status_code in (200, 204)


# ---------------------------------------------------------------- time, access, range

def test_datetime_and_known_at_in_the_grid(live, city):
    zxy = tile_of(CGCS2000, *HERE, Z4490)
    now_r, now = features(live, CGCS2000, "buildings", *zxy)
    past_r, past = features(live, CGCS2000, "buildings", *zxy, datetime=PAST)
    _, later = features(live, CGCS2000, "buildings", *zxy, datetime="2021-06-01")
    fids = lambda feats: {p["fid"] for p, _ in feats}  # noqa: E731
    assert fids(now) == fids(later) == {"210402001000001"}
    assert fids(past) == {"210402001000001", "210402001000002"}
    gone = next(g for p, g in past if p["fid"] == "210402001000002")
    assert gone.hausdorff_distance(city["demolished"]) < unit(CGCS2000, *zxy)
    assert all(p.get("valid_to") for p, _ in past if p["fid"] == "210402001000002")
    assert now_r.headers["cache-control"] == "public, no-cache"
    assert past_r.headers["cache-control"] == "public, max-age=3600"
    # as recorded before the city was entered: nothing; as recorded since: the past city
    before = get(live, path(CGCS2000, "buildings", *zxy), datetime=PAST,
                 known_at="2000-01-01T00:00:00Z")
    assert before.status_code == 204 and "immutable" in before.headers["cache-control"]
    _, known = features(live, CGCS2000, "buildings", *zxy, datetime=PAST,
                        known_at=city["recorded"].isoformat())
    assert fids(known) == fids(past)
    for bad in ({"datetime": "2019-01-01T00:00:00"}, {"datetime": "2018-01-01Z/2019-01-01Z"},
                {"known_at": "yesterday"}):
        r = get(live, path(CGCS2000, "buildings", *zxy), **bad)
        assert r.status_code == 400 and r.json()["description"], bad


def test_a_layer_needing_a_grant_is_refused_alike(live, city):
    zxy = tile_of(CGCS2000, *HERE, Z4490)
    z, x, y = zxy
    for url in (path(CGCS2000, "cameras", *zxy),
                f"/ogc/collections/cameras/tiles/CGCS2000Quad/{z}/{y}/{x}"):
        anonymous = get(live, url)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert anonymous.json()["code"] and anonymous.json()["description"]
        assert get(live, url, city["other"]).status_code == 403
        ok = get(live, url, city["granted"])
        assert ok.status_code == 200 and "private" in ok.headers["cache-control"]
    # the same answers as the WebMercatorQuad path gives
    web = path(WEB_MERCATOR, "cameras", *tile_of(WEB_MERCATOR, *HERE, Z3857))
    assert [get(live, web, t).status_code for t in (None, city["other"], city["granted"])] == \
        [401, 403, 200]
    _, cams = features(live, CGCS2000, "cameras", *zxy, city["granted"])
    (props, point), = cams
    assert "stream_url" not in props and point.distance(city["camera"]) < unit(CGCS2000, *zxy)


@pytest.mark.parametrize("url, status", [
    ("/tiles/buildings/CGCS2000Quad/22/0/0.mvt", 400),  # 21 is the finest (WebMercatorQuad's 22)
    ("/tiles/buildings/CGCS2000Quad/0/2/0.mvt", 400),   # two columns at zoom 0 …
    ("/tiles/buildings/CGCS2000Quad/0/0/1.mvt", 400),   # … and one row
    ("/tiles/buildings/CGCS2000Quad/3/16/0.mvt", 400),
    ("/tiles/buildings/CGCS2000Quad/3/0/8.mvt", 400),   # a WebMercatorQuad row, not ours
    ("/tiles/buildings/CGCS2000Quad/3/-1/0.mvt", 400),
    ("/tiles/buildings/CGCS2000Quad/-1/0/0.mvt", 400),
    ("/tiles/buildings/CGCS2000Quad/x/0/0.mvt", 422),
    ("/tiles/castles/CGCS2000Quad/1/0/0.mvt", 404),
    ("/tiles/buildings/NoSuchQuad/1/0/0.mvt", 404),
    ("/ogc/collections/buildings/tiles/CGCS2000Quad/0/1/0", 400),  # row 1 of one
    ("/ogc/collections/buildings-history/tiles/CGCS2000Quad/1/0/0", 404),
    ("/ogc/collections/buildings/tiles/NoSuchQuad/1/0/0?f=mvt", 404),  # pygeoapi refuses it
    ("/tiles/buildings/CGCS2000Quad/0/0/0.mvt", 204),   # the western half: no city there
    ("/tiles/buildings/CGCS2000Quad/0/1/0.mvt", 200),   # the eastern half: a cluster
    ("/tiles/buildings/CGCS2000Quad/21/0/0.mvt", 204),
    ("/tiles/buildings/WebMercatorQuad/3/8/0.mvt", 400),  # as /tiles/buildings/3/8/0.mvt
])
def test_tiles_outside_the_grid(live, url, status):
    r = httpx.get(live + url, timeout=30)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.json()


# ---------------------------------------------------------------- the cache

def test_the_cache_never_mixes_the_grids(live, city):
    """The same z/x/y names another place in each grid: each has its own cache entry (the
    fast path for anonymous requests included); WebMercatorQuad named or not is one."""
    # numbers of a WebMercatorQuad tile over the city are a CGCS2000Quad tile in the Atlantic
    z, x, y = tile_of(WEB_MERCATOR, *city["centre"], 17)
    empty = get(live, path(CGCS2000, "buildings", z, x, y))  # cached first …
    assert (empty.status_code, empty.headers["x-cache"]) == (204, "miss")
    assert get(live, path(CGCS2000, "buildings", z, x, y)).headers["x-cache"] == "hit"
    web = get(live, f"/tiles/buildings/{z}/{x}/{y}.mvt")  # … never answers for 3857's
    assert (web.status_code, web.headers["x-cache"]) == (200, "miss")
    # and the other way round, 3857 cached first
    z, x, y = tile_of(WEB_MERCATOR, *city["centre"], Z3857)
    short = f"/tiles/buildings/{z}/{x}/{y}.mvt"
    first = get(live, short)
    assert first.status_code == 200 and get(live, short).headers["x-cache"] == "hit"
    ours = path(CGCS2000, "buildings", z, x, y)
    r = get(live, ours)
    assert (r.status_code, r.headers["x-cache"]) == (204, "miss")
    assert (get(live, ours).status_code, get(live, ours).headers["x-cache"]) == (204, "hit")
    assert get(live, short).content == first.content
    # WebMercatorQuad by name is the short path's tile: one entry
    named = get(live, path(WEB_MERCATOR, "buildings", z, x, y))
    assert named.headers["x-cache"] == "hit" and named.content == first.content
    assert named.headers["etag"] == first.headers["etag"]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_write_evicts_both_grids_tiles(live, city):
    """An edit reaches the server through the database and evicts the tiles it touches in
    every grid; elsewhere, and in the past it did not change, tiles stay cached."""
    tiles = {g.id: path(g, "buildings", *tile_of(g, *HERE, z))
             for g, z in ((CGCS2000, Z4490), (WEB_MERCATOR, Z3857))}
    far = path(CGCS2000, "buildings", *tile_of(CGCS2000, HERE[0] + 0.3, HERE[1], Z4490))
    before = "2014-06-01T00:00:00+08:00"  # before the building: a write to it changes nothing then
    for p in (*tiles.values(), far):
        get(live, p), get(live, p, datetime=before)
        assert get(live, p).headers["x-cache"] == "hit"
    with psycopg.connect(city["url"]) as c:  # another process writes (as an import does)
        TemporalStore(LAYERS["buildings"].spec).patch(c, "210402001000001",
                                                      properties={"floors": 9})
        c.commit()
    for grid_id, p in tiles.items():
        assert wait_for(lambda p=p: get(live, p).headers["x-cache"] == "miss"), grid_id
        grid = GRIDS[grid_id]
        _, feats = features(live, grid, "buildings",
                            *tile_of(grid, *HERE, Z4490 if grid is CGCS2000 else Z3857))
        assert [q["floors"] for q, _ in feats if q["fid"] == "210402001000001"] == [9], grid_id
        assert get(live, p, datetime=before).headers["x-cache"] == "hit"
    assert get(live, far).headers["x-cache"] == "hit"


def test_cache_keys_files_and_eviction_by_grid(tmp_path):
    """The cache alone: one key per grid, files in a folder per grid (WebMercatorQuad's
    where they always were), found again by a new process, evicted by lon/lat in each."""
    cache = TileCache(tmp_path, 1 << 20, 1 << 20)
    zc, xc, yc = tile_of(CGCS2000, *HERE, Z4490)
    web = Key("buildings", zc, xc, yc, "current")  # a 5-tuple key is WebMercatorQuad's
    ours = Key("buildings", zc, xc, yc, "current", "CGCS2000Quad")
    cache.put(("buildings", zc, xc, yc, "current"), Tile.of(b"3857"), cache.epoch("buildings"))
    cache.put(ours, Tile.of(b"4490"), cache.epoch("buildings"))
    assert cache.get(web).data == b"3857" and cache.get(ours).data == b"4490"
    assert (tmp_path / "buildings" / str(zc) / str(xc) / str(yc) / "current.mvt").read_bytes() == b"3857"
    assert (tmp_path / "buildings" / "CGCS2000Quad" / str(zc) / str(xc) / str(yc)
            / "current.mvt").read_bytes() == b"4490"
    again = TileCache(tmp_path, 1 << 20, 1 << 20)
    assert again.get(ours).data == b"4490" and again.get(web).data == b"3857"
    # tile_range in the grid is the tiles morecantile puts the box's corners in (± buffer)
    b = CGCS2000.tms.bounds(xc, yc, zc)
    m = (b.right - b.left) * 0.05  # the buffer is 64/4096 = 1.6 % of a tile
    inner = (b.left + m, b.bottom + m, b.right - m, b.top - m)
    assert tile_range(inner, zc, "CGCS2000Quad") == (xc, yc, xc, yc)
    assert tile_range((b.right - 1e-9, b.top - 1e-4, b.right - 1e-9, b.top - 1e-4), zc,
                      "CGCS2000Quad")[2] == xc + 1  # the neighbour's buffer reaches over
    # a write inside the 4490 tile's box evicts it; the 3857 tile of the same numbers lies
    # elsewhere on the earth and stays
    assert again.evict("buildings", inner) == 1
    assert again.get(ours) is None and again.get(web).data == b"3857"
    assert again.evict("buildings", None) == 1 and again.get(web) is None


# ---------------------------------------------------------------- rasters

def opaque_box(grid, png: bytes, z, x, y):
    """The lon/lat box of a raster tile's opaque pixels (their outer edges), by morecantile."""
    img = decode_png(png)
    rows, cols = np.nonzero(img[-1] > 0)
    b = grid.tms.xy_bounds(x, y, z)
    size = img.shape[-1]
    west, north = grid.tms.lnglat(b.left + cols.min() / size * (b.right - b.left),
                                  b.top - rows.min() / size * (b.top - b.bottom))
    east, south = grid.tms.lnglat(b.left + (cols.max() + 1) / size * (b.right - b.left),
                                  b.top - (rows.max() + 1) / size * (b.top - b.bottom))
    return img, (west, south, east, north), unit(grid, z, x, y) * 4096 / size


def test_the_orthophoto_lands_at_the_same_place_in_both_grids(live, city):
    w, s, e, n = city["ortho"]  # the registered bounds (EPSG:4490)
    inside = ((w + e) / 2, (s + n) / 2)
    tiles = {g.id: lonlat_bounds(g, *inside, z) for g, z in ((CGCS2000, Z4490), (WEB_MERCATOR, Z3857))}
    both = (max(t.left for t in tiles.values()), max(t.bottom for t in tiles.values()),
            min(t.right for t in tiles.values()), min(t.top for t in tiles.values()))
    boxes = {}
    for grid, z in ((CGCS2000, Z4490), (WEB_MERCATOR, Z3857)):
        zxy = tile_of(grid, *inside, z)
        r = get(live, f"/raster/ortho/{grid.id}/{'/'.join(map(str, zxy))}.png")
        assert r.status_code == 200 and r.headers["x-raster-name"] == "ortho-2019", r.text
        img, box, pixel = opaque_box(grid, r.content, *zxy)
        opaque = img[3] > 0
        assert tuple(int(np.median(img[b][opaque])) for b in range(3)) == pytest.approx(GREEN, abs=6)
        # the photo's edges are where its bounds are (or the tile's, where it reaches beyond)
        t = tiles[grid.id]
        expect = (max(w, t.left), max(s, t.bottom), min(e, t.right), min(n, t.top))
        assert max(abs(u - v) for u, v in zip(box, expect)) < 2 * pixel, (grid.id, box, expect)
        boxes[grid.id] = ((max(box[0], both[0]), max(box[1], both[1]),
                           min(box[2], both[2]), min(box[3], both[3])), pixel)
        # titiler's own per-dataset route serves the new grid too, from the same COG
        by_name = get(live, f"/raster/ortho-2019/tiles/{grid.id}/{'/'.join(map(str, zxy))}.png")
        assert by_name.status_code == 200 and decode_png(by_name.content)[3].any()
    (b1, p1), (b2, p2) = boxes["CGCS2000Quad"], boxes["WebMercatorQuad"]
    assert max(abs(u - v) for u, v in zip(b1, b2)) < 2 * max(p1, p2)  # the same place
    listing = get(live, "/raster/").json()
    assert listing["series"]["ortho"]["tile_matrix_sets"]["CGCS2000Quad"].endswith(
        "/raster/ortho/CGCS2000Quad/{z}/{x}/{y}.png?datetime={datetime}")
    tj = get(live, "/raster/ortho-2019/CGCS2000Quad/tilejson.json")
    assert tj.status_code == 200 and "/tiles/CGCS2000Quad/" in tj.json()["tiles"][0]


def test_the_hillshade_in_the_grid_shades_as_in_web_mercator(live, city):
    """A CGCS2000Quad pixel is 1/cos(42°) ≈ 1.34 times taller than wide on the ground: with
    each axis's own size the slopes, hence the shades, agree with WebMercatorQuad's (lit
    from the north, where north-south slopes decide the shade)."""
    spot = (ORTHO_AT[0] + 0.03, ORTHO_AT[1] - 0.02)  # the hill's flank
    LIGHT = {"azimuth": 0, "altitude": 30, "exaggeration": 20}  # from the north, steep
    zooms = ((CGCS2000, 13), (WEB_MERCATOR, 14))
    tiles = [lonlat_bounds(g, *spot, z) for g, z in zooms]
    w, s = max(t.left for t in tiles), max(t.bottom for t in tiles)
    e, n = min(t.right for t in tiles), min(t.top for t in tiles)
    points = [(w + (e - w) * i / 8, s + (n - s) * j / 8) for i in range(1, 8) for j in range(1, 8)]
    shades = {}
    for grid, z in zooms:
        zxy = tile_of(grid, *spot, z)
        r = get(live, f"/raster/dem/hillshade/{grid.id}/{'/'.join(map(str, zxy))}.png", **LIGHT)
        assert r.status_code == 200 and r.headers["x-raster-name"] == "hills", r.text
        img = decode_png(r.content)
        assert img.shape[1:] == (256, 256) and img[-1].any()
        b = grid.tms.xy_bounds(zxy[1], zxy[2], zxy[0])
        samples = []
        for lon, lat in points:
            gx, gy = grid.tms.xy(lon, lat)
            col = int((gx - b.left) / (b.right - b.left) * 256)
            row = int((b.top - gy) / (b.top - b.bottom) * 256)
            samples.append(float(img[0][row, col]) if img[-1][row, col] else np.nan)
        shades[grid.id] = np.array(samples)
    both = ~np.isnan(shades["CGCS2000Quad"]) & ~np.isnan(shades["WebMercatorQuad"])
    assert both.sum() >= 20
    ours, web = shades["CGCS2000Quad"][both], shades["WebMercatorQuad"][both]
    assert web.max() - web.min() > 20  # the hill is shaded, not flat
    # measured: mean 0.3, max 2 of 255; with square pixels (east-west size both ways) the
    # north-south slopes were 1.34 times too steep: mean 8, max 14
    diff = np.abs(ours - web)
    assert diff.mean() < 2 and diff.max() <= 6, (ours, web)


@pytest.mark.parametrize("url", [
    "/raster/ortho/CGCS2000Quad/0/2/0.png",
    "/raster/ortho/CGCS2000Quad/22/0/0.png",
    "/raster/dem/hillshade/CGCS2000Quad/3/0/8.png",
    "/raster/ortho/NoSuchQuad/1/0/0.png",
])
def test_raster_tiles_outside_the_grid(live, url):
    r = httpx.get(live + url, timeout=30)
    assert r.status_code == 404 and r.json()["description"], r.text
