"""What the tile pyramid's and the population counts' triggers add to a write, at city size.

    .venv/bin/python bench/pyramid_writes.py --size city [--rows 10000]

In one transaction each (rolled back, so the database is left as it was): close N current
person versions in transaction time (what a correction or an update does to the old
version) and insert N new ones, with the pyramid's and the population counts' triggers in
place (tiles/pyramid.py, tiles/population.py), with the pyramid's only, and with neither
(DDL is transactional: the drops are rolled back too). Best of 3 each. The tile-change and
change-feed triggers run in both. Uses the database of bench/ogc_vs_tipg.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import database  # noqa: E402

from gisplatform.db.connections import connect  # noqa: E402
from gisplatform.db.distribution import (  # noqa: E402
    population_trigger_names,
    pyramid_trigger_names,
)

COLUMNS = """select column_name from information_schema.columns
             where table_schema = 'city' and table_name = 'persons_version'
               and column_name not in ('vid', 'recorded') order by ordinal_position"""


def one(url: str, rows: int, drop: list[str]) -> dict:
    with connect(url, "bench-pyramid-writes") as conn:
        for name in drop:
            conn.execute(f'drop trigger if exists "{name}" on city.persons_version')
        cols = ", ".join(f'"{c}"' for (c,) in conn.execute(COLUMNS))
        vids = [v for (v,) in conn.execute(
            "select vid from city.persons_version where upper_inf(recorded) order by vid"
            " limit %s", (rows,))]
        t0 = time.perf_counter()
        conn.execute("update city.persons_version set recorded = tstzrange(lower(recorded), now())"
                     " where vid = any(%s)", (vids,))
        t1 = time.perf_counter()
        new_cols = cols.replace('"fid"', "fid || '-bench'")
        conn.execute(f"insert into city.persons_version ({cols}) select {new_cols}"
                     " from city.persons_version where vid = any(%s)", (vids,))
        t2 = time.perf_counter()
        conn.rollback()
    return {"close_s": round(t1 - t0, 3), "insert_s": round(t2 - t1, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    ap.add_argument("--rows", type=int, default=10_000)
    args = ap.parse_args()
    pg, url = database(args.size)
    try:
        out = {"rows": args.rows}
        pyramid = pyramid_trigger_names("persons_version")
        population = population_trigger_names("persons_version")
        for label, drop in (("with_both", []), ("with_pyramid", population),
                            ("without", pyramid + population)):
            runs = [one(url, args.rows, drop) for _ in range(3)]
            out[label] = {k: min(r[k] for r in runs) for k in runs[0]}
            print(label, out[label], flush=True)
        print(json.dumps(out, indent=1))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
