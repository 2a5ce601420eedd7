"""Demo: cameras installed over the years near buildings, going offline and back."""

from __future__ import annotations

import numpy as np

from ..codes import gb28181_sector, make_gb28181
from ..demo_common import START, Ctx, clip_versions, point_wkt, ts

# (industry code, owner department) per sector; the sector follows from the industry code.
OWNERS = [("01", "抚顺市公安局"), ("02", "抚顺市公安局"), ("04", "抚顺市公安局交通警察支队"),
          ("05", "抚顺市公安局交通警察支队"), ("08", "抚顺市城市管理综合行政执法局"),
          ("11", "抚顺市教育局"), ("41", "社会单位")]
OWNER_P = [0.30, 0.12, 0.15, 0.08, 0.15, 0.08, 0.12]
MAKERS = [("海康威视", "DS-2CD3T47"), ("大华", "DH-IPC-HFW4433"), ("宇视", "IPC2124"),
          ("华为", "C3220")]


def cameras(ctx: Ctx):
    rng = ctx.rng
    blds = ctx.shared["buildings"]
    n = ctx.size.cameras
    pick = rng.integers(0, len(blds), n)
    owner = rng.choice(len(OWNERS), n, p=OWNER_P)
    installed = ctx.times(n, ts(START.timestamp() - 3 * 365 * 86400))
    ptz = rng.choice([1, 2, 3, 4], n, p=[0.25, 0.1, 0.55, 0.1])
    azimuth = np.round(rng.uniform(0, 360, n), 1)
    fov = np.round(rng.uniform(40, 110, n), 1)
    rng_m = np.round(rng.uniform(30, 150, n), 0)
    outage = rng.random(n) < 0.2
    outage_at = ctx.times(n)
    outage_len = rng.uniform(1, 60, n) * 86400
    maker = rng.integers(0, len(MAKERS), n)
    network = rng.choice(["5", "6", "8"], n, p=[0.6, 0.25, 0.15])
    dx, dy = rng.uniform(-3e-4, 3e-4, n), rng.uniform(-3e-4, 3e-4, n)
    out = []
    for i in range(n):
        bcode, code, x, y, b_from, b_to, _, _ = blds[pick[i]]
        industry, dept = OWNERS[owner[i]]
        device = make_gb28181(code, "01", industry, "132" if ptz[i] != 1 else "131",
                              str(network[i]), i + 1)
        start = max(START, ts(installed[i]))
        mk, model = MAKERS[maker[i]]
        attrs = {"device_id": device, "name": f"{bcode[-6:]}号楼周边{i + 1}号点位",
                 "owner_department": dept, "sector": None, "ptz_type": int(ptz[i]),
                 "azimuth": float(azimuth[i]), "fov": float(fov[i]), "range_m": float(rng_m[i]),
                 "status": "ON", "manufacturer": mk, "model": model, "civil_code": code,
                 "address": None, "stream_url": f"rtsp://10.21.{i // 250 % 250}.{i % 250 + 1}:554/{device}"}
        attrs["sector"] = gb28181_sector(industry)
        versions = [(start, None, attrs)]
        off = ts(outage_at[i])
        if outage[i] and off > start:
            back = ts(outage_at[i] + outage_len[i])
            versions = [(start, off, attrs), (off, back, dict(attrs, status="OFF")), (back, None, attrs)]
        geom = point_wkt(x + dx[i], y + dy[i])
        for vf, vt, a in clip_versions(versions, ctx.until):
            out.append((device, vf, vt, geom, a))
    return out
