"""The buildings tileset: 3D Tiles 1.1 structure, content placed in its volumes, metadata
that matches the database, incremental rebuilds, and serving."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import psycopg
import pytest
from conftest import fresh_database, serving
from fastapi.testclient import TestClient
from pyproj import Transformer

from gisplatform.config import Settings
from gisplatform.temporal import TemporalStore
from layers import LAYERS
from layers.fushun import CITY_BBOX
from models3d.buildings import OPEN_END, build
from models3d.registry import get_tileset, root

TO_GEO = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
CAP = 60  # small tiles: the small demo (~600 buildings) makes a tree of several levels


@pytest.fixture(scope="module")
def city(pg, tmp_path_factory):
    """A fresh small demo city and its buildings tileset."""
    from gisplatform.temporal import parse_instant
    from layers.demo import load_demo

    url = fresh_database(pg, "buildings3d")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant("2026-11-01T00:00:00+08:00"))
    data = tmp_path_factory.mktemp("data3d")
    with psycopg.connect(url) as c:
        report = build(c, data, CITY_BBOX, cap=CAP, workers=2)
    return {"url": url, "data": data, "report": report}


def read_glb(path: Path) -> tuple[dict, bytes]:
    b = path.read_bytes()
    magic, version, total = struct.unpack("<4sII", b[:12])
    assert (magic, version, total) == (b"glTF", 2, len(b))
    jlen, jtype = struct.unpack("<I4s", b[12:20])
    assert jtype == b"JSON"
    doc = json.loads(b[20:20 + jlen])
    blen, btype = struct.unpack("<I4s", b[20 + jlen:28 + jlen])
    assert btype == b"BIN\0"
    return doc, b[28 + jlen:28 + jlen + blen]


def accessor(doc, binary, i, dtype, width):
    acc = doc["accessors"][i]
    view = doc["bufferViews"][acc["bufferView"]]
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width,
                        offset=view["byteOffset"] + acc.get("byteOffset", 0))
    return arr.reshape(acc["count"], width) if width > 1 else arr


def table_values(doc, binary, name, dtype):
    table = doc["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    view = doc["bufferViews"][table["properties"][name]["values"]]
    return np.frombuffer(binary, dtype=dtype, count=table["count"], offset=view["byteOffset"])


def tiles_of(tile: dict, parent=None):
    yield tile, parent
    for child in tile.get("children", []):
        yield from tiles_of(child, tile)


def folder(city) -> Path:
    with psycopg.connect(city["url"]) as c:
        return root(city["data"]) / get_tileset(c, "buildings").directory


def test_tileset_structure_follows_the_spec(city):
    doc = json.loads((folder(city) / "tileset.json").read_text())
    assert doc["asset"]["version"] == "1.1"
    assert doc["geometricError"] > doc["root"]["geometricError"]
    n = 0
    for tile, parent in tiles_of(doc["root"]):
        n += 1
        r = tile["boundingVolume"]["region"]
        assert r[0] < r[2] and r[1] < r[3] and r[4] <= r[5]
        if parent is not None:
            p = parent["boundingVolume"]["region"]
            assert p[0] <= r[0] and p[1] <= r[1] and r[2] <= p[2] and r[3] <= p[3]
            assert p[4] <= r[4] and r[5] <= p[5]
            assert tile["geometricError"] < parent["geometricError"]
        if not tile.get("children"):
            assert tile["geometricError"] == 0
    assert n == city["report"].tiles > 5  # a real tree, not one tile


def test_content_lies_in_its_volume_and_metadata_matches(city):
    base = folder(city)
    doc = json.loads((base / "tileset.json").read_text())
    with psycopg.connect(city["url"]) as c:
        db = {r[0]: r[1:] for r in c.execute(
            "select vid, fid, floors, extract(epoch from lower(valid))::float8,"
            f" coalesce(extract(epoch from upper(valid)), {OPEN_END})::float8"
            " from city.buildings_version where upper_inf(recorded)").fetchall()}
    seen = set()
    for tile, _ in tiles_of(doc["root"]):
        if "content" not in tile:
            continue
        gltf, binary = read_glb(base / tile["content"]["uri"])
        assert set(gltf["extensionsUsed"]) == {"EXT_mesh_features", "EXT_structural_metadata"}
        pos = accessor(gltf, binary, 0, np.float32, 3).astype(np.float64)
        t = gltf["nodes"][0]["translation"]
        yup = pos + t
        ecef = np.column_stack([yup[:, 0], -yup[:, 2], yup[:, 1]])  # glTF y-up → z-up
        lon, lat, h = TO_GEO.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
        w, s, e, n, lo, hi = tile["boundingVolume"]["region"]
        eps = 1e-7  # radians (~0.6 m): float32 offsets
        assert np.all(np.radians(lon) >= w - eps) and np.all(np.radians(lon) <= e + eps)
        assert np.all(np.radians(lat) >= s - eps) and np.all(np.radians(lat) <= n + eps)
        assert np.all(h >= lo - 0.5) and np.all(h <= hi + 0.5)
        feats = gltf["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]
        count = feats["featureIds"][0]["featureCount"]
        ids = accessor(gltf, binary, 2, np.float32, 1)
        assert ids.max() == count - 1
        vids = table_values(gltf, binary, "vid", np.uint32)
        floors = table_values(gltf, binary, "floors", np.int32)
        vfrom = table_values(gltf, binary, "valid_from", np.float64)
        vto = table_values(gltf, binary, "valid_to", np.float64)
        for v, f, a, b in zip(vids, floors, vfrom, vto):
            assert db[int(v)][1:] == (f, pytest.approx(a), pytest.approx(b))
        seen.update(int(v) for v in vids)
    assert seen == set(db)  # every version once, none lost
    assert any(v[3] < OPEN_END for v in db.values())  # demolished ones carry their end


def test_rebuild_redoes_only_the_touched_tiles(city):
    store = TemporalStore(LAYERS["buildings"].spec)
    with psycopg.connect(city["url"]) as c:
        fid, floors = c.execute("select fid, floors from city.buildings order by fid limit 1").fetchone()
        store.patch(c, fid, properties={"floors": floors + 2})
        c.commit()
        report = build(c, city["data"], CITY_BBOX, cap=CAP, workers=1)
        new_vid = c.execute("select max(vid) from city.buildings_version where fid = %s",
                            (fid,)).fetchone()[0]
    assert 1 <= report.written <= 3 and report.reused >= report.tiles - 3 - 1
    base = report.directory
    doc = json.loads((base / "tileset.json").read_text())
    found = []
    for tile, _ in tiles_of(doc["root"]):
        if "content" in tile:
            gltf, binary = read_glb(base / tile["content"]["uri"])
            vids = table_values(gltf, binary, "vid", np.uint32)
            if new_vid in vids:
                found.append(table_values(gltf, binary, "floors", np.int32)[list(vids).index(new_vid)])
    assert found == [floors + 2]


def test_served_with_media_types_cors_etag_and_datetime(city):
    settings = Settings(data_dir=city["data"], database_url=city["url"])
    from gisplatform.app import create_app

    with TestClient(create_app(settings, city["url"])) as client:
        listing = client.get("/3d/").json()["tilesets"]
        assert [t["name"] for t in listing if t["kind"] == "buildings"] == ["buildings"]
        r = client.get("/3d/buildings/tileset.json")
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        assert client.get("/3d/buildings/tileset.json",
                          headers={"If-None-Match": r.headers["etag"]}).status_code == 304
        uri = r.json()["root"]["content"]["uri"]
        glb = client.get(f"/3d/buildings/{uri}")
        assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
        assert "immutable" in glb.headers["cache-control"] and glb.content[:4] == b"glTF"
        dated = client.get("/3d/buildings/tileset.json",
                           params={"datetime": "2020-01-01T00:00:00+08:00"}).json()
        assert dated["extras"]["datetime_epoch"] == 1577808000.0
        assert client.get("/3d/buildings/tileset.json",
                          params={"datetime": "2020-01-01T00:00:00"}).status_code == 400
        for bad in ("/3d/nothing/tileset.json", "/3d/buildings/../../etc/passwd",
                    "/3d/buildings/%2e%2e/%2e%2e/pgdata/PG_VERSION", "/3d/buildings/state.json.x",
                    "/3d/Buildings/tileset.json", "/3d/buildings/tiles/9/9/9.glb"):
            assert client.get(bad).status_code == 404, bad


def test_cli_builds_and_refuses_bad_input(city, tmp_path):
    import os
    import subprocess
    import sys

    cli = str(Path(sys.executable).with_name("gisplatform"))
    env = {**os.environ, "DATABASE_URL": city["url"], "GISPLATFORM_DATA_DIR": str(tmp_path)}
    r = subprocess.run([cli, "3d", "build", "buildings", "--name", "b2"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "building versions" in r.stderr and (tmp_path / "3d").is_dir()
    for args, message in ((["3d", "build", "castles"], "only buildings"),
                          (["3d", "build", "buildings", "--name", "../x"], "not a tileset name"),
                          (["3d", "build", "buildings", "--name", "terrain"], "not a tileset name")):
        r = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and message in " ".join(r.stderr.split()), r.stderr
    with psycopg.connect(city["url"]) as c:
        assert get_tileset(c, "b2").kind == "buildings"


def test_every_glb_passes_the_khronos_validator(city):
    from js import gltf_errors, validate_glbs

    glbs = sorted(folder(city).rglob("*.glb"))
    reports = validate_glbs(glbs)
    assert len(reports) == city["report"].tiles - sum(
        1 for t, _ in tiles_of(json.loads((folder(city) / "tileset.json").read_text())["root"])
        if "content" not in t)
    bad = {p.name: gltf_errors(r) for p, r in reports.items() if r["issues"]["numErrors"]}
    assert not bad


def test_cesium_loads_the_tileset_in_headless_chromium(city, tmp_path):
    """The tileset as CesiumJS sees it: tiles load, none fail, no console errors, the view's
    centre hits a building; and a style on valid_from/valid_to hides the future."""
    from js import cesium_load

    with serving(city["url"], city["data"]) as base:
        # features shown at 2018-06-01 vs now, through a 3D Tiles style on the epoch fields
        script = """
          const count = async (t) => {
            tileset.style = new Cesium.Cesium3DTileStyle({show: `${'$'}{valid_from} <= ${t} && ${t} < ${'$'}{valid_to}`});
            await new Promise(r => setTimeout(r, 300));
            let shown = 0, all = 0;
            const visit = (tile) => {
              const c = tile.content;
              if (c && c.featuresLength) for (let i = 0; i < c.featuresLength; i++) {
                all++; if (c.getFeature(i).show) shown++; }
              tile.children.forEach(visit);
            };
            visit(tileset.root);
            return [shown, all];
          };
          return {past: await count(1527782400), now: await count(Date.now() / 1000)};
        """
        result = cesium_load(f"{base}/3d/buildings/tileset.json", timeout_s=90,
                             script=script, screenshot=tmp_path / "buildings.png")
    assert result.get("error") is None, result
    assert result["tiles_loaded"] >= 1 and result["failed"] == 0, result
    assert not result["console_errors"], result["console_errors"]
    past, now = result["script"]["past"], result["script"]["now"]
    assert past[1] == now[1] > 0 and past[0] < now[0]  # fewer buildings stood in 2018
