"""The time slider at city size: cold tiles of every layer, any zoom, many dates.

    .venv/bin/python bench/city_timeslider.py --size city              # pyramids on
    .venv/bin/python bench/city_timeslider.py --size city --pyramid off --dates 3

One request at a time (a planner's map, not a load test) through `gisplatform serve` with
its tile cache off, for the tile holding the urban core (123.92 E, 41.87 N) at each zoom
8–16, at dates spread from 2018-01 to now plus now itself, for population-grid, persons
(with a read grant), cases and buildings, and the other layers at their cluster zooms.
Reports per layer and zoom band (z8–13, z14–16): p50, p95, max (ms). `--pyramid off` drops
the tile pyramids and the population counts first (tiles/pyramid.py, tiles/population.py:
their triggers and registrations) so the tiles read the version tables, as before them;
`on` builds the missing ones and reports how long that took. `--items` also times OGC items pages of 10 at offsets 0, 10 000 and 100 000 and at
the cursors of their `next` links (persons, buildings, cases, persons-history; best of 3),
and one person's history. Uses the database of bench/ogc_vs_tipg.py
(bench/.data/<size>).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import morecantile
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import ROOT, database, serve  # noqa: E402

from gisplatform import wiring  # noqa: E402
from gisplatform.db.distribution import (  # noqa: E402
    population_trigger_names,
    pyramid_trigger_names,
)
from gisplatform.db.embedded import free_port  # noqa: E402
from gisplatform.ogc.provider import encode_cursor  # noqa: E402
from gisplatform.security import create_token  # noqa: E402
from tiles import population  # noqa: E402
from tiles.pyramid import ensure  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")
CORE = (123.92, 41.87)
MAIN = ("population-grid", "persons", "cases", "buildings")


def dates(n: int) -> list[str | None]:
    """n month starts spread over 2018-01 .. 2026-11 (UTC+8), and now (None)."""
    months = [(2018 + k // 12, k % 12 + 1) for k in range(0, 107)]
    step = max(1, len(months) // max(n, 1))
    return [f"{y}-{m:02d}-01T00:00:00+08:00" for y, m in months[::step][:n]] + [None]


def set_pyramids(url: str, on: bool) -> dict:
    sources = wiring.tile_sources()
    with psycopg.connect(url, autocommit=True) as conn:
        if not on:
            for src in sources.values():
                for name in pyramid_trigger_names(src.version_table) if src.version_table else ():
                    conn.execute(f'drop trigger if exists "{name}" on city."{src.version_table}"')
            conn.execute("delete from city.tile_pyramid_layers")
            conn.execute("truncate city.tile_pyramid, city.tile_pyramid_years")
            for table in population.TRIGGERS:
                for name in population_trigger_names(table):
                    conn.execute(f'drop trigger if exists "{name}" on city."{table}"')
            conn.execute("delete from city.population_counts_state")
            return {}
        took: dict[str, float] = {}
        ensure(conn, sources.values(), on_layer=lambda name, secs: took.update({name: round(secs, 1)}))
        secs = population.ensure(conn)
        if secs is not None:
            took["population counts"] = round(secs, 1)
        return took


def items_pages(client: httpx.Client, url: str) -> dict:
    """OGC items pages of 10 deep into a collection against its first page (ms, best of 3):
    by `offset` alone, and by the cursor a `next` link carries (the key of the row before
    the page, read here in SQL: walking 10 000 pages to get it would time the walk); and
    the history of one object. The cursor page must hold the offset page's items."""
    out = {}
    snapshot = ("upper_inf(recorded) and lower(valid) <= now()"
                " and (upper_inf(valid) or upper(valid) > now())")
    for cid in ("persons", "buildings", "cases", "persons-history"):
        history = cid.endswith("-history")
        table = cid.removesuffix("-history").replace("-", "_") + "_version"
        path = f"/ogc/collections/{cid}/items"
        for offset in (0, 10_000, 100_000):
            params = {"limit": 10, "offset": offset, "f": "json"}
            best = min(_timed(client, path, params) for _ in range(3))
            out[f"{cid} offset={offset}"] = round(best, 1)
            print(f"items {cid} offset={offset}: {best:.0f} ms", flush=True)
            if offset == 0:
                continue
            with psycopg.connect(url) as conn:
                key = conn.execute(
                    f"select vid from city.{table} where upper_inf(recorded) order by vid"
                    f" offset {offset - 1} limit 1" if history else
                    f"select fid, vid from city.{table} where {snapshot} order by fid, vid"
                    f" offset {offset - 1} limit 1").fetchone()
            cursored = {**params, "cursor": encode_cursor(key)}
            best = min(_timed(client, path, cursored) for _ in range(3))
            same = ([f["id"] for f in client.get(path, params=params).json()["features"]]
                    == [f["id"] for f in client.get(path, params=cursored).json()["features"]])
            assert same, (cid, offset, "the cursor page differs from the offset page")
            out[f"{cid} cursor at {offset}"] = round(best, 1)
            print(f"items {cid} cursor at {offset}: {best:.0f} ms", flush=True)
    with psycopg.connect(url) as conn:
        fid = conn.execute("select fid from city.persons_version group by fid"
                           " having count(*) > 1 limit 1").fetchone()[0]
    best = min(_timed(client, "/ogc/collections/persons-history/items",
                      {"fid": fid, "limit": 100, "f": "json"}) for _ in range(3))
    out["persons-history of one person"] = round(best, 1)
    print(f"items persons-history of one person: {best:.0f} ms", flush=True)
    return out


