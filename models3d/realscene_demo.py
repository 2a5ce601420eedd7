"""The demo real-scene block: a small textured 3D Tiles 1.1 tileset made here, deterministically.

Real oblique photography cannot ship with the repository, so `add_demo_realscene` builds a
stand-in the way a photogrammetry export is shaped: a 300 m × 300 m patch of Fushun's urban
core (centre `CENTRE`, Xinfu district by the Hun River) as a textured mesh — rolling ground
plus the demo buildings standing there at the capture time (`city.buildings_version` at
`AT`, current knowledge; EPSG:4490 footprints extruded to `height`) — in a root tile (coarse
ground, half-resolution texture) refined by 4 quadrant children (finer ground, full
texture, buildings cut at the quadrant lines without walls on the cuts), `refine: REPLACE`,
geometricError 8 → 0.

Geometry is in a local east-north-up frame at the patch centre (`GROUND_HEIGHT` m above the
WGS 84 ellipsoid, about the demo DEM's valley floor there); the root `transform` is that
ENU → ECEF matrix (pyproj EPSG:4979 → 4978 for the origin). Every tile is one glb (glTF
2.0, y-up as 3D Tiles expects; POSITION/NORMAL/TEXCOORD_0, uint16 or uint32 indices,
4-byte aligned buffer views, POSITION min/max) with one PNG texture atlas embedded:
the tile's ground (a synthetic orthophoto: grass, paving around buildings, a road pair,
trees), three facade styles (window grids) and four roof materials, all drawn with numpy
from fixed seeds. Same database, same bytes. The tileset goes through the importer's own
check (`models3d.realscene.check_tileset`) before it is registered.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
import shapely
from shapely.geometry import Polygon, box

from gisplatform.db.connections import connect
from gisplatform.temporal import BEIJING_TIME

from .realscene import check_tileset
from .registry import new_directory, register

NAME = "realscene-demo"
AT = datetime(2020, 7, 1, tzinfo=BEIJING_TIME)
CENTRE = (123.925, 41.870)  # lon, lat: Xinfu district, north bank of the Hun River
HALF = 150.0                # metres: the patch is 300 m × 300 m
GROUND_HEIGHT = 92.0        # ellipsoidal height of the local origin (m)
SEED = 20200701
GROUND_PX = 768             # full-patch orthophoto: 0.39 m per pixel
CELL = 128                  # facade / roof cell in the full-resolution atlas
ATLAS = 512                 # leaf atlas; the root's is half that
FLOOR = 3.0                 # metres per storey; a facade cell is 4 × 4 windows
PANEL = 4 * FLOOR
GRID = {"root": 16, "leaf": 32}   # ground cells along a tile side
ERROR = {"tileset": 100.0, "root": 8.0, "leaf": 0.0}
FACADES = (((196, 188, 172), (58, 74, 96)), ((168, 170, 176), (40, 56, 70)),
           ((206, 170, 140), (70, 84, 100)))  # (wall, glass)
ROOFS = {"residential": 0, "mixed": 0, "commercial": 1, "office": 1, "public": 2,
         "industrial": 3}
ROOF_COLOURS = ((160, 92, 74), (176, 178, 182), (104, 138, 112), (92, 120, 160))


# ----------------------------------------------------------------------------- frame

def enu_frame(lon: float, lat: float, h: float) -> np.ndarray:
    """4×4 ENU → ECEF matrix (row-major numpy; tileset.json wants it column-major)."""
    from pyproj import Transformer

    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    lam, phi = math.radians(lon), math.radians(lat)
    east = (-math.sin(lam), math.cos(lam), 0.0)
    north = (-math.sin(phi) * math.cos(lam), -math.sin(phi) * math.sin(lam), math.cos(phi))
    up = (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = east, north, up, (x, y, z)
    return m


def _to_local(frame: np.ndarray):
    """lon/lat (at the origin's height) → local east/north metres."""
    from pyproj import Transformer

    to_ecef = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    inv = np.linalg.inv(frame)

    def f(lon, lat):
        x, y, z = to_ecef.transform(lon, lat, np.full(np.shape(lon), GROUND_HEIGHT))
        p = np.c_[x, y, z, np.ones(np.size(x))] @ inv.T
        return p[:, 0], p[:, 1]
    return f


def ground_z(x, y):
    """Gentle relief (± ~1.5 m) over the patch, metres above the origin."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return (0.7 * np.sin(x / 37.0 + 0.3) * np.cos(y / 53.0) + 0.45 * np.sin((x + y) / 29.0)
            + 0.004 * x - 0.003 * y)


def _ground_normal(x, y, eps=0.05):
    dzdx = (ground_z(x + eps, y) - ground_z(x - eps, y)) / (2 * eps)
    dzdy = (ground_z(x, y + eps) - ground_z(x, y - eps)) / (2 * eps)
    n = np.stack([-dzdx, -dzdy, np.ones_like(dzdx)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- buildings

class Building:
    def __init__(self, fid: str, footprint, height: float, use: str | None):
        self.fid, self.footprint, self.height = fid, footprint, height
        crc = zlib.crc32(fid.encode())
        self.facade = crc % len(FACADES)
        self.roof = ROOFS.get(use or "", crc % len(ROOF_COLOURS))
        pts = _sample_points(footprint)
        z = ground_z(pts[:, 0], pts[:, 1])
        self.base = float(z.min()) - 0.3
        self.top = float(z.max()) + max(3.0, float(height))


def _sample_points(poly) -> np.ndarray:
    ring = np.concatenate([np.asarray(r.coords) for g in shapely.get_parts(poly)
                           for r in (g.exterior, *g.interiors)])
    minx, miny, maxx, maxy = poly.bounds
    gx, gy = np.meshgrid(np.linspace(minx, maxx, 8), np.linspace(miny, maxy, 8))
    inside = shapely.contains_xy(poly, gx.ravel(), gy.ravel())
    return np.concatenate([ring, np.c_[gx.ravel()[inside], gy.ravel()[inside]]])


def _buildings(conn: psycopg.Connection, frame: np.ndarray) -> list[Building]:
    to_local = _to_local(frame)
    # the patch in lon/lat, with a margin (then clipped exactly in metres)
    dlat = (HALF + 20) / 111_000
    dlon = dlat / math.cos(math.radians(CENTRE[1]))
    rows = conn.execute(
        """select fid, st_asbinary(st_force2d(geom)), height, use from city.buildings_version
           where upper_inf(recorded) and valid @> %s::timestamptz
             and geom && st_makeenvelope(%s, %s, %s, %s, 4490)
           order by fid""",
        (AT, CENTRE[0] - dlon, CENTRE[1] - dlat, CENTRE[0] + dlon, CENTRE[1] + dlat)).fetchall()
    patch = box(-HALF, -HALF, HALF, HALF)
    out = []
    for fid, wkb, height, use in rows:
        geom = shapely.from_wkb(wkb)

        def local(coords):
            x, y = to_local(coords[:, 0], coords[:, 1])
            return np.c_[x, y]
        geom = shapely.transform(geom, local)
        geom = shapely.make_valid(geom).intersection(patch)
        polys = [p for p in shapely.get_parts(geom)
                 if isinstance(p, Polygon) and p.area > 4.0]
        if not polys:
            continue
        fp = shapely.orient_polygons(shapely.MultiPolygon(polys))  # exteriors CCW
        out.append(Building(fid, fp, height or 10.0, use))
    return out


# ----------------------------------------------------------------------------- textures

def _noise(rng: np.random.Generator, shape, cells: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] (bilinear over a coarse grid)."""
    coarse = rng.uniform(-1, 1, (cells + 1, cells + 1))
    h, w = shape
    yi, xi = np.linspace(0, cells, h), np.linspace(0, cells, w)
    y0, x0 = np.minimum(yi.astype(int), cells - 1), np.minimum(xi.astype(int), cells - 1)
    ty, tx = (yi - y0)[:, None], (xi - x0)[None, :]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    c = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


def _ground_image(buildings: list[Building]) -> np.ndarray:
    """A synthetic orthophoto of the patch, GROUND_PX², north up (row 0 = north)."""
    rng = np.random.default_rng([SEED, 1])
    n = GROUND_PX
    px = 2 * HALF / n
    c = -HALF + (np.arange(n) + 0.5) * px
    X, Y = np.meshgrid(c, -c)  # row 0 at the north edge
    img = np.empty((n, n, 3), float)
    grass = np.array([104, 128, 70], float)
    img[:] = grass * (1 + 0.10 * _noise(rng, (n, n), 12)[..., None])
    img *= 1 + 0.05 * _noise(rng, (n, n), 60)[..., None]
    foot = shapely.union_all([b.footprint for b in buildings]) if buildings else Polygon()
    # paved yards around the buildings
    yard = shapely.contains_xy(foot.buffer(9.0, quad_segs=4), X, Y)
    img[yard] = np.array([176, 172, 164]) * (1 + 0.04 * _noise(rng, (n, n), 90)[yard][:, None])
    # two roads, placed where they cross the fewest buildings
    best = {}
    for axis in (0, 1):
        scores = []
        for off in range(-110, 111, 10):
            line = box(off - 8, -HALF, off + 8, HALF) if axis == 0 else box(-HALF, off - 8, HALF, off + 8)
            scores.append((line.intersection(foot).area, abs(off), off))
        best[axis] = min(scores)[2]
    road = np.zeros((n, n), bool)
    for axis, off in best.items():
        d = np.abs((X if axis == 0 else Y) - off)
        road |= d < 8
        img[d < 8] = (78, 80, 84)
        dash = (np.abs(d) < 0.2) & ((((Y if axis == 0 else X) + 300) % 9) < 5)
        img[dash] = (228, 228, 220)
        img[(np.abs(d - 7.2) < 0.15)] = (210, 210, 204)
    # trees on the grass: dark crowns with a shadow to the north-east (sun in the south-west)
    free = ~(yard | road)
    near = foot.buffer(12.0)
    for _ in range(140):
        tx, ty, r = rng.uniform(-HALF, HALF), rng.uniform(-HALF, HALF), rng.uniform(2.0, 4.5)
        if shapely.contains_xy(near, tx, ty) or min(abs(tx - best[0]), abs(ty - best[1])) < 12:
            continue
        # a window of pixels around the tree
        c0, c1 = (int(max(0, (tx - r + HALF - 1) / px)),
                  int(min(n, (tx + 2 * r + HALF + 1) / px)))
        r0, r1 = (int(max(0, (HALF - ty - 2 * r - 1) / px)),
                  int(min(n, (HALF - ty + r + 1) / px)))
        wx, wy, w = X[r0:r1, c0:c1], Y[r0:r1, c0:c1], img[r0:r1, c0:c1]
        shadow = ((wx - tx - 0.8 * r) ** 2 + (wy - ty - 0.8 * r) ** 2 < r * r) & free[r0:r1, c0:c1]
        w[shadow] *= 0.6
        crown = (wx - tx) ** 2 + (wy - ty) ** 2 < r * r
        w[crown] = np.array([52, 86, 44]) * (1 + 0.25 * (wy[crown] - ty) / r)[:, None]
    img[shapely.contains_xy(foot, X, Y)] = (60, 60, 62)  # under the buildings (hidden)
    return np.clip(img, 0, 255).astype(np.uint8)


def _facade(style: int) -> np.ndarray:
    wall, glass = FACADES[style]
    rng = np.random.default_rng([SEED, 2, style])
    img = np.empty((CELL, CELL, 3), float)
    img[:] = wall
    img *= 1 + 0.04 * _noise(rng, (CELL, CELL), 8)[..., None]
    step = CELL // 4
    yy, xx = np.mgrid[0:CELL, 0:CELL]
    wx, wy = xx % step, yy % step
    win = (wx >= 7) & (wx < step - 7) & (wy >= 9) & (wy < step - 6)
    lit = rng.random((4, 4)) < 0.25
    shade = np.where(lit[yy // step, xx // step], 1.6, 1.0) * (1 + 0.08 * np.sin(yy / 3.0))
    img[win] = (np.array(glass, float)[None] * shade[win][:, None])
    img[(wy >= 5) & (wy < 9) & (wx >= 5) & (wx < step - 5)] *= 0.82  # sills / slabs
    return np.clip(img, 0, 255).astype(np.uint8)


def _roof(k: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, 3, k])
    img = np.empty((CELL, CELL, 3), float)
    img[:] = ROOF_COLOURS[k]
    img *= 1 + 0.07 * _noise(rng, (CELL, CELL), 16)[..., None]
    img *= 1 + 0.03 * rng.standard_normal((CELL, CELL, 1))
    for _ in range(3):  # rooftop plant
        x, y = rng.integers(16, CELL - 32, 2)
        w, h = rng.integers(8, 20, 2)
        img[y:y + h, x:x + w] = (150, 150, 150)
        img[y + h:y + h + 3, x + 2:x + w + 2] *= 0.6
    img[:3], img[-3:], img[:, :3], img[:, -3:] = 0.7 * img[:3], 0.7 * img[-3:], \
        0.7 * img[:, :3], 0.7 * img[:, -3:]  # parapet
    return np.clip(img, 0, 255).astype(np.uint8)


def _downsample(img: np.ndarray, k: int) -> np.ndarray:
    h, w, c = img.shape
    return img.reshape(h // k, k, w // k, k, c).mean(axis=(1, 3)).round().astype(np.uint8)


def _atlas(ground: np.ndarray, facades, roofs, scale: int) -> np.ndarray:
    """[ground 3/4 × 3/4 | facades in the right column; roofs in the bottom row]."""
    size = ATLAS // scale
    cell = CELL // scale
    g = size * 3 // 4
    atlas = np.zeros((size, size, 3), np.uint8)
    atlas[:g, :g] = _downsample(ground, ground.shape[0] // g) if ground.shape[0] != g else ground
    for k, f in enumerate(facades):
        atlas[k * cell:(k + 1) * cell, g:] = _downsample(f, scale) if scale > 1 else f
    for k, r in enumerate(roofs):
        atlas[g:, k * cell:(k + 1) * cell] = _downsample(r, scale) if scale > 1 else r
    return atlas


def png(img: np.ndarray) -> bytes:
    """RGB8 PNG (Sub filter on every row), deterministic."""
    h, w, _ = img.shape
    a = img.astype(np.int16)
    sub = a.copy()
    sub[:, 1:] -= a[:, :-1]
    raw = np.concatenate([np.ones((h, 1), np.uint8), (sub % 256).astype(np.uint8).reshape(h, -1)],
                         axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- meshes

class Mesh:
    """Triangles in the local ENU frame (z up), with normals and atlas UVs."""

    def __init__(self):
        self.pos, self.nor, self.uv, self.idx = [], [], [], []
        self.n = 0

    def add(self, pos, nor, uv, tris) -> None:
        pos, nor, uv = np.asarray(pos, float), np.asarray(nor, float), np.asarray(uv, float)
        tris = np.asarray(tris, np.int64).reshape(-1, 3)
        # front faces counter-clockwise seen from where the normal points
        a, b, c = pos[tris[:, 0]], pos[tris[:, 1]], pos[tris[:, 2]]
        flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), nor[tris].mean(axis=1)) < 0
        tris[flip] = tris[flip][:, ::-1]
        self.pos.append(pos)
        self.nor.append(nor)
        self.uv.append(uv)
        self.idx.append(tris + self.n)
        self.n += len(pos)

    def arrays(self):
        return (np.concatenate(self.pos), np.concatenate(self.nor), np.concatenate(self.uv),
                np.concatenate(self.idx))


class Layout:
    """Where the ground, facade and roof cells sit in an atlas of SIZE pixels (UV rects
    inset by half a pixel so linear filtering does not bleed across cells)."""

    def __init__(self, size: int, extent):
        self.size, self.extent = size, extent
        self.g = size * 3 // 4
        self.cell = size // 4

    def rect(self, x0, y0, x1, y1):
        s = self.size
        return ((x0 + 0.5) / s, (y0 + 0.5) / s, (x1 - 0.5) / s, (y1 - 0.5) / s)

    def ground_uv(self, x, y):
        ex0, ey0, ex1, ey1 = self.extent
        u0, v0, u1, v1 = self.rect(0, 0, self.g, self.g)
        u = u0 + (x - ex0) / (ex1 - ex0) * (u1 - u0)
        v = v0 + (ey1 - y) / (ey1 - ey0) * (v1 - v0)
        return np.c_[u, v]

    def facade(self, k):
        return self.rect(self.g, k * self.cell, self.size, (k + 1) * self.cell)

    def roof(self, k):
        return self.rect(k * self.cell, self.g, (k + 1) * self.cell, self.size)


def _ground(mesh: Mesh, layout: Layout, n: int) -> None:
    x0, y0, x1, y1 = layout.extent
    xs, ys = np.linspace(x0, x1, n + 1), np.linspace(y0, y1, n + 1)
    X, Y = np.meshgrid(xs, ys)
    X, Y = X.ravel(), Y.ravel()
    pos = np.c_[X, Y, ground_z(X, Y)]
    i = np.arange(n)[None, :] + (n + 1) * np.arange(n)[:, None]
    i = i.ravel()
    tris = np.c_[i, i + 1, i + n + 2, i, i + n + 2, i + n + 1].reshape(-1, 3)
    mesh.add(pos, _ground_normal(X, Y), layout.ground_uv(X, Y), tris)


def _building(mesh: Mesh, layout: Layout, b: Building, part, full) -> None:
    """Walls (panels of 4 × 4 windows) and the flat roof of PART of building B; edges not on
    FULL's outline (cuts at the tile lines) get no wall."""
    outline = full.boundary
    fu0, fv0, fu1, fv1 = layout.facade(b.facade)
    heights = b.top - b.base
    nv = max(1, round(heights / PANEL))
    zs = b.base + heights * np.arange(nv + 1) / nv
    for poly in shapely.get_parts(part):
        for ring in (poly.exterior, *poly.interiors):
            c = np.asarray(ring.coords)
            for (ax, ay), (bx, by) in itertools.pairwise(c):
                length = math.hypot(bx - ax, by - ay)
                if length < 0.05:
                    continue
                mid = shapely.Point((ax + bx) / 2, (ay + by) / 2)
                if outline.distance(mid) > 1e-6:
                    continue  # a cut, inside the building
                nu = max(1, round(length / PANEL))
                normal = np.array([by - ay, ax - bx, 0.0]) / length  # outward for CCW rings
                t = np.arange(nu + 1) / nu
                ex, ey = ax + (bx - ax) * t, ay + (by - ay) * t
                pos, uv, tris = [], [], []
                for j in range(nv):
                    for i in range(nu):
                        k = len(pos)
                        pos += [(ex[i], ey[i], zs[j]), (ex[i + 1], ey[i + 1], zs[j]),
                                (ex[i + 1], ey[i + 1], zs[j + 1]), (ex[i], ey[i], zs[j + 1])]
                        uv += [(fu0, fv1), (fu1, fv1), (fu1, fv0), (fu0, fv0)]
                        tris += [(k, k + 1, k + 2), (k, k + 2, k + 3)]
                mesh.add(pos, np.broadcast_to(normal, (len(pos), 3)), uv, tris)
        tri = shapely.constrained_delaunay_triangles(poly)
        corners = [np.asarray(t.exterior.coords)[:3] for t in shapely.get_parts(tri)]
        if not corners:
            continue
        pts = np.concatenate(corners)
        ru0, rv0, ru1, rv1 = layout.roof(b.roof)
        minx, miny, maxx, maxy = full.bounds
        u = ru0 + (pts[:, 0] - minx) / max(maxx - minx, 1e-6) * (ru1 - ru0)
        v = rv0 + (maxy - pts[:, 1]) / max(maxy - miny, 1e-6) * (rv1 - rv0)
        mesh.add(np.c_[pts, np.full(len(pts), b.top)], np.broadcast_to((0.0, 0.0, 1.0),
                 (len(pts), 3)), np.c_[u, v], np.arange(len(pts)))


def glb(mesh: Mesh, image_png: bytes, name: str) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One binary glTF (y-up) of MESH with its texture; also the ENU (z-up) min/max."""
    pos, nor, uv, idx = mesh.arrays()
    to_y_up = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # (e, n, u) → (e, u, -n)
    p = (pos @ to_y_up.T).astype(np.float32)
    nr = nor @ to_y_up.T
    nr = (nr / np.linalg.norm(nr, axis=1, keepdims=True)).astype(np.float32)
    t = uv.astype(np.float32)
    big = len(p) > 65535
    ind = idx.astype(np.uint32 if big else np.uint16).ravel()
    blobs, views = [], []
    offset = 0
    for data, target in ((p.tobytes(), 34962), (nr.tobytes(), 34962), (t.tobytes(), 34962),
                         (ind.tobytes(), 34963), (image_png, None)):
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target:
            view["target"] = target
        views.append(view)
        pad = (-len(data)) % 4
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    binary = b"".join(blobs)
    doc = {
        "asset": {"version": "2.0", "generator": "gisplatform models3d.realscene_demo"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [{
            "attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}, "indices": 3,
            "material": 0, "mode": 4}]}],
        "materials": [{"name": "realscene", "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 1.0}}],
        "textures": [{"sampler": 0, "source": 0}],
        "images": [{"bufferView": 4, "mimeType": "image/png"}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(p), "type": "VEC3",
             "min": [float(v) for v in p.min(axis=0)], "max": [float(v) for v in p.max(axis=0)]},
            {"bufferView": 1, "componentType": 5126, "count": len(nr), "type": "VEC3"},
            {"bufferView": 2, "componentType": 5126, "count": len(t), "type": "VEC2"},
            {"bufferView": 3, "componentType": 5125 if big else 5123, "count": len(ind),
             "type": "SCALAR"},
        ],
    }
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    out = (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(text), b"JSON")
           + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary)
    return out, pos.min(axis=0), pos.max(axis=0)


def _box(lo, hi, pad=0.5) -> list[float]:
    lo, hi = np.asarray(lo) - pad, np.asarray(hi) + pad
    c, h = (lo + hi) / 2, (hi - lo) / 2
    return [round(float(v), 4) for v in (*c, h[0], 0, 0, 0, h[1], 0, 0, 0, h[2])]


# ----------------------------------------------------------------------------- the tileset

def build(buildings: list[Building], out: Path, frame: np.ndarray) -> dict:
    """Write tileset.json and 5 glb files into OUT; return the tileset document."""
    ground = _ground_image(buildings)
    facades = [_facade(k) for k in range(len(FACADES))]
    roofs = [_roof(k) for k in range(len(ROOF_COLOURS))]

    def tile(extent, scale, grid, parts, file_name):
        layout = Layout(ATLAS // scale, extent)
        mesh = Mesh()
        _ground(mesh, layout, grid)
        for b, part in parts:
            _building(mesh, layout, b, part, b.footprint)
        if scale == 1:  # the quadrant's own piece of the orthophoto, 1:1
            n = GROUND_PX // 2
            ex0, ey0 = extent[0], extent[1]
            c0 = 0 if ex0 < 0 else n
            r0 = n if ey0 < 0 else 0
            g = ground[r0:r0 + n, c0:c0 + n]
        else:
            g = ground
        data, lo, hi = glb(mesh, png(_atlas(g, facades, roofs, scale)), file_name[:-4])
        (out / file_name).write_bytes(data)
        return lo, hi

    lo, hi = tile((-HALF, -HALF, HALF, HALF), 2, GRID["root"],
                  [(b, b.footprint) for b in buildings], "root.glb")
    children, los, his = [], [lo], [hi]
    for q, (qx, qy) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1))):  # SW, SE, NW, NE
        extent = (min(0, qx * HALF), min(0, qy * HALF), max(0, qx * HALF), max(0, qy * HALF))
        quad = box(*extent)
        parts = []
        for b in buildings:
            part = b.footprint.intersection(quad)
            part = [p for p in shapely.get_parts(part) if isinstance(p, Polygon) and p.area > 0.5]
            if part:
                parts.append((b, shapely.orient_polygons(shapely.MultiPolygon(part))))
        name = f"{'SN'[qy > 0]}{'WE'[qx > 0]}.glb"
        clo, chi = tile(extent, 1, GRID["leaf"], parts, name)
        los.append(clo)
        his.append(chi)
        children.append({"boundingVolume": {"box": _box(clo, chi)},
                         "geometricError": ERROR["leaf"], "content": {"uri": name}})
    root_box = _box(np.min(los, axis=0), np.max(his, axis=0), pad=1.0)
    doc = {
        "asset": {"version": "1.1", "generator": "gisplatform models3d.realscene_demo",
                  "tilesetVersion": AT.date().isoformat()},
        "geometricError": ERROR["tileset"],
        "extras": {"kind": "realscene", "captured": AT.isoformat(),
                   "note": "synthetic demo block (textured mesh), not real photography",
                   "centre": {"lon": CENTRE[0], "lat": CENTRE[1], "height": GROUND_HEIGHT}},
        "root": {
            "transform": [float(v) for v in frame.T.ravel()],
            "boundingVolume": {"box": root_box},
            "geometricError": ERROR["root"],
            "refine": "REPLACE",
            "content": {"uri": "root.glb"},
            "children": children,
        },
    }
    (out / "tileset.json").write_text(json.dumps(doc, indent=1))
    return doc


def add_demo_realscene(conn_or_url, data_dir: Path) -> str:
    """Generate the demo real-scene block from the database's buildings and register it
    as `realscene-demo` (replacing a previous one). Returns the name."""
    import shutil

    own = isinstance(conn_or_url, str)
    conn = connect(conn_or_url, "gisplatform-demo") if own else conn_or_url
    try:
        frame = enu_frame(CENTRE[0], CENTRE[1], GROUND_HEIGHT)
        buildings = _buildings(conn, frame)
        out = new_directory(data_dir, NAME)
        try:
            build(buildings, out, frame)
            report = check_tileset(out)
            register(conn, data_dir, name=NAME, kind="realscene", directory=out, at=AT,
                     bounds=report.bounds, tiles=report.tiles, size=report.bytes,
                     source=f"generated by models3d.realscene_demo: {len(buildings)} demo "
                            f"buildings around {CENTRE[0]}, {CENTRE[1]}")
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    finally:
        if own:
            conn.close()
    return NAME
