"""The bitemporal store on real PostGIS: invariants, bad input, concurrency."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from shapely.geometry import Point, Polygon

from gisplatform.temporal import (
    ConflictError,
    Feature,
    InvalidFeatureError,
    NaiveTimestampError,
    OverlapError,
    RetiredFeatureError,
    TemporalError,
    UnknownFeatureError,
    parse_instant,
    parse_interval,
    write_transaction,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2018, 1, 1, tzinfo=CST)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def f(fid, name="x", floors=None, lon=123.9, lat=41.85, **kw):
    return Feature(fid, Point(lon, lat), {"name": name, "floors": floors}, **kw)


def count_rows(conn, store) -> int:
    return conn.execute(f'select count(*) from city."{store.spec.version_table}"').fetchone()[0]


def periods(rows):
    return [(r["valid_from"], r["valid_to"], r["name"]) for r in rows]


def test_insert_snapshot_and_view(conn, things):
    vids = things.insert(conn, [f("a", "A"), f("b", "B")], valid_from=day(0))
    assert set(vids) == {"a", "b"}
    snap = things.snapshot(conn)
    assert [(r["fid"], r["name"]) for r in snap] == [("a", "A"), ("b", "B")]
    assert snap[0]["geometry"] == {"type": "Point", "coordinates": [123.9, 41.85]}
    assert things.snapshot(conn, at=day(-1)) == []
    view = conn.execute(f'select fid, name, st_srid(geom) from city."{things.spec.table}" order by fid').fetchall()
    assert view == [("a", "A", 4490), ("b", "B", 4490)]


def test_update_closes_old_and_opens_new(conn, things):
    things.insert(conn, [f("a", "v1", floors=3)], valid_from=day(0))
    things.update(conn, [f("a", "v2", floors=5)], valid_from=day(10))
    assert periods(things.history(conn, "a")) == [(day(0), day(10), "v1"), (day(10), None, "v2")]
    assert things.snapshot(conn, at=day(5))[0]["floors"] == 3
    assert things.snapshot(conn, at=day(10))[0]["floors"] == 5
    # the original row was superseded, not rewritten: three rows ever recorded
    assert len(things.history(conn, "a", superseded=True)) == 3


def test_patch_changes_only_given_fields(conn, things):
    things.insert(conn, [f("a", "v1", floors=3)], valid_from=day(0))
    things.patch(conn, "a", properties={"floors": 4}, valid_from=day(2))
    cur = things.current(conn, "a")
    assert (cur["name"], cur["floors"], cur["valid_from"]) == ("v1", 4, day(2))


def test_retire_then_reinsert(conn, things):
    things.insert(conn, [f("a")], valid_from=day(0))
    things.retire(conn, ["a"], at=day(3))
    assert [r["fid"] for r in things.snapshot(conn, at=day(2))] == ["a"]
    assert things.snapshot(conn, at=day(3)) == []
    with pytest.raises(RetiredFeatureError):
        things.update(conn, [f("a")], valid_from=day(4))
    with pytest.raises(RetiredFeatureError):
        things.retire(conn, ["a"], at=day(5))
    # an object can come back (a re-registered company): a new version after the gap
    things.insert(conn, [f("a", "again")], valid_from=day(8))
    assert periods(things.history(conn, "a")) == [(day(0), day(3), "x"), (day(8), None, "again")]


def test_correct_supersedes_and_keeps_what_was_known(conn, things):
    things.insert(conn, [f("a", "typo")], valid_from=day(0))
    vid = things.current(conn, "a")["vid"]
    before = conn.execute("select clock_timestamp()").fetchone()[0]
    new_vid = things.correct(conn, vid, properties={"name": "fixed"}, valid=(day(-5), None))
    assert new_vid != vid
    assert periods(things.history(conn, "a")) == [(day(-5), None, "fixed")]
    assert periods(things.history(conn, "a", known_at=before)) == [(day(0), None, "typo")]
    assert things.snapshot(conn, at=day(-2), known_at=before) == []
    assert [r["name"] for r in things.snapshot(conn, at=day(-2))] == ["fixed"]
    with pytest.raises(TemporalError, match="superseded"):
        things.correct(conn, vid, properties={"name": "again"})
    with pytest.raises(UnknownFeatureError):
        things.correct(conn, 10**12, properties={"name": "x"})


def test_correct_into_overlap_is_refused(conn, things):
    things.insert(conn, [f("a", "v1")], valid_from=day(0))
    things.update(conn, [f("a", "v2")], valid_from=day(10))
    first = things.history(conn, "a")[0]["vid"]
    n = count_rows(conn, things)
    with pytest.raises(OverlapError):
        things.correct(conn, first, valid=(day(0), day(12)))
    assert count_rows(conn, things) == n
    assert periods(things.history(conn, "a")) == [(day(0), day(10), "v1"), (day(10), None, "v2")]


def test_purge_is_explicit_and_audited(conn, things):
    things.insert(conn, [f("a"), f("b")], valid_from=day(0))
    things.update(conn, [f("a", "v2")], valid_from=day(1))
    with pytest.raises(TemporalError, match="reason"):
        things.purge(conn, "a", reason=" ", actor="tester")
    assert things.purge(conn, "a", reason="court order 12", actor="tester") == 3
    assert things.history(conn, "a", superseded=True) == []
    log = conn.execute("select layer, fid, cardinality(vids), reason from city.purge_log"
                       " where layer = %s", (things.spec.name,)).fetchall()
    assert log == [(things.spec.name, "a", 3, "court order 12")]
    with pytest.raises(UnknownFeatureError):
        things.purge(conn, "a", reason="again", actor="tester")


def test_changes_on_both_axes(conn, things):
    things.insert(conn, [f("old"), f("gone"), f("flash")], valid_from=day(0))
    mark = conn.execute("select clock_timestamp()").fetchone()[0]
    things.insert(conn, [f("new")], valid_from=day(15))
    things.update(conn, [f("old", "v2")], valid_from=day(12))
    things.retire(conn, ["gone"], at=day(18))
    things.correct(conn, things.current(conn, "flash")["vid"], valid=(day(11), day(13)))
    got = {c["fid"]: c["change"] for c in things.changes(conn, day(10), day(20))}
    assert got == {"new": "created", "old": "modified", "gone": "retired", "flash": "transient"}
    events = things.changes(conn, mark, datetime.now(timezone.utc) + timedelta(seconds=1),
                            axis="recorded")
    kinds = [(e["fid"], e["event"]) for e in events]
    # update: old version superseded, closed copy and new version recorded
    assert kinds.count(("old", "recorded")) == 2 and kinds.count(("old", "superseded")) == 1
    assert ("new", "recorded") in kinds and ("flash", "superseded") in kinds
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    with pytest.raises(TemporalError):
        things.changes(conn, day(20), day(10))


# ---------------------------------------------------------------- bad input

def test_bad_input_is_refused_and_nothing_is_written(conn, things):
    things.insert(conn, [f("a", "v1")], valid_from=day(10))
    n = count_rows(conn, things)
    before = things.history(conn, "a", superseded=True)
    cases = [
        (OverlapError, lambda: things.insert(conn, [f("b"), f("a")], valid_from=day(20))),
        (UnknownFeatureError, lambda: things.update(conn, [f("a"), f("nope")], valid_from=day(20))),
        (UnknownFeatureError, lambda: things.retire(conn, ["nope"], at=day(20))),
        (TemporalError, lambda: things.update(conn, [f("a")], valid_from=day(5))),
        (TemporalError, lambda: things.update(conn, [f("a")], valid_from=day(10))),
        (NaiveTimestampError, lambda: things.update(conn, [f("a")], valid_from="2024-01-01T00:00:00")),
        (NaiveTimestampError, lambda: things.insert(conn, [f("c")], valid_from=datetime(2024, 1, 1))),
        (InvalidFeatureError, lambda: things.insert(conn, [f("c"), f("c")])),
        (InvalidFeatureError, lambda: things.insert(conn, [Feature("c", Point(), {"name": "x"})])),
        (InvalidFeatureError, lambda: things.insert(conn, [Feature(
            "c", Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]), {"name": "x"})])),
        (InvalidFeatureError, lambda: things.insert(conn, [f("c", lon=4600000, lat=500000)])),
        (InvalidFeatureError, lambda: things.insert(conn, [Feature("c", Point(1, 1), {"name": None})])),
        (InvalidFeatureError, lambda: things.insert(conn, [Feature("c", Point(1, 1), {"name": "x", "colour": 1})])),
        (InvalidFeatureError, lambda: things.insert(conn, [Feature("", Point(1, 1), {"name": "x"})])),
        (InvalidFeatureError, lambda: things.insert(conn, [f("c", valid_from=day(3), valid_to=day(1))])),
        (TemporalError, lambda: things.insert(conn, [Feature("c", Point(1, 1), {"name": "x", "floors": "many"})])),
    ]
    for exc, op in cases:
        with pytest.raises(exc):
            op()
        assert count_rows(conn, things) == n, exc
    assert things.history(conn, "a", superseded=True) == before


def test_failure_inside_callers_transaction_rolls_back_only_the_operation(db_url, things):
    with psycopg.connect(db_url) as c:
        with write_transaction(c):
            things.insert(c, [f("a")], valid_from=day(0))
            with pytest.raises(UnknownFeatureError):
                things.update(c, [f("zzz")], valid_from=day(1))
            things.update(c, [f("a", "v2")], valid_from=day(1))
        assert periods(things.history(c, "a")) == [(day(0), day(1), "x"), (day(1), None, "v2")]


def test_update_in_same_transaction_as_insert(db_url, things):
    # The version opened by this transaction is closed by it too: no empty
    # transaction-time range, and the history is what was asked for.
    with psycopg.connect(db_url) as c:
        with write_transaction(c):
            things.insert(c, [f("a")], valid_from=day(0))
            things.update(c, [f("a", "v2")], valid_from=day(1))
        assert periods(things.history(c, "a", superseded=True)) == [
            (day(0), day(1), "x"), (day(1), None, "v2")]


def test_instant_parsing():
    assert parse_instant("2024-05-01T08:00:00+08:00") == datetime(2024, 5, 1, 8, tzinfo=CST)
    assert parse_instant("2024-05-01T00:00:00Z").utcoffset() == timedelta(0)
    for bad in ("2024-05-01T08:00:00", "2024-05-01"):
        with pytest.raises(NaiveTimestampError):
            parse_instant(bad)
    with pytest.raises(TemporalError):
        parse_instant("yesterday")
    assert parse_interval("../2024-01-01T00:00:00Z")[0] is None
    assert parse_interval("2024-01-01T00:00:00Z/..")[1] is None
    with pytest.raises(TemporalError):
        parse_interval("2024-02-01T00:00:00Z/2024-01-01T00:00:00Z")


# -------------------------------------------------------------- concurrency

def _wait_until_blocked(conn, pid, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        row = conn.execute("select wait_event_type from pg_stat_activity where pid = %s",
                           (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("second writer never blocked on the first")


@pytest.mark.parametrize("second", ["update", "retire"])
def test_two_writers_on_one_fid_one_wins(db_url, conn, things, second):
    things.insert(conn, [f("a", "v1")], valid_from=day(0))
    with psycopg.connect(db_url) as a, psycopg.connect(db_url) as b:
        result = {}

        def writer_b():
            try:
                if second == "update":
                    things.update(b, [f("a", "from-b")], valid_from=day(6))
                else:
                    things.retire(b, ["a"], at=day(6))
                result["b"] = "ok"
            except Exception as e:  # noqa: BLE001 - the test inspects what was raised
                result["b"] = e

        with write_transaction(a):
            things.update(a, [f("a", "from-a")], valid_from=day(5))
            t = threading.Thread(target=writer_b)
            t.start()
            _wait_until_blocked(conn, b.info.backend_pid)
        t.join(10)
    assert isinstance(result["b"], ConflictError), result
    # A's write stands alone: contiguous, no overlap, nothing from B
    assert periods(things.history(conn, "a")) == [(day(0), day(5), "v1"), (day(5), None, "from-a")]


def test_two_inserts_of_one_fid_one_wins(db_url, conn, things):
    with psycopg.connect(db_url) as a, psycopg.connect(db_url) as b:
        result = {}

        def writer_b():
            try:
                things.insert(b, [f("n", "from-b")], valid_from=day(0))
                result["b"] = "ok"
            except Exception as e:  # noqa: BLE001
                result["b"] = e

        with write_transaction(a):
            things.insert(a, [f("n", "from-a")], valid_from=day(0))
            t = threading.Thread(target=writer_b)
            t.start()
            _wait_until_blocked(conn, b.info.backend_pid)
        t.join(10)
    assert isinstance(result["b"], (OverlapError, ConflictError)), result
    assert periods(things.history(conn, "n")) == [(day(0), None, "from-a")]
