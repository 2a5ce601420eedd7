"""Vector tiles, side by side with tipg, in one run: cold, warm (cached) and past-datetime.

    .venv/bin/python bench/tiles_vs_tipg.py --size city     # the issue's figures
    .venv/bin/python bench/tiles_vs_tipg.py --size small    # quick check

The same z14–15 tiles over the urban core (every tile of the view, in a shuffled order per
client), the same concurrent clients for the same time, against:
- tipg 1.x (`/collections/city.buildings/tiles/WebMercatorQuad/{z}/{x}/{y}`), one worker;
- gisplatform with its tile cache off (`cold`: every request renders in PostGIS);
- the same at a past datetime (`past`);
- gisplatform with its cache on, after one pass over the tiles (`warm`);
- `raw`: the SQL a cold tile runs (tiles/sources.py, the same columns and filter, with
  ST_AsMVT) executed straight on PostGIS by as many threads, each on its own connection
  set up as the app's pool sets it up: no HTTP, no app — the ceiling of a cold tile.
Each server runs alone while it is measured (2 cores: client and server share them).
Uses the database and tipg venv of bench/ogc_vs_tipg.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import morecantile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import ROOT, database, serve, tipg_python  # noqa: E402

from gisplatform.db.embedded import free_port  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")
VIEW = {"city": (123.80, 41.83, 124.06, 41.945), "small": (123.84, 41.84, 123.96, 41.90)}
PAST = "2020-06-01T00:00:00+08:00"


def view_tiles(bbox) -> list[tuple[int, int, int]]:
    return [(t.z, t.x, t.y) for t in TMS.tiles(*bbox, zooms=[14, 15])]


WRK_SCRIPT = """
local paths, i = {}, 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(#paths)
end
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('{"requests": %d, "seconds": %.3f, "errors": %d, "bad_status": %d, ' ..
    '"p50_ms": %.2f, "p99_ms": %.2f, "bytes": %d}\\n', s.requests, s.duration / 1e6,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, s.bytes))
end
"""


def wrk() -> str:
    """wrk (Debian package) drives the load: a Python client tops out near 500 requests/s
    here, below what a cached tile server answers."""
    path = shutil.which("wrk")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True,
                       stdout=subprocess.DEVNULL)
        path = shutil.which("wrk")
    if path is None:
        sys.exit("this benchmark needs wrk: apt-get install wrk")
    return path


def hammer(base: str, template: str, tiles: list, seconds: float, clients: int,
           query: str = "") -> dict:
    """`clients` keep-alive connections over 2 wrk threads for `seconds`, cycling through
    the tiles from a random start per thread."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = Path(tmp, "paths.txt")
        paths.write_text("".join(template.format(z=z, x=x, y=y) + query + "\n"
                                 for z, x, y in tiles))
        script = Path(tmp, "tiles.lua")
        script.write_text(WRK_SCRIPT)
        out = subprocess.run([wrk(), "-t2", f"-c{clients}", f"-d{int(seconds)}s", "--latency",
                              "-s", str(script), base, "--", str(paths)],
                             capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"requests": r["requests"], "tiles_per_s": round(r["requests"] / r["seconds"], 1),
            "errors": r["errors"] + r["bad_status"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "mean_bytes": round(r["bytes"] / max(r["requests"], 1))}


def raw_asmvt(url: str, tiles: list, seconds: float, clients: int) -> dict:
    """The buildings tile SQL of `cold`, straight on PostGIS, `clients` threads."""
    import random
    import threading
    import time

    from gisplatform import wiring
    from gisplatform.db.connections import connect
    from tiles.sources import tile_params, tile_sql

    src = wiring.tile_sources()["buildings"]
    done: list[int] = []
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        order = tiles[:]
        random.Random(seed).shuffle(order)
        n = 0
        with connect(url, "bench-raw-asmvt") as conn:
            while time.monotonic() < stop_at:
                z, x, y = order[n % len(order)]
                t0 = time.perf_counter()
                conn.execute(tile_sql(src, z, False), tile_params(z, x, y, None, None)).fetchone()
                latencies.append((time.perf_counter() - t0) * 1000)
                n += 1
        done.append(n)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    latencies.sort()
    return {"requests": sum(done), "tiles_per_s": round(sum(done) / took, 1),
            "p50_ms": round(latencies[len(latencies) // 2], 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2)}


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    pg, url = database(args.size)
    tiles = view_tiles(VIEW[args.size])
    cli = str(Path(sys.executable).with_name("gisplatform"))
    results = {}
    try:
        def ours(cache_mb: int):
            port = free_port()
            data = ROOT / ".data" / f"app-tiles-{cache_mb}"
            env = {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data),
                   "GISPLATFORM_TILE_CACHE_MEMORY_MB": str(cache_mb),
                   "GISPLATFORM_TILE_CACHE_DISK_MB": str(cache_mb)}
            if cache_mb:
                shutil.rmtree(data / "tiles", ignore_errors=True)  # warm means warmed here
            proc = serve([cli, "serve", "--port", str(port)], env, f"http://127.0.0.1:{port}/health")
            return proc, f"http://127.0.0.1:{port}", "/tiles/buildings/{z}/{x}/{y}.mvt"

        port = free_port()
        proc = serve([str(tipg_python()), "-m", "uvicorn", "tipg.main:app", "--port", str(port),
                      "--log-level", "warning"],
                     {"DATABASE_URL": url, "TIPG_DB_SCHEMAS": '["city"]'},
                     f"http://127.0.0.1:{port}/healthz")
        try:
            base = f"http://127.0.0.1:{port}"
            template = "/collections/city.buildings/tiles/WebMercatorQuad/{z}/{x}/{y}"
            hammer(base, template, tiles, 3, args.clients)  # warm-up: pools, catalog
            results["tipg"] = hammer(base, template, tiles, args.seconds, args.clients)
        finally:
            stop(proc)

        proc, base, template = ours(0)
        try:
            hammer(base, template, tiles, 3, args.clients)
            results["cold"] = hammer(base, template, tiles, args.seconds, args.clients)
            results["past"] = hammer(base, template, tiles, args.seconds, args.clients,
                                     "?datetime=" + PAST.replace("+", "%2B"))
        finally:
            stop(proc)

        proc, base, template = ours(512)
        try:
            for z, x, y in tiles:  # one pass fills the cache
                httpx.get(base + template.format(z=z, x=x, y=y), timeout=60)
            results["warm"] = hammer(base, template, tiles, args.seconds, args.clients)
        finally:
            stop(proc)
        raw_asmvt(url, tiles, 3, args.clients)  # warm-up: the same pages as `cold` read
        results["raw"] = raw_asmvt(url, tiles, args.seconds, args.clients)
        results["cold_vs_tipg"] = round(results["cold"]["tiles_per_s"] / results["tipg"]["tiles_per_s"], 2)
        results["cold_vs_raw"] = round(results["cold"]["tiles_per_s"] / results["raw"]["tiles_per_s"], 2)
        results["warm_vs_cold"] = round(results["warm"]["tiles_per_s"] / results["cold"]["tiles_per_s"], 2)
        results["past_cost"] = round(results["cold"]["tiles_per_s"] / results["past"]["tiles_per_s"], 2)
        results.update(size=args.size, view=VIEW[args.size], tiles_in_view=len(tiles),
                       clients=args.clients, seconds=args.seconds, cpus=os.cpu_count())
        print(json.dumps(results, indent=1))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
