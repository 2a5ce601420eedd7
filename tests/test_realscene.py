"""Real-scene tilesets: `gisplatform 3d import` (checks, refusals, OSGB), serving at /3d,
and the generated demo block (3D Tiles 1.1 structure, volumes, glb content)."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import psycopg
import pytest
from conftest import fresh_database
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gisplatform.app import create_app
from gisplatform.cli import app as cli_app
from gisplatform.config import Settings, get_settings
from models3d.realscene import OSGB_HELP, check_tileset
from models3d.realscene_demo import (
    AT,
    CENTRE,
    HALF,
    NAME,
    Mesh,
    add_demo_realscene,
    enu_frame,
    glb,
    png,
)
from models3d.registry import get_tileset, list_tilesets, remove, root

T = "2020-07-01T00:00:00+08:00"
LON, LAT = 123.905, 41.872
TESTS = Path(__file__).parent


# ----------------------------------------------------------------------------- sources

def tiny_glb(size: float = 10.0) -> bytes:
    """A valid textured glb: one square of SIZE metres (y-up) with a 4×4 texture."""
    m = Mesh()
    m.add([(0, 0, 0), (size, 0, 0), (size, size, 0), (0, size, 0)], [(0, 0, 1)] * 4,
          [(0, 1), (1, 1), (1, 0), (0, 0)], [(0, 1, 2), (0, 2, 3)])
    return glb(m, png(np.full((4, 4, 3), 128, np.uint8)), "square")[0]


def b3dm(glb_bytes: bytes) -> bytes:
    ft = b'{"BATCH_LENGTH":0}'
    ft += b" " * ((-(28 + len(ft))) % 8)
    body = ft + glb_bytes
    return struct.pack("<4sI5I", b"b3dm", 1, 28 + len(body), len(ft), 0, 0, 0) + body


def region(lon=LON, lat=LAT, d=0.001):
    return [math.radians(lon - d), math.radians(lat - d), math.radians(lon + d),
            math.radians(lat + d), 0, 100]


def write_tileset(folder: Path, **changes) -> Path:
    """A good 1.1 tileset: region root, two glb children, an external tileset holding a
    b3dm (1.0, `url`). CHANGES: version, uri (of the first child), json (raw root text)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiles").mkdir(exist_ok=True)
    (folder / "tiles/a.glb").write_bytes(tiny_glb())
    (folder / "tiles/b.glb").write_bytes(tiny_glb(5))
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub/c.b3dm").write_bytes(b3dm(tiny_glb(2)))
    sub = {"asset": {"version": "1.0"}, "geometricError": 5,
           "root": {"boundingVolume": {"region": region(d=0.0005)}, "geometricError": 0,
                    "refine": "REPLACE", "content": {"url": "c.b3dm"}}}
    (folder / "sub/tileset.json").write_text(json.dumps(sub))
    doc = {"asset": {"version": changes.get("version", "1.1")}, "geometricError": 100,
           "root": {"boundingVolume": {"region": region()}, "geometricError": 20,
                    "refine": "REPLACE", "children": [
                        {"boundingVolume": {"region": region(d=0.0008)}, "geometricError":
                         changes.get("child_error", 0), "content": {"uri": changes.get(
                             "uri", "tiles/a.glb")}},
                        {"boundingVolume": {"region": region(d=0.0008)}, "geometricError": 0,
                         "content": {"uri": "./tiles/b.glb"}},
                        {"boundingVolume": {"region": region(d=0.0006)}, "geometricError": 5,
                         "content": {"uri": "sub/tileset.json"}}]}}
    (folder / "tileset.json").write_text(changes.get("json", json.dumps(doc)))
    return folder


