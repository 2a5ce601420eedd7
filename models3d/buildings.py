"""Buildings → OGC 3D Tiles 1.1: LOD1 blocks (footprint extruded to its height, flat roof).

Every version of every building in current knowledge is a feature, with `valid_from` and
`valid_to` as epoch seconds (3D Tiles styles have no date type; an open end is
OPEN_END), so a viewer shows the city at T with the style
`${valid_from} <= T && T < ${valid_to}`.

Tiling: a quadtree over the city in lon/lat. A tile holds at most `cap` features — the
most important (footprint area × height) of those whose centroid falls in its cell — and
passes the rest to its four children (refine ADD): the skyline shows from afar, small
buildings appear closer. geometricError halves per level and is 0 at the leaves; bounding
volumes are regions computed from the content and unioned with the children's.

Content: one glb per tile, positions as ECEF offsets from the tile's centre in glTF's
y-up frame, the centre in the node translation (no tile transforms to compose), flat
normals, EXT_mesh_features ids and an EXT_structural_metadata property table.

Rebuilds are incremental: `state.json` keeps the tree and each feature's version
signature; a rebuild diffs the table against it, rewrites only the tiles whose features
changed (new, closed, superseded), hard-links the rest into the new folder, and
registers the folder — readers switch at once, never see half a tileset.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mapbox_earcut
import numpy as np
import psycopg
import shapely
from pyproj import Transformer

from .glb import building_glb
from .registry import get_tileset, new_directory, register, root

OPEN_END = 32503680000.0  # 3000-01-01T00:00:00Z: valid_to of a version still valid
CAP = 800
MAX_LEVEL = 18
ROOT_ERROR = 2048.0  # metres; halves per level
SCHEMA = {"id": "gisplatform", "classes": {"building": {"name": "Building", "properties": {
    "vid": {"type": "SCALAR", "componentType": "UINT32", "description": "version id"},
    "fid": {"type": "STRING", "description": "building code (房屋编码)"},
    "floors": {"type": "SCALAR", "componentType": "INT32"},
    "height": {"type": "SCALAR", "componentType": "FLOAT32", "description": "metres"},
    "use": {"type": "STRING"},
    "year_built": {"type": "SCALAR", "componentType": "INT32", "noData": -1},
    "ground": {"type": "SCALAR", "componentType": "FLOAT32",
               "description": "ground height the block stands on (m, ellipsoidal)"},
    "valid_from": {"type": "SCALAR", "componentType": "FLOAT64",
                   "description": "epoch seconds"},
    "valid_to": {"type": "SCALAR", "componentType": "FLOAT64",
                 "description": f"epoch seconds; {OPEN_END:.0f} = still valid"},
}}}}
PROPS = ("vid", "fid", "floors", "height", "use", "year_built", "ground", "valid_from", "valid_to")
_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)


@dataclass
class Node:
    level: int
    x: int
    y: int
    cell: tuple[float, float, float, float]
    vids: list[int] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    region: list[float] | None = None  # radians + metres, content ∪ children

    @property
    def id(self) -> str:
        return f"{self.level}/{self.x}/{self.y}"

    def child_cell(self, qx: int, qy: int) -> tuple[float, float, float, float]:
        w, s, e, n = self.cell
        mx, my = (w + e) / 2, (s + n) / 2
        return ((w, mx)[qx], (s, my)[qy], (mx, e)[qx], (my, n)[qy])

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


# -- reading ------------------------------------------------------------------------------
@dataclass
class Features:
    """Columns of the building versions, indexed alike."""
    vid: np.ndarray
    fid: list[str]
    geom: np.ndarray  # shapely geometries (EPSG:4490 lon/lat)
    floors: np.ndarray
    height: np.ndarray
    use: list[str]
    year_built: np.ndarray
    valid_from: np.ndarray
    valid_to: np.ndarray
    ground: np.ndarray

    def __len__(self):
        return len(self.vid)

    def take(self, idx) -> Features:
        idx = np.asarray(idx, dtype=np.int64)
        return Features(self.vid[idx], [self.fid[i] for i in idx], self.geom[idx],
                        self.floors[idx], self.height[idx], [self.use[i] for i in idx],
                        self.year_built[idx], self.valid_from[idx], self.valid_to[idx],
                        self.ground[idx])


def read_features(conn: psycopg.Connection, vids: list[int] | None = None,
                  ground: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Features:
    where = "upper_inf(recorded)" + (" and vid = any(%s)" if vids is not None else "")
    rows = conn.execute(
        "select vid, fid, st_asbinary(geom), floors, height, coalesce(use, ''),"
        " coalesce(year_built, -1), extract(epoch from lower(valid)),"
        f" coalesce(extract(epoch from upper(valid)), {OPEN_END})"
        f" from city.buildings_version where {where} order by vid",
        (vids,) if vids is not None else None).fetchall()
    cols = list(zip(*rows)) if rows else [[]] * 9
    geom = shapely.from_wkb(np.array(cols[2], dtype=object)) if rows else np.array([], dtype=object)
    cx, cy = _centroids(geom)
    return Features(
        np.array(cols[0], dtype=np.int64), list(cols[1]), geom,
        np.array(cols[3], dtype=np.int32), np.array(cols[4], dtype=np.float64), list(cols[5]),
        np.array(cols[6], dtype=np.int32), np.array(cols[7], dtype=np.float64),
        np.array(cols[8], dtype=np.float64),
        ground(cx, cy) if ground is not None and len(cx) else np.zeros(len(cx)))


def _centroids(geom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(geom):
        return np.zeros(0), np.zeros(0)
    b = shapely.bounds(geom)
    return (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2


def dem_ground(conn: psycopg.Connection, data_dir: Path):
    """Ground heights from the latest registered DEM (nearest cell), or None without one."""
    try:
        row = conn.execute("select path from city.rasters where kind = 'dem' "
                           "order by at desc limit 1").fetchone()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return None
    if row is None:
        return None
    import rasterio

    with rasterio.open(Path(data_dir) / "rasters" / row[0]) as ds:
        band = ds.read(1, masked=True).filled(0).astype(np.float32)
        to_ds = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        inv = ~ds.transform

    def ground(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x, y = to_ds.transform(lon, lat)
        col, r = inv * (np.asarray(x), np.asarray(y))
        r = np.clip(np.floor(r).astype(int), 0, band.shape[0] - 1)
        col = np.clip(np.floor(col).astype(int), 0, band.shape[1] - 1)
        return band[r, col].astype(np.float64)
    return ground


# -- planning ----------------------------------------------------------------------------
def plan(f: Features, bbox: tuple[float, float, float, float], cap: int = CAP) -> Node:
    cx, cy = _centroids(f.geom)
    importance = shapely.area(f.geom) * np.maximum(f.height, 1.0)
    w, s, e, n = bbox
    side = max(e - w, n - s)  # square cells in degrees
    rootnode = Node(0, 0, 0, (w, s, w + side, s + side))

    def fill(node: Node, idx: np.ndarray) -> None:
        if len(idx) <= cap or node.level >= MAX_LEVEL:
            node.vids = [int(v) for v in f.vid[idx]]
            return
        order = idx[np.argsort(-importance[idx], kind="stable")]
        node.vids = [int(v) for v in f.vid[order[:cap]]]
        rest = order[cap:]
        mx, my = (node.cell[0] + node.cell[2]) / 2, (node.cell[1] + node.cell[3]) / 2
        for qx in (0, 1):
            for qy in (0, 1):
                sel = rest[((cx[rest] >= mx) == bool(qx)) & ((cy[rest] >= my) == bool(qy))]
                if len(sel):
                    child = Node(node.level + 1, node.x * 2 + qx, node.y * 2 + qy,
                                 node.child_cell(qx, qy))
                    node.children.append(child)
                    fill(child, sel)

    fill(rootnode, np.arange(len(f)))
    return rootnode


# -- tiles -------------------------------------------------------------------------------
def tile_mesh(f: Features) -> dict:
    """The glb arguments for these features (one tile)."""
    parts, part_of = shapely.get_parts(f.geom, return_index=True)
    parts = shapely.orient_polygons(parts)  # exterior CCW, holes CW: outward wall normals
    base = f.ground[part_of]
    top = base + f.height[part_of]
    b = shapely.bounds(parts)
    lon0, lat0 = float((b[:, 0].min() + b[:, 2].max()) / 2), float((b[:, 1].min() + b[:, 3].max()) / 2)
    h0 = float(base.mean())
    center = np.array(_TO_ECEF.transform(lon0, lat0, h0))
    enu = _enu_matrix(lon0, lat0)  # columns: east, north, up in ECEF

    pos, nor, fid, tri = [], [], [], []
    n_vert = 0
    # walls: one quad per ring edge, its own four vertices (flat normals)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[:-1] == ring_of[1:]
    a, bb = coords[:-1][same], coords[1:][same]
    edge_part = ring_part[ring_of[:-1][same]]
    k = len(a)
    if k:
        lo, hi = base[edge_part], top[edge_part]
        quad_lon = np.stack([a[:, 0], bb[:, 0], bb[:, 0], a[:, 0]], axis=1).ravel()
        quad_lat = np.stack([a[:, 1], bb[:, 1], bb[:, 1], a[:, 1]], axis=1).ravel()
        quad_h = np.stack([lo, lo, hi, hi], axis=1).ravel()
        pos.append(np.column_stack(_TO_ECEF.transform(quad_lon, quad_lat, quad_h)) - center)
        # outward normal of a CCW edge in local east/north metres: (dy, -dx)
        dx = (bb[:, 0] - a[:, 0]) * math.cos(math.radians(lat0))
        dy = bb[:, 1] - a[:, 1]
        length = np.hypot(dx, dy)
        length[length == 0] = 1
        n_local = np.column_stack([dy / length, -dx / length, np.zeros(k)])
        nor.append(np.repeat(n_local @ enu.T, 4, axis=0))
        fid.append(np.repeat(part_of[edge_part], 4))
        q = np.arange(k)[:, None] * 4
        tri.append((q + np.array([0, 1, 2, 0, 2, 3])).reshape(-1, 3))
        n_vert = 4 * k
    # roofs: earcut per polygon part (holes included), CCW seen from above
    roof_pos, roof_tri, roof_fid = [], [], []
    offset = n_vert
    for i, poly in enumerate(parts):
        ring_coords = [np.asarray(poly.exterior.coords)[:-1]] + \
                      [np.asarray(r.coords)[:-1] for r in poly.interiors]
        flat = np.concatenate(ring_coords)
        ends = np.cumsum([len(r) for r in ring_coords]).astype(np.uint32)
        local = (flat - (lon0, lat0)) * (math.cos(math.radians(lat0)), 1.0)
        t = mapbox_earcut.triangulate_float64(local, ends).reshape(-1, 3)
        if not len(t):
            continue
        p = local[t]
        area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - \
               (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
        t = np.where((area < 0)[:, None], t[:, ::-1], t)
        roof_pos.append(np.column_stack([flat, np.full(len(flat), top[i])]))
        roof_tri.append(t + offset)
        roof_fid.append(np.full(len(flat), part_of[i]))
        offset += len(flat)
    if roof_pos:
        rp = np.concatenate(roof_pos)
        pos.append(np.column_stack(_TO_ECEF.transform(rp[:, 0], rp[:, 1], rp[:, 2])) - center)
        nor.append(np.repeat(enu[:, 2][None, :], len(rp), axis=0))
        fid.append(np.concatenate(roof_fid))
        tri.append(np.concatenate(roof_tri))
    positions = np.concatenate(pos)
    # glTF is y-up: (x, y, z) ECEF → (x, z, -y); Cesium turns it back
    yup = lambda v: np.column_stack([v[:, 0], v[:, 2], -v[:, 1]])  # noqa: E731
    table = {"vid": f.vid.astype(np.uint32), "fid": f.fid, "floors": f.floors,
             "height": f.height.astype(np.float32), "use": f.use, "year_built": f.year_built,
             "ground": f.ground.astype(np.float32), "valid_from": f.valid_from,
             "valid_to": f.valid_to}
    return {"positions": yup(positions).astype(np.float32),
            "normals": yup(np.concatenate(nor)).astype(np.float32),
            "feature_ids": np.concatenate(fid), "indices": np.concatenate(tri),
            "translation": (center[0], center[2], -center[1]),
            "schema": SCHEMA, "class_name": "building", "table": table}


def _enu_matrix(lon: float, lat: float) -> np.ndarray:
    lo, la = math.radians(lon), math.radians(lat)
    east = [-math.sin(lo), math.cos(lo), 0.0]
    north = [-math.sin(la) * math.cos(lo), -math.sin(la) * math.sin(lo), math.cos(la)]
    up = [math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)]
    return np.array([east, north, up]).T


def content_region(f: Features) -> list[float]:
    b = shapely.bounds(f.geom)
    return [math.radians(b[:, 0].min()), math.radians(b[:, 1].min()),
            math.radians(b[:, 2].max()), math.radians(b[:, 3].max()),
            float(f.ground.min()), float((f.ground + f.height).max())]


def _write_tile(args) -> tuple[str, int, list[float]]:
    path, f = args
    data = building_glb(**tile_mesh(f))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return path, len(data), content_region(f)


# -- the build ----------------------------------------------------------------------------
@dataclass
class BuildReport:
    name: str
    tiles: int
    written: int
    reused: int
    features: int
    bytes: int
    directory: Path


def build(conn: psycopg.Connection, data_dir: Path, bbox, *, name: str = "buildings",
          full: bool = False, workers: int | None = None, cap: int = CAP,
          progress: Callable[[int, int], None] | None = None) -> BuildReport:
    """Build (or incrementally rebuild) the buildings tileset and register it."""
    ground = dem_ground(conn, data_dir)
    old = get_tileset(conn, name)
    old_dir = root(data_dir) / old.directory if old is not None else None
    state = _load_state(old_dir) if old_dir is not None and not full else None
    current = dict(conn.execute(
        f"select vid, coalesce(extract(epoch from upper(valid)), {OPEN_END})::float8"
        " from city.buildings_version where upper_inf(recorded)").fetchall())
    if state is None:
        f = read_features(conn, ground=ground)
        tree = plan(f, bbox, cap)
        dirty = {n.id for n in tree.walk()}
    else:
        tree, signature = state
        tree, dirty = _update(conn, tree, signature, current, ground, cap)
        if not dirty:  # nothing changed since the last build: keep serving it
            n_tiles = sum(1 for _ in tree.walk())
            return BuildReport(name, n_tiles, 0, n_tiles, len(current), old.bytes, old_dir)
    nodes = {n.id: n for n in tree.walk()}
    out = new_directory(data_dir, name)
    try:
        jobs, reused = [], 0
        for node in nodes.values():
            rel = f"tiles/{node.id}.glb"
            if node.id not in dirty and old_dir is not None and (old_dir / rel).exists():
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(old_dir / rel, out / rel)  # unchanged: the same bytes, no copy
                reused += 1
            elif node.vids:
                jobs.append((node, str(out / rel)))
        written = 0
        total = len(jobs)
        regions = {n.id: n.region for n in nodes.values() if n.id not in dirty}
        sizes = 0
        feats = read_features(conn, sorted({v for node, _ in jobs for v in node.vids}),
                              ground=ground) if jobs else None
        pos = {int(v): i for i, v in enumerate(feats.vid)} if feats is not None else {}
        work = [(path, feats.take([pos[v] for v in node.vids])) for node, path in jobs]
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            for (node, _), (path, size, region) in zip(jobs, pool.map(_write_tile, work, chunksize=4)):
                regions[node.id] = region
                sizes += size
                written += 1
                if progress:
                    progress(written, total)
        for n in nodes.values():
            n.region = regions.get(n.id)
        _union_regions(tree)
        doc = tileset_json(tree)
        (out / "tileset.json").write_text(json.dumps(doc, separators=(",", ":")))
        _save_state(out, tree, current)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        r = tree.region
        reg = register(conn, data_dir, name=name, kind="buildings", directory=out, at=None,
                       bounds=(math.degrees(r[0]), math.degrees(r[1]), math.degrees(r[2]),
                               math.degrees(r[3])),
                       tiles=len(nodes), size=size, source="city.buildings_version")
    except BaseException:
        import shutil
        shutil.rmtree(out, ignore_errors=True)
        raise
    return BuildReport(reg.name, len(nodes), written, reused, len(current), size, out)


def _union_regions(node: Node) -> list[float] | None:
    regions = [node.region] if node.region else []
    for c in node.children:
        r = _union_regions(c)
        if r:
            regions.append(r)
    if not regions:
        node.region = None
        return None
    a = np.array(regions)
    node.region = [float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 2].max()),
                   float(a[:, 3].max()), float(a[:, 4].min()), float(a[:, 5].max())]
    return node.region


def tileset_json(tree: Node) -> dict:
    def tile(node: Node) -> dict:
        t = {"boundingVolume": {"region": node.region},
             "geometricError": 0.0 if not node.children else ROOT_ERROR / 2 ** node.level,
             "refine": "ADD"}
        if node.vids:
            t["content"] = {"uri": f"tiles/{node.id}.glb"}
        kids = [tile(c) for c in node.children if c.region]
        if kids:
            t["children"] = kids
        return t
    return {"asset": {"version": "1.1", "generator": "gisplatform models3d.buildings"},
            "geometricError": ROOT_ERROR * 2,
            "schema": SCHEMA,
            "extras": {"time_style": "${valid_from} <= T && T < ${valid_to} (epoch seconds); "
                                     f"valid_to {OPEN_END:.0f} = still valid"},
            "root": tile(tree)}


# -- incremental rebuilds --------------------------------------------------------------
def _save_state(out: Path, tree: Node, signature: dict[int, float]) -> None:
    def enc(n: Node) -> dict:
        return {"l": n.level, "x": n.x, "y": n.y, "c": n.cell, "v": n.vids, "r": n.region,
                "k": [enc(c) for c in n.children]}
    (out / "state.json").write_text(json.dumps(
        {"tree": enc(tree), "signature": [[k, v] for k, v in signature.items()]},
        separators=(",", ":")))


def _load_state(folder: Path):
    try:
        doc = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return None

    def dec(d) -> Node:
        return Node(d["l"], d["x"], d["y"], tuple(d["c"]), d["v"], [dec(c) for c in d["k"]], d["r"])
    return dec(doc["tree"]), {int(k): float(v) for k, v in doc["signature"]}


def _update(conn, tree: Node, signature: dict[int, float], current: dict[int, float],
            ground, cap: int) -> tuple[Node, set[str]]:
    """Apply the difference between the last build and the table to the tree; the ids of
    the tiles whose content changed."""
    gone = {v for v in signature if v not in current}
    changed = {v for v, t in current.items() if v in signature and signature[v] != t}
    new = [v for v in current if v not in signature]
    dirty: set[str] = set()
    for node in tree.walk():
        if gone.intersection(node.vids) or changed.intersection(node.vids):
            node.vids = [v for v in node.vids if v not in gone]
            dirty.add(node.id)
    if new:
        f = read_features(conn, new, ground=ground)
        cx, cy = _centroids(f.geom)
        for v, x, y in zip(f.vid, cx, cy):
            node = tree
            while len(node.vids) >= cap and node.level < MAX_LEVEL:  # full: one level down
                qx = int(x >= (node.cell[0] + node.cell[2]) / 2)
                qy = int(y >= (node.cell[1] + node.cell[3]) / 2)
                child = next((c for c in node.children
                              if (c.x, c.y) == (node.x * 2 + qx, node.y * 2 + qy)), None)
                if child is None:
                    child = Node(node.level + 1, node.x * 2 + qx, node.y * 2 + qy,
                                 node.child_cell(qx, qy))
                    node.children.append(child)
                node = child
            node.vids.append(int(v))
            dirty.add(node.id)
    return tree, dirty
