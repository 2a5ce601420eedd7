"""The JS test harness, proven end to end: Khronos' glTF-Validator on GLBs, and CesiumJS in
headless Chromium loading a 3D Tiles 1.1 tileset registered in `city.tilesets` and served by
`gisplatform serve` at /3d/{name}/tileset.json (another origin than the page: CORS).

The tileset is made here: one coloured box (a hand-written GLB) standing at 123.93°E 41.87°N
(Fushun), placed by a root ENU→ECEF transform. Each check has a negative twin (a broken GLB,
a tileset whose content is broken), so the harness cannot pass vacuously.
"""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from conftest import fresh_database, serving
from js import cesium_load, gltf_errors, validate_glb, validate_glbs

from models3d import registry

LON, LAT = 123.93, 41.87
BOX = (20.0, 30.0, 24.0)  # east, north, up (metres)


# --- a minimal tileset, by hand -----------------------------------------------------------

def box_glb(size=BOX, rgba=(0.85, 0.25, 0.15, 1.0)) -> bytes:
    """A GLB of one box (24 vertices with face normals, 12 triangles, one PBR material)
    standing on its local origin. glTF is y-up: x east, y up, z south once 3D Tiles
    turns it z-up."""
    half = np.array([size[0] / 2, size[2] / 2, size[1] / 2])
    pos, nor, idx = [], [], []
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        for sign in (1.0, -1.0):
            base = len(pos)
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign * half[axis], a * half[u], b * half[v]
                pos.append(p)
                n = np.zeros(3)
                n[axis] = sign
                nor.append(n)
            quads = ((0, 1, 2), (0, 2, 3)) if sign > 0 else ((0, 2, 1), (0, 3, 2))
            idx += [base + i for tri in quads for i in tri]
    pos = np.array(pos, np.float32) + np.array([0, half[1], 0], np.float32)  # floor at y = 0
    nor = np.array(nor, np.float32)
    idx = np.array(idx, np.uint16)
    blob = pos.tobytes() + nor.tobytes() + idx.tobytes()
    blob += b"\0" * (-len(blob) % 4)
    gltf = {
        "asset": {"version": "2.0", "generator": "gisplatform tests"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1},
                                    "indices": 2, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": list(rgba),
                                                "metallicFactor": 0.0}}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": pos.nbytes, "target": 34962},
            {"buffer": 0, "byteOffset": pos.nbytes, "byteLength": nor.nbytes, "target": 34962},
            {"buffer": 0, "byteOffset": pos.nbytes + nor.nbytes, "byteLength": idx.nbytes,
             "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3",
             "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(nor), "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "count": len(idx), "type": "SCALAR"},
        ],
    }
    return glb(gltf, blob)


def glb(gltf: dict, blob: bytes) -> bytes:
    doc = json.dumps(gltf, separators=(",", ":")).encode()
    doc += b" " * (-len(doc) % 4)
    return (struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(doc) + 8 + len(blob))
            + struct.pack("<II", len(doc), 0x4E4F534A) + doc
            + struct.pack("<II", len(blob), 0x004E4942) + blob)


