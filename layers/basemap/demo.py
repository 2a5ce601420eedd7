"""Demo rows of the base map, drawn from what the other generators built: the roads run
along the housing lattice's rows (the road a building fronts is the street of its
standard address, base.demo.road_address) and every tenth column (avenues); the Hun
River crosses the city west to east near the line between Shuncheng and Xinfu; the
Dahuofang reservoir lies east of the urban area; place names at the division seats and
landmarks; points of interest beside the roads.

Rows are as every generator's: (fid, valid_from, valid_to, EWKT, attributes)."""

from __future__ import annotations

import math

import numpy as np

from ..base.demo import MID_Y, road_address
from ..demo_common import START, Ctx, point_wkt, polygon_wkt
from ..fushun import DIVISIONS, URBAN_BBOX

AVENUE_EVERY = 10  # lattice columns between north-south avenues
AVENUES = ("中央", "光明", "东华", "西城", "胜利", "解放", "建设", "人民", "抚顺", "浑河")
LANDMARKS = (  # name, English, lon, lat (approximate)
    ("抚顺站", "Fushun Railway Station", 123.903, 41.867),
    ("煤都广场", "Coal Capital Square", 123.917, 41.874),
    ("雷锋纪念馆", "Lei Feng Memorial", 123.958, 41.884),
    ("高尔山公园", "Gao'ershan Park", 123.905, 41.893),
    ("西露天矿", "West Open-pit Mine", 123.850, 41.845),
    ("抚顺市人民政府", "Fushun Municipal Government", 123.957, 41.880),
)
POI_KINDS = ("school", "hospital", "bank", "supermarket", "bus_stop", "pharmacy", "park",
             "government")
POI_ZH = {"school": "学校", "hospital": "医院", "bank": "银行", "supermarket": "超市",
          "bus_stop": "公交站", "pharmacy": "药店", "park": "公园", "government": "办事处"}


def _line(coords) -> str:
    return "SRID=4490;LINESTRING(" + ",".join(f"{x:.7f} {y:.7f}" for x, y in coords) + ")"


def roads(ctx: Ctx):
    """A road along the south edge of every lattice row (the one its buildings front, with
    the name of their addresses) and an avenue every AVENUE_EVERY columns."""
    x0, y1, dx, dy, nrows, ncols = ctx.shared["lattice"]
    x1 = x0 + ncols * dx
    y0 = y1 - nrows * dy
    rows = []
    for r in range(nrows):
        y = y1 - (r + 1) * dy
        _, name, _ = road_address(DIVISIONS[0].code, r, 0)
        cls = "primary" if r % 10 == 0 else "secondary" if r % 5 == 0 else "residential"
        rows.append((f"R{r:04d}", START, None, _line([(x0, y), (x1, y)]),
                     {"road_id": f"R{r:04d}", "name": name, "class": cls,
                      "lanes": {"primary": 6, "secondary": 4, "residential": 2}[cls]}))
    for k, c in enumerate(range(AVENUE_EVERY, ncols, AVENUE_EVERY)):
        x = x0 + c * dx
        name = f"{AVENUES[k % len(AVENUES)]}{'' if k < len(AVENUES) else k // len(AVENUES) + 1}大街"
        rows.append((f"A{c:04d}", START, None, _line([(x, y0), (x, y1)]),
                     {"road_id": f"A{c:04d}", "name": name, "class": "primary", "lanes": 4}))
    ctx.shared["roads"] = [(x0, x1, y1 - (r + 1) * dy, road_address(DIVISIONS[0].code, r, 0)[1])
                           for r in range(nrows)]
    return rows


RIVER_HALF = 0.0014  # degrees of latitude: the Hun River's band is about 300 m wide


def river_centre(x):
    """The latitude of the Hun River's centre line at longitude(s) `x` (in the urban area)."""
    return MID_Y - 0.012 + 0.006 * np.sin((np.asarray(x) - URBAN_BBOX[0]) * 40)


def in_river(x, y, margin: float = 0.0):
    """Whether points (x, y) lie in the river's band widened by `margin` degrees: where the
    housing generator builds nothing."""
    x, y = np.asarray(x), np.asarray(y)
    inside_x = (x >= URBAN_BBOX[0]) & (x <= URBAN_BBOX[2])
    return inside_x & (np.abs(y - river_centre(x)) <= RIVER_HALF + margin)


def water(ctx: Ctx):
    """The Hun River (a meandering band across the urban area, about 300 m wide) and the
    Dahuofang reservoir east of it."""
    ux0, _, ux1, _ = URBAN_BBOX
    xs = np.linspace(ux0, ux1, 160)
    centre = river_centre(xs)
    half = RIVER_HALF
    ring = np.concatenate([np.column_stack([xs, centre + half]),
                           np.column_stack([xs[::-1], centre[::-1] - half])])
    ring = np.vstack([ring, ring[:1]])
    t = np.linspace(0, 2 * math.pi, 90)
    lake = np.column_stack([124.40 + 0.07 * np.cos(t) + 0.01 * np.sin(3 * t),
                            41.915 + 0.025 * np.sin(t) + 0.004 * np.cos(2 * t)])
    lake = np.vstack([lake, lake[:1]])
    return [("W-HUNHE", START, None, polygon_wkt(ring),
             {"water_id": "W-HUNHE", "name": "浑河", "kind": "river"}),
            ("W-DAHUOFANG", START, None, polygon_wkt(lake),
             {"water_id": "W-DAHUOFANG", "name": "大伙房水库", "kind": "reservoir"})]


def place_names(ctx: Ctx):
    rows = [(f"P-{d.code}", START, None, point_wkt(*d.seat),
             {"place_id": f"P-{d.code}", "name": d.name, "name_en": d.name_en, "kind": d.kind})
            for d in DIVISIONS]
    rows += [(f"P-L{i:02d}", START, None, point_wkt(x, y),
              {"place_id": f"P-L{i:02d}", "name": zh, "name_en": en, "kind": "landmark"})
             for i, (zh, en, x, y) in enumerate(LANDMARKS)]
    return rows


def pois(ctx: Ctx):
    """Points of interest a few metres north of a road (beside its buildings' fronts)."""
    roads_ = ctx.shared["roads"]
    n = max(50, ctx.size.buildings // 60)
    rng = np.random.default_rng(ctx.seed + 7)  # its own stream: the other layers' stay put
    which = rng.integers(0, len(roads_), n)
    where = rng.random(n)
    kinds = rng.choice(len(POI_KINDS), n)
    rows = []
    for i in range(n):
        x0, x1, y, road = roads_[which[i]]
        if in_river(x0 + (x1 - x0) * where[i], y + 0.00015, 0.0003):
            continue  # on the bridge: no shop there
        kind = POI_KINDS[kinds[i]]
        name = f"{road}{POI_ZH[kind]}" if kind != "bus_stop" else f"{road}站"
        fid = f"POI{i:06d}"
        rows.append((fid, START, None, point_wkt(x0 + (x1 - x0) * where[i], y + 0.00015),
                     {"poi_id": fid, "name": name, "kind": kind, "road": road}))
    return rows


GENERATORS = {"water": water, "roads": roads, "place-names": place_names, "pois": pois}
