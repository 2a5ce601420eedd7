"""Time before the demo (issue 15 §3): history from any date is served, and extents come
from the data. A city imports buildings from 1985 and cadastral history from the 1990s;
a `datetime` outside the data is a valid question with an empty answer, never a 400."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import pytest
import shapely
from conftest import fresh_database, serving
from shapely.geometry import box

CLI = str(Path(sys.executable).with_name("gisplatform"))
OLD, NEW = "21040219900001", "21040220200001"
X, Y = 123.905, 41.872


def _import(url: str, path: Path, fid: str, x: float, valid_from: str) -> None:
    fc = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": json.loads(shapely.to_geojson(box(x, Y, x + 0.0003, Y + 0.0002))),
        "properties": {"building_code": fid, "floors": 5, "height": 16.0, "use": "residential",
                       "structure": "brick_concrete", "year_built": 1990,
                       "address": f"抚顺市新抚区测试路{fid[-1]}号"}}]}
    path.write_text(json.dumps(fc, ensure_ascii=False))
    r = subprocess.run([CLI, "import", "buildings", str(path), "--valid-from", valid_from],
                       env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def city(pg, tmp_path_factory):
    url = fresh_database(pg, "before_the_demo")
    tmp = tmp_path_factory.mktemp("before")
    _import(url, tmp / "old.geojson", OLD, X, "1990-05-01T00:00:00+08:00")
    _import(url, tmp / "new.geojson", NEW, X + 0.002, "2020-01-01T00:00:00+08:00")
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(tmp / "data")}
    subprocess.run([CLI, "3d", "build", "buildings"], env=env, check=True, capture_output=True)
    with serving(url, tmp / "data") as base:
        yield base


def ids(base: str, cid: str, **params) -> list:
    r = httpx.get(f"{base}/ogc/collections/{cid}/items", params={"f": "json", **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["numberMatched"] == len(body["features"])
    return [f["properties"]["fid"] if "history" in cid else f["id"] for f in body["features"]]


def test_a_building_from_1990_is_served_in_1995(city):
    assert ids(city, "buildings", datetime="1995-01-01T00:00:00+08:00") == [OLD]
    assert ids(city, "buildings", datetime="1995-01-01") == [OLD]  # a bare date: 00:00 UTC+8
    assert ids(city, "buildings-history", datetime="1995-01-01T00:00:00Z") == [OLD]
    assert ids(city, "buildings", datetime="1990-01-01T00:00:00Z/1991-01-01T00:00:00Z") == [OLD]
    assert sorted(ids(city, "buildings")) == [OLD, NEW]
    t = morecantile.tms.get("WebMercatorQuad").tile(X + 0.00015, Y + 0.0001, 15)
    r = httpx.get(f"{city}/tiles/buildings/15/{t.x}/{t.y}.mvt", params={"datetime": "1995-01-01"})
    assert r.status_code == 200, r.text
    feats = mapbox_vector_tile.decode(r.content)["buildings"]["features"]
    assert [f["properties"]["fid"] for f in feats] == [OLD]


@pytest.mark.parametrize("when", ["1985-01-01T00:00:00Z", "1900-01-01", "1980-01-01/1985-01-01",
                                  "2999-01-01T00:00:00Z"])
def test_a_time_outside_the_data_is_an_empty_answer(city, when):
    assert ids(city, "buildings", datetime=when) == [] or when.startswith("2999")
    assert ids(city, "buildings-history", datetime=when) == [] or when.startswith("2999")
    if "/" not in when:
        t = morecantile.tms.get("WebMercatorQuad").tile(X + 0.00015, Y + 0.0001, 15)
        r = httpx.get(f"{city}/tiles/buildings/15/{t.x}/{t.y}.mvt", params={"datetime": when})
        assert r.status_code == (200 if when.startswith("2999") else 204), r.text
        r = httpx.get(f"{city}/3d/buildings/tileset.json", params={"datetime": when})
        assert r.status_code == 200, r.text


def test_extents_come_from_the_data(city):
    doc = httpx.get(f"{city}/ogc/collections/buildings", params={"f": "json"}).json()
    lo, hi = doc["extent"]["temporal"]["interval"][0]
    assert lo.startswith("1990-04-30T16:00:00") and hi is None
    w, s, e, n = doc["extent"]["spatial"]["bbox"][0]  # float4 boxes: ~1 m
    assert w == pytest.approx(X, abs=2e-5) and e == pytest.approx(X + 0.0023, abs=2e-5)
    assert s == pytest.approx(Y, abs=2e-5) and n == pytest.approx(Y + 0.0002, abs=2e-5)
    rec = httpx.get(f"{city}/ogc/collections/catalogue/items/buildings", params={"f": "json"})
    assert rec.json()["time"]["interval"] == ["1990-04-30T16:00:00Z", None], rec.text
    empty = httpx.get(f"{city}/ogc/collections/cameras-history", params={"f": "json"}).json()
    assert empty["extent"]["temporal"]["interval"] == [[None, None]]