def zip_folder(folder: Path, out: Path, top: str = "", extra: dict | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, top + p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out


def osgb_tree(folder: Path) -> Path:
    for tile in ("Tile_+000_+000", "Tile_+000_+001"):
        d = folder / "Data" / tile
        d.mkdir(parents=True)
        (d / f"{tile}.osgb").write_bytes(b"osg\0binary")
        (d / f"{tile}_L15_0.osgb").write_bytes(b"osg\0binary")
    (folder / "metadata.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<ModelMetadata version="1">\n'
        "  <SRS>EPSG:4546</SRS>\n  <SRSOrigin>41500000,4636000,0</SRSOrigin>\n"
        "  <Texture><ColorSource>Visible</ColorSource></Texture>\n</ModelMetadata>\n")
    return folder


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def reg(pg, tmp_path_factory):
    return fresh_database(pg, "realscene"), tmp_path_factory.mktemp("realscene-data")


def cli(reg, *args):
    url, data_dir = reg
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli_app, ["3d", *map(str, args)], env={
            "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data_dir)})
    finally:
        get_settings.cache_clear()


def folders(reg, name: str) -> list[str]:
    base = root(reg[1])
    return sorted(p.name for p in base.glob(f"{name}.*")) if base.exists() else []


def registered(reg, name: str):
    with psycopg.connect(reg[0]) as c:
        return get_tileset(c, name)


def test_import_folder_and_zip_then_serve(reg, tmp_path):
    src = write_tileset(tmp_path / "scene")
    r = cli(reg, "import", src, "--name", "scene-a", "--time", T)
    assert r.exit_code == 0, r.output
    assert "scene-a" in r.stderr and "/3d/scene-a/tileset.json" in r.stderr
    t = registered(reg, "scene-a")
    assert t.kind == "realscene" and t.at.timestamp() == AT.timestamp()
    assert t.tiles == 5  # root, 3 children, the external tileset's root
    assert t.bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert t.bounds == pytest.approx((LON - 0.001, LAT - 0.001, LON + 0.001, LAT + 0.001),
                                     abs=1e-9)
    assert folders(reg, "scene-a") == [t.directory]

    # a zip with the tileset in one top folder, 3D Tiles 1.0 with a box and an ENU transform
    box_src = tmp_path / "boxed"
    box_src.mkdir()
    (box_src / "m.glb").write_bytes(tiny_glb())
    frame = enu_frame(LON, LAT, 80.0)
    (box_src / "tileset.json").write_text(json.dumps({
        "asset": {"version": "1.0"}, "geometricError": 50, "root": {
            "transform": list(frame.T.ravel()), "geometricError": 0, "refine": "ADD",
            "boundingVolume": {"box": [0, 0, 0, 100, 0, 0, 0, 100, 0, 0, 0, 30]},
            "content": {"uri": "m.glb"}}}))
    z = zip_folder(box_src, tmp_path / "boxed.zip", top="export/")
    r = cli(reg, "import", z, "--name", "scene-b", "--time", T)
    assert r.exit_code == 0, r.output
    w, s, e, n = registered(reg, "scene-b").bounds
    assert w < LON < e and s < LAT < n
    # an approximate envelope of a 200 m box: within ±150 m of it
    assert 190 < (e - w) * 111_320 * math.cos(math.radians(LAT)) < 300
    assert 190 < (n - s) * 111_320 < 300

    with TestClient(create_app(Settings(data_dir=reg[1]), db_url=reg[0])) as client:
        ts = client.get("/3d/scene-a/tileset.json")
        assert ts.status_code == 200 and ts.headers["access-control-allow-origin"] == "*"
        assert ts.json()["asset"]["version"] == "1.1"
        g = client.get("/3d/scene-a/tiles/a.glb")
        assert g.status_code == 200 and g.headers["content-type"] == "model/gltf-binary"
        assert g.headers["access-control-allow-origin"] == "*" and g.content[:4] == b"glTF"
        b = client.get("/3d/scene-a/sub/c.b3dm")
        assert b.status_code == 200 and b.content[:4] == b"b3dm"
        assert client.get("/3d/scene-a/sub/tileset.json").json()["asset"]["version"] == "1.0"
        assert client.get("/3d/scene-b/m.glb").headers["content-type"] == "model/gltf-binary"
        assert client.get("/3d/scene-a/%2e%2e/scene-b/m.glb").status_code == 404
        listing = {t["name"]: t for t in client.get("/3d/").json()["tilesets"]}
        assert listing["scene-a"]["kind"] == "realscene"

    # the name is taken: refused without --replace, replaced (old folder gone) with it
    old = registered(reg, "scene-a").directory
    r = cli(reg, "import", src, "--name", "scene-a", "--time", T)
    assert r.exit_code == 1 and "--replace" in r.stderr
    assert folders(reg, "scene-a") == [old]
    r = cli(reg, "import", src, "--name", "scene-a", "--time", "2021-05-01T10:00:00+08:00",
            "--replace")
    assert r.exit_code == 0, r.output
    new = registered(reg, "scene-a")
    assert new.directory != old and folders(reg, "scene-a") == [new.directory]
    assert new.at.isoformat().startswith("2021-05-01T02:00:00")


def _evil_zip(tmp: Path) -> Path:
    return zip_folder(write_tileset(tmp / "z"), tmp / "evil.zip", extra={"../../evil": b"x"})


def _bad_glb(tmp: Path) -> Path:
    src = write_tileset(tmp / "s")
    data = bytearray((src / "tiles/a.glb").read_bytes())
    data[4:8] = struct.pack("<I", 1)
    (src / "tiles/a.glb").write_bytes(bytes(data))
    return src


def _bad_b3dm(tmp: Path) -> Path:
    src = write_tileset(tmp / "s")
    data = bytearray((src / "sub/c.b3dm").read_bytes())
    data[8:12] = struct.pack("<I", 99999)
    (src / "sub/c.b3dm").write_bytes(bytes(data))
    return src


def _no_volume(tmp: Path) -> Path:
    src = write_tileset(tmp / "s")
    doc = json.loads((src / "tileset.json").read_text())
    del doc["root"]["children"][1]["boundingVolume"]
    (src / "tileset.json").write_text(json.dumps(doc))
    return src


def _cycle(tmp: Path) -> Path:
    src = write_tileset(tmp / "s")
    sub = json.loads((src / "sub/tileset.json").read_text())
    sub["root"]["children"] = [{"boundingVolume": {"region": region()}, "geometricError": 0,
                                "content": {"uri": "../tileset.json"}}]
    (src / "sub/tileset.json").write_text(json.dumps(sub))
    return src


def _not_tileset(tmp: Path) -> Path:
    (tmp / "s").mkdir()
    (tmp / "s/readme.txt").write_text("hello")
    return tmp / "s"


def _text_file(tmp: Path) -> Path:
    (tmp / "scene.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")
    return tmp / "scene.7z"


def _symlink_out(tmp: Path) -> Path:
    src = write_tileset(tmp / "s")
    (tmp / "secret").write_text("x")
    (src / "tiles/link.glb").symlink_to(tmp / "secret")
    return src


BAD = [  # (make source, extra args, exit code, message part)
    (lambda t: t / "nothing-here", [], 1, "no such file or folder"),
    (_not_tileset, [], 1, "not a 3D Tiles tileset"),
    (lambda t: write_tileset(t / "s/a/b").parent.parent, [], 1,
     "(there is a/b/tileset.json: import that folder)"),
    (_text_file, [], 1, "neither a folder nor a .zip"),
    (lambda t: write_tileset(t / "s", json='{"asset": {"version": "1.1"}, "root": '), [], 1,
     "tileset.json is not JSON"),
    (lambda t: write_tileset(t / "s", version="2.0"), [], 1, "asset.version is '2.0'"),
    (lambda t: write_tileset(t / "s", uri="tiles/gone.glb"), [], 1, "'tiles/gone.glb' is missing"),
    (lambda t: write_tileset(t / "s", uri="/etc/passwd"), [], 1, "absolute path"),
    (lambda t: write_tileset(t / "s", uri="http://example.com/a.glb"), [], 1, "not relative"),
    (lambda t: write_tileset(t / "s", uri="file:///etc/passwd"), [], 1, "not relative"),
    (lambda t: write_tileset(t / "s", uri="../../outside.glb"), [], 1, "leaves the tileset"),
    (lambda t: write_tileset(t / "s", uri="tiles/%2e%2e/%2e%2e/%2e%2e/x.glb"), [], 1,
     "leaves the tileset"),
    (_evil_zip, [], 1, "'../../evil' would leave the target folder"),
    (_symlink_out, [], 1, "symlink pointing outside"),
    (_bad_glb, [], 1, "glTF version 1"),
    (_bad_b3dm, [], 1, "declares 99999 bytes"),
    (_no_volume, [], 1, "no boundingVolume"),
    (_cycle, [], 1, "referenced twice"),
    (lambda t: osgb_tree(t / "osgb"), [], 1, "ContextCapture OSGB"),
    (lambda t: write_tileset(t / "s"), ["--time", "2020-07-01T00:00:00"], 2, "time zone"),
    (lambda t: write_tileset(t / "s"), ["--time", "2020-07-01"], 2, "time zone"),
    (lambda t: write_tileset(t / "s"), ["--name", "Bad Name"], 2, "--name"),
    (lambda t: write_tileset(t / "s"), ["--name", "../etc"], 2, "--name"),
    (lambda t: write_tileset(t / "s"), ["--name", "terrain"], 2, "--name"),
]


@pytest.mark.parametrize("make, args, code, message", BAD,
                         ids=[f"{i}-{b[3][:24]}" for i, b in enumerate(BAD)])
def test_bad_inputs_are_refused(reg, tmp_path, make, args, code, message):
    src = make(tmp_path)
    opts = {"--name": "bad-one", "--time": T}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    r = cli(reg, "import", src, *[x for kv in opts.items() for x in kv])
    assert r.exit_code == code, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert message in lines[0], lines[0]
    assert registered(reg, "bad-one") is None and folders(reg, "bad-one") == []
    with psycopg.connect(reg[0]) as c:  # no folder without its registration
        left = {p.name for p in root(reg[1]).iterdir()} if root(reg[1]).exists() else set()
        assert left == {t.directory for t in list_tilesets(c)}


def test_osgb_is_explained_with_its_georeference(reg, tmp_path):
    for src in (osgb_tree(tmp_path / "tree"),
                zip_folder(osgb_tree(tmp_path / "t2"), tmp_path / "o.zip", top="Production_1/")):
        r = cli(reg, "import", src, "--name", "oblique", "--time", T)
        assert r.exit_code == 1
        line = r.stderr.strip()
        assert line.startswith("error:") and "\n" not in line
        assert "SRS EPSG:4546" in line and "SRSOrigin 41500000,4636000,0" in line
        assert "4 .osgb files in 2 tile folders" in line
        assert "OpenSceneGraph" in line and "3dtiles" in line and "Cesium ion" in line
        assert registered(reg, "oblique") is None and folders(reg, "oblique") == []
    readme = (TESTS.parent / "README.md").read_text()
    assert "OSGB" in readme and "3dtiles" in readme
    assert "no maintained Python reader" in OSGB_HELP


def test_growing_geometric_error_is_a_warning(reg, tmp_path):
    src = write_tileset(tmp_path / "s", child_error=50)
    r = cli(reg, "import", src, "--name", "grows", "--time", T)
    assert r.exit_code == 0, r.output
    assert "warning: geometricError grows from parent to child in 1 tile" in r.stderr
    assert registered(reg, "grows") is not None


def test_check_accepts_inner_dotdot_contents_and_sphere(tmp_path):
    """`..` that stays inside, 1.1 `contents`, a sphere through a transform; implicit
    tiling is refused."""
    from models3d.realscene import TilesetError

    src = write_tileset(tmp_path / "s")
    sub = json.loads((src / "sub/tileset.json").read_text())
    sub["root"]["children"] = [{"boundingVolume": {"region": region(d=0.0002)},
                                "geometricError": 0, "contents": [
                                    {"uri": "../tiles/a.glb"}, {"uri": "./c.b3dm"}]}]
    (src / "sub/tileset.json").write_text(json.dumps(sub))
    rep = check_tileset(src)
    assert rep.tiles == 6 and rep.contents == 3 and rep.tilesets == 2
    assert rep.versions == {"1.0", "1.1"} and rep.warnings == []

    doc = json.loads((src / "tileset.json").read_text())
    doc["root"]["boundingVolume"] = {"sphere": [0, 0, 0, 500]}
    doc["root"]["transform"] = list(enu_frame(LON, LAT, 100).T.ravel())
    (src / "tileset.json").write_text(json.dumps(doc))
    w, s_, e, n = check_tileset(src).bounds
    assert w < LON < e and s_ < LAT < n
    assert (n - s_) * 111_320 == pytest.approx(1000, rel=0.02)

    doc["root"]["implicitTiling"] = {"subdivisionScheme": "QUADTREE"}
    (src / "tileset.json").write_text(json.dumps(doc))
    with pytest.raises(TilesetError, match="implicit tiling"):
        check_tileset(src)
    doc = json.loads((src / "tileset.json").read_text())
    del doc["root"]["implicitTiling"], doc["root"]["transform"]
    doc["root"]["boundingVolume"] = {"box": [0, 0, 0, 10, 0, 0, 0, 10, 0, 0, 0, 10]}
    (src / "tileset.json").write_text(json.dumps(doc))
    rep = check_tileset(src)  # local coordinates: no bounds, a warning
    assert rep.bounds is None and "local coordinates" in rep.warnings[0]


# ----------------------------------------------------------------------------- the demo block

@pytest.fixture(scope="module")
def demo_block(demo_url, tmp_path_factory):
    data = tmp_path_factory.mktemp("realscene-demo")
    t = time.perf_counter()
    with psycopg.connect(demo_url) as c:
        name = add_demo_realscene(c, data)
        secs = time.perf_counter() - t
        tileset = get_tileset(c, name)
    yield {"url": demo_url, "data": data, "secs": secs, "tileset": tileset,
           "folder": root(data) / tileset.directory}
    with psycopg.connect(demo_url) as c:  # leave the shared demo database as it was
        if get_tileset(c, NAME) is not None:
            remove(c, data, NAME)


def corners(box, m: np.ndarray) -> np.ndarray:
    b = np.asarray(box, float)
    c, axes = b[:3], b[3:].reshape(3, 3)
    s = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
    p = c + s @ axes
    return (np.c_[p, np.ones(8)] @ m.T)[:, :3]


def inside(points, box, tol=1e-3) -> bool:
    """Points (in the box's frame) inside an oriented box."""
    b = np.asarray(box, float)
    c, axes = b[:3], b[3:].reshape(3, 3)
    for a in axes:
        half = np.linalg.norm(a)
        d = (np.asarray(points) - c) @ (a / half)
        if np.any(np.abs(d) > half + tol):
            return False
    return True


def test_demo_block_is_small_fast_and_registered(demo_block):
    t = demo_block["tileset"]
    assert demo_block["secs"] < 5, demo_block["secs"]
    assert t.name == NAME and t.kind == "realscene" and t.tiles == 5
    assert t.at.timestamp() == AT.timestamp()
    files = list(demo_block["folder"].iterdir())
    assert sorted(p.name for p in files) == ["NE.glb", "NW.glb", "SE.glb", "SW.glb", "root.glb",
                                             "tileset.json"]
    assert t.bytes == sum(p.stat().st_size for p in files) < 5_000_000
    w, s, e, n = t.bounds
    assert w < CENTRE[0] < e and s < CENTRE[1] < n
    assert 300 < (e - w) * 111_320 * math.cos(math.radians(CENTRE[1])) < 340
    # as many as a direct count: the buildings standing at the capture time with more than
    # 4 m² of footprint in the 300 m patch
    with psycopg.connect(demo_block["url"]) as c:
        (n,) = c.execute("""
            with patch as (select st_transform(st_expand(st_transform(
                     st_setsrid(st_point(%s, %s), 4490), 32651), %s), 4490) as g)
            select count(*) from city.buildings_version b, patch
            where upper_inf(b.recorded) and b.valid @> %s::timestamptz
              and st_area(st_intersection(b.geom, patch.g)::geography) > 4""",
                         (CENTRE[0], CENTRE[1], HALF, AT)).fetchone()
    assert f"{n} demo buildings" in t.source and n > 0, (n, t.source)
    assert check_tileset(demo_block["folder"]).warnings == []


def test_demo_block_structure(demo_block):
    doc = json.loads((demo_block["folder"] / "tileset.json").read_text())
    assert doc["asset"]["version"] == "1.1"
    rt = doc["root"]
    assert rt["refine"] == "REPLACE" and len(rt["children"]) == 4
    assert doc["geometricError"] > rt["geometricError"] > 0
    assert all(c["geometricError"] == 0 and "children" not in c for c in rt["children"])
    m = np.array(rt["transform"]).reshape(4, 4).T
    # the transform is ENU at the centre: its origin is the centre, its z axis is up
    from pyproj import Transformer

    lon, lat, h = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(
        *m[:3, 3])
    assert (lon, lat) == pytest.approx(CENTRE, abs=1e-9) and 50 < h < 150
    up = m[:3, 3] / np.linalg.norm(m[:3, 3])
    assert np.dot(m[:3, 2], up) > 0.99 and np.allclose(m[:3, :3].T @ m[:3, :3], np.eye(3))
    # children's boxes (and so their content) lie inside the root box, corners transformed
    rbox = rt["boundingVolume"]["box"]
    inv = np.linalg.inv(m)
    for child in rt["children"]:
        world = corners(child["boundingVolume"]["box"], m)
        back = (np.c_[world, np.ones(8)] @ inv.T)[:, :3]
        assert inside(back, rbox, tol=1e-3)
    # the quadrants tile the patch
    xs = sorted(round(c["boundingVolume"]["box"][0]) for c in rt["children"])
    assert xs[0] == xs[1] < 0 < xs[2] == xs[3]


def test_demo_glbs_parse_and_stay_in_their_boxes(demo_block):
    import pygltflib

    doc = json.loads((demo_block["folder"] / "tileset.json").read_text())
    rt = doc["root"]
    tiles = [(rt["content"]["uri"], rt["boundingVolume"]["box"])] + [
        (c["content"]["uri"], c["boundingVolume"]["box"]) for c in rt["children"]]
    y_up_to_z_up = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    for uri, box in tiles:
        g = pygltflib.GLTF2().load(str(demo_block["folder"] / uri))
        prim = g.meshes[0].primitives[0]
        pos = g.accessors[prim.attributes.POSITION]
        assert pos.min is not None and pos.max is not None
        lo, hi = np.array(pos.min), np.array(pos.max)
        cube = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                         for c in (lo[2], hi[2])])
        assert inside(cube @ y_up_to_z_up.T, box, tol=1e-3), uri
        # textured: one PNG in a buffer view, UVs in [0, 1], unit normals, 4-byte alignment
        assert g.images[0].mimeType == "image/png" and g.images[0].bufferView is not None
        blob = g.binary_blob()
        for view in g.bufferViews:
            assert view.byteOffset % 4 == 0
        uv_acc = g.accessors[prim.attributes.TEXCOORD_0]
        v = g.bufferViews[uv_acc.bufferView]
        uv = np.frombuffer(blob, np.float32, uv_acc.count * 2, v.byteOffset)
        assert uv.min() >= 0 and uv.max() <= 1
        n_acc = g.accessors[prim.attributes.NORMAL]
        v = g.bufferViews[n_acc.bufferView]
        nor = np.frombuffer(blob, np.float32, n_acc.count * 3, v.byteOffset).reshape(-1, 3)
        assert np.allclose(np.linalg.norm(nor, axis=1), 1, atol=1e-5)
        idx = g.accessors[prim.indices]
        assert idx.componentType in (5123, 5125) and idx.count % 3 == 0
        v = g.bufferViews[pos.bufferView]
        p = np.frombuffer(blob, np.float32, pos.count * 3, v.byteOffset).reshape(-1, 3)
        assert np.array_equal(p.min(axis=0), lo.astype(np.float32))
        assert np.array_equal(p.max(axis=0), hi.astype(np.float32))