def _timed(client: httpx.Client, path: str, params: dict) -> float:
    t0 = time.perf_counter()
    r = client.get(path, params=params)
    assert r.status_code == 200, (path, params, r.status_code, r.text[:300])
    return (time.perf_counter() - t0) * 1000


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="city")
    ap.add_argument("--pyramid", choices=("on", "off"), default="on")
    ap.add_argument("--dates", type=int, default=12, help="month starts besides now")
    ap.add_argument("--items", action="store_true", help="also time deep OGC items pages")
    ap.add_argument("--layers", default="main",
                    help="main (the issue's four), all, none, or names separated by commas")
    args = ap.parse_args()
    pg, url = database(args.size)
    results: dict = {"size": args.size, "pyramid": args.pyramid, "cpus": os.cpu_count()}
    try:
        t = time.perf_counter()
        results["pyramid_build_s"] = set_pyramids(url, args.pyramid == "on")
        results["pyramid_setup_s"] = round(time.perf_counter() - t, 1)
        with psycopg.connect(url) as conn:
            _, token = create_token(conn, "gongan", [("persons", "read")], "bench timeslider")
            conn.commit()
        sources = wiring.tile_sources()
        names = {"main": MAIN, "all": tuple(sources), "none": ()}.get(args.layers)
        names = tuple(args.layers.split(",")) if names is None else names
        port = free_port()
        env = {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(ROOT / ".data" / "app-timeslider"),
               "GISPLATFORM_TILE_CACHE_MEMORY_MB": "0", "GISPLATFORM_TILE_CACHE_DISK_MB": "0"}
        cli = str(Path(sys.executable).with_name("gisplatform"))
        proc = serve([cli, "serve", "--port", str(port)], env, f"http://127.0.0.1:{port}/health")
        base = f"http://127.0.0.1:{port}"
        timings: dict[str, dict[str, list[float]]] = {}
        try:
            with httpx.Client(base_url=base, timeout=120,
                              headers={"Authorization": f"Bearer {token}"}) as client:
                client.get("/tiles/buildings/10/0/0.mvt")  # pools, prepared statements
                for name in names:
                    for z in range(8, 17):
                        tile = TMS.tile(*CORE, z)
                        band = "z8-13" if z < 14 else "z14-16"
                        took = []
                        for when in dates(args.dates):
                            params = {"datetime": when} if when else {}
                            t0 = time.perf_counter()
                            r = client.get(f"/tiles/{name}/{z}/{tile.x}/{tile.y}.mvt", params=params)
                            ms = (time.perf_counter() - t0) * 1000
                            assert r.status_code in (200, 204), (name, z, when, r.status_code, r.text)
                            took.append(ms)
                            if ms > 300:
                                print(f"  slow: {name} z{z} {when or 'now'}: {ms:.0f} ms", flush=True)
                            timings.setdefault(name, {}).setdefault(band, []).append(ms)
                            timings[name].setdefault("all", []).append(ms)
                        print(f"{name} z{z}: median {statistics.median(took):.0f} ms,"
                              f" max {max(took):.0f} ms", flush=True)
                if args.items:
                    results["items"] = items_pages(client, url)
        finally:
            proc.terminate()
            proc.wait(10)
        results["tiles"] = {
            name: {band: {"n": len(v), "p50_ms": round(statistics.median(v), 1),
                          "p95_ms": round(percentile(v, 0.95), 1), "max_ms": round(max(v), 1)}
                   for band, v in bands.items()}
            for name, bands in timings.items()}
        print(json.dumps(results, indent=1))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
