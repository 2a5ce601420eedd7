"""The web viewer (/viewer/, issue 7): built offline from npm packages, served by the app,
driven in headless Chromium over a demo city with its rasters and 3D tilesets."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import fresh_database, serving
from js import require, viewer_check
from starlette.testclient import TestClient

from gisplatform.viewer import DIST, viewer_app

REPO = Path(__file__).resolve().parent.parent
VIEWER = REPO / "gisplatform" / "viewer"
# the page's own files: nothing in them may name another host
OWN = ("index.html", "app.js", "css/viewer.css")
URL = re.compile(rb"(?:https?:)?//([a-z0-9.-]+\.[a-z]{2,})(?=[/\"'`:)\s])", re.IGNORECASE)
ALLOWED_HOSTS = {b"www.w3.org"}  # XML/SVG namespaces are names, not requests


def build(*args: str) -> subprocess.CompletedProcess:
    require(browser=False)
    return subprocess.run(["node", str(VIEWER / "build.mjs"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def dist() -> Path:
    """The viewer as `make run`/`make test` build it (rebuilt here if its sources changed)."""
    r = build()
    assert r.returncode == 0, r.stderr
    return DIST


@pytest.fixture(scope="module")
def city(pg, dist, tmp_path_factory):
    """A demo city with orthophotos, DEM, the buildings tileset and the real-scene block,
    served; a token that reads persons and cameras; a building with several versions."""
    from gisplatform.security import create_token
    from gisplatform.temporal import parse_instant
    from layers.demo import load_demo
    from layers.fushun import CITY_BBOX
    from models3d.buildings import build as build_3d
    from models3d.realscene_demo import add_demo_realscene
    from tiles.raster_demo import add_demo_rasters

    url = fresh_database(pg, "viewer")
    data = tmp_path_factory.mktemp("viewer")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant("2026-11-01T00:00:00+08:00"))
    add_demo_rasters(url, data, "small")
    add_demo_realscene(url, data)
    with psycopg.connect(url) as c:
        build_3d(c, data, CITY_BBOX)
        _, token = create_token(c, "gongan", [("persons", "read"), ("cameras", "read")],
                                label="viewer test")
        (building,) = c.execute(
            "select fid from city.buildings_version where upper_inf(recorded)"
            " group by fid having count(*) > 1 order by fid limit 1").fetchone()
        c.commit()
    with serving(url, data) as base:
        yield {"base": base, "token": token, "building": building}


def test_build_is_skipped_when_nothing_changed(dist):
    t = time.monotonic()
    r = build()
    assert r.returncode == 0 and "up to date" in r.stderr
    assert time.monotonic() - t < 5
    for f in ("index.html", "app.js", "vendor/maplibre-gl.mjs", "vendor/maplibre-gl-worker.mjs",
              "vendor/cesium/Cesium.js", "vendor/cesium/Workers", "vendor/cesium/Assets",
              "vendor/cesium/ThirdParty", "vendor/cesium/Widgets/widgets.css"):
        assert (dist / f).exists(), f


def test_no_external_hosts(dist):
    """The page and its code name no host; the vendored libraries' strings (docs links,
    Cesium ion / Bing defaults the viewer never uses) are checked at run time instead: the
    browser test fails on any request that leaves the origin."""
    for name in OWN:
        hosts = {m.group(1) for m in URL.finditer((dist / name).read_bytes())} - ALLOWED_HOSTS
        assert not hosts, f"{name} names external hosts: {hosts}"
    html = (dist / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not re.match(r"^(?:[a-z]+:)?//", ref) or ref.startswith("data:"), ref
    sources = "".join(p.read_text() for p in (VIEWER / "src").glob("*.js"))
    assert "ion.cesium.com" not in sources and 'defaultAccessToken = ""' in sources


def test_viewer_answers_503_until_built(tmp_path):
    client = TestClient(viewer_app(tmp_path / "dist"))
    r = client.get("/")
    assert r.status_code == 503 and "make run" in r.text


def test_root_redirects_to_the_viewer(city):
    base = city["base"]
    r = httpx.get(f"{base}/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith("/viewer/")
    page = httpx.get(f"{base}/viewer/")
    assert page.status_code == 200 and "app.js" in page.text
    assert httpx.get(f"{base}/viewer/vendor/cesium/Cesium.js").status_code == 200


def test_viewer_in_chromium(city):
    t = time.monotonic()
    out = viewer_check(city["base"] + "/", building=city["building"], token=city["token"],
                       width=900, height=600)
    took = time.monotonic() - t
    assert "error" not in out, (out.get("error"), out.get("state"))
    # loads from its own origin only, without errors
    assert out["landed"].endswith("/viewer/") and out["landing_status"] == 200
    assert out["console_errors"] == []
    assert out["bad_responses"] == [] and out["request_failures"] == []
    assert out["foreign_requests"] == []
    assert out["mvt"]["200"] >= 10 and out["mvt"]["other"] == 0
    assert out["raster_png"] > 0  # orthophoto and hillshade
    # the layer tree, grouped by theme; conditional layers hidden from the anonymous
    assert {"ortho", "hillshade", "buildings", "admin-areas", "legal-persons"} <= set(out["tree"])
    assert "persons" not in out["tree"] and "cameras" not in out["tree"]
    assert out["themes"][0] == "basemap" and {"base", "housing", "city_management"} <= set(out["themes"])
    # the slider: 2019 tiles, the 2018 orthophoto, fewer buildings drawn; back to now
    s = out["slider"]
    assert s["label"] == "2019-01-01"
    assert "datetime=2019-01-01T00%3A00%3A00%2B08%3A00" in s["tiles"]
    assert "2018-07-01" in s["ortho_source"].replace("%3A", ":") and "2018" in s["ortho"]
    assert 0 < s["buildings"] < out["buildings_now"] == s["buildings_back"], (s, out["buildings_now"])
    assert s["only_now"] > 0, s  # buildings built since are not drawn in 2019
    # a click on a building: attributes, history, the OGC item
    c = out["click"]
    assert c["target"] and c["layer"] == "buildings" and c["fid"] == c["target"]["fid"]
    assert c["versions"] >= 1 and c["attributes"] > 3
    assert c["item_link"] == f"/ogc/collections/buildings/items/{c['fid']}?f=json"
    # search by building code zooms there and opens it (a building with history)
    hit = out["search"]["hit"]
    assert hit["fid"] == city["building"] and hit["layer"] == "buildings"
    lon, lat = out["search"]["center"]
    assert abs(lon - hit["lon"]) < 0.002 and abs(lat - hit["lat"]) < 0.002 and out["search"]["zoom"] > 15
    # Chinese ↔ English
    assert out["lang"]["before"][0] == "抚顺全时空" and out["lang"]["after"][0] == "Fushun city"
    assert out["lang"]["after"][1] == "Layers" and out["lang"]["back"] == "抚顺全时空"
    # sign in: persons and cameras (with view cones) appear; sign out: gone
    assert {"persons", "cameras", "camera-cones"} <= set(out["signin"]["tree"])
    assert out["signin"]["cones"] > 0
    assert not {"persons", "cameras", "camera-cones"} & set(out["signout"]["tree"])
    # 3D: the buildings tileset styled by the slider, the real-scene, cameras, terrain
    d = out["threeD"]
    assert d["buildings"] >= 1 and d["realscene"] >= 1 and d["failed"] == 0, d
    assert d["cameras"] > 0 and d["terrain"] == "quantized-mesh" and d["imagery"] >= 3
    epoch_2019 = 1546272000  # 2019-01-01T00:00:00+08:00
    assert f"<= {epoch_2019}" in d["style_2019"] and d["ortho_2019"] == "ortho-2018"
    assert out["pick3d"]["target"] and out["pick3d"]["versions"] >= 1
    assert took < 110, f"the browser run took {took:.0f} s"
