"""GET /qgis/project.qgz and `gisplatform qgis-project`: a QGIS project of every layer the
caller may read, opened headless by Debian's QGIS (python3-qgis binds the system Python,
/usr/bin/python3, not the venv): every layer valid and drawing or yielding features, the
history layers on the temporal controller, only the caller's layers, and every request
QGIS makes carrying the caller's token (the server's request log says so). Where
/usr/bin/python3 cannot import qgis.core the QGIS tests are skipped, saying so; the CLI's
runs anyway."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import rasterio
from conftest import DEMO_UNTIL, fresh_database, serving
from rasterio.transform import from_origin
from typer.testing import CliRunner

from gisplatform.cli import app as cli_app
from gisplatform.config import get_settings
from gisplatform.security import create_token
from gisplatform.temporal import parse_instant
from layers.demo import load_demo
from tiles.raster import add_raster

QGIS_PYTHON = "/usr/bin/python3"
ORTHO_RGB = (40, 120, 60)  # the test's orthophoto: one colour over the demo city's core
CORE = (123.86, 41.85, 123.93, 41.885)  # lon/lat

# Run by QGIS_PYTHON: open the project, report each layer as JSON; a vector tile layer and
# the orthophoto are drawn alone over their data (how many pixels they painted, the
# orthophoto's colour at the centre).
OPEN = r'''
import json, sys
from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,
                       QgsMapLayerType, QgsMapRendererSequentialJob, QgsMapSettings,
                       QgsProject, QgsRectangle)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage

app = QgsApplication([], False)
app.initQgis()
said = []
QgsApplication.messageLog().messageReceived.connect(
    lambda msg, tag, level: said.append([tag, int(level), msg]))
project = QgsProject.instance()
read = project.read(sys.argv[1])
wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")

def draw(layer, extent):
    s = QgsMapSettings()
    s.setLayers([layer]); s.setDestinationCrs(project.crs()); s.setOutputSize(QSize(256, 256))
    s.setBackgroundColor(QColor(0, 0, 0, 0))
    s.setExtent(QgsCoordinateTransform(extent[1], project.crs(), project).transformBoundingBox(extent[0]))
    job = QgsMapRendererSequentialJob(s); job.start(); job.waitForFinished()
    img = job.renderedImage().convertToFormat(QImage.Format_RGBA8888)
    bits = img.constBits(); bits.setsize(img.sizeInBytes()); data = bytes(bits)
    mid = 4 * (128 * 256 + 128)
    return sum(1 for a in data[3::4] if a), list(data[mid:mid + 4]), [e.message for e in job.errors()]

out = {"read": read, "error": project.error(), "crs": project.crs().authid(),
       "ellipsoid": project.ellipsoid(), "time": [t.toString("yyyy-MM-ddTHH:mm:ss") for t in (
           project.timeSettings().temporalRange().begin(), project.timeSettings().temporalRange().end())],
       "view": [project.viewSettings().defaultViewExtent().xMinimum(),
                project.viewSettings().defaultViewExtent().yMaximum()],
       "tree": [[n.parent().name(), n.layerId(), n.itemVisibilityChecked()]
                for n in project.layerTreeRoot().findLayers()], "layers": {}}
layers = {n.layerId(): n.layer() for n in project.layerTreeRoot().findLayers()}
extents = {}
for lid, layer in layers.items():
    if layer is None:
        out["layers"][lid] = {"loaded": False}
        continue
    info = {"loaded": True, "valid": layer.isValid(), "source": layer.source(),
            "crs": layer.crs().authid(), "type": int(layer.type())}
    if layer.type() == QgsMapLayerType.VectorLayer:
        # the count (numberMatched); a small layer read through to its end. Not an iterator
        # left after one feature: QGIS 3.22 then aborts its download thread, which crashes
        # the process now and then (SIGSEGV, munmap_chunk)
        info["count"] = layer.featureCount()
        if 0 < info["count"] <= 200:
            info["geometries"] = sum(1 for f in layer.getFeatures() if f.hasGeometry())
        extents[lid] = (layer.extent(), layer.crs())
        tp = layer.temporalProperties()
        info["temporal"] = [tp.isActive(), int(tp.mode()), tp.startField(), tp.endField()]
        info["renderer"] = layer.renderer().type()
        info["labels"] = layer.labelsEnabled()
    elif layer.type() == QgsMapLayerType.VectorTileLayer:
        info["zooms"] = [layer.sourceMinZoom(), layer.sourceMaxZoom()]
        info["styles"] = len(layer.renderer().styles())
    out["layers"][lid] = info
for lid, layer in layers.items():
    if layer is not None and layer.type() == QgsMapLayerType.VectorTileLayer:
        own = extents.get(lid.replace("_vector_tiles", "_ogc_features"))
        out["layers"][lid]["drawn"] = draw(layer, own)[0] if own else None
    elif layer is not None and layer.type() == QgsMapLayerType.RasterLayer:
        drawn, centre, errors = draw(layer, (QgsRectangle(*json.loads(sys.argv[2])), wgs84))
        out["layers"][lid].update(drawn=drawn, centre=centre, errors=errors)
out["messages"] = said
print(json.dumps(out), flush=True)
app.exitQgis()
'''


@pytest.fixture(scope="module")
def qgis(tmp_path_factory):
    """How to run QGIS here: the system Python with python3-qgis, offscreen, with a
    throwaway home (its profile, network cache and settings go there)."""
    home = tmp_path_factory.mktemp("qgis-home")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime),
           "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    try:
        probe = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], env=env,
                               capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"{QGIS_PYTHON} cannot run ({e}): these tests open projects in QGIS")
    if probe.returncode != 0:
        pytest.skip(f"{QGIS_PYTHON} cannot import qgis.core (apt-get install "
                    "--no-install-recommends python3-qgis): these tests open projects in QGIS")
    script = home / "open_project.py"
    script.write_text(OPEN)

    def open_project(path: Path) -> dict:
        r = subprocess.run([QGIS_PYTHON, str(script), str(path), json.dumps(list(CORE))],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])
    return open_project


def ortho(path: Path) -> Path:
    """A one-colour orthophoto over the demo city's core, in EPSG:3857 at 10 m."""
    from pyproj import Transformer

    to_web = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = to_web.transform([CORE[0], CORE[2]], [CORE[1], CORE[3]])
    w, h = int((x1 - x0) / 10), int((y1 - y0) / 10)
    data = np.broadcast_to(np.asarray(ORTHO_RGB, "uint8")[:, None, None], (3, h, w))
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs="EPSG:3857", transform=from_origin(x0, y1, 10, 10)) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def city(pg, tmp_path_factory):
    """The demo city with an orthophoto, its own database (a registered raster would
    reach the other modules' servers), a token reading persons and cameras; served."""
    url = fresh_database(pg, "qgis_project")
    data_dir = tmp_path_factory.mktemp("qgis-city")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
        token_id, secret = create_token(c, "gongan", [("persons", "read"), ("cameras", "read")],
                                        label="qgis")
    with psycopg.connect(url, autocommit=True) as c:
        add_raster(c, ortho(data_dir / "ortho.tif"), name="ortho-test", kind="ortho",
                   at="2019-07-01T00:00:00+08:00", data_dir=data_dir)
    with serving(url, data_dir) as base:
        yield {"base": base, "url": url, "log": data_dir / "serve.log", "token_id": token_id,
               "token": secret}


