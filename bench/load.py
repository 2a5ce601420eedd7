"""Mixed load on one node: 32 clients for 60 s over tiles, items, history and processes.

    .venv/bin/python bench/load.py --size city            # the issue's figures
    .venv/bin/python bench/load.py --size small --seconds 10

Loopback only. Serves the platform over the bench database of bench/ogc_vs_tipg.py (tile
cache on, as deployed, emptied first), waits until its start-up builds are done, then runs one wrk per request class at the same time
(clients split evenly: 8 + 8 + 8 + 8 by default), each cycling through its own list of
requests from a random start:
- tiles: every layer a department uses (persons with a token) at z10–16 over the urban core,
  at "now" and at 24 month-ends since 2018, so cache misses (PostGIS renders) mix with hits;
- items: OGC API Features pages (limit 100) in random 500 m boxes of five layers, half of them
  at a past datetime, persons with a token (masked read, audited);
- history: `<layer>-history` items of single buildings and legal persons (every version);
- processes: OGC API Processes executions (population in a polygon, case hot spots, legal
  persons near a building).
Prints per class requests/s, errors (connect/read/timeout and status ≥ 400) and p50/p99
latency; exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import morecantile
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import ROOT, database, serve
from tiles_vs_tipg import VIEW, stop, wrk

from gisplatform.db.embedded import free_port
from gisplatform.security import create_token

TMS = morecantile.tms.get("WebMercatorQuad")
TILE_LAYERS = ("buildings", "addresses", "legal-persons", "cases", "components", "persons",
               "population-grid")
ITEM_LAYERS = ("buildings", "addresses", "legal-persons", "cases", "persons")
CLASSES = ["tiles", "items", "history", "processes"]
MONTHS = [f"{y}-{m:02d}-01T00:00:00%2B08:00" for y in range(2018, 2026) for m in (1, 5, 9)]

# one request per line: METHOD \t PATH \t BODY (may be empty); Bearer token as an argument
WRK_SCRIPT = """
local reqs, i, token, threads = {}, 0, nil, {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  token = args[2]
  for line in io.lines(args[1]) do
    local m, p, b = line:match("^(%u+)\\t([^\\t]+)\\t?(.*)$")
    reqs[#reqs + 1] = {m, p, b}
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(#reqs)
end
request = function()
  i = i + 1
  local r = reqs[(i % #reqs) + 1]
  local h = {["Authorization"] = "Bearer " .. token}
  if r[3] ~= "" then h["Content-Type"] = "application/json"; return wrk.format(r[1], r[2], h, r[3]) end
  return wrk.format(r[1], r[2], h)
end
statuses = {}
response = function(status, headers, body)
  if status >= 400 then statuses[status] = (statuses[status] or 0) + 1 end
end
done = function(s, latency, requests)
  local e, bad = s.errors, {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      bad[#bad + 1] = string.format('"%d": %d', code, n)
    end
  end
  io.write(string.format('{"requests": %d, "seconds": %.3f, "timeouts": %d, "socket_errors": %d, ' ..
    '"bad_status": {%s}, "p50_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\\n', s.requests,
    s.duration / 1e6, e.timeout, e.connect + e.read + e.write, table.concat(bad, ", "),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def request_lists(url: str, size: str, rng: random.Random) -> dict[str, list[str]]:
    """The four classes' requests, from the database's own ids and the city's view."""
    west, south, east, north = VIEW[size]
    tiles = []
    for layer in TILE_LAYERS:
        for z in range(10, 17):
            cells = list(TMS.tiles(west, south, east, north, zooms=[z]))
            for t in rng.sample(cells, min(len(cells), 40)):
                q = "" if rng.random() < 0.5 else f"?datetime={rng.choice(MONTHS)}"
                tiles.append(f"GET\t/tiles/{layer}/{t.z}/{t.x}/{t.y}.mvt{q}")
    items = []
    for layer in ITEM_LAYERS:
        for _ in range(200):
            x, y = rng.uniform(west, east - 0.006), rng.uniform(south, north - 0.0045)
            q = "" if rng.random() < 0.5 else f"&datetime={rng.choice(MONTHS)}"
            items.append(f"GET\t/ogc/collections/{layer}/items?f=json&limit=100"
                         f"&bbox={x:.5f},{y:.5f},{x + 0.006:.5f},{y + 0.0045:.5f}{q}")
    with psycopg.connect(url) as c:
        buildings = [r[0] for r in c.execute(
            "select fid from city.buildings_version where upper_inf(recorded)"
            " group by fid order by count(*) desc, fid limit 300")]
        legal = [r[0] for r in c.execute(
            "select fid from city.legal_persons_version where upper_inf(recorded)"
            " group by fid order by count(*) desc, fid limit 300")]
    history = [f"GET\t/ogc/collections/buildings-history/items?f=json&building_code={b}"
               for b in buildings]
    history += [f"GET\t/ogc/collections/legal-persons-history/items?f=json&credit_code={c}"
                for c in legal]
    processes = []
    for _ in range(300):
        x, y = rng.uniform(west, east - 0.02), rng.uniform(south, north - 0.015)
        area = {"type": "Polygon", "coordinates": [[[x, y], [x + 0.02, y], [x + 0.02, y + 0.015],
                                                    [x, y + 0.015], [x, y]]]}
        pid, inputs = rng.choice([
            ("population-in-polygon", {"geometry": area, "datetime": "2024-01-01T00:00:00+08:00"}),
            ("case-hotspots", {"start": f"{rng.randint(2018, 2025)}-01-01T00:00:00+08:00",
                               "end": "2026-01-01T00:00:00+08:00", "top": 10}),
            ("legal-persons-near", {"collection": "buildings", "id": rng.choice(buildings),
                                    "distance": 300})])
        processes.append(f"POST\t/ogc/processes/{pid}/execution\t"
                         + json.dumps({"inputs": inputs}, separators=(",", ":")))
    for reqs in (tiles, items, history, processes):
        rng.shuffle(reqs)
    return {"tiles": tiles, "items": items, "history": history, "processes": processes}


def run_wrk(base: str, reqs: list[str], token: str, clients: int, seconds: int,
            tmp: Path, name: str) -> dict:
    paths = tmp / f"{name}.txt"
    paths.write_text("\n".join(reqs) + "\n")
    script = tmp / "load.lua"
    out = subprocess.run([wrk(), "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s",
                          "-s", str(script), base, "--", str(paths), token],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"requests": r["requests"], "rps": round(r["requests"] / r["seconds"], 1),
            "errors": r["timeouts"] + r["socket_errors"] + sum(r["bad_status"].values()),
            "timeouts": r["timeouts"], "bad_status": r["bad_status"], "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"], "max_ms": r["max_ms"]}


def wait_for_derived(url: str, timeout: float = 900) -> None:
    """Until the starting server has built what it builds as it starts (tile pyramids,
    population counts, statistics rollups: wiring.build_derived, under an advisory lock):
    a deployed server is measured once up, not during its start-up work."""
    import time

    time.sleep(1)  # the build thread takes its lock as the app starts
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < deadline:
            if c.execute("select pg_try_advisory_lock(hashtext('gisplatform.build_derived'))"
                         ).fetchone()[0]:
                c.execute("select pg_advisory_unlock(hashtext('gisplatform.build_derived'))")
                return
            time.sleep(0.5)
    sys.exit("the server's start-up builds did not finish")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="city", choices=sorted(VIEW))
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--clients", type=int, default=32, help="split evenly over the 4 classes")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--warmup", type=int, default=5,
                    help="seconds of the same mix before measuring (pools, first CRS use)")
    ap.add_argument("--only", nargs="*", choices=CLASSES, default=CLASSES,
                    help="run only these classes (diagnosis; the figures use all four)")
    args = ap.parse_args()
    if args.clients < len(args.only):
        sys.exit("--clients must be at least one per class")
    pg, url = database(args.size)
    try:
        with psycopg.connect(url, autocommit=True) as c:
            _, token = create_token(c, "gongan", [("persons", "read"), ("cameras", "read")],
                                    label="bench/load.py")
        reqs = {k: v for k, v in request_lists(url, args.size, random.Random(42)).items()
                if k in args.only}
        data = ROOT / ".data" / "app-load"
        shutil.rmtree(data / "tiles", ignore_errors=True)  # start cold, as after a deploy
        port = free_port()
        cli = str(Path(sys.executable).with_name("gisplatform"))
        proc = serve([cli, "serve", "--port", str(port), "--workers", str(args.workers)],
                     {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data)},
                     f"http://127.0.0.1:{port}/health")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_derived(url)
            n = len(reqs)
            per_class = [args.clients // n + (i < args.clients % n) for i in range(n)]
            with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
                Path(tmp, "load.lua").write_text(WRK_SCRIPT)
                if args.warmup:
                    list(pool.map(lambda kv: run_wrk(base, kv[0][1], token, kv[1], args.warmup,
                                                     Path(tmp), kv[0][0]),
                                  zip(reqs.items(), per_class, strict=True)))
                futures = {name: pool.submit(run_wrk, base, r, token, n, args.seconds,
                                             Path(tmp), name)
                           for (name, r), n in zip(reqs.items(), per_class, strict=True)}
                results = {name: f.result() for name, f in futures.items()}
        finally:
            stop(proc)
    finally:
        pg.stop()
    total = sum(r["requests"] for r in results.values())
    errors = sum(r["errors"] for r in results.values())
    print(json.dumps({"size": args.size, "seconds": args.seconds, "clients": args.clients,
                      "workers": args.workers, "cpus": os.cpu_count(), "classes": results,
                      "total_requests": total, "total_rps": round(total / args.seconds, 1),
                      "errors": errors}, indent=1))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
