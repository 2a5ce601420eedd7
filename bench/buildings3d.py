"""The city's buildings into a 3D Tiles 1.1 tileset: time, tiles, bytes, peak memory.

    .venv/bin/python bench/buildings3d.py --size city     # the issue's figure (< 5 min)

Runs `gisplatform 3d build buildings --full` on the demo database of bench/ogc_vs_tipg.py
(bench/.data/<size>) into bench/.data/app3d-<size>, then changes one building and runs the
incremental rebuild. Peak memory: the builder process and its tile-writing workers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import ROOT, database  # noqa: E402

from gisplatform.temporal import TemporalStore  # noqa: E402
from layers import LAYERS  # noqa: E402


def run(cli: str, env: dict, *args: str) -> dict:
    t = time.perf_counter()
    r = subprocess.run([cli, "3d", "build", "buildings", *args], env=env, capture_output=True,
                       text=True)
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    return {"seconds": round(time.perf_counter() - t, 1),
            "summary": " ".join(r.stderr.split()).split("━")[-1].strip()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    args = ap.parse_args()
    pg, url = database(args.size)
    cli = str(Path(sys.executable).with_name("gisplatform"))
    data = ROOT / ".data" / f"app3d-{args.size}"
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data)}
    try:
        full = run(cli, env, "--full")
        peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with psycopg.connect(url) as c:
            fid, floors = c.execute("select fid, floors from city.buildings order by fid "
                                    "limit 1 offset 1000").fetchone()
            TemporalStore(LAYERS["buildings"].spec).patch(c, fid, properties={"floors": floors + 1})
            c.commit()
            tiles, size = c.execute("select tiles, bytes from city.tilesets "
                                    "where name = 'buildings'").fetchone()
        incremental = run(cli, env)
        print(json.dumps({"size": args.size, "full": full, "tiles": tiles, "bytes": size,
                          "peak_rss_mb_largest_process": round(peak_children),
                          "incremental_after_one_change": incremental,
                          "cpus": os.cpu_count()}, indent=1))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
