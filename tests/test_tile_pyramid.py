"""The tile pyramid (tiles/pyramid.py) answers exactly what the version table answers:
every clustered tile, at many instants (month starts, the instants versions start and end,
a microsecond either side, now, before the first version, the future), before and after
writes of every kind, and after TRUNCATE."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import mapbox_vector_tile
import morecantile
import psycopg
import pytest
import shapely
from conftest import DEMO_UNTIL, fresh_database, serving
from shapely import affinity

from gisplatform import wiring
from gisplatform.temporal import Feature, TemporalStore, parse_instant
from layers import LAYERS
from layers.fushun import URBAN_BBOX
from tiles.pyramid import build, built, ensure, zooms
from tiles.sources import tile_params, tile_sql

TMS = morecantile.tms.get("WebMercatorQuad")
SOURCES = wiring.tile_sources()
# a point layer clustered up to z15, a point layer with little history, a polygon layer
CHECKED = ("persons", "cases", "buildings")


@pytest.fixture(scope="module")
def url(pg):
    from layers.demo import load_demo

    url = fresh_database(pg, "pyramid")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
        names = ensure(c, SOURCES.values())
        c.commit()
    assert set(CHECKED) <= set(names), names
    return url


def features(conn, name: str, z: int, x: int, y: int, at, pyramid: bool,
             src=None) -> list[tuple]:
    """(count, x, y) of the tile's clusters, in tile units, sorted (`src`: the source, when
    it is not a built-in layer's)."""
    src = src or SOURCES[name]
    row = conn.execute(tile_sql(src, z, False, pyramid),
                       {**tile_params(z, x, y, at, None), "layer": name}).fetchone()
    if not row or not row[0]:
        return []
    out = []
    for f in mapbox_vector_tile.decode(bytes(row[0]))[name]["features"]:
        assert f["properties"]["cluster"] is True
        px, py = f["geometry"]["coordinates"]
        out.append((f["properties"]["count"], px, py))
    return sorted(out, key=lambda t: (t[1], t[2]))


def assert_same(conn, name, z, x, y, at):
    plain = features(conn, name, z, x, y, at, pyramid=False)
    fast = features(conn, name, z, x, y, at, pyramid=True)
    where = f"{name} {z}/{x}/{y} at {at}"
    assert len(fast) == len(plain), where
    for (n1, x1, y1), (n2, x2, y2) in zip(plain, fast, strict=True):
        # counts exactly; the mean point from sums may round to the next tile unit
        assert n1 == n2 and abs(x1 - x2) <= 1 and abs(y1 - y2) <= 1, (where, plain, fast)
    return sum(n for n, _, _ in plain)


