"""The demo city: deterministic, valid everywhere, alive through time."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from conftest import DEMO_UNTIL, LIFECYCLE_MISMATCHES, fresh_database

from gisplatform.security import read_pseudonym_key
from gisplatform.temporal import TemporalStore, parse_instant
from layers import LAYERS
from layers.demo import DemoRefused, load_demo
from layers.demo_common import SIZES, Ctx


def _digest(url: str) -> str:
    """The city's content. A keyed fid (persons) differs per database by design (each has
    its own pseudonym key): those rows are compared by the attribute it is made from."""
    h = hashlib.sha256()
    with psycopg.connect(url) as c:
        for layer in LAYERS.values():
            t = f'city."{layer.spec.version_table}"'
            cols = ", ".join(f'"{a}"' for a in layer.spec.attribute_names)
            fid = f'"{layer.fid.attribute}"' if layer.fid_needs_key else "fid"
            for row in c.execute(f"select {fid}, valid::text, st_asewkb(geom), {cols} from {t}"
                                 " order by 1, lower(valid)"):
                h.update(repr(row).encode())
    return h.hexdigest()


def test_same_seed_same_city(pg):
    # two fresh databases: the shared demo one may have been written to by other tests
    a, b = fresh_database(pg, "demo_a"), fresh_database(pg, "demo_b")
    for url in (a, b):
        with psycopg.connect(url) as c:
            load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
    assert _digest(a) == _digest(b)
    with psycopg.connect(b) as c:
        with pytest.raises(DemoRefused):
            load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
        load_demo(c, "small", 43, parse_instant(DEMO_UNTIL), replace=True)
    assert _digest(a) != _digest(b)


def test_every_layer_has_data_and_history(demo_url):
    with psycopg.connect(demo_url) as c:
        for layer in LAYERS.values():
            t = f'city."{layer.spec.version_table}"'
            n, closed = c.execute(f"select count(*), count(*) filter (where not upper_inf(valid))"
                                  f" from {t}").fetchone()
            assert n > 0, layer.name
            if layer.name not in ("admin-areas", "grid-cells"):
                assert closed > 0, f"{layer.name} has no history"
        # nothing starts before 2018 or after the cut-off
        for layer in LAYERS.values():
            t = f'city."{layer.spec.version_table}"'
            lo, hi = c.execute(f"select min(lower(valid)), max(lower(valid)) from {t}").fetchone()
            assert lo >= parse_instant("2018-01-01T00:00:00+08:00")
            assert hi <= parse_instant(DEMO_UNTIL)


def test_demo_rows_pass_the_layer_validators(demo_url):
    """Valid IDs and codes everywhere: every current row re-checked by its layer's rules."""
    with psycopg.connect(demo_url) as c:
        key = read_pseudonym_key(c)
        for layer in LAYERS.values():
            rows = TemporalStore(layer.spec).snapshot(c, at=DEMO_UNTIL)
            assert rows, layer.name
            for r in rows[:400]:
                props = {a: r[a] for a in layer.spec.attribute_names}
                warnings = layer.validate(props)
                assert layer.fid_of(props, key) == r["fid"]
                if layer.name == "legal-persons" and not r["check_ok"]:
                    assert warnings  # pilot-era codes are flagged, not rejected
    

def test_the_city_changes_through_time(demo_url):
    with psycopg.connect(demo_url) as c:
        b = TemporalStore(LAYERS["buildings"].spec)
        then, now = b.snapshot(c, at="2018-01-02T00:00:00+08:00"), b.snapshot(c, at=DEMO_UNTIL)
        built = {r["fid"] for r in now} - {r["fid"] for r in then}
        demolished = {r["fid"] for r in then} - {r["fid"] for r in now}
        assert built and demolished
        changes = {x["change"] for x in b.changes(c, "2018-01-02T00:00:00+08:00", DEMO_UNTIL)}
        assert {"created", "retired", "modified"} <= changes
        # people live in units that exist when they live there
        orphans = c.execute("""
            select count(*) from city.persons_version p
            where upper_inf(p.recorded) and not exists (
              select 1 from city.housing_units_version u
              where u.fid = p.unit_code and upper_inf(u.recorded) and u.valid @> lower(p.valid))
        """).fetchone()[0]
        assert orphans == 0


def test_population_aggregates_add_up(demo_url):
    with psycopg.connect(demo_url) as c:
        for at in ("2019-06-01T00:00:00+08:00", DEMO_UNTIL):
            persons = len(TemporalStore(LAYERS["persons"].spec).snapshot(c, at=at))
            by_area = c.execute("select sum(total), sum(registered) + sum(floating)"
                                " from city.population_by_area(%s)", (parse_instant(at),)).fetchone()
            by_grid = c.execute("select sum(total) from city.population_by_grid(%s)",
                                (parse_instant(at),)).fetchone()[0]
            assert by_area[0] == by_area[1] == persons
            # grid cells share edges: a point on one is counted in both, never lost
            assert by_grid >= persons