def test_demo_block_is_deterministic(demo_block, tmp_path):
    def digest(folder: Path) -> dict:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.iterdir())}
    first = digest(demo_block["folder"])
    with psycopg.connect(demo_block["url"]) as c:
        add_demo_realscene(c, demo_block["data"])
        again = get_tileset(c, NAME)
    assert again.directory != demo_block["tileset"].directory  # a fresh folder, swapped in
    assert not (root(demo_block["data"]) / demo_block["tileset"].directory).exists()
    assert digest(root(demo_block["data"]) / again.directory) == first
    demo_block["folder"] = root(demo_block["data"]) / again.directory


def test_demo_block_served(demo_block):
    with TestClient(create_app(Settings(data_dir=demo_block["data"]),
                               db_url=demo_block["url"])) as client:
        doc = client.get(f"/3d/{NAME}/tileset.json").json()
        for c in [doc["root"], *doc["root"]["children"]]:
            r = client.get(f"/3d/{NAME}/{c['content']['uri']}")
            assert r.status_code == 200 and r.headers["content-type"] == "model/gltf-binary"
        names = [t["name"] for t in client.get("/3d/").json()["tilesets"]]
        assert NAME in names


def test_demo_glbs_pass_the_khronos_validator(demo_block):
    import importlib

    js = importlib.import_module("js")
    js.require(browser=False)
    paths = sorted(demo_block["folder"].glob("*.glb"))
    reports = js.validate_glbs(paths)
    assert len(reports) == 5
    for p in paths:
        issues = reports[p]["issues"]
        assert issues["numErrors"] == 0, (p.name, js.gltf_errors(reports[p]))
        assert issues["numWarnings"] == 0, (p.name, issues["messages"])


def test_demo_hooks_in_the_cli():
    """`gisplatform demo` and `up` add the demo real-scene block (up: when none is there)."""
    import inspect

    import gisplatform.cli as g

    assert "add_demo_realscene" in inspect.getsource(g._demo_realscene)
    assert "_demo_realscene" in inspect.getsource(g.demo)
    up = inspect.getsource(g.up)
    assert "get_tileset(conn, REALSCENE_DEMO) is None" in up and "_demo_realscene(url)" in up


def test_list_shows_realscene(reg):
    r = cli(reg, "list")
    assert r.exit_code == 0
    with psycopg.connect(reg[0]) as c:
        names = {t.name for t in list_tilesets(c) if t.kind == "realscene"}
    assert names and all(n in r.stdout for n in names)
