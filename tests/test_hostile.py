"""A catalogue of hostile inputs across transactions, query parameters, files and names.

Each case must get a clear 4xx (HTTP) or a non-zero exit with a message (CLI), and leave
the database exactly as it was: every version table's row count and the tile-change log
(which every write to a layer appends to) are compared before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import psycopg
import pytest

from gisplatform.security import create_token
from layers import LAYERS

CLI = str(Path(sys.executable).with_name("gisplatform"))
X, Y = 123.915, 41.862  # inside the urban core


def square(x=X, y=Y, d=0.0003):
    return {"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]}


def building(**over):
    props = {"building_code": "210402999100001", "floors": 5, "height": 16.0, "use": "residential"}
    geometry = over.pop("geometry", square())
    props.update(over)
    return {"type": "Feature", "geometry": geometry, "properties": props}


def state(conn) -> tuple:
    counts = tuple(conn.execute(f'select count(*) from city."{layer.spec.version_table}"').fetchone()[0]
                   for layer in LAYERS.values())
    seq = conn.execute("select coalesce(max(seq), 0) from city.tile_changes").fetchone()[0]
    extra = conn.execute("select (select count(*) from city.tilesets),"
                         " (select count(*) from city.rasters)").fetchone()
    return counts, seq, extra


@pytest.fixture(scope="module")
def writers(demo_url):
    with psycopg.connect(demo_url) as c:
        tokens = {layer: create_token(c, "zhujian", [(layer, "write")], label=f"hostile-{layer}")[1]
                  for layer in ("buildings", "legal-persons", "cameras", "persons")}
        c.commit()
    return tokens


# (id, layer, method, path suffix, body) — body: dict → JSON, str → raw text
TRANSACTIONS = [
    ("malformed-json", "buildings", "POST", "", '{"type": "Feature", "geometry": '),
    ("not-a-feature", "buildings", "POST", "", {"type": "FeatureCollection", "features": []}),
    ("self-intersecting", "buildings", "POST", "", building(geometry={"type": "Polygon", "coordinates": [[
        [X, Y], [X + 0.001, Y + 0.001], [X + 0.001, Y], [X, Y + 0.001], [X, Y]]]})),
    ("empty-geometry", "buildings", "POST", "", building(geometry={"type": "Polygon", "coordinates": []})),
    ("outside-the-city", "buildings", "POST", "", building(geometry=square(0.0, 0.0))),
    ("swapped-axes", "buildings", "POST", "", building(geometry=square(Y, X))),
    ("wrong-geometry-type", "buildings", "POST", "", building(geometry={"type": "Point", "coordinates": [X, Y]})),
    ("missing-required", "buildings", "POST", "", building(floors=None)),
    ("bad-choice", "buildings", "POST", "", building(use="castle")),
    ("impossible-height", "buildings", "POST", "", building(height=-3)),
    ("string-for-number", "buildings", "POST", "", building(floors="many")),
    ("zone-less-valid-from", "buildings", "POST", "", building(valid_from="2024-01-01T00:00:00")),
    ("sql-in-a-value", "buildings", "POST", "", building(
        building_code="2104'); drop table city.buildings_version; --")),
    ("bad-credit-code", "legal-persons", "POST", "", {"type": "Feature",
        "geometry": {"type": "Point", "coordinates": [X, Y]},
        "properties": {"credit_code": "91210400MA0IOXXXX", "name": "x", "status": "active"}}),
    ("bad-gbt28181-id", "cameras", "POST", "", {"type": "Feature",
        "geometry": {"type": "Point", "coordinates": [X, Y]},
        "properties": {"device_id": "2104000000132000001", "name": "x", "sector": "public_security",
                       "status": "ON"}}),
    ("bad-id-number", "persons", "POST", "", {"type": "Feature",
        "geometry": {"type": "Point", "coordinates": [X, Y]},
        "properties": {"id_number": "210402199001011234", "name": "张三", "sex": "M",
                       "birth_date": "1990-01-01", "household_type": "registered"}}),
    ("put-unknown-fid", "buildings", "PUT", "/210402999999999", building(building_code="210402999999999")),
    ("delete-unknown-fid", "buildings", "DELETE", "/210402999999998", None),
]


@pytest.mark.parametrize("case", TRANSACTIONS, ids=[c[0] for c in TRANSACTIONS])
def test_bad_transactions_are_4xx_and_write_nothing(live, demo_url, writers, case):
    _, layer, method, suffix, body = case
    headers = {"Authorization": f"Bearer {writers[layer]}", "Content-Type": "application/geo+json"}
    content = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
    with psycopg.connect(demo_url) as c:
        before = state(c)
    r = httpx.request(method, f"{live}/ogc/collections/{layer}/items{suffix}", content=content,
                      headers=headers, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json().get("description"), r.text  # a message a user can act on
    with psycopg.connect(demo_url) as c:
        assert state(c) == before


def test_overlapping_validity_is_refused(live, demo_url, writers):
    """A second version starting before the current one began would overlap it."""
    with psycopg.connect(demo_url) as c:
        fid, start = c.execute("select fid, valid_from from city.buildings order by fid limit 1").fetchone()
        before = state(c)
    earlier = (start.replace(year=start.year - 1)).isoformat()
    r = httpx.put(f"{live}/ogc/collections/buildings/items/{fid}",
                  content=json.dumps(building(building_code=fid, valid_from=earlier)),
                  headers={"Authorization": f"Bearer {writers['buildings']}",
                           "Content-Type": "application/geo+json"}, timeout=30)
    assert 400 <= r.status_code < 500, r.text
    with psycopg.connect(demo_url) as c:
        assert state(c) == before


QUERIES = [
    ("/ogc/collections/buildings/items", {"bbox": "1,2,3"}),
    ("/ogc/collections/buildings/items", {"bbox": "-1000,-1000,1000,1000"}),
    ("/ogc/collections/buildings/items", {"bbox": "124,42,123,41"}),
    ("/ogc/collections/buildings/items", {"bbox": "nan,nan,nan,nan"}),
    ("/ogc/collections/buildings/items", {"filter": "name = 'x'; drop table city.buildings_version; --"}),
    ("/ogc/collections/buildings/items", {"filter": "nosuch = 1"}),
    ("/ogc/collections/buildings/items", {"filter": "floors > (select 1)"}),
    ("/ogc/collections/buildings/items", {"filter-lang": "cql2-json", "filter": '{"op": "exec", "args": []}'}),
    ("/ogc/collections/buildings/items", {"datetime": "yesterday"}),
    ("/ogc/collections/buildings/items", {"crs": "http://www.opengis.net/def/crs/EPSG/0/99999"}),
    ("/ogc/collections/buildings/items", {"limit": "-1"}),
    ("/ogc/collections/buildings/items", {"sortby": "-nosuch"}),
    ("/ogc/collections/persons/items", {}),
    ("/tiles/buildings/99/0/0.mvt", {}),
    ("/tiles/buildings/14/0/0.mvt", {"datetime": "2019-01-01T00:00:00"}),
    ("/api/search", {"q": "x" * 500}),
    ("/raster/", {"url": "file:///etc/passwd"}),
    ("/raster/ortho/10/0/0.png", {"url": "http://169.254.169.254/latest/meta-data/"}),
    ("/raster/..%2f..%2fetc%2fpasswd/info", {}),
    ("/raster/%2Fetc%2Fpasswd/tiles/WebMercatorQuad/1/0/0.png", {}),
    ("/3d/buildings/..%2f..%2fpg-password", {}),
    ("/3d/..%2fpgdata/PG_VERSION", {}),
]


@pytest.mark.parametrize("path, params", QUERIES, ids=[f"{p}?{'&'.join(q)}" for p, q in QUERIES])
def test_hostile_queries_are_4xx_and_write_nothing(live, demo_url, path, params):
    with psycopg.connect(demo_url) as c:
        before = state(c)
    r = httpx.get(f"{live}{path}", params={"f": "json", **params} if path.startswith("/ogc") else params,
                  timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "root:x:0:0" not in r.text  # no file content leaks (/etc/passwd)
    with psycopg.connect(demo_url) as c:
        assert state(c) == before


def test_huge_limits_are_capped_not_obeyed(live):
    """OGC API Features 1.0 (/req/core/fc-limit-response-1): a limit above the maximum is
    served as the maximum, not refused."""
    r = httpx.get(f"{live}/ogc/collections/buildings/items", params={"f": "json", "limit": 10**9},
                  timeout=60)
    assert r.status_code == 200 and len(r.json()["features"]) <= 10_000


def _zip_slip(tmp: Path) -> Path:
    z = tmp / "slip.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("tileset.json", json.dumps({"asset": {"version": "1.1"}, "geometricError": 1,
                                               "root": {"boundingVolume": {"sphere": [0, 0, 0, 1]},
                                                        "geometricError": 0,
                                                        "content": {"uri": "a.glb"}}}))
        f.writestr("../../evil.glb", b"glTF")
    return z


CLI_CASES = [
    ("import-missing-file", lambda t: ["import", "buildings", str(t / "nope.geojson")]),
    ("import-malformed-geojson", lambda t: ["import", "buildings", str(_write(t / "bad.geojson", "{not json"))]),
    ("import-unknown-layer", lambda t: ["import", "castles", str(_write(t / "a.geojson", _fc()))]),
    ("import-bad-crs", lambda t: ["import", "buildings", str(_write(t / "b.geojson", _fc())), "--crs", "EPSG:99999"]),
    ("import-zone-less-valid-from", lambda t: ["import", "buildings", str(_write(t / "c.geojson", _fc())),
                                               "--valid-from", "2024-01-01T00:00:00", "--all-or-nothing"]),
    ("raster-add-not-a-raster", lambda t: ["raster", "add", str(_write(t / "x.tif", "hello")), "--name", "x",
                                           "--kind", "ortho", "--time", "2020-01-01T00:00:00+08:00"]),
    ("raster-add-traversal-name", lambda t: ["raster", "add", str(_write(t / "y.tif", "hello")), "--name",
                                             "../../etc", "--kind", "dem", "--time", "2020-01-01T00:00:00+08:00"]),
    ("3d-import-zip-slip", lambda t: ["3d", "import", str(_zip_slip(t)), "--name", "slip",
                                      "--time", "2020-01-01T00:00:00+08:00"]),
    ("3d-build-traversal-name", lambda t: ["3d", "build", "buildings", "--name", "../x"]),
    ("tiles-export-into-missing-dir", lambda t: ["tiles", "export", "buildings", str(t / "no" / "x.pmtiles")]),
    ("tiles-export-bad-suffix", lambda t: ["tiles", "export", "buildings", str(t / "x.exe")]),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fc() -> str:
    return json.dumps({"type": "FeatureCollection", "features": [building()]})


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_hostile_cli_input_fails_clearly_and_writes_nothing(demo_url, tmp_path, case):
    _, args = case
    env = {**os.environ, "DATABASE_URL": demo_url, "GISPLATFORM_DATA_DIR": str(tmp_path / "data")}
    with psycopg.connect(demo_url) as c:
        before = state(c)
    r = subprocess.run([CLI, *args(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    message = " ".join(r.stderr.split())
    assert ("error" in message.lower() or "invalid" in message.lower()) and "Traceback" not in message, message
    with psycopg.connect(demo_url) as c:
        assert state(c) == before
    assert not (tmp_path.parent / "evil.glb").exists() and not (tmp_path / "evil.glb").exists()


def test_the_catalogue_is_at_least_thirty_cases():
    assert len(TRANSACTIONS) + 1 + len(QUERIES) + 1 + len(CLI_CASES) >= 30
