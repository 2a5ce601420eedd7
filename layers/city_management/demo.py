"""Demo: components on the grid, cases flowing through report → … → close, 门前三包 zones."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from gisplatform.cases.workflow import Step, apply

from ..base.demo import grid_code_at
from ..codes import COMPONENT_CLASSES, COMPONENT_SMALL_CLASSES, EVENT_CLASSES, make_component_code
from ..demo_common import START, Ctx, box_wkt, clip_versions, point_wkt, ts
from . import TIME_LIMITS

SMALL = sorted(COMPONENT_SMALL_CLASSES)
SOURCES = np.array(["patrol", "hotline_12345", "citizen_app", "video"])
SOURCE_P = [0.55, 0.25, 0.12, 0.08]
DEPTS = ["新抚区城管局", "东洲区城管局", "望花区城管局", "顺城区城管局", "市政设施管理处",
         "园林绿化管理处", "环境卫生管理处"]


def _near_building(ctx: Ctx, n: int):
    blds = ctx.shared["buildings"]
    pick = ctx.rng.integers(0, len(blds), n)
    dx, dy = ctx.rng.uniform(-4e-4, 4e-4, n), ctx.rng.uniform(-4e-4, 4e-4, n)
    return [(blds[p][1], blds[p][2] + dx[i], blds[p][3] + dy[i]) for i, p in enumerate(pick)]


def components(ctx: Ctx):
    rng = ctx.rng
    n = ctx.size.components
    where = _near_building(ctx, n)
    small = rng.integers(0, len(SMALL), n)
    damaged = rng.random(n) < 0.15
    damaged_at = ctx.times(n)
    repair_days = rng.uniform(1, 30, n)
    dept = rng.integers(0, len(DEPTS), n)
    out, serial = [], {}
    for i in range(n):
        code, x, y = where[i]
        cls = SMALL[small[i]]
        key = (code, cls)
        serial[key] = serial.get(key, 0) + 1
        ccode = make_component_code(code, cls, serial[key])
        attrs = {"code": ccode, "name": COMPONENT_SMALL_CLASSES[cls], "big_class": cls[:2],
                 "small_class": cls, "dept_supervising": "抚顺市城市管理综合行政执法局",
                 "dept_owner": DEPTS[dept[i]], "dept_maintaining": DEPTS[dept[i]],
                 "grid_code": grid_code_at(ctx, x, y), "state": "normal"}
        versions = [(START, None, attrs)]
        if damaged[i]:
            t = ts(damaged_at[i])
            back = t + timedelta(days=float(repair_days[i]))
            versions = [(START, t, attrs), (t, back, dict(attrs, state="damaged")), (back, None, attrs)]
        for vf, vt, a in clip_versions(versions, ctx.until):
            out.append((ccode, vf, vt, point_wkt(x, y), a))
    ctx.shared["components"] = [(r[0], r[3]) for r in out if r[2] is None]
    return out


def cases(ctx: Ctx):
    """Case versions (one per lifecycle step) and the steps themselves (ctx.shared)."""
    rng = ctx.rng
    n = ctx.size.cases
    where = _near_building(ctx, n)
    is_comp = rng.random(n) < 0.45
    ev_classes, comp_classes = sorted(EVENT_CLASSES), sorted(COMPONENT_CLASSES)
    big_ev = rng.integers(0, len(ev_classes), n)
    big_comp = rng.integers(0, len(comp_classes), n)
    source = rng.choice(SOURCES, n, p=SOURCE_P)
    reported = ctx.times(n)
    # minutes between steps: register, dispatch, (limit-relative) handle, verify, close
    register = rng.uniform(5, 60, n)
    dispatch = rng.uniform(5, 90, n)
    handle_frac = rng.gamma(2.0, 0.35, n)  # share of the time limit used; > 1 = overdue
    verify = rng.uniform(30, 24 * 60, n)
    close = rng.uniform(5, 120, n)
    rework = rng.random(n) < 0.05
    dept = rng.integers(0, len(DEPTS), n)
    out, steps = [], []
    for i in range(n):
        code, x, y = where[i]
        kind = "component" if is_comp[i] else "event"
        big = comp_classes[big_comp[i]] if is_comp[i] else ev_classes[big_ev[i]]
        limit = TIME_LIMITS[(kind, big)]
        t_rep = ts(reported[i])
        if t_rep > ctx.until:
            continue
        t_reg = t_rep + timedelta(minutes=float(register[i]))
        t_dis = t_reg + timedelta(minutes=float(dispatch[i]))
        t_han = t_dis + limit * float(handle_frac[i])
        department = DEPTS[dept[i]]
        # the actions, through the workflow's own state machine (gisplatform/cases)
        actions = [(Step("register"), t_reg), (Step("dispatch", department), t_dis),
                   (Step("handle"), t_han)]
        if rework[i]:  # verification sends it back once
            t_back = t_han + timedelta(minutes=float(verify[i]))
            actions += [(Step("verify", result="rework"), t_back),
                        (Step("handle"), t_back + limit * float(handle_frac[i]) / 2)]
        t_ver = actions[-1][1] + timedelta(minutes=float(verify[i]))
        actions += [(Step("verify", result="pass"), t_ver),
                    (Step("close"), t_ver + timedelta(minutes=float(close[i])))]
        number = f"FS{t_rep:%Y%m%d}{i + 1:07d}"
        state = {"case_number": number, "kind": kind, "big_class": big, "small_class": None,
                 "description": f"{(COMPONENT_CLASSES if is_comp[i] else EVENT_CLASSES)[big]}问题",
                 "source": str(source[i]), "status": "reported",
                 "grid_code": grid_code_at(ctx, x, y), "division_code": code, "department": None,
                 "reported_at": t_rep, "dispatched_at": None, "deadline": None,
                 "handled_at": None, "closed_at": None, "rework_count": 0,
                 "reporter_name": None, "reporter_phone": None}
        versions = [(t_rep, state)]
        steps.append((number, "reported", t_rep, "监督中心", None))
        for step, t in actions:
            if t > ctx.until:
                break
            done = apply(state, step, t, t + limit if step.action == "dispatch" else None)
            state = done.properties
            versions.append((t, state))
            steps.append((number, done.step, t,
                          department if step.action == "handle" else "监督中心", None))
        versions = [(t, versions[k + 1][0] if k + 1 < len(versions) else None, a)
                    for k, (t, a) in enumerate(versions)]
        geom = point_wkt(x, y)
        for vf, vt, a in clip_versions(versions, ctx.until):
            out.append((number, vf, vt, geom, a))
    ctx.shared["case_steps"] = steps
    return out


def responsibility_zones(ctx: Ctx):
    """A strip in front (south) of each storefront's building, about 8 m deep."""
    out = []
    for k, (uscc, name, x, y, vf, vt) in enumerate(ctx.shared.pop("storefronts")):
        out.append((f"MQ{uscc}", vf, vt, box_wkt(x - 1.5e-4, y - 2.2e-4, x + 1.5e-4, y - 1.5e-4),
                    {"zone_code": f"MQ{uscc}", "credit_code": uscc, "name": f"{name}门前三包责任区",
                     "duties": "sanitation,order,greenery", "grid_code": grid_code_at(ctx, x, y)}))
    return out
