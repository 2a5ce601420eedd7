"""Vector tiles as map clients fetch them: decoded, placed, timed, cached, invalidated."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import numpy as np
import psycopg
import pytest
import shapely
from shapely.geometry import Point, shape

from gisplatform.security import create_token
from gisplatform.temporal import TemporalStore
from layers import LAYERS
from layers.fushun import CITY_BBOX
from tiles.sources import tile_params

TMS = morecantile.tms.get("WebMercatorQuad")
CLI = str(Path(sys.executable).with_name("gisplatform"))


def get(base, path, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{base}{path}", params=params, headers=headers, timeout=30)


def tile_at(lon, lat, z):
    t = TMS.tile(lon, lat, z)
    return t.z, t.x, t.y


def decode(data: bytes, z: int, x: int, y: int) -> dict:
    """{layer: [(properties, shapely geometry in lon/lat)]} from a tile."""
    b = TMS.xy_bounds(x, y, z)
    r = 6378137.0
    out = {}
    for name, layer in mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}).items():
        ext = layer["extent"]

        def to_lonlat(pxy, ext=ext):
            mx = b.left + pxy[:, 0] / ext * (b.right - b.left)
            my = b.top - pxy[:, 1] / ext * (b.top - b.bottom)
            return np.column_stack([np.degrees(mx / r),
                                    np.degrees(2 * np.arctan(np.exp(my / r)) - np.pi / 2)])

        out[name] = [(f["properties"], shapely.transform(shape(f["geometry"]), to_lonlat))
                     for f in layer["features"]]
    return out


def fetch(base, layer, z, x, y, token=None, **params):
    r = get(base, f"/tiles/{layer}/{z}/{x}/{y}.mvt", token, **params)
    assert r.status_code in (200, 204), r.text
    return r, (decode(r.content, z, x, y).get(layer, []) if r.status_code == 200 else [])


@pytest.fixture(scope="module")
def building(demo_url):
    """A current building that was built after 2020 (absent from a 2019 map)."""
    with psycopg.connect(demo_url) as c:
        row = c.execute("""
            select b.fid, st_x(st_pointonsurface(b.geom)), st_y(st_pointonsurface(b.geom)),
                   f.built, b.floors
            from city.buildings b
            join (select fid, min(lower(valid)) as built from city.buildings_version
                  group by fid) f using (fid)
            where f.built > '2021-01-01' order by b.fid limit 1""").fetchone()
    assert row, "the demo has buildings built after 2020"
    return dict(zip(("fid", "lon", "lat", "built", "floors"), row))


def test_tile_holds_the_building_at_its_place_with_attributes(live, building):
    z, x, y = tile_at(building["lon"], building["lat"], 16)
    r, feats = fetch(live, "buildings", z, x, y)
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    ours = [(p, g) for p, g in feats if p["fid"] == building["fid"]]
    assert len(ours) == 1
    props, geom = ours[0]
    assert props["floors"] == building["floors"] and props["building_code"] == building["fid"]
    assert {"valid_from", "height", "use"} <= set(props)
    # within a few tile units (z16: ~0.6 m per unit)
    assert geom.distance(Point(building["lon"], building["lat"])) < 2e-5


def test_datetime_changes_what_is_drawn(live, building, demo_url):
    z, x, y = tile_at(building["lon"], building["lat"], 15)
    _, now = fetch(live, "buildings", z, x, y)
    _, then = fetch(live, "buildings", z, x, y, datetime="2019-06-01T00:00:00+08:00")
    fids_now, fids_then = {p["fid"] for p, _ in now}, {p["fid"] for p, _ in then}
    assert building["fid"] in fids_now and building["fid"] not in fids_then
    with psycopg.connect(demo_url) as c:  # the tile at 2019 is the 2019 snapshot, exactly
        expect = {r[0] for r in c.execute("""
            select fid from city.buildings_version
            where valid @> '2019-06-01T00:00:00+08:00'::timestamptz and upper_inf(recorded)
              and geom && st_makeenvelope(%s, %s, %s, %s, 4490)""",
            [tile_params(z, x, y, None, None)[k] for k in "wsen"]).fetchall()}
    assert fids_then == expect


def test_low_zoom_clusters_count_every_feature(live, demo_url):
    """Below the detail zoom nothing is dropped: the clusters' counts add up to the layer."""
    z = 9
    total = 0
    x0, y0 = TMS.tile(CITY_BBOX[0], CITY_BBOX[3], z)[:2]
    x1, y1 = TMS.tile(CITY_BBOX[2], CITY_BBOX[1], z)[:2]
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            _, feats = fetch(live, "cases", z, x, y)
            assert all(p.get("cluster") is True for p, _ in feats)
            total += sum(p["count"] for p, _ in feats)
    with psycopg.connect(demo_url) as c:
        assert total == c.execute("select count(*) from city.cases").fetchone()[0]