def tiles_over_the_core(z: int) -> list[tuple[int, int, int]]:
    """The tile at the middle of the urban core and its eight neighbours."""
    w, s, e, n = URBAN_BBOX
    t = TMS.tile((w + e) / 2, (s + n) / 2, z)
    return [(z, t.x + dx, t.y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]


def instants(conn, table: str) -> list:
    """Month starts, mid-month, the edges of versions (±1 µs), none (now), far past/future."""
    edges = [r[0] for r in conn.execute(f"""
        (select lower(valid) from city.{table} where upper_inf(recorded) order by vid limit 3)
        union all
        (select upper(valid) from city.{table} where not upper_inf(valid)
         and upper_inf(recorded) order by vid desc limit 3)""")]
    out = [None, parse_instant("1990-01-01T00:00:00+08:00"),
           parse_instant("2035-01-01T00:00:00+08:00"),
           parse_instant("2019-06-01T00:00:00+08:00"), parse_instant("2021-03-17T09:30:00+08:00"),
           parse_instant("2024-12-31T23:59:59.999999+08:00"),
           # a year's first instant and the next (yearly rows: migration 0018)
           parse_instant("2023-01-01T00:00:00+08:00"),
           parse_instant("2023-01-01T00:00:00.000001+08:00")]
    for t in edges:
        out += [t, t - timedelta(microseconds=1), t + timedelta(microseconds=1)]
    return out


def check_layer(conn, name: str, zs=(8, 10, 12)) -> int:
    zmin, zmax = zooms(SOURCES[name])
    counted = 0
    for at in instants(conn, SOURCES[name].version_table):
        for z in (z for z in zs if zmin <= z <= zmax):
            for z_, x, y in tiles_over_the_core(z):
                counted += assert_same(conn, name, z_, x, y, at)
    return counted


@pytest.mark.parametrize("name", CHECKED)
def test_the_pyramid_answers_as_the_versions(url, name):
    with psycopg.connect(url) as conn:
        assert built(conn)[name] == zooms(SOURCES[name])
        counted = check_layer(conn, name, zs=(8, 10, 12, zooms(SOURCES[name])[1]))
    assert counted > 0  # the tiles checked hold clusters


def test_the_whole_city_at_z9_sums_to_the_layer(url):
    """As test_tiles' cluster check: nothing is lost or counted twice across tiles."""
    at = parse_instant("2022-02-15T12:00:00+08:00")
    w, s, e, n = wiring.city_bbox()
    with psycopg.connect(url) as conn:
        total = sum(n for t in TMS.tiles(w, s, e, n, [9])
                    for n, _, _ in features(conn, "cases", t.z, t.x, t.y, at, pyramid=True))
        expected, = conn.execute("select count(*) from city.cases_version where upper_inf(recorded)"
                                 " and lower(valid) <= %s and (upper_inf(valid) or upper(valid) > %s)",
                                 (at, at)).fetchone()
    assert total == expected > 0


def pyramid_rows(conn, name) -> dict:
    """The layer's monthly and yearly rows that count something."""
    return {r[:8]: r[8] for r in conn.execute(
        "select 'month', z, tx, ty, bucket, i, j, n, round(sx) from city.tile_pyramid"
        " where layer = %s and n <> 0 union all"
        " select 'year', z, tx, ty, year, i, j, n, round(sx) from city.tile_pyramid_years"
        " where layer = %s and n <> 0", (name, name))}


def test_writes_of_every_kind_keep_it_exact(url):
    """Store writes (new, moved, retired, corrected, purged), then SQL the store never does
    (an UPDATE of valid in place, a DELETE), each committed: the tiles still agree, and the
    pyramid equals one built anew."""
    store = TemporalStore(LAYERS["buildings"].spec)
    x0, y0 = (URBAN_BBOX[0] + URBAN_BBOX[2]) / 2, (URBAN_BBOX[1] + URBAN_BBOX[3]) / 2
    with psycopg.connect(url) as conn:
        fids = [r[0] for r in conn.execute(
            "select fid from city.buildings order by fid limit 4")]
        props = {a.name: v for a, v in zip(LAYERS["buildings"].spec.attributes, conn.execute(
            "select " + ", ".join(f'"{a.name}"' for a in LAYERS["buildings"].spec.attributes)
            + " from city.buildings where fid = %s", (fids[0],)).fetchone(), strict=True)}
        square = shapely.box(x0, y0, x0 + 0.0005, y0 + 0.0004)
        store.insert(conn, [Feature("pyramid-new", square, props,
                                    valid_from="2020-05-13T08:00:00+08:00")])
        store.patch(conn, fids[0], geometry=affinity.translate(square, 0.01, 0.01),
                    valid_from="2023-07-19T10:00:00+08:00")
        store.retire(conn, [fids[1]], at="2022-11-02T00:00:00+08:00")
        vid, = conn.execute("select vid from city.buildings where fid = %s", (fids[2],)).fetchone()
        store.correct(conn, vid, valid=("2019-01-20T00:00:00+08:00", None))
        store.purge(conn, fids[3], reason="test", actor="test")
        conn.commit()
        conn.execute("update city.buildings_version set valid = tstzrange(lower(valid),"
                     " '2025-01-09T00:00:00+08:00') where fid = 'pyramid-new'")
        conn.execute("delete from city.buildings_version where vid = (select max(vid)"
                     " from city.buildings_version where upper_inf(recorded)"
                     " and fid <> 'pyramid-new')")
        conn.commit()
        for at in ("2020-05-13T08:00:00+08:00", "2020-06-01T00:00:00+08:00",
                   "2022-11-01T23:59:59+08:00", "2022-11-02T00:00:00+08:00",
                   "2023-07-19T10:00:00+08:00", "2025-01-09T00:00:00+08:00", None):
            when = parse_instant(at) if at else None
            for z in (9, 11, 12):
                for z_, x, y in tiles_over_the_core(z):
                    assert_same(conn, "buildings", z_, x, y, when)
        kept = pyramid_rows(conn, "buildings")
        build(conn, SOURCES["buildings"])
        assert pyramid_rows(conn, "buildings") == kept


def test_truncate_empties_it(url):
    with psycopg.connect(url) as conn:
        assert pyramid_rows(conn, "cameras")
        conn.execute("truncate city.cameras_version")
        assert pyramid_rows(conn, "cameras") == {}
        for z_, x, y in tiles_over_the_core(10):
            assert features(conn, "cameras", z_, x, y, None, pyramid=True) == []
        conn.rollback()


def test_the_cli_builds_what_is_missing(url, tmp_path):
    cli = str(Path(sys.executable).with_name("gisplatform"))
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(tmp_path)}

    def run(*args):
        return subprocess.run([cli, "tiles", "pyramid", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    r = run("--layer", "cases")
    assert r.returncode == 0 and "every pyramid is built" in r.stderr, r.stderr
    r = run("--layer", "cases", "--rebuild")
    assert r.returncode == 0 and "cases: built in" in r.stderr, r.stderr
    r = run("--layer", "nope")
    assert r.returncode == 2 and "no tile layer nope" in r.stderr, r.stderr


def test_the_server_serves_clusters_from_it(url, tmp_path):
    """Through HTTP (the service picks the pyramid, unprepared): the same clusters as the
    version table gives, more than five times in a row (past a prepared statement's
    switch to a generic plan)."""
    import httpx

    with serving(url, tmp_path) as base, psycopg.connect(url) as conn:
        for at in ("2019-03-01T00:00:00+08:00", "2021-08-09T12:00:00+08:00") * 4:
            for z_, x, y in tiles_over_the_core(10)[:3]:
                r = httpx.get(f"{base}/tiles/cases/{z_}/{x}/{y}.mvt", params={"datetime": at},
                              timeout=30)
                assert r.status_code in (200, 204)
                got = sorted(((f["properties"]["count"], *f["geometry"]["coordinates"])
                              for f in (mapbox_vector_tile.decode(r.content)["cases"]["features"]
                                        if r.status_code == 200 else [])),
                             key=lambda t: (t[1], t[2]))
                want = features(conn, "cases", z_, x, y, parse_instant(at), pyramid=False)
                assert [n for n, _, _ in got] == [n for n, _, _ in want]
        # and it is the pyramid that answers: one more in a cell of a year before T's and
        # one more in a cell of a month of T's year before T's show in the served tile
        z_, x, y = tiles_over_the_core(10)[4]
        at = "2022-07-01T00:00:00+08:00"
        before = features(conn, "cases", z_, x, y, parse_instant(at), pyramid=False)
        # (with its point at the cell's mean: a cluster whose mean left the tile is dropped)
        for table, bound in (("tile_pyramid_years", "year < 2022"),
                             ("tile_pyramid", "bucket between 2022 * 12 and 2022 * 12 + 5")):
            assert conn.execute(
                f"update city.{table} set sx = sx + sx / n, sy = sy + sy / n, n = n + 1"
                f" where ctid = (select ctid from city.{table} where layer = 'cases'"
                f" and z = %s and tx = %s and ty = %s and {bound} and n > 0 limit 1)",
                (z_, x, y)).rowcount == 1, table
        conn.commit()
        r = httpx.get(f"{base}/tiles/cases/{z_}/{x}/{y}.mvt", params={"datetime": at}, timeout=30)
        served = sum(f["properties"]["count"]
                     for f in mapbox_vector_tile.decode(r.content)["cases"]["features"])
        build(conn, SOURCES["cases"])
        conn.commit()
    assert served == sum(n for n, _, _ in before) + 2


def test_a_starting_server_builds_what_is_missing(pg, tmp_path):
    """`gisplatform serve` builds the missing pyramids and statistics rollups as it starts
    (wiring.build_derived), so no first request pays for them."""
    from layers.demo import load_demo

    url = fresh_database(pg, "pyramid_serve")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
        c.commit()
        assert built(c) == {}
    with serving(url, tmp_path), psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                set(built(conn)) < {"persons", "cases", "buildings"}
                or conn.execute("select count(*) from city.stats_rollup_state").fetchone()[0] < 8):
            time.sleep(0.5)
        assert {n: z for n, z in built(conn).items() if n in CHECKED} == {
            n: zooms(SOURCES[n]) for n in CHECKED}
        # the built-in counted layers' and the base map's (published, with a category)
        assert {r[0] for r in conn.execute("select layer from city.stats_rollup_state")} == {
            "persons", "legal-persons", "buildings", "cameras",
            "place-names", "pois", "roads", "water"}