def fetch(city, tmp_path: Path, name: str, **kw) -> tuple[httpx.Response, Path]:
    r = httpx.get(f"{city['base']}/qgis/project.qgz", timeout=60, **kw)
    assert r.status_code == 200, r.text
    path = tmp_path / name
    path.write_bytes(r.content)
    return r, path


def readable(city, headers=None) -> tuple[set[str], set[str]]:
    """What the server itself lets a caller read: feature collections whose items answer,
    tile layers its listing gives."""
    with httpx.Client(base_url=city["base"], headers=headers or {}, timeout=60) as c:
        ids = [x["id"] for x in c.get("/ogc/collections", params={"f": "json"}).json()[
            "collections"] if x.get("itemType") == "feature"]
        features = {i for i in ids if c.get(f"/ogc/collections/{i}/items",
                                            params={"limit": 1}).status_code == 200}
        tiles = {x["id"] for x in c.get("/tiles/").json()["layers"]}
    return features, tiles


def requests_since(log: Path, start: int) -> list[dict]:
    lines = log.read_text().splitlines()[start:]
    return [r for r in map(json.loads, filter(lambda x: x.startswith("{"), lines))
            if r.get("logger") == "gisplatform.access"]


def check_project(opened: dict, features: set[str], tiles: set[str]) -> None:
    assert opened["read"] and not opened["error"], opened["error"]
    assert opened["crs"] == "EPSG:3857" and opened["ellipsoid"] == "EPSG:1024"
    assert opened["time"][0] == "2017-12-31T16:00:00"  # 2018-01 in Beijing, as UTC
    assert opened["view"] == pytest.approx([123.65, 42.467], abs=0.01)  # the city's bbox
    assert not [m for m in opened["messages"] if m[1] in (1, 2)], opened["messages"]
    layers = opened["layers"]
    assert {k.removesuffix("_ogc_features") for k in layers if k.endswith("_ogc_features")} \
        == features
    assert {k.removesuffix("_vector_tiles") for k in layers if k.endswith("_vector_tiles")} \
        == tiles
    for lid, info in layers.items():
        assert info["loaded"] and info["valid"], (lid, info)
        if lid.endswith("_ogc_features"):
            assert info["count"] > 0, lid
            assert info.get("geometries", info["count"]) == info["count"], lid  # all came
            assert "typename=" in info["source"] and info["crs"] == "EPSG:4326"
            history = lid.endswith("-history_ogc_features")
            assert info["temporal"] == ([True, 2, "valid_from", "valid_to"] if history
                                        else [False, 0, "", ""]), lid
            assert info["renderer"] == "singleSymbol"
        elif lid.endswith("_vector_tiles"):
            assert info["zooms"] == [0, 16] and info["styles"] >= 1, (lid, info)
            assert info["drawn"] > 0, lid  # its tiles came and drew something
    groups = {g for g, _, _ in opened["tree"]}
    assert {"房屋 Housing", "人口 Population", "底图 Basemap"} <= groups
    bottom = opened["tree"][-1]
    assert bottom[1] == "orthophoto_basemap" and bottom[2]  # the basemap, shown, last
    photo = layers["orthophoto_basemap"]
    assert photo["drawn"] > 0 and not photo["errors"]
    assert photo["centre"][:3] == pytest.approx(list(ORTHO_RGB), abs=3)


