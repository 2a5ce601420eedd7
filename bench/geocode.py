"""Geocoding quality and speed at city size, next to plain pg_trgm in the same run.

    .venv/bin/python bench/geocode.py [--size city] [--n 2000] [--baseline 300]

The test set is built from the demo city's standard addresses valid now (seeded): each
sampled address written in one of the ways people write it (round robin over the kinds
below), and addresses that do not exist (an even house number — the demo numbers houses
odd —, a number far past the road's end, a road the city does not have). Reported:
- top-1: the best candidate is the address, and scores at least rank.MATCH (a match);
- top-5: the address is among the first five candidates;
- false matches: a non-existent address whose best candidate scores at least MATCH;
- latency of `geocode()` (one connection, in process: what /api/geocode adds to HTTP).
The baseline ranks the same queries by pg_trgm distance on the whole string: on the raw
text (the cluster's C locale: pg_trgm sees only the digits), and on `city.trgm_key`
(migration 0021's index), the best a single trigram query does.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ogc_vs_tipg import database  # noqa: E402

from gisplatform.geocode import MATCH, Source, Sources, geocode, parse  # noqa: E402
from gisplatform.security import ANONYMOUS  # noqa: E402
from gisplatform.temporal import parse_instant  # noqa: E402

AT = parse_instant("2026-11-01T00:00:00+08:00")
SOURCES = Sources(*(Source(n, "unconditional") for n in (
    "addresses", "admin-areas", "grid-cells", "buildings", "responsibility-zones", "place-names")))
CN = dict(zip("0123456789", "〇一二三四五六七八九", strict=True))
FULL = str.maketrans("0123456789", "０１２３４５６７８９")
TYPO_CHARS = "林材木森永泳安按江河新心华化民明和平站占千迁金南北东西阳杨葛格峪谷高山将军城成演武万"
NOT_HERE = ("长江路", "黄河路", "中山路", "珠江路", "淮海路", "延安路", "滨江大道", "钱塘街")


def chinese(n: int) -> str:
    import cn2an
    return cn2an.an2cn(n, "low")


def perturb(kind: str, address: str, rng: random.Random) -> str:
    p = parse(address)
    road, n, district = p.road, p.number, p.district or ""
    digits = "".join(ch for ch in road if ch.isdigit())
    if kind == "exact":
        return address
    if kind == "no_city":
        return address.removeprefix(p.city or "")
    if kind == "no_district":
        return f"{road}{n}号"
    if kind == "numerals":
        return f"{district}{road.replace(digits, chinese(int(digits)))}{chinese(n)}号"
    if kind == "full_width":
        return f"{district}{road}{n}号".translate(FULL)
    if kind == "alias":
        name = road[:-1]
        return f"{district}{name}{rng.choice('街道')}{n}号"
    if kind == "noise":
        return f"{road}{n}号{rng.choice(['楼下', '附近', '对面', '旁边', '门口'])}"
    if kind == "typo":  # one Chinese character of the road's name replaced
        spots = [i for i, ch in enumerate(road[:-1]) if not ch.isdigit()]
        i = rng.choice(spots)
        wrong = rng.choice([c for c in TYPO_CHARS if c != road[i]])
        return f"{district}{road[:i]}{wrong}{road[i + 1:]}{n}号"
    if kind == "building_unit":
        return f"{road}{n}号{rng.randint(1, 9)}栋{rng.randint(1, 6)}单元"
    if kind == "unit_building":  # swapped order
        return f"{road}{n}号{rng.randint(1, 6)}单元{rng.randint(1, 9)}栋"
    raise ValueError(kind)


KINDS = ("exact", "no_city", "no_district", "numerals", "full_width", "alias", "noise", "typo",
         "building_unit", "unit_building")


def nonexistent(address: str, rng: random.Random, i: int) -> str:
    p = parse(address)
    if i % 3 == 0:
        return f"{p.district or ''}{p.road}{p.number + 1}号"  # even: none in the demo
    if i % 3 == 1:
        return f"{p.road}{9000 + rng.randint(0, 999) * 2 + 1}号"
    return f"{rng.choice(NOT_HERE)}{p.number}号"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    ap.add_argument("--n", type=int, default=2000, help="perturbed real addresses")
    ap.add_argument("--fake", type=int, default=500, help="non-existent addresses")
    ap.add_argument("--baseline", type=int, default=300, help="queries for the baselines")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t = time.perf_counter()
    pg, url = database(args.size)
    print(f"database up and migrated in {time.perf_counter() - t:.1f}s", flush=True)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = [r[0] for r in conn.execute(
                "select fid from city.addresses_version where upper_inf(recorded)"
                " and valid @> %s::timestamptz", (AT,))]
            print(f"{len(rows)} standard addresses valid at {AT:%Y-%m-%d}", flush=True)
            sample = rng.sample(rows, args.n)
            real = [(KINDS[i % len(KINDS)], a, perturb(KINDS[i % len(KINDS)], a, rng))
                    for i, a in enumerate(sample)]
            fake = [nonexistent(a, rng, i) for i, a in enumerate(rng.sample(rows, args.fake))]
            existing = set(rows)
            fake = [q for q in fake if q not in existing and "抚顺市" + q not in existing]
            geocode(conn, SOURCES, sample[0], AT, 5, ANONYMOUS)  # warm: the gazetteer
            ok1, ok5, ms = Counter(), Counter(), []
            by_kind = defaultdict(int)
            misses = []
            for kind, truth, q in real:
                t0 = time.perf_counter()
                found = geocode(conn, SOURCES, q, AT, 5, ANONYMOUS)
                ms.append((time.perf_counter() - t0) * 1000)
                by_kind[kind] += 1
                if found and found[0].fid == truth and found[0].score >= MATCH:
                    ok1[kind] += 1
                elif len(misses) < 8:
                    misses.append((kind, q, truth, [(c.fid, c.score) for c in found[:2]]))
                if truth in [c.fid for c in found[:5]]:
                    ok5[kind] += 1
            false, fake_ms = [], []
            for q in fake:
                t0 = time.perf_counter()
                found = geocode(conn, SOURCES, q, AT, 5, ANONYMOUS)
                fake_ms.append((time.perf_counter() - t0) * 1000)
                if found and found[0].score >= MATCH:
                    false.append((q, found[0].fid, found[0].score))
            n = len(real)
            print(f"\ngeocoder ({n} perturbed real addresses, {len(fake)} non-existent)")
            print(f"  top-1 (right address, score >= {MATCH}): {sum(ok1.values()) / n:.1%}")
            print(f"  top-5 recall: {sum(ok5.values()) / n:.1%}")
            print(f"  false matches on non-existent: {len(false)}/{len(fake)}"
                  f" = {len(false) / max(1, len(fake)):.1%}")
            for label, xs in (("real", ms), ("non-existent", fake_ms), ("all", ms + fake_ms)):
                print(f"  latency ms, {label:12s}: p50 {pct(xs, .5):.1f}  p95 {pct(xs, .95):.1f}"
                      f"  p99 {pct(xs, .99):.1f}  max {max(xs):.1f}"
                      f"  (mean {statistics.mean(xs):.1f})")
            for kind in KINDS:
                print(f"    {kind:14s} top-1 {ok1[kind] / by_kind[kind]:6.1%}"
                      f"  top-5 {ok5[kind] / by_kind[kind]:6.1%}  ({by_kind[kind]})")
            for m in misses:
                print("    miss:", m)
            for f in false[:5]:
                print("    false:", f)

            base = real[: args.baseline]
            for label, expr in (("pg_trgm, raw text", "v.address <-> %(q)s"),
                                ("pg_trgm on city.trgm_key (indexed)",
                                 "city.trgm_key(v.address) <-> city.trgm_key(%(q)s)")):
                b1 = b5 = 0
                bms = []
                for _, truth, q in base:
                    t0 = time.perf_counter()
                    got = [r[0] for r in conn.execute(
                        "select v.fid from city.addresses_version v where upper_inf(v.recorded)"
                        " and v.valid @> %(at)s::timestamptz order by " + expr + " limit 5",
                        {"q": q, "at": AT})]
                    bms.append((time.perf_counter() - t0) * 1000)
                    b1 += bool(got) and got[0] == truth
                    b5 += truth in got
                print(f"\nbaseline: {label} ({len(base)} of the same queries)")
                print(f"  top-1 {b1 / len(base):.1%}  top-5 {b5 / len(base):.1%}"
                      f"  latency p50 {pct(bms, .5):.1f} ms  p99 {pct(bms, .99):.1f} ms")
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
