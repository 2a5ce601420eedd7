"""Demo: companies founded, cancelled and revoked over time, at commercial buildings."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from ..codes import USCC_ALPHABET, make_uscc
from ..demo_common import CST, START, Ctx, as_date, clip_versions, point_wkt, ts
from ..population.demo import GIVEN, SURNAMES

WORDS = list("华盛鑫隆泰丰源通达信宏恒瑞佳和兴安顺德利")
TRADES = [("C13", "食品加工"), ("C33", "金属制品"), ("E47", "建筑工程"), ("F51", "商贸"),
          ("F52", "超市"), ("G54", "运输"), ("H61", "酒店"), ("H62", "餐饮"), ("I65", "软件"),
          ("K70", "房地产"), ("L72", "商务服务"), ("M74", "技术服务"), ("O80", "家政服务"),
          ("P83", "培训"), ("Q84", "诊所")]
TYPES = np.array(["enterprise", "individual_business", "cooperative", "social_organization"])
TYPE_P = [0.62, 0.33, 0.02, 0.03]
CATEGORY = {"enterprise": ("9", "1"), "individual_business": ("9", "2"),
            "cooperative": ("9", "3"), "social_organization": ("5", "1")}
ORG_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # stay inside the USCC alphabet


def legal_persons(ctx: Ctx):
    rng = ctx.rng
    sites = [b for b in ctx.shared["buildings"] if b[6] in ("commercial", "office", "mixed", "industrial")]
    sites = sites or ctx.shared["buildings"]
    n = ctx.size.legal_persons
    site = rng.integers(0, len(sites), n)
    kind = rng.choice(TYPES, n, p=TYPE_P)
    trade = rng.integers(0, len(TRADES), n)
    w1, w2 = rng.integers(0, len(WORDS), n), rng.integers(0, len(WORDS), n)
    body = rng.integers(0, len(ORG_CHARS), (n, 8))
    founded = ctx.times(n, datetime(1992, 1, 1, tzinfo=CST), ctx.until)
    cancel = rng.random(n) < 0.12
    revoke = rng.random(n) < 0.03
    end_at = ctx.times(n)
    capital = np.round(rng.lognormal(4.0, 1.4, n), 2)
    rep = rng.integers(0, len(SURNAMES), n), rng.integers(0, len(GIVEN), n), rng.integers(0, len(GIVEN), n)
    pilot = rng.random(n) < 0.002  # early pilot-era codes that fail the check character
    out, seen, zones_src = [], set(), []
    for i in range(n):
        bcode, code, x, y, b_from, b_to, use, _ = sites[site[i]]
        k = str(kind[i])
        authority, category = CATEGORY[k]
        uscc = make_uscc(authority, category, code, "".join(ORG_CHARS[j] for j in body[i]))
        if pilot[i]:
            wrong = USCC_ALPHABET[(USCC_ALPHABET.index(uscc[-1]) + 7) % 31]
            uscc = uscc[:-1] + wrong
        if uscc in seen:
            continue
        seen.add(uscc)
        est = ts(founded[i])
        start = max(START, est, b_from)
        tcode, tname = TRADES[trade[i]]
        suffix = {"enterprise": "有限公司", "individual_business": "店", "cooperative": "专业合作社",
                  "social_organization": "协会"}[k]
        attrs = {"credit_code": uscc, "check_ok": not bool(pilot[i]),
                 "name": f"抚顺{WORDS[w1[i]]}{WORDS[w2[i]]}{tname}{suffix}", "entity_type": k,
                 "legal_representative": SURNAMES[rep[0][i]] + GIVEN[rep[1][i]] + GIVEN[rep[2][i]],
                 "industry_code": tcode, "registered_capital": float(capital[i]),
                 "status": "active", "established": est.date(), "cancelled_date": None,
                 "address": None, "division_code": code}
        # a company whose building is demolished is cancelled then (simplification)
        stop = b_to
        if cancel[i] or revoke[i]:
            t = ts(end_at[i])
            stop = min(t, b_to) if b_to else t
        if stop is not None and stop <= start:
            continue
        versions = [(start, stop, attrs)]
        if stop is not None:
            status = "revoked" if revoke[i] and not cancel[i] else "cancelled"
            versions.append((stop, None, dict(attrs, status=status, cancelled_date=as_date(stop.timestamp()))))
        pt = point_wkt(x + rng.uniform(-2e-5, 2e-5), y + rng.uniform(-2e-5, 2e-5))
        versions = clip_versions(versions, ctx.until)
        for vf, vt, a in versions:
            out.append((uscc, vf, vt, pt, a))
        if versions and k in ("enterprise", "individual_business") and use in ("commercial", "mixed"):
            zones_src.append((uscc, attrs["name"], x, y, versions[0][0], stop if stop and stop <= ctx.until else None))
    ctx.shared["storefronts"] = zones_src
    return out
