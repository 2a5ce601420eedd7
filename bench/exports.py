"""A full `persons` export (masked) from the city-size demo, in each format.

    .venv/bin/python bench/exports.py                 # city: ~1.7 M current persons
    .venv/bin/python bench/exports.py --size small    # quick check
    .venv/bin/python bench/exports.py --formats gpkg parquet

The issue's bar: under 1 minute per million rows. Uses the persistent cluster of
bench/ogc_vs_tipg.py (bench/.data/<size>; loaded on first use), leaves it running if it
was running, stops it otherwise. The export runs as a principal with a `read` grant on
persons (masked: personal fields masked in SQL, no audit row), exactly the code path of
`gisplatform export persons OUT --token …` and of the HTTP jobs; the files go to a temporary
directory and are deleted after each measurement.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ogc_vs_tipg import ROOT, database

from gisplatform.db.embedded import EmbeddedPostgres
from gisplatform.exports import FORMATS, export, make_request
from gisplatform.security import Principal
from layers import LAYERS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="city", choices=("city", "small"))
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    args = ap.parse_args()

    was_running = EmbeddedPostgres(ROOT / ".data" / args.size).is_running()
    pg, url = database(args.size)
    reader = Principal(token_id=0, department="bench", label="bench",
                       grants={"persons": frozenset({"read"})})
    out = Path(tempfile.mkdtemp(prefix="gisplatform-export-bench-"))
    rows_line = []
    try:
        print(f"{'format':<9}{'rows':>11}{'seconds':>9}{'rows/s':>10}{'s per M':>9}{'MB':>7}",
              flush=True)
        for fmt in args.formats:
            target = out / f"persons{FORMATS[fmt][0]}"
            t = time.perf_counter()
            r = export(url, LAYERS["persons"], make_request(LAYERS, "persons", fmt), reader,
                       target)
            secs = time.perf_counter() - t
            assert not r.unmasked
            mb = target.stat().st_size / 2**20
            per_m = secs / r.rows * 1e6 if r.rows else 0
            rows_line.append((fmt, per_m))
            print(f"{fmt:<9}{r.rows:>11,}{secs:>9.1f}{r.rows / secs:>10,.0f}{per_m:>9.1f}"
                  f"{mb:>7,.0f}", flush=True)
            target.unlink()
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not was_running:
            pg.stop()
    worst = max(rows_line, key=lambda x: x[1])
    print(f"bar: < 60 s per million rows; slowest {worst[0]} at {worst[1]:.1f} s per million: "
          + ("met" if worst[1] < 60 else "NOT met"))


if __name__ == "__main__":
    main()
