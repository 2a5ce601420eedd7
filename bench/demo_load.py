"""Demo city load benchmark: time, rows/s and peak memory of `load_demo`.

    .venv/bin/python bench/demo_load.py --size city      # Fushun-sized (the issue's target: < 10 min)
    .venv/bin/python bench/demo_load.py --size small

Runs against a throwaway embedded cluster with the normal (durable) settings, so the
figure is what `gisplatform demo --size city` costs on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from gisplatform.db import migrate
from gisplatform.db.embedded import EmbeddedPostgres, free_port
from gisplatform.temporal import parse_instant
from layers.demo import load_demo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--until", default="2026-11-29T00:00:00+08:00")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gisplatform-bench-"))
    os.chmod(root, 0o755)
    pg = EmbeddedPostgres(root, port=free_port())
    try:
        url = pg.start()
        migrate.upgrade(url)
        layers = []
        t0 = time.perf_counter()
        with psycopg.connect(url) as conn:
            counts = load_demo(conn, args.size, args.seed, parse_instant(args.until),
                               on_layer=lambda name, n, s: (layers.append((name, n, s)), print(
                                   f"  {name:<22}{n:>10,} rows {s:7.1f}s", flush=True)))
        secs = time.perf_counter() - t0
        with psycopg.connect(url) as conn:
            db_bytes = conn.execute("select pg_database_size(current_database())").fetchone()[0]
        rows = sum(counts.values())
        result = {
            "size": args.size, "seed": args.seed, "rows": rows, "seconds": round(secs, 1),
            "rows_per_s": round(rows / secs), "peak_rss_mb_python": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "database_mb": round(db_bytes / 2**20), "layers": {n: c for n, c, _ in layers},
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, ensure_ascii=False))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
