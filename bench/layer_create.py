"""Publishing a dataset: `gisplatform layer create` from a GeoPackage, next to ogr2ogr
into a plain PostGIS table, on the same machine and database, in one run.

    .venv/bin/python bench/layer_create.py [--rows 100000] [--size small]

Writes a GeoPackage of N points of interest inside the city (id, 名称, 类别 with 8
values, floors, area, opened date, 联系电话 — a personal column), then
- ours: `gisplatform layer create` (infer the definition, register it, create the version
  table through the layer generator, check every row, import as the first versions — one
  transaction), as a subprocess;
- ogr2ogr (GDAL, `-f PostgreSQL`, COPY mode, a GiST index): the same file into a plain
  table, nothing checked, no history.
Reports seconds, rows/s and the peak resident memory of each process (its max RSS), and
the ratio. Uses the cluster of bench/ogc_vs_tipg.py (bench/.data/<size>); what it
creates is dropped at the end. ogr2ogr comes from Debian's gdal-bin (installed when
missing: the platform itself needs no GDAL binary, pyogrio bundles its own GDAL).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import pyogrio.raw
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import database  # noqa: E402

from layers.fushun import URBAN_BBOX  # noqa: E402

CLI = str(Path(sys.executable).with_name("gisplatform"))
KINDS = ["学校", "医院", "公园", "公交站", "银行", "超市", "加油站", "派出所"]


def make_gpkg(path: Path, n: int) -> None:
    rng = np.random.default_rng(7)
    w, s, e, nn = URBAN_BBOX
    pts = shapely.points(rng.uniform(w, e, n), rng.uniform(s, nn, n))
    fields = {
        "id": np.array([f"POI{i:07d}" for i in range(n)], dtype=object),
        "名称": np.array([f"{KINDS[i % 8]}{i}" for i in range(n)], dtype=object),
        "类别": np.array([KINDS[i % 8] for i in range(n)], dtype=object),
        "floors": rng.integers(1, 30, n).astype("int32"),
        "area": rng.uniform(20, 5000, n).round(1),
        "opened": np.array([f"20{10 + i % 15:02d}-0{1 + i % 9}-15" for i in range(n)],
                           dtype=object),
        "联系电话": np.array([f"139{i:08d}" for i in range(n)], dtype=object),
    }
    pyogrio.raw.write(str(path), shapely.to_wkb(pts), list(fields.values()),
                      fields=list(fields), geometry_type="Point", crs="EPSG:4490",
                      driver="GPKG", layer="pois")


def ogr2ogr() -> str:
    found = shutil.which("ogr2ogr")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "gdal-bin"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("ogr2ogr")
        if found is None:
            raise SystemExit("gdal-bin installed but no ogr2ogr on PATH")
    return found


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one child process."""
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: exec the command, its max RSS is reported to the parent
        os.execvpe(cmd[0], cmd, env)
    _, status, usage = os.wait4(pid, 0)
    secs = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:3]} failed ({status})")
    return secs, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--size", default="small", help="which bench cluster (bench/.data/<size>)")
    args = ap.parse_args()
    tool = ogr2ogr()
    pg, url = database(args.size)
    try:
        run(url, tool, args.rows)
    finally:
        pg.stop()


def run(url: str, tool: str, rows: int) -> None:
    name, plain = "bench-pois", "bench_pois_ogr"
    with tempfile.TemporaryDirectory() as tmp:
        gpkg = Path(tmp) / "pois.gpkg"
        make_gpkg(gpkg, rows)
        size_mb = gpkg.stat().st_size / 2**20
        env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": tmp}
        try:
            ours = timed([CLI, "layer", "create", name, "--from", str(gpkg), "--department",
                          "bench", "--sharing", "unconditional", "--title", "兴趣点"], env)
            theirs = timed([tool, "-f", "PostgreSQL", f"PG:{url}", str(gpkg), "-nln",
                            f"city.{plain}", "-lco", "GEOMETRY_NAME=geom", "-lco",
                            "SPATIAL_INDEX=GIST", "-overwrite", "--config", "PG_USE_COPY",
                            "YES"], env)
            with psycopg.connect(url) as c:
                got = c.execute("select count(*) from city.bench_pois_version").fetchone()[0]
                got_ogr = c.execute(f"select count(*) from city.{plain}").fetchone()[0]
        finally:
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("drop view if exists city.bench_pois")
                c.execute("drop table if exists city.bench_pois_version")
                c.execute(f"drop table if exists city.{plain}")
                c.execute("delete from city.layer_registry where name = %s", (name,))
    assert got == got_ogr == rows, (got, got_ogr)
    out = {"rows": rows, "gpkg_mb": round(size_mb, 1),
           "ours": {"s": round(ours[0], 1), "rows_per_s": round(rows / ours[0]),
                    "peak_mb": round(ours[1])},
           "ogr2ogr": {"s": round(theirs[0], 1), "rows_per_s": round(rows / theirs[0]),
                       "peak_mb": round(theirs[1])},
           "time_ratio": round(ours[0] / theirs[0], 2)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
