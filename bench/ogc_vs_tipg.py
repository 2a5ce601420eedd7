"""OGC API Features items, side by side with tipg, in one run.

    .venv/bin/python bench/ogc_vs_tipg.py --size city     # the issue's figure
    .venv/bin/python bench/ogc_vs_tipg.py --size small    # quick check

Loads the demo city once into a cluster under bench/.data/<size> (reused by later runs),
installs tipg into bench/.venv-tipg (its own venv: its pins are not ours), serves both
over the same database with one worker each, and hits
`/collections/buildings/items?bbox=…&limit=1000` with the same concurrent clients for
the same time: tipg, ours (current snapshot), ours at a past datetime.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

from gisplatform.db import migrate
from gisplatform.db.embedded import EmbeddedPostgres, free_port
from gisplatform.temporal import parse_instant
from layers.demo import is_empty, load_demo

ROOT = Path(__file__).resolve().parent
BBOX = {"city": "123.95,41.87,123.97,41.89", "small": "123.86,41.85,123.93,41.885"}


def database(size: str) -> tuple[EmbeddedPostgres, str]:
    data = ROOT / ".data" / size
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o755)
    pg = EmbeddedPostgres(data, port=free_port())
    url = pg.start()
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        if is_empty(conn):
            t = time.perf_counter()
            load_demo(conn, size, 42, parse_instant("2026-11-29T00:00:00+08:00"))
            print(f"loaded demo {size} in {time.perf_counter() - t:.0f}s", flush=True)
    return pg, url


def tipg_python() -> Path:
    venv = ROOT / ".venv-tipg"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "tipg", "uvicorn"], check=True)
    return py


def serve(cmd: list[str], env: dict, health: str) -> subprocess.Popen:
    # stderr to a file, not a pipe: a server logging every request would fill an unread
    # pipe and stall
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(log.read().decode()[-3000:])
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd} did not come up")


def hammer(url: str, params: dict, seconds: float, clients: int) -> dict:
    """`clients` threads requesting for `seconds`; requests/s, latency, feature count."""
    latencies, errors, counts = [], [], []
    stop = time.monotonic() + seconds

    def worker():
        with httpx.Client(timeout=60) as c:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = c.get(url, params=params)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors.append(r.status_code)
                else:
                    counts.append(len(r.json()["features"]))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"requests": len(lat), "rps": round(len(lat) / wall, 1), "errors": len(errors),
            "features": statistics.median(counts) if counts else 0,
            "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    pg, url = database(args.size)
    procs = []
    try:
        tport, oport = free_port(), free_port()
        procs.append(serve([str(tipg_python()), "-m", "uvicorn", "tipg.main:app", "--port",
                            str(tport), "--log-level", "warning"],
                           {"DATABASE_URL": url, "TIPG_DB_SCHEMAS": '["city"]'},
                           f"http://127.0.0.1:{tport}/healthz"))
        cli = str(Path(sys.executable).with_name("gisplatform"))
        procs.append(serve([cli, "serve", "--port", str(oport)],
                           {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(ROOT / ".data" / "app")},
                           f"http://127.0.0.1:{oport}/health"))
        bbox = BBOX[args.size]
        runs = {
            "tipg": (f"http://127.0.0.1:{tport}/collections/city.buildings/items",
                     {"bbox": bbox, "limit": 1000}),
            "gisplatform": (f"http://127.0.0.1:{oport}/ogc/collections/buildings/items",
                            {"bbox": bbox, "limit": 1000, "f": "json"}),
            "gisplatform_past": (f"http://127.0.0.1:{oport}/ogc/collections/buildings/items",
                                 {"bbox": bbox, "limit": 1000, "f": "json",
                                  "datetime": "2020-06-01T00:00:00+08:00"}),
        }
        for name, (u, p) in runs.items():  # warm up: caches, pools, pygeoapi imports
            httpx.get(u, params=p, timeout=60).raise_for_status()
        results = {name: hammer(u, p, args.seconds, args.clients) for name, (u, p) in runs.items()}
        results["ratio_vs_tipg"] = round(results["gisplatform"]["rps"] / results["tipg"]["rps"], 2)
        results["past_cost_ratio"] = round(results["gisplatform"]["rps"]
                                           / results["gisplatform_past"]["rps"], 2)
        results.update(size=args.size, bbox=bbox, clients=args.clients, seconds=args.seconds,
                       cpus=os.cpu_count())
        print(json.dumps(results, indent=1))
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.stop()


if __name__ == "__main__":
    main()
