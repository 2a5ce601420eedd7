"""Demo: residents in housing units — born, moving, leaving — with valid ID numbers."""

from __future__ import annotations

from datetime import date, timedelta

from ..codes import make_resident_id
from ..demo_common import START, Ctx, clip_versions, point_wkt, ts
from . import fid_for_id_number

SURNAMES = list("王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕")
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞宇浩然子涵欣怡晨阳博文")
# Floating population comes from elsewhere: other Liaoning cities and neighbouring provinces.
ORIGINS = ["210102", "210202", "210302", "210502", "210602", "211202", "220102", "230102",
           "130102", "370102", "410102", "150102"]


def persons(ctx: Ctx):
    rng, until = ctx.rng, ctx.until
    units = ctx.shared["units"]
    if not units:
        return []
    n = ctx.size.persons
    home = rng.integers(0, len(units), n)
    registered = rng.random(n) < 0.82
    # birth dates: adults mostly, some children, some born after 2018
    age_days = rng.integers(0, 95 * 365, n)
    birth0 = date(2026, 1, 1)
    seq = rng.integers(0, 1000, n)
    sur = rng.integers(0, len(SURNAMES), n)
    g1 = rng.integers(0, len(GIVEN), n)
    g2 = rng.integers(-len(GIVEN) // 2, len(GIVEN), n)  # negative: a one-character given name
    origin = rng.integers(0, len(ORIGINS), n)
    phone = rng.integers(13000000000, 19999999999, n)
    move = rng.random(n) < 0.15
    leave = rng.random(n) < 0.06
    move_at = ctx.times(n)
    leave_at = ctx.times(n)
    arrive_at = ctx.times(n, START, until)  # floating residents and later arrivals
    late = rng.random(n) < 0.12
    # people in demolished buildings move to one that stands to the end
    stable = [i for i, u in enumerate(units) if u[6] is None]
    new_home = rng.choice(stable, n) if stable else home

    out, seen_ids = [], set()
    for i in range(n):
        u = units[home[i]]
        ucode, bcode, code, x, y, u_from, u_to = u
        birth = birth0 - timedelta(days=int(age_days[i]))
        area = code if registered[i] else ORIGINS[origin[i]]
        rid = make_resident_id(area, birth, int(seq[i]))
        if rid in seen_ids:  # same area, birthday and sequence: draw the next sequence
            continue
        seen_ids.add(rid)
        start = max(START, u_from, _aware(birth))
        if late[i] or not registered[i]:
            start = max(start, ts(arrive_at[i]))
        name = SURNAMES[sur[i]] + GIVEN[g1[i]] + (GIVEN[g2[i]] if g2[i] >= 0 else "")
        attrs = {"id_number": rid, "name": name, "sex": "M" if int(seq[i]) % 2 else "F",
                 "birth_date": birth, "household_type": "registered" if registered[i] else "floating",
                 "unit_code": ucode, "building_code": bcode, "phone": str(phone[i]),
                 "division_code": code}
        versions = []
        end = ts(leave_at[i]) if leave[i] and ts(leave_at[i]) > start else None
        moved = None
        if u_to is not None and (end is None or u_to < end) and u_to > start:
            moved = u_to  # the building is demolished: they must move
        elif move[i] and ts(move_at[i]) > start and (end is None or ts(move_at[i]) < end):
            moved = ts(move_at[i])
        if moved is not None and u_to is not None and moved > u_to:
            moved = None
        if u_to is not None and moved is None and (end is None or end > u_to):
            end = u_to  # demolition and no move planned: they leave the city
        if start >= (end or ctx.until) and start > ctx.until:
            continue
        if moved is not None:
            n_ucode, n_bcode, n_code, nx, ny, n_from, n_to = units[new_home[i]]
            if n_from > moved:
                end, moved = moved, None
            else:
                versions.append((start, moved, point_wkt(x, y), attrs))
                attrs2 = dict(attrs, unit_code=n_ucode, building_code=n_bcode, division_code=n_code)
                versions.append((moved, end, point_wkt(nx, ny), attrs2))
        if moved is None:
            if end is not None and end <= start:
                continue
            versions.append((start, end, point_wkt(x, y), attrs))
        fid = fid_for_id_number(rid, ctx.fid_key)
        for vf, vt, geom, a in clip_versions([(v[0], v[1], v[2], v[3]) for v in versions], ctx.until):
            out.append((fid, vf, vt, geom, a))
    return out


def _aware(d: date):
    from datetime import datetime

    from ..demo_common import CST
    return datetime(d.year, d.month, d.day, tzinfo=CST)