def test_personal_layers_need_a_grant_and_never_carry_personal_fields(live, demo_url):
    with psycopg.connect(demo_url) as c:
        _, granted = create_token(c, "gongan", [("persons", "read_personal")], label="tiles-p")
        _, other = create_token(c, "gongan", [("cameras", "read")], label="tiles-c")
        lon, lat = c.execute("select st_x(geom), st_y(geom) from city.persons limit 1").fetchone()
        c.commit()
    z, x, y = tile_at(lon, lat, 16)
    assert get(live, f"/tiles/persons/{z}/{x}/{y}.mvt").status_code == 401
    assert get(live, f"/tiles/persons/{z}/{x}/{y}.mvt", other).status_code == 403
    r, feats = fetch(live, "persons", z, x, y, granted)
    assert feats and "private" in r.headers["cache-control"]
    personal = set(LAYERS["persons"].personal)
    assert personal and not personal & set().union(*(p.keys() for p, _ in feats))
    # the style and the listing show anonymous callers only what they may read
    assert "persons" not in get(live, "/tiles/style.json").json()["sources"]
    assert "persons" in get(live, "/tiles/style.json", granted).json()["sources"]


def test_population_grid_by_zoom_matches_the_aggregate(live, demo_url):
    with psycopg.connect(demo_url) as c:
        lon, lat = c.execute("select st_x(geom), st_y(geom) from city.persons limit 1").fetchone()
        grid = dict(c.execute("select code, total from city.population_by_grid()").fetchall())
        areas = dict(c.execute("select code, total from city.population_by_area()").fetchall())
    _, cells = fetch(live, "population-grid", *tile_at(lon, lat, 14))
    _, districts = fetch(live, "population-grid", *tile_at(lon, lat, 9))
    assert cells and all(grid[p["code"]] == p["total"] for p, _ in cells)
    assert districts and all(areas[p["code"]] == p["total"] for p, _ in districts)
    assert sum(p["total"] for p, _ in cells) > 0


