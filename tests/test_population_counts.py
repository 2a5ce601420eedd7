"""The population counts (tiles/population.py, migration 0017): city.population_by_grid and
city.population_by_area answer exactly what their person-by-area join answered, at many
instants (month starts, mid-month, the instants person versions start and end and a
microsecond either side, now, before the first version, the future), with and without a
bbox, unbuilt, and after writes of every kind to persons, grid cells and admin areas."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
import shapely
from conftest import DEMO_UNTIL, fresh_database
from shapely import affinity

from gisplatform import wiring
from gisplatform.temporal import Feature, TemporalStore, contains_sql, parse_instant
from layers import LAYERS
from layers.fushun import URBAN_BBOX
from tiles.population import build, built

# The functions as migration 0008 wrote them: the reference.
REFERENCE = {
    "population_by_grid": ("grid_cells_version", "grid_code", ""),
    "population_by_area": ("admin_areas_version", "code", "and a.level in ('district', 'county')"),
}


def _create_reference(conn) -> None:
    for fn, (table, key, level) in REFERENCE.items():
        conn.execute(f"""
            create function pg_temp.ref_{fn}(at timestamptz, bbox geometry)
            returns table (code text, name text, geom geometry, total bigint,
                           registered bigint, floating bigint)
            language sql stable as $$
              select a.{key}, a.name, a.geom, count(p.vid),
                     count(p.vid) filter (where p.household_type = 'registered'),
                     count(p.vid) filter (where p.household_type = 'floating')
              from city.{table} a
              left join city.persons_version p
                on p.geom && a.geom and st_intersects(a.geom, p.geom)
               and {contains_sql("p.valid", "at")} and upper_inf(p.recorded)
              where {contains_sql("a.valid", "at")} and upper_inf(a.recorded) {level}
                and (bbox is null or a.geom && bbox)
              group by a.{key}, a.name, a.geom
            $$""")


CORE = "st_makeenvelope({}, {}, {}, {}, 4490)".format(*URBAN_BBOX)


def assert_same(conn, at) -> int:
    """Both functions against the reference at `at` (None: now), whole city and the
    urban core; the persons counted."""
    counted = 0
    for fn in REFERENCE:
        for bbox in ("null", CORE):
            got, want = (conn.execute(
                f"select code, name, total, registered, floating from {f}"
                f"(coalesce(%s::timestamptz, now()), {bbox}::geometry) order by code",
                (at,)).fetchall() for f in (f"city.{fn}", f"pg_temp.ref_{fn}"))
            assert got == want, (fn, bbox, at)
            counted += sum(r[2] for r in got)
    return counted


def instants(conn) -> list:
    """Month starts, mid-month, the edges of person versions (±1 µs), now, far past/future."""
    edges = [r[0] for r in conn.execute("""
        (select lower(valid) from city.persons_version where upper_inf(recorded)
         order by vid desc limit 3)
        union all
        (select upper(valid) from city.persons_version where not upper_inf(valid)
         and upper_inf(recorded) order by vid desc limit 3)""")]
    out = [None] + [parse_instant(t) for t in (
        "1990-01-01T00:00:00+08:00", "2035-01-01T00:00:00+08:00", "2019-06-01T00:00:00+08:00",
        "2021-03-17T09:30:00+08:00", "2024-12-31T23:59:59.999999+08:00")]
    for t in edges:
        out += [t, t - timedelta(microseconds=1), t + timedelta(microseconds=1)]
    return out


def count_rows(conn) -> dict:
    return {r[:3]: r[3:] for r in conn.execute(
        "select area_table, area_vid, bucket, total, registered, floating"
        " from city.population_counts where (total, registered, floating) <> (0, 0, 0)")}


@pytest.fixture(scope="module")
def url(pg):
    """The small demo, its counts built as an app's start builds them."""
    from layers.demo import load_demo

    url = fresh_database(pg, "population_counts")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
        c.commit()
    lines: list[str] = []
    wiring.build_derived(url, lines.append)
    assert any(line.startswith("population counts built") for line in lines), lines
    return url


def test_the_counts_answer_as_the_join(url):
    with psycopg.connect(url) as conn:
        assert built(conn)
        _create_reference(conn)
        counted = sum(assert_same(conn, at) for at in instants(conn))
    assert counted > 0