def enu_to_ecef(lon: float, lat: float, h: float = 0.0) -> list[float]:
    """The 4×4 (column-major, as 3D Tiles wants) taking east-north-up metres at (lon, lat, h)
    on the WGS 84 ellipsoid to ECEF."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    lo, la = math.radians(lon), math.radians(lat)
    n = a / math.sqrt(1 - e2 * math.sin(la) ** 2)
    origin = ((n + h) * math.cos(la) * math.cos(lo), (n + h) * math.cos(la) * math.sin(lo),
              (n * (1 - e2) + h) * math.sin(la))
    east = (-math.sin(lo), math.cos(lo), 0.0)
    north = (-math.sin(la) * math.cos(lo), -math.sin(la) * math.sin(lo), math.cos(la))
    up = (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))
    return [*east, 0.0, *north, 0.0, *up, 0.0, *origin, 1.0]


def write_tileset(folder: Path, content: bytes) -> int:
    """tileset.json (3D Tiles 1.1) + box.glb in `folder`; returns the bytes written."""
    e, n, u = (s / 2 for s in BOX)
    tileset = {
        "asset": {"version": "1.1", "generator": "gisplatform tests"},
        "geometricError": 100.0,
        "root": {
            "transform": enu_to_ecef(LON, LAT),
            "boundingVolume": {"box": [0, 0, u, e, 0, 0, 0, n, 0, 0, 0, u]},
            "geometricError": 0.0, "refine": "ADD", "content": {"uri": "box.glb"},
        },
    }
    (folder / "tileset.json").write_text(json.dumps(tileset, indent=1))
    (folder / "box.glb").write_bytes(content)
    return sum(p.stat().st_size for p in folder.iterdir())


def box_bounds() -> tuple[float, float, float, float]:
    de = BOX[0] / 2 / (111_320 * math.cos(math.radians(LAT)))
    dn = BOX[1] / 2 / 110_574
    return (LON - de, LAT - dn, LON + de, LAT + dn)


# --- the app, serving what is registered ---------------------------------------------------

@pytest.fixture(scope="module")
def app3d(pg, tmp_path_factory):
    """The app over a fresh database with two registered real-scene tilesets: `box` (valid)
    and `broken` (its GLB is cut short). Yields (base URL, data dir)."""
    data_dir = tmp_path_factory.mktemp("data3d")
    db_url = fresh_database(pg, "cesium3d")
    with psycopg.connect(db_url) as conn:
        for name, content in (("box", box_glb()), ("broken", box_glb()[:200])):
            folder = registry.new_directory(data_dir, name)
            size = write_tileset(folder, content)
            registry.register(conn, data_dir, name=name, kind="realscene", directory=folder,
                              at=None, bounds=box_bounds(), tiles=1, size=size, source="test")
    with serving(db_url, data_dir) as base:
        yield base, data_dir


def glb_of(data_dir: Path, name: str) -> Path:
    (path,) = (registry.root(data_dir)).glob(f"{name}.*/box.glb")
    return path


# --- glTF-Validator ------------------------------------------------------------------------

def test_validator_accepts_the_box(tmp_path):
    path = tmp_path / "box.glb"
    path.write_bytes(box_glb())
    report = validate_glb(path)
    assert report["issues"]["numErrors"] == 0, gltf_errors(report)
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    assert report["info"]["totalTriangleCount"] == 12


def test_validator_rejects_broken_glbs(tmp_path):
    """Broken in three ways, validated in one node process: every one has errors."""
    good = box_glb()
    cut = tmp_path / "cut.glb"
    cut.write_bytes(good[:200])
    garbage = tmp_path / "garbage.glb"
    garbage.write_bytes(b"not a glb at all" * 8)
    # a well-formed GLB whose indices point past the vertices
    doc = json.loads(good[20:20 + struct.unpack("<I", good[12:16])[0]])
    blob = bytearray(good[28 + struct.unpack("<I", good[12:16])[0]:])
    view = doc["bufferViews"][2]
    blob[view["byteOffset"]:view["byteOffset"] + 2] = struct.pack("<H", 999)
    oob = tmp_path / "oob.glb"
    oob.write_bytes(glb(doc, bytes(blob)))
    ok = tmp_path / "ok.glb"
    ok.write_bytes(good)

    reports = validate_glbs([cut, garbage, oob, ok])
    assert list(reports) == [cut, garbage, oob, ok]
    for path in (cut, garbage, oob):
        assert reports[path]["issues"]["numErrors"] > 0, path.name
    oob_errors = gltf_errors(reports[oob])
    assert any(e.startswith("ACCESSOR_INDEX_OOB") for e in oob_errors), oob_errors
    assert reports[ok]["issues"]["numErrors"] == 0


def test_served_glb_is_valid(app3d):
    _, data_dir = app3d
    report = validate_glb(glb_of(data_dir, "box"))
    assert report["issues"]["numErrors"] == 0, gltf_errors(report)


# --- CesiumJS -------------------------------------------------------------------------------

def test_cesium_loads_the_served_tileset(app3d, tmp_path):
    base, _ = app3d
    shot = tmp_path / "box.png"
    t0 = time.monotonic()
    r = cesium_load(f"{base}/3d/box/tileset.json", screenshot=shot, timeout_s=50)
    elapsed = time.monotonic() - t0
    assert "error" not in r, r["error"]
    assert r["tiles_loaded"] >= 1 and r["failed"] == 0, r
    assert r["console_errors"] == [], r["console_errors"]
    assert r["all_tiles_loaded"], r
    assert r["center_pick"], "the box is not drawn in the middle of the view"
    sphere = r["bounding_sphere"]
    assert abs(sphere["lon"] - LON) < 1e-5 and abs(sphere["lat"] - LAT) < 1e-5, sphere
    assert abs(sphere["height"] - BOX[2] / 2) < 0.5, sphere
    assert shot.stat().st_size > 1000
    assert elapsed < 50, r["timings_ms"]


def test_cesium_reports_a_broken_tile(app3d):
    """The same tileset with its GLB cut short: Cesium loads tileset.json, the tile fails,
    and the harness says so (it does not pass when nothing loads)."""
    base, _ = app3d
    r = cesium_load(f"{base}/3d/broken/tileset.json", timeout_s=50)
    assert "error" not in r, r["error"]
    assert r["tiles_loaded"] == 0 and r["failed"] == 1, r
    assert "box.glb" in r["failures"][0]["url"]
    assert not r["center_pick"]


def test_cesium_reports_a_missing_tileset(app3d):
    base, _ = app3d
    r = cesium_load(f"{base}/3d/nothing-here/tileset.json", timeout_s=50)
    assert "404" in r.get("error", ""), r
    assert r["tiles_loaded"] == 0
