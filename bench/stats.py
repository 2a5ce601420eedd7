"""Command-centre statistics at city size: every topic's full series (2018-01 → this month,
all districts and the whole city), over HTTP (GET /api/stats/<topic>) on a server started
cold, and in SQL (gisplatform.stats.compute on one connection set up as the app's
pool sets it up).

    .venv/bin/python bench/stats.py              # city size (the issue's figure)
    .venv/bin/python bench/stats.py --size small

The valid-at-a-month-start topics answer from the persisted rollup plus the change-log
delta (gisplatform/stats/rollup.py, Rollup). Measured, in order:
- `rebuild_s`: counting every rollup anew (`gisplatform stats rebuild`), per layer;
- then, when this bench started the cluster, the cluster is restarted (shared buffers
  empty; the OS page cache as it is) and a new server process started: `cold_s` is each
  topic's FIRST request on that server, `warm_s` the median of the next ones;
- in SQL: `answer_s` (compute, rollup + delta) and, for the rollup topics, `direct_s`
  (the one pass over the version table the rollup replaces);
- `delta`: the population answer while 10 000 person versions are closed in an open
  transaction (a delta of 10 000 vids; rolled back), and that it equals the direct pass;
- `lazy_first_s`: the population answer when its rollup is missing (built by the request).
When the cluster was already running (someone else's), it is left running and not
restarted. The issue's bar: the population series under 2 s, first request included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import ROOT, database, serve

from gisplatform import wiring
from gisplatform.db.connections import connect
from gisplatform.db.embedded import EmbeddedPostgres, free_port
from gisplatform.stats import TOPICS, compute, make_query
from gisplatform.stats.rollup import _ROLLUP, COUNTED, _direct_rows, rebuild_all

RUNS = [(t, None) for t in TOPICS if t != "evaluation"] + [
    ("evaluation", "area"), ("evaluation", "department"), ("evaluation", "grid")]
LAYER_OF = {"population": "persons", "legal-persons": "legal-persons",
            "buildings": "buildings", "cameras": "cameras"}
CITY = wiring.stats_city()
BAR_S = 2.0
DELTA_VIDS = 10_000


def timed(f) -> tuple[float, object]:
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def _normal(rows, n: int) -> Counter:
    out: Counter = Counter()
    for area, keys, lo, hi, count in rows:
        hi = n if hi is None else hi
        if lo < hi:
            out[(area or "unknown", tuple(keys), lo, hi)] += count
    return +out


def http_runs(url: str, warm: int) -> dict:
    out = {}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli = str(Path(sys.executable).with_name("gisplatform"))
    proc = serve([cli, "serve", "--port", str(port)],
                 {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": tempfile.mkdtemp(prefix="bench-stats-")},
                 f"{base}/health")
    try:
        with httpx.Client(base_url=base, timeout=600) as http:
            for topic, by in RUNS:
                params = {"by": by} if by else {}
                key = f"{topic}" + (f" by {by}" if by else "")
                times, size = [], 0
                for _ in range(1 + warm):
                    dt, r = timed(lambda t=topic, p=params: http.get(f"/api/stats/{t}", params=p))
                    assert r.status_code == 200, r.text[:500]
                    times.append(dt)
                    size = len(r.content)
                body = r.json()
                out[key] = {"cold_s": round(times[0], 3),
                            "warm_s": round(statistics.median(times[1:]), 3),
                            "series": len(body["series"]),
                            "months": len(body["series"][0]["points"]), "kib": size // 1024}
                print(key, "HTTP", out[key], flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="city")
    ap.add_argument("--warm", type=int, default=3, help="warm runs per topic (median reported)")
    args = ap.parse_args()

    cluster = EmbeddedPostgres(ROOT / ".data" / args.size, port=free_port())
    was_running = cluster.is_running()
    if was_running:
        print("cluster already running (someone else's): left running, not restarted")
    pg, url = database(args.size)
    results: dict = {"size": args.size, "cluster_restarted": not was_running}
    try:
        with connect(url, "bench-stats", autocommit=True) as conn:
            results["versions"] = {layer: conn.execute(
                f"select count(*) from city.{c.table}").fetchone()[0] for layer, c in COUNTED.items()}
            t, took = timed(lambda: rebuild_all(conn))
            results["rebuild_s"] = {k: round(v, 3) for k, v in took.items()} | {"all": round(t, 3)}
            print("rebuild", results["rebuild_s"], flush=True)
        if not was_running:  # cold: empty shared buffers
            pg.stop()
            url = pg.start()
        results["http"] = http_runs(url, args.warm)
        results["sql"] = {}
        with connect(url, "bench-stats", autocommit=True) as conn:
            for topic, by in RUNS:
                q = make_query(topic, by=by, city=CITY)
                key = f"{topic}" + (f" by {by}" if by else "")
                answers = [timed(lambda q=q: compute(conn, q))[0] for _ in range(args.warm)]
                results["sql"][key] = {"answer_s": round(statistics.median(answers), 3)}
                if topic in LAYER_OF:
                    c = COUNTED[LAYER_OF[topic]]
                    results["sql"][key]["direct_s"] = round(statistics.median(
                        timed(lambda q=q, c=c: _direct_rows(conn, q, c))[0]
                        for _ in range(args.warm)), 3)
                print(key, "SQL", results["sql"][key], flush=True)
            q, persons = make_query("population", city=CITY), COUNTED["persons"]
            with conn.transaction(force_rollback=True):  # a delta of DELTA_VIDS closed rows
                conn.execute("""
                    update city.persons_version set recorded = tstzrange(lower(recorded), now())
                    where vid in (select vid from city.persons_version
                                  where upper_inf(recorded) order by vid limit %s)""",
                             (DELTA_VIDS,))
                dt, _ = timed(lambda: compute(conn, q))
                state = _ROLLUP.check(conn, persons)
                same = _normal(_ROLLUP.answer(conn, q, persons, state["snapshot"]), len(q.months)) \
                    == _normal(_direct_rows(conn, q, persons), len(q.months))
                results["delta"] = {"changed_vids": state["changed"], "answer_s": round(dt, 3),
                                    "equals_direct": same}
            print("delta", results["delta"], flush=True)
            # the rollup missing: the request builds it (and leaves it built)
            conn.execute("delete from city.stats_rollup_state where layer = 'persons'")
            dt, _ = timed(lambda: compute(conn, q))
            results["lazy_first_s"] = round(dt, 3)
        pop = results["http"]["population"]
        results["population_bar_s"] = BAR_S
        results["population_ok"] = pop["cold_s"] < BAR_S and pop["warm_s"] < BAR_S
        print(json.dumps(results, indent=2, ensure_ascii=False))
    finally:
        if not was_running:
            pg.stop()


if __name__ == "__main__":
    main()