def test_unbuilt_they_join(url):
    with psycopg.connect(url) as conn:
        _create_reference(conn)
        conn.execute("delete from city.population_counts_state")
        assert not built(conn)
        for at in (None, parse_instant("2021-03-17T09:30:00+08:00")):
            assert_same(conn, at)
        conn.rollback()


def test_writes_of_every_kind_keep_them_exact(url):
    """Person writes through the store (new, moved into another cell, retired, corrected,
    purged), SQL the store never does (valid changed in place, a DELETE), a grid cell
    moved and a district retired: at the instants of the writes and around them the
    functions still equal the join, and the counts equal ones built anew."""
    persons = TemporalStore(LAYERS["persons"].spec)
    cells = TemporalStore(LAYERS["grid-cells"].spec)
    areas = TemporalStore(LAYERS["admin-areas"].spec)
    x0, y0 = (URBAN_BBOX[0] + URBAN_BBOX[2]) / 2, (URBAN_BBOX[1] + URBAN_BBOX[3]) / 2
    names = [a.name for a in LAYERS["persons"].spec.attributes]
    with psycopg.connect(url) as conn:
        fids = [r[0] for r in conn.execute(
            "select fid from city.persons where valid_from < '2019-01-01' order by fid limit 4")]
        props = dict(zip(names, conn.execute(
            "select " + ", ".join(f'"{n}"' for n in names) + " from city.persons where fid = %s",
            (fids[0],)).fetchone(), strict=True))
        here = shapely.Point(x0, y0)
        persons.insert(conn, [Feature("pc-new", here, props,
                                      valid_from="2020-05-13T08:00:00+08:00")])
        persons.patch(conn, fids[0], geometry=affinity.translate(here, 0.02, 0.01),
                      valid_from="2023-07-19T10:00:00+08:00")
        persons.retire(conn, [fids[1]], at="2022-11-02T00:00:00+08:00")
        vid, = conn.execute("select vid from city.persons where fid = %s", (fids[2],)).fetchone()
        persons.correct(conn, vid, valid=("2019-01-20T00:00:00+08:00", None))
        persons.purge(conn, fids[3], reason="test", actor="test")
        conn.commit()
        conn.execute("update city.persons_version set valid = tstzrange(lower(valid),"
                     " '2025-01-09T00:00:00+08:00') where fid = 'pc-new'")
        conn.execute("delete from city.persons_version where vid = (select max(vid)"
                     " from city.persons_version where upper_inf(recorded)"
                     " and fid <> 'pc-new')")
        cell, geom = conn.execute("select grid_code, st_astext(geom) from city.grid_cells"
                                  " where st_intersects(geom, st_point(%s, %s, 4490))",
                                  (x0, y0)).fetchone()
        cells.patch(conn, cell, geometry=affinity.scale(shapely.from_wkt(geom), 1.5, 1.5),
                    valid_from="2021-02-01T00:00:00+08:00")
        district, = conn.execute("select code from city.admin_areas where level = 'district'"
                                 " order by code limit 1").fetchone()
        areas.retire(conn, [district], at="2024-04-10T00:00:00+08:00")
        conn.commit()
        _create_reference(conn)
        for at in ("2020-05-13T08:00:00+08:00", "2020-06-01T00:00:00+08:00",
                   "2021-02-01T00:00:00+08:00", "2021-02-15T00:00:00+08:00",
                   "2022-11-01T23:59:59+08:00", "2022-11-02T00:00:00+08:00",
                   "2023-07-19T10:00:00+08:00", "2024-04-10T00:00:00+08:00",
                   "2025-01-09T00:00:00+08:00", None):
            assert assert_same(conn, parse_instant(at) if at else None) > 0
        kept = count_rows(conn)
        build(conn)
        assert count_rows(conn) == kept


def test_truncate_counts_nobody(url):
    with psycopg.connect(url) as conn:
        conn.execute("truncate city.persons_version")
        assert conn.execute("select count(*) from city.population_counts").fetchone()[0] == 0
        assert conn.execute("select sum(total) from city.population_by_grid(now(), null)"
                            ).fetchone()[0] == 0
        conn.rollback()