def test_cache_headers_etag_and_empty_tiles(live, building):
    z, x, y = tile_at(building["lon"], building["lat"], 14)
    path = f"/tiles/buildings/{z}/{x}/{y}.mvt"
    first, again = get(live, path), get(live, path)
    assert again.headers["x-cache"] == "hit" and first.content == again.content
    assert first.headers["etag"] == again.headers["etag"]
    assert first.headers["cache-control"] == "public, no-cache"
    assert get(live, path, None).headers["access-control-allow-origin"] == "*"
    r = httpx.get(f"{live}{path}", headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 304 and not r.content
    past = get(live, path, datetime="2019-01-01T00:00:00+08:00")
    assert past.headers["cache-control"] == "public, max-age=3600"
    frozen = get(live, path, datetime="2019-01-01T00:00:00+08:00", known_at="2026-01-01T00:00:00Z")
    assert "immutable" in frozen.headers["cache-control"]
    empty = get(live, "/tiles/buildings/14/0/0.mvt")  # the Arctic
    assert empty.status_code == 204 and empty.headers["etag"]


@pytest.mark.parametrize("path, status", [
    ("/tiles/castles/1/0/0.mvt", 404),
    ("/tiles/buildings/23/0/0.mvt", 400),
    ("/tiles/buildings/3/8/0.mvt", 400),
    ("/tiles/buildings/3/-1/0.mvt", 400),
    ("/tiles/buildings/14/1/1.mvt?datetime=2019-01-01T00:00:00", 400),
    ("/tiles/buildings/14/1/1.mvt?datetime=2018-01-01T00:00:00Z/2019-01-01T00:00:00Z", 400),
    ("/tiles/buildings/14/1/1.mvt?known_at=yesterday", 400),
    ("/tiles/population-grid/14/1/1.mvt?known_at=2020-01-01T00:00:00Z", 400),
    ("/tiles/buildings/x/1/1.mvt", 422),
])
def test_bad_tile_requests_are_4xx(live, path, status):
    r = httpx.get(f"{live}{path}")
    assert r.status_code == status, r.text
    assert r.json()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_write_evicts_exactly_the_tiles_it_touches(live, demo_url, building):
    """A write from another process (as `gisplatform import` is) reaches the server's cache
    through the database; tiles elsewhere, and past tiles, stay cached."""
    lon, lat = building["lon"], building["lat"]
    near = f"/tiles/buildings/{'/'.join(map(str, tile_at(lon, lat, 15)))}.mvt"
    far = f"/tiles/buildings/{'/'.join(map(str, tile_at(lon + 0.3, lat, 15)))}.mvt"
    past = {"datetime": "2019-06-01T00:00:00+08:00"}
    for p in (near, far):
        get(live, p), get(live, p, **past)
    assert get(live, near).headers["x-cache"] == "hit"
    store = TemporalStore(LAYERS["buildings"].spec)
    with psycopg.connect(demo_url) as c:
        store.patch(c, building["fid"], properties={"floors": building["floors"] + 7})
        c.commit()
    assert wait_for(lambda: get(live, near).headers["x-cache"] == "miss")
    z, x, y = tile_at(lon, lat, 15)
    _, feats = fetch(live, "buildings", z, x, y)
    assert [p["floors"] for p, _ in feats if p["fid"] == building["fid"]] == [building["floors"] + 7]
    assert get(live, far).headers["x-cache"] == "hit"
    assert get(live, near, **past).headers["x-cache"] == "hit"  # 2019 did not change
    assert get(live, far, **past).headers["x-cache"] == "hit"


def test_an_ogc_transaction_evicts_too(live, demo_url):
    with psycopg.connect(demo_url) as c:
        _, writer = create_token(c, "zhujian", [("buildings", "write")], label="tiles-w")
        c.commit()
    x0, y0 = 124.02, 41.88
    path = f"/tiles/buildings/{'/'.join(map(str, tile_at(x0 + 0.0001, y0 + 0.0001, 16)))}.mvt"
    assert get(live, path).status_code == 204 and get(live, path).headers["x-cache"] == "hit"
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[
        [x0, y0], [x0 + 0.0002, y0], [x0 + 0.0002, y0 + 0.0002], [x0, y0 + 0.0002], [x0, y0]]]},
        "properties": {"building_code": "210402999000001", "floors": 3, "height": 9.6,
                       "use": "residential"}}
    r = httpx.post(f"{live}/ogc/collections/buildings/items", json=feature,
                   headers={"Authorization": f"Bearer {writer}",
                            "Content-Type": "application/geo+json"})
    assert r.status_code == 201, r.text
    assert wait_for(lambda: get(live, path).status_code == 200)


def test_ogc_api_tiles_serve_the_same_tiles(live, building):
    doc = get(live, "/ogc/collections/buildings/tiles", f="json").json()
    assert [t["tileMatrixSetURI"].rsplit("/", 1)[-1] for t in doc["tilesets"]] == [
        "WebMercatorQuad", "CGCS2000Quad"]  # the EPSG:4490 grid: tests/test_cgcs2000_tiles.py
    assert any(link["href"].endswith("/tiles/buildings.json") for link in doc["links"])
    z, x, y = tile_at(building["lon"], building["lat"], 15)
    ogc = get(live, f"/ogc/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}")
    assert ogc.status_code == 200 and ogc.content == get(live, f"/tiles/buildings/{z}/{x}/{y}.mvt").content
    assert get(live, "/ogc/collections/persons/tiles/WebMercatorQuad/14/6000/13000").status_code == 401
    assert get(live, "/ogc/collections/buildings-history/tiles/WebMercatorQuad/1/0/0").status_code == 404


