"""Demo: buildings on a street lattice (built, renovated, demolished over time) and their units."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from ..base.demo import district_of, road_address
from ..basemap.demo import in_river
from ..demo_common import CST, HORIZON, START, Ctx, clip_versions, point_wkt, polygon_wkt, ts

USES = np.array(["residential", "commercial", "office", "industrial", "public", "mixed"])
USE_P = [0.70, 0.12, 0.05, 0.06, 0.05, 0.02]
OWNERSHIP = np.array(["private", "public_rental", "commercial_rental", "collective", "state"])
OWN_P = [0.78, 0.08, 0.08, 0.03, 0.03]
M_PER_DEG_LAT = 110_540.0


def _m_per_deg_lon(lat: float) -> float:
    return 111_320.0 * math.cos(math.radians(lat))


def buildings(ctx: Ctx):
    size, rng = ctx.size, ctx.rng
    x0, y0, x1, y1 = size.area
    lat_mid = (y0 + y1) / 2
    mx, my = _m_per_deg_lon(lat_mid), M_PER_DEG_LAT
    w_m, h_m = (x1 - x0) * mx, (y1 - y0) * my
    cell = math.sqrt(w_m * h_m / (size.buildings * 1.15))  # metres per lattice slot
    while True:
        ncols, nrows = int(w_m // cell), int(h_m // cell)
        # no building in the Hun River: the slots whose square reaches the river's band
        # stay empty; the lattice is made finer until enough are dry
        every = np.arange(ncols * nrows)
        dry = every[~in_river(x0 + (every % ncols + 0.5) * cell / mx,
                              y1 - (every // ncols + 0.5) * cell / my, cell / my / 2)]
        if len(dry) >= size.buildings * 1.05:
            break
        cell *= 0.97
    # the lattice, for the roads the buildings front (basemap/demo.py)
    ctx.shared["lattice"] = (x0, y1, cell / mx, cell / my, nrows, ncols)
    slots = rng.choice(dry, size=size.buildings, replace=False)
    slots.sort()
    rows_, cols_ = slots // ncols, slots % ncols
    cx = x0 + (cols_ + 0.5) * cell / mx
    cy = y1 - (rows_ + 0.5) * cell / my  # north → south
    n = size.buildings
    use = rng.choice(USES, n, p=USE_P)
    floors = np.where(use == "residential", rng.choice([2, 3, 5, 6, 7, 11, 18, 26, 33], n,
                                                       p=[.05, .05, .15, .3, .15, .1, .1, .06, .04]),
                      rng.integers(1, 12, n))
    height = np.round(floors * rng.uniform(2.9, 3.4, n) + rng.uniform(0.5, 2.5, n), 1)
    new = rng.random(n) < 0.10
    year = np.where(new, rng.integers(2018, 2030, n), rng.integers(1950, 2018, n))
    structure = np.where(floors >= 10, "reinforced_concrete",
                         np.where(year < 1970, "brick_wood",
                                  rng.choice(["brick_concrete", "reinforced_concrete", "steel"], n,
                                             p=[.6, .3, .1])))
    built_day = rng.integers(0, 365, n)
    built_at = [datetime(int(y), 1, 1, tzinfo=CST) + timedelta(days=int(d)) if y >= 2018 else START
                for y, d in zip(year, built_day)]
    demolish = (~new) & (rng.random(n) < 0.06)
    demolish_at = ctx.times(n)
    renovate = rng.random(n) < 0.08
    # footprint: a rotated rectangle inside the slot, sized in metres
    wx = cell * rng.uniform(0.35, 0.7, n)
    wy = cell * rng.uniform(0.3, 0.6, n)
    ang = np.radians(rng.uniform(-12, 12, n))
    bump = rng.integers(1, 4, n)
    reno_frac = rng.random(n)

    out, addresses, units_src = [], [], []
    for i in range(n):
        code = district_of(cx[i], cy[i])
        bcode = f"{code}{i + 1:08d}"
        c, s = math.cos(ang[i]), math.sin(ang[i])
        local = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]) * (wx[i] / 2, wy[i] / 2)
        rot = local @ np.array([[c, s], [-s, c]])
        ring = np.column_stack([cx[i] + rot[:, 0] / mx, cy[i] + rot[:, 1] / my])
        geom = polygon_wkt(ring)
        address, road, number = road_address(code, int(rows_[i]), int(cols_[i]))
        vf = built_at[i]
        end = ts(demolish_at[i]) if demolish[i] and ts(demolish_at[i]) > vf else None
        attrs = {"building_code": bcode, "name": None, "floors": int(floors[i]),
                 "height": float(height[i]), "structure": str(structure[i]), "use": str(use[i]),
                 "year_built": int(year[i]), "address": address, "division_code": code}
        versions = [(vf, end, attrs)]
        if renovate[i]:
            stop = end or HORIZON
            at = ts(vf.timestamp() + reno_frac[i] * (stop - vf).total_seconds())
            if vf < at < stop:
                more = dict(attrs, floors=attrs["floors"] + int(bump[i]),
                            height=round(attrs["height"] + 3.1 * int(bump[i]), 1))
                versions = [(vf, at, attrs), (at, end, more)]
        versions = clip_versions(versions, ctx.until)
        if not versions:
            continue
        for vf_, vt_, a in versions:
            out.append((bcode, vf_, vt_, geom, a))
        alive_to = versions[-1][1]
        pt = point_wkt(cx[i], cy[i])
        addresses.append((address, versions[0][0], alive_to, pt,
                          {"address": address, "division_code": code, "street_name": road,
                           "house_number": number, "building_code": bcode}))
        units_src.append((bcode, code, float(cx[i]), float(cy[i]), versions[0][0], alive_to,
                          str(use[i]), versions[0][2]["floors"]))
    ctx.shared["addresses"] = addresses
    ctx.shared["buildings"] = units_src
    return out


def housing_units(ctx: Ctx):
    rng = ctx.rng
    blds = ctx.shared["buildings"]
    homes = [b for b in blds if b[6] in ("residential", "mixed")]
    total_floors = sum(b[7] for b in homes) or 1
    k = ctx.size.units / total_floors
    out, units = [], []
    for bcode, code, x, y, vf, vt, use, floors in homes:
        n = max(1, int(round(floors * k * rng.uniform(0.7, 1.3))))
        fl = rng.integers(1, floors + 1, n)
        area = np.round(rng.uniform(38, 145, n), 1)
        own = rng.choice(OWNERSHIP, n, p=OWN_P)
        pt = point_wkt(x, y)
        for j in range(n):
            ucode = f"{bcode}{j + 1:04d}"
            ground_shop = use == "mixed" and fl[j] == 1
            out.append((ucode, vf, vt, pt, {
                "unit_code": ucode, "building_code": bcode, "floor": int(fl[j]),
                "room": f"{int(fl[j])}{j % 8 + 1:02d}", "area_m2": float(area[j]),
                "use": "commercial" if ground_shop else "residential",
                "ownership": str(own[j])}))
            if not ground_shop:
                units.append((ucode, bcode, code, x, y, vf, vt))
    ctx.shared["units"] = units
    return out