def test_cases_follow_the_lifecycle(demo_url):
    """Every demo case's timeline is a path of the workflow's state machine (the demo takes
    its steps through it), and its current version is where that path ends."""
    from datetime import datetime, timedelta

    from gisplatform.cases.workflow import Step, apply

    action = {"registered": Step("register"), "dispatched": Step("dispatch", "d"),
              "handled": Step("handle"), "reworked": Step("verify", result="rework"),
              "verified": Step("verify", result="pass"), "closed": Step("close")}
    with psycopg.connect(demo_url) as c:
        bad = c.execute("""
            select count(*) from (
              select case_number, array_agg(step order by at, id) s from city.case_steps
              group by case_number) x
            where s[1] <> 'reported'""").fetchone()[0]
        assert bad == 0
        rows = c.execute("""
            select s.steps, v.status, v.rework_count from (
              select case_number, array_agg(step order by at, id) steps from city.case_steps
              group by case_number order by case_number limit 300) s
            join city.cases_version v on v.fid = s.case_number
             and upper_inf(v.recorded) and upper_inf(v.valid)""").fetchall()
        assert len(rows) == 300
        kinds = set()
        for steps, status, reworks in rows:
            state = {"status": "reported", "kind": "event", "big_class": "01",
                     "deadline": None, "rework_count": 0}
            for s in steps[1:]:  # a step the state does not allow raises Conflict
                state = apply(state, action[s], datetime.now(),
                              datetime.now() + timedelta(hours=1)).properties
            assert (state["status"], state["rework_count"]) == (status, reworks)
            kinds.update(steps)
        assert {"reported", "registered", "dispatched", "handled", "verified",
                "closed"} <= kinds
        # the times the evaluation reads from the versions are the timeline's
        assert c.execute(LIFECYCLE_MISMATCHES).fetchall() == []
        overdue, total = c.execute("select count(*) filter (where overdue), count(*)"
                                   " from city.case_status").fetchone()
        assert 0 < overdue < total
        cone = c.execute("select st_geometrytype(geom), st_area(geom::geography) from city.camera_cones"
                         " limit 1").fetchone()
        assert cone[0] == "ST_Polygon" and cone[1] > 100


def test_sizes_are_what_the_issue_asks():
    city = SIZES["city"]
    assert (city.persons, city.buildings, city.units, city.legal_persons, city.cameras,
            city.cases) == (1_800_000, 250_000, 700_000, 120_000, 8_000, 400_000)
    assert Ctx(SIZES["small"], 1, parse_instant(DEMO_UNTIL)).rng.random() == Ctx(
        SIZES["small"], 1, parse_instant(DEMO_UNTIL)).rng.random()


def test_migration_0014_keys_the_persons_fids_in_place(pg):
    """A database from before 0014 (unkeyed fids, in the versions and the change log) gets
    keyed fids everywhere, history kept row for row; the downgrade gives the old ids back."""
    from alembic import command

    from gisplatform.db import migrate

    url = fresh_database(pg, "rekey")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
    cfg = migrate.alembic_config(url)

    def state():
        with psycopg.connect(url) as c:
            versions = c.execute("select vid, fid, id_number, valid::text, recorded::text"
                                 " from city.persons_version order by vid").fetchall()
            log = set(c.execute("select distinct fid from city.change_log"
                                " where layer = 'persons'").fetchall())
            key = c.execute("select to_regclass('city.pseudonym_key')").fetchone()[0] is not None
        return versions, {r[0] for r in log}, key

    command.downgrade(cfg, "0013")
    old, old_log, has_key = state()
    assert not has_key
    assert all(f == "p" + hashlib.sha256(rid.encode()).hexdigest()[:20] for _, f, rid, *_ in old)
    assert old_log <= {f for _, f, *_ in old}
    command.upgrade(cfg, "head")
    new, new_log, has_key = state()
    with psycopg.connect(url) as c:
        key = read_pseudonym_key(c)
    persons = LAYERS["persons"]
    assert has_key and len(new) == len(old) > 100
    for (vid, f, rid, valid, rec), (vid0, f0, rid0, valid0, rec0) in zip(new, old):
        assert (vid, rid, valid, rec) == (vid0, rid0, valid0, rec0)  # the same history
        assert f == persons.fid_of({"id_number": rid}, key) != f0
    assert new_log <= {f for _, f, *_ in new} and not new_log & old_log