def test_tilejson_and_style(live):
    tj = get(live, "/tiles/buildings.json", datetime="2020-01-01T00:00:00+08:00").json()
    assert tj["tilejson"] == "3.0.0" and tj["vector_layers"][0]["id"] == "buildings"
    assert "datetime=2020-01-01" in tj["tiles"][0] and tj["tiles"][0].startswith(live)
    assert {"building_code", "floors", "valid_from"} <= set(tj["vector_layers"][0]["fields"])
    style = get(live, "/tiles/style.json").json()
    assert style["version"] == 8
    names = {layer["source"] for layer in style["layers"] if "source" in layer}
    assert {"buildings", "admin-areas", "population-grid"} <= names
    assert all(s["tiles"][0].startswith(live) for s in style["sources"].values())  # no CDN
    listing = get(live, "/tiles/").json()["layers"]
    assert {x["id"] for x in listing} == set(style["sources"]) - {
        s for s, v in style["sources"].items() if v["type"] == "raster"}


def test_gdal_reads_a_served_tile(live, building):
    """GDAL's MVT driver (what QGIS's vector tile layer rests on) georeferences a tile
    from its z/x/y path."""
    pyogrio = pytest.importorskip("pyogrio")
    z, x, y = tile_at(building["lon"], building["lat"], 15)
    url = f"/vsicurl/{live}/tiles/buildings/{z}/{x}/{y}.mvt"
    meta, _, geoms, fields = pyogrio.raw.read(url, layer="buildings")
    assert len(geoms) > 0 and "building_code" in meta["fields"]
    from pyproj import Transformer
    from shapely import from_wkb
    mx, my = Transformer.from_crs(4326, 3857, always_xy=True).transform(building["lon"], building["lat"])
    assert min(from_wkb(g).distance(Point(mx, my)) for g in geoms) < 2  # metres


def test_seed_and_export_from_the_cli(demo_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": demo_url, "GISPLATFORM_DATA_DIR": str(tmp_path)}
    bbox = "123.85,41.83,123.98,41.90"
    r = subprocess.run([CLI, "tiles", "seed", "buildings", "--zoom", "13-15", "--bbox", bbox],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seeded = list((tmp_path / "tiles" / "buildings").rglob("*.mvt"))
    assert seeded and "tiles/s" in r.stderr
    for out in ("b.pmtiles", "b.mbtiles"):
        r = subprocess.run([CLI, "tiles", "export", "buildings", str(tmp_path / out),
                            "--zoom", "13-15", "--bbox", bbox], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    import pyogrio
    n_pm = pyogrio.read_info(str(tmp_path / "b.pmtiles"), layer="buildings")["features"]
    n_mb = pyogrio.read_info(str(tmp_path / "b.mbtiles"), layer="buildings")["features"]
    assert n_pm > 0 and n_mb == n_pm
    bad = [
        (["tiles", "seed", "castles"], "no tile layer"),
        (["tiles", "seed", "buildings", "--zoom", "16-10"], "zooms run"),
        (["tiles", "seed", "buildings", "--bbox", "124,42,123,41"], "west < east"),
        (["tiles", "seed", "buildings", "--datetime", "2020-01-01"], "time zone"),
        (["tiles", "export", "buildings", str(tmp_path / "x.zip")], ".pmtiles or .mbtiles"),
        (["tiles", "export", "buildings", str(tmp_path / "b.pmtiles")], "exists"),
    ]
    for args, message in bad:
        r = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and message in " ".join(r.stderr.split()), (args, r.stderr)
    assert not (tmp_path / "x.zip").exists()


def test_tile_range_covers_buffered_neighbours():
    from tiles.cache import tile_range

    w, s, e, n = TMS.bounds(100, 200, 9)
    dx, dy = (e - w) * 0.05, (n - s) * 0.05  # the buffer is 64/4096 = 1.6 % of a tile
    assert tile_range((w + dx, s + dy, e - dx, n - dy), 9) == (100, 200, 100, 200)
    # a change right at the edge also touches the neighbour (its buffer reaches over)
    assert tile_range((e - 1e-9, s + 0.01, e - 1e-9, s + 0.01), 9)[2] == 101
    assert math.isclose(TMS.bounds(0, 0, 0).left, -180)
