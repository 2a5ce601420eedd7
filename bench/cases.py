"""Case workflow steps per second, next to the plain OGC PATCH of the same change.

    .venv/bin/python bench/cases.py [--size city] [--clients 16] [--per-client 15]

Over HTTP against `gisplatform serve` on the bench database (it adds the cases it drives:
a few hundred beside the demo's hundreds of thousands). Three runs, each `--clients`
threads:
- distinct: each client dispatches its own registered cases (POST …/steps, the workflow:
  role check, per-case lock, state check, time limit, new version, timeline row);
- hot: all clients dispatch the same registered case at once, case after case: one wins,
  the others are 409 — the losers' latency is what a contended case costs;
- peer: each client PATCHes its own cases through OGC API Features Part 4 (`write`
  grant): a new version of the case, as a step writes, without the workflow. The
  description changes, since the lifecycle fields (status, deadline …) are the
  workflow's alone and a plain write that changes them is refused (409).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load import wait_for_derived  # noqa: E402
from ogc_vs_tipg import ROOT, database, free_port, serve  # noqa: E402

from gisplatform import wiring  # noqa: E402
from gisplatform.cases import Step, report, take_step  # noqa: E402
from gisplatform.security import Principal, create_token  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def registered_cases(url: str, n: int) -> list[str]:
    """`n` new cases, registered, at points of the city's grid (service calls)."""
    boss = Principal(token_id=1, department="chengguan",
                     grants={"cases": frozenset({"accept", "dispatch"})})
    setup = wiring.case_setup()
    out = []
    with psycopg.connect(url, autocommit=True) as c:
        points = c.execute("select st_x(p), st_y(p) from (select st_pointonsurface(geom) p"
                           " from city.grid_cells order by fid limit %s) x", (n,)).fetchall()
        for i in range(n):
            x, y = points[i % len(points)]
            number = report(c, setup, {"type": "Feature", "geometry": {
                "type": "Point", "coordinates": [x, y]}, "properties": {
                "kind": "event", "big_class": "01", "source": "patrol",
                "description": "bench/cases.py"}}, boss)["id"]
            take_step(c, setup, number, Step("register"), boss)
            out.append(number)
    return out


def run(clients: int, work, label: str) -> None:
    """`work(i, client)` returns [(latency_s, status), …] for client i; prints the figures."""
    results: list[list] = [[] for _ in range(clients)]
    t0 = time.perf_counter()

    def go(i):
        with httpx.Client(timeout=60) as c:
            results[i] = work(i, c)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = [r for rs in results for r in rs]
    ok = [s for s, code in flat if code in (200, 204)]
    lost = [s for s, code in flat if code == 409]
    other = [code for _, code in flat if code not in (200, 204, 409)]
    print(f"{label}: {len(ok)} steps in {wall:.1f}s = {len(ok) / wall:.0f} steps/s;"
          f" latency ms p50 {pct(ok, .5) * 1000:.0f} p95 {pct(ok, .95) * 1000:.0f}"
          f" max {max(ok) * 1000:.0f}" + (
              f"; {len(lost)} lost (409): p50 {pct(lost, .5) * 1000:.0f}"
              f" p95 {pct(lost, .95) * 1000:.0f} max {max(lost) * 1000:.0f}" if lost else "")
          + (f"; other answers {sorted(set(other))}" if other else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="city")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=15)
    ap.add_argument("--hot", type=int, default=15, help="hot cases, one after another")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    pg, url = database(args.size)
    try:
        with psycopg.connect(url, autocommit=True) as c:
            _, dispatcher = create_token(c, "chengguan", [("cases", "dispatch")],
                                         label="bench/cases.py")
            _, writer = create_token(c, "chengguan", [("cases", "write")],
                                     label="bench/cases.py")
        n = args.clients * args.per_client
        t = time.perf_counter()
        distinct = registered_cases(url, n)
        hot = registered_cases(url, args.hot)
        peer = registered_cases(url, n)
        print(f"{2 * n + args.hot} cases reported and registered in"
              f" {time.perf_counter() - t:.1f}s (in process)", flush=True)
        port = free_port()
        cli = str(Path(sys.executable).with_name("gisplatform"))
        proc = serve([cli, "serve", "--port", str(port), "--workers", str(args.workers)],
                     {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(ROOT / ".data" / "app-cases")},
                     f"http://127.0.0.1:{port}/health")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_derived(url)
            auth = {"Authorization": f"Bearer {dispatcher}"}
            body = {"action": "dispatch", "department": "zhujian"}

            def mine(i, c):
                out = []
                for number in distinct[i * args.per_client:(i + 1) * args.per_client]:
                    s = time.perf_counter()
                    r = c.post(f"{base}/api/cases/{number}/steps", json=body, headers=auth)
                    out.append((time.perf_counter() - s, r.status_code))
                return out
            run(args.clients, mine, f"workflow, {args.clients} clients, distinct cases")

            barrier = threading.Barrier(args.clients)

            def contend(i, c):
                out = []
                for number in hot:
                    barrier.wait()
                    s = time.perf_counter()
                    r = c.post(f"{base}/api/cases/{number}/steps", json=body, headers=auth)
                    out.append((time.perf_counter() - s, r.status_code))
                return out
            run(args.clients, contend, f"workflow, {args.clients} clients, one hot case at a time")

            wauth = {"Authorization": f"Bearer {writer}",
                     "Content-Type": "application/geo+json"}

            def patch(i, c):
                out = []
                for number in peer[i * args.per_client:(i + 1) * args.per_client]:
                    change = {"type": "Feature", "properties": {
                        "description": f"井盖缺失 {datetime.now(UTC):%H:%M:%S.%f}"}}
                    s = time.perf_counter()
                    r = c.patch(f"{base}/ogc/collections/cases/items/{number}", json=change,
                                headers=wauth)
                    out.append((time.perf_counter() - s, r.status_code))
                return out
            run(args.clients, patch, f"OGC PATCH (peer), {args.clients} clients, distinct cases")
            with psycopg.connect(url) as c:
                steps = c.execute("select count(*) from city.case_steps where case_number = any(%s)"
                                  " and step = 'dispatched'", (distinct + hot,)).fetchone()[0]
            print(f"dispatched steps recorded: {steps} (want {n + args.hot})")
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