def test_anonymous_project_holds_the_public_layers(qgis, city, tmp_path):
    r, path = fetch(city, tmp_path, "anonymous.qgz")
    assert r.headers["content-type"] == "application/zip"
    assert 'filename="gisplatform.qgz"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.namelist() == ["gisplatform.qgs"]
        assert b"token=" not in z.read("gisplatform.qgs")
    features, tiles = readable(city)
    assert "persons" not in features and "cameras" not in tiles  # conditional: not public
    qgis_start = len(city["log"].read_text().splitlines())
    opened = qgis(path)
    check_project(opened, features, tiles)
    assert not {k for k in opened["layers"] if k.startswith(("persons", "cameras", "housing-"))}
    seen = requests_since(city["log"], qgis_start)
    assert seen and not [x for x in seen if x["status"] in (401, 403)]


def test_token_project_reads_the_granted_layers_with_the_token(qgis, city, tmp_path):
    bearer = {"Authorization": f"Bearer {city['token']}"}
    r, path = fetch(city, tmp_path, "token.qgz", headers=bearer)
    assert "no-store" in r.headers["cache-control"]  # it holds the token
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        text = z.read("gisplatform.qgs").decode()
    assert "share the file as you would the token" in text
    features, tiles = readable(city, bearer)
    assert {"persons", "persons-history", "cameras"} <= features and "housing-units" not in tiles
    start = len(city["log"].read_text().splitlines())
    opened = qgis(path)
    check_project(opened, features, tiles)
    for lid in ("persons_ogc_features", "persons-history_ogc_features", "cameras_vector_tiles"):
        assert lid in opened["layers"]
    # every request QGIS made for the layers carried the token, and none was refused
    seen = [x for x in requests_since(city["log"], start)
            if x["path"].startswith(("/ogc", "/tiles/", "/raster/"))]
    paths = {x["path"].split("/")[1] + "/" + x["path"].split("/")[2] for x in seen
             if x["path"].count("/") > 1}
    assert {"tiles/persons", "tiles/cameras", "raster/ortho"} <= paths
    assert any(x["path"] == "/ogc/collections/persons/items" for x in seen)
    assert {x["token_id"] for x in seen} == {city["token_id"]}
    assert not [x for x in seen if x["status"] in (401, 403)]


def layer_sources(qgz: bytes) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    with zipfile.ZipFile(io.BytesIO(qgz)) as z:
        root = ET.fromstring(z.read("gisplatform.qgs"))
    return {m.findtext("id"): m.findtext("datasource") for m in root.iter("maplayer")}


def test_cli_writes_the_same_project(city, tmp_path):
    """`gisplatform qgis-project` writes the layers the route serves, for the same caller
    and base URL; a token in the query serves the same as in the header."""
    token, base = city["token"], city["base"]
    env = {"DATABASE_URL": city["url"], "GISPLATFORM_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        for args, headers in (([], {}), (["--token", token], {"Authorization": f"Bearer {token}"})):
            out = tmp_path / "cli.qgz"
            r = runner.invoke(cli_app, ["qgis-project", str(out), "--base-url", base, *args],
                              env=env)
            assert r.exit_code == 0, r.output
            served = httpx.get(f"{base}/qgis/project.qgz", headers=headers, timeout=60).content
            assert layer_sources(out.read_bytes()) == layer_sources(served)
            assert f"{len(layer_sources(served))} layers" in r.output
        by_query = httpx.get(f"{base}/qgis/project.qgz", params={"token": token}, timeout=60)
        assert layer_sources(by_query.content) == layer_sources(out.read_bytes())
        # refusals: one line, exit 1 (refused) or 2 (usage)
        for args, code, message in (
                (["--token", "gp_forged"], 1, "unknown token"),
                (["--base-url", "ftp://x"], 2, "http"),
                ([], 2, ".qgz")):
            target = tmp_path / ("x.qgs" if code == 2 and not args else "x.qgz")
            r = runner.invoke(cli_app, ["qgis-project", str(target), *args], env=env)
            assert r.exit_code == code and message in r.output, r.output
            assert not target.exists()
    finally:
        get_settings.cache_clear()
