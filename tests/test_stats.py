"""Command-centre statistics (/api/stats, the stats-timeseries process): evaluation figures
against a hand-computed case set, population series against direct counts, CSV = JSON,
aggregates only, bad parameters refused."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from functools import partial

import httpx
import psycopg
import pytest
from conftest import fresh_database
from shapely.geometry import MultiPolygon, Point, box

from gisplatform import wiring
from gisplatform.security import ANONYMOUS, AccessDenied, AuthError, Principal
from gisplatform.stats import StatsError, check_access, compute
from gisplatform.stats import make_query as make_city_query
from gisplatform.stats import rollup as stats_module
from gisplatform.stats.query import month_starts
from gisplatform.temporal import Feature, TemporalStore, contains_sql
from layers import LAYERS

make_query = partial(make_city_query, city=wiring.stats_city())  # the city the app counts

CST = timezone(timedelta(hours=8))
G1, G2 = "210402001001001", "210403002001001"  # unit grids in Xinfu and Dongzhou
A, B = "甲城管局", "乙城管局"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CST)


# number, department, grid, deadline, handled_at, closed_at, rework_count (UTC+8 times)
CASES = [
    ("c1", A, G1, "2024-03-10 12:00", "2024-03-10 10:00", "2024-03-11 09:00", 0),  # on time
    ("c2", A, G1, "2024-03-15 12:00", "2024-03-16 12:00", "2024-03-17 09:00", 1),  # late, reworked
    ("c3", B, G2, "2024-03-20 12:00", "2024-03-19 12:00", "2024-03-21 09:00", 1),  # on time, reworked
    ("c4", B, G2, "2024-03-31 23:00", None, None, 0),                              # never handled
    ("c5", A, G2, "2024-03-05 12:00", "2024-03-05 12:00", "2024-03-06 09:00", 0),  # at the deadline
    ("c6", A, G1, "2024-04-01 00:00", "2024-04-02 12:00", "2024-04-03 09:00", 0),  # April's first instant
    ("c7", B, G1, "2024-04-10 12:00", "2024-04-09 12:00", None, 0),                # handled, not closed
    ("c8", B, G2, "2024-04-20 12:00", "2024-04-25 12:00", "2024-04-26 09:00", 2),  # late, reworked
    ("c9", A, G1, "2024-05-02 12:00", "2024-05-01 12:00", "2024-05-02 09:00", 0),  # May: outside
]


def _case(number, dept, grid, deadline, handled, closed, rework):
    dl = at(deadline)
    status = "closed" if closed else "handled" if handled else "dispatched"
    return {"case_number": number, "kind": "event", "big_class": "01", "small_class": None,
            "description": "test", "source": "patrol", "status": status, "grid_code": grid,
            "division_code": grid[:6], "department": dept, "reported_at": dl - timedelta(hours=6),
            "dispatched_at": dl - timedelta(hours=4), "deadline": dl,
            "handled_at": at(handled) if handled else None,
            "closed_at": at(closed) if closed else None, "rework_count": rework}


@pytest.fixture(scope="module")
def cases_db(pg):
    """A fresh database with the cases above, written through the layer's store; c2 first
    as dispatched (unhandled), then its closing update. Returns (url, known_at between)."""
    url = fresh_database(pg, "stats_eval")
    store = TemporalStore(LAYERS["cases"].spec)
    areas = TemporalStore(LAYERS["admin-areas"].spec)
    with psycopg.connect(url) as c:
        areas.insert(c, [Feature(code, MultiPolygon([box(123.8 + k / 10, 41.8, 123.9 + k / 10, 41.9)]),
                                 {"code": code, "name": name, "level": "district",
                                  "parent_code": "210400"})
                         for k, (code, name) in enumerate((("210402", "新抚区"), ("210403", "东洲区")))],
                     valid_from="2018-01-01T00:00:00+08:00")
        feats = []
        for row in CASES:
            p = _case(*row)
            if row[0] == "c2":
                p = dict(p, status="dispatched", handled_at=None, closed_at=None, rework_count=0)
            feats.append(Feature(row[0], Point(123.9, 41.86), p, valid_from=p["reported_at"]))
        store.insert(c, feats)
        c.commit()
        (between,) = c.execute("select clock_timestamp()").fetchone()
        c.commit()
        p = _case(*CASES[1])
        store.update(c, [Feature("c2", Point(123.9, 41.86), p)], valid_from=p["closed_at"])
        c.commit()
    return url, between


def _series(result, key, value):
    (s,) = [s for s in result["series"] if s.get(key) == value]
    return {p["month"]: {k: v for k, v in p.items() if k != "month"} for p in s["points"]}


def _evaluate(url, by, **kw):
    with psycopg.connect(url) as c:
        return compute(c, make_query("evaluation", "2024-03", "2024-04", by=by, **kw))


def test_evaluation_per_department_matches_hand_computed(cases_db):
    url, _ = cases_db
    r = _evaluate(url, "department")
    assert [s["department"] for s in r["series"]] == sorted([A, B])  # c9 (May) adds none
    # March, A: c1, c2, c5 due; all closed; on time c1, c5 (handled_at = deadline is on time);
    #   overdue c2 (handled a day late); reworked c2.
    #   closing 3/3 = 1.0, on-time 2/3 = 0.6667, rework 1/3 = 0.3333
    # March, B: c3, c4 due; closed c3; on time c3; overdue c4 (never handled); reworked c3.
    #   closing 1/2 = 0.5, on-time 1/2 = 0.5, rework 1/1 = 1.0
    # April, A: c6 (deadline 2024-04-01T00:00+08:00 is April's) closed, handled late.
    #   closing 1/1 = 1.0, on-time 0/1 = 0.0, rework 0/1 = 0.0
    # April, B: c7 handled in time but not closed, c8 late and reworked twice, closed.
    #   closing 1/2 = 0.5, on-time 0/2 = 0.0, rework 1/1 = 1.0
    assert _series(r, "department", A) == {
        "2024-03": {"due": 3, "closed": 3, "on_time": 2, "overdue": 1, "reworked": 1,
                    "closing_rate": 1.0, "on_time_rate": 0.6667, "rework_rate": 0.3333},
        "2024-04": {"due": 1, "closed": 1, "on_time": 0, "overdue": 1, "reworked": 0,
                    "closing_rate": 1.0, "on_time_rate": 0.0, "rework_rate": 0.0}}
    assert _series(r, "department", B) == {
        "2024-03": {"due": 2, "closed": 1, "on_time": 1, "overdue": 1, "reworked": 1,
                    "closing_rate": 0.5, "on_time_rate": 0.5, "rework_rate": 1.0},
        "2024-04": {"due": 2, "closed": 1, "on_time": 0, "overdue": 1, "reworked": 1,
                    "closing_rate": 0.5, "on_time_rate": 0.0, "rework_rate": 1.0}}


def test_evaluation_per_grid_and_area_match_hand_computed(cases_db):
    url, _ = cases_db
    r = _evaluate(url, "grid")
    # G1 March: c1, c2 → due 2, closed 2, on time 1 (c1), overdue 1 (c2), reworked 1 (c2)
    #   closing 2/2 = 1.0, on-time 1/2 = 0.5, rework 1/2 = 0.5
    # G1 April: c6, c7 → due 2, closed 1 (c6), on time 0, overdue 1 (c6), reworked 0
    #   closing 1/2 = 0.5, on-time 0/2 = 0.0, rework 0/1 = 0.0
    assert _series(r, "grid", G1) == {
        "2024-03": {"due": 2, "closed": 2, "on_time": 1, "overdue": 1, "reworked": 1,
                    "closing_rate": 1.0, "on_time_rate": 0.5, "rework_rate": 0.5},
        "2024-04": {"due": 2, "closed": 1, "on_time": 0, "overdue": 1, "reworked": 0,
                    "closing_rate": 0.5, "on_time_rate": 0.0, "rework_rate": 0.0}}
    # G2 March: c3, c4, c5 → due 3, closed 2 (c3, c5), on time 2, overdue 1 (c4), reworked 1
    #   closing 2/3 = 0.6667, on-time 2/3 = 0.6667, rework 1/2 = 0.5
    # G2 April: c8 → due 1, closed 1, on time 0, overdue 1, reworked 1
    assert _series(r, "grid", G2) == {
        "2024-03": {"due": 3, "closed": 2, "on_time": 2, "overdue": 1, "reworked": 1,
                    "closing_rate": 0.6667, "on_time_rate": 0.6667, "rework_rate": 0.5},
        "2024-04": {"due": 1, "closed": 1, "on_time": 0, "overdue": 1, "reworked": 1,
                    "closing_rate": 1.0, "on_time_rate": 0.0, "rework_rate": 1.0}}
    # the whole city, March: 5 due, 4 closed, 3 on time, 2 overdue, 2 reworked
    #   closing 4/5 = 0.8, on-time 3/5 = 0.6, rework 2/4 = 0.5
    # April: 3 due, 2 closed, 0 on time, 2 overdue, 1 reworked → 2/3, 0/3, 1/2
    city = _series(_evaluate(url, "area"), "area", "210400")
    assert city == {
        "2024-03": {"due": 5, "closed": 4, "on_time": 3, "overdue": 2, "reworked": 2,
                    "closing_rate": 0.8, "on_time_rate": 0.6, "rework_rate": 0.5},
        "2024-04": {"due": 3, "closed": 2, "on_time": 0, "overdue": 2, "reworked": 1,
                    "closing_rate": 0.6667, "on_time_rate": 0.0, "rework_rate": 0.5}}
    # area= narrows to one district's cases: Xinfu holds G1 only
    one = _evaluate(url, "department", area="210402")
    assert _series(one, "department", B)["2024-04"]["due"] == 1  # c7 only


def test_evaluation_as_known_before_a_case_was_closed(cases_db):
    """known_at before c2's closing update: c2 was dispatched and unhandled then."""
    url, between = cases_db
    r = _evaluate(url, "department", known_at=between.isoformat())
    # March, A: c1, c2, c5 due (deadlines long past); closed c1, c5; on time c1, c5;
    #   overdue c2 (unhandled past its deadline); reworked none → 2/3, 2/3, 0/2
    assert _series(r, "department", A)["2024-03"] == {
        "due": 3, "closed": 2, "on_time": 2, "overdue": 1, "reworked": 0,
        "closing_rate": 0.6667, "on_time_rate": 0.6667, "rework_rate": 0.0}



def _plain_case_state(q):
    """The cases valid at now as the statistics read them before migration 0016's indexes:
    one `valid @> now` filter over the version table (the reference)."""
    from psycopg import sql as _sql
    return (_sql.SQL("(select * from city.cases_version where "
                     + contains_sql("valid", "%(at)s::timestamptz") + " and upper_inf(recorded)) c"),
            {"at": datetime.now(CST), "known_at": None})


def test_cases_now_split_equals_the_plain_filter(cases_db, monkeypatch):
    """`cases` and `evaluation` read the cases valid now in two parts (open-ended through
    the covering indexes, closed-ended from upper(valid)); with versions at every edge —
    ending tomorrow, starting tomorrow, ended yesterday, superseded by a correction — the
    answers equal the plain `valid @> now` filter's."""
    from gisplatform.stats import topics

    url, _ = cases_db
    now = datetime.now(CST)
    edges = [  # number, valid, recorded closed?
        ("e1", f"[2024-03-01 00:00+08, {(now + timedelta(days=1)).isoformat()})", False),
        ("e2", f"[{(now + timedelta(days=1)).isoformat()},)", False),
        ("e3", f"[2024-03-01 00:00+08, {(now - timedelta(days=1)).isoformat()})", False),
        ("e4", "[2024-03-02 00:00+08,)", True),
    ]
    with psycopg.connect(url) as c:
        for number, valid, corrected in edges:
            p = _case(number, B, G1, "2024-03-12 12:00", "2024-03-12 11:00", "2024-03-13 09:00", 1)
            cols = list(p)
            c.execute(
                f"insert into city.cases_version (fid, valid, recorded, geom, {', '.join(cols)})"
                f" values (%s, %s::tstzrange, case when %s then tstzrange(now() - interval '1 day',"
                f" now()) else tstzrange(now(), null) end, st_setsrid(st_point(123.9, 41.86), 4490),"
                f" {', '.join(['%s'] * len(cols))})", [number, valid, corrected, *p.values()])
        runs = [("cases", None), ("evaluation", "area"), ("evaluation", "department"),
                ("evaluation", "grid")]
        split = [compute(c, make_query(t, "2024-03", "2024-04", by=by)) for t, by in runs]
        monkeypatch.setattr(topics, "_case_state", _plain_case_state)
        plain = [compute(c, make_query(t, "2024-03", "2024-04", by=by)) for t, by in runs]
        c.rollback()
    assert split == plain
    # e1 (valid until tomorrow) is counted, e2 / e3 / e4 are not: one more reported case
    # in March 2024 for Xinfu than the nine of the fixture give
    (xinfu,) = [s for s in split[0]["series"] if s["area"] == "210402"]
    assert xinfu["points"][0]["reported"] == 1 + sum(
        1 for row in CASES if row[2][:6] == "210402"
        and _case(*row)["reported_at"].strftime("%Y-%m") == "2024-03")
# ------------------------------------------------------------ population on the demo

MONTHS = ("2018-01", "2020-06", "2023-02", "2026-10")


def test_population_equals_direct_counts(demo_url):
    with psycopg.connect(demo_url) as c:
        r = compute(c, make_query("population", "2018-01", "2026-10"))
        for month in MONTHS:
            (t,) = month_starts(tuple(map(int, month.split("-"))), tuple(map(int, month.split("-"))))
            want = {(d, h): n for d, h, n in c.execute(
                "select division_code, household_type, count(*) from city.persons_version"
                f" where upper_inf(recorded) and {contains_sql('valid', '%(t)s')}"
                " group by 1, 2", {"t": t}).fetchall()}
            assert want, month
            for area in ("210402", "210403", "210404", "210411"):
                got = _series(r, "area", area)[month]
                assert got == {"registered": want.get((area, "registered"), 0),
                               "floating": want.get((area, "floating"), 0),
                               "total": want.get((area, "registered"), 0)
                               + want.get((area, "floating"), 0)}, (month, area)
            city = _series(r, "area", "210400")[month]
            assert city["total"] == sum(want.values()) > 0
    # the series moves: people arrive and leave over the years
    assert len({p["total"] for p in r["series"][0]["points"]}) > 1


def test_valid_counts_as_known_earlier(demo_url):
    """known_at = the demo's load time: same figures as now (nothing was corrected)."""
    with psycopg.connect(demo_url) as c:
        (loaded,) = c.execute("select max(lower(recorded)) from city.buildings_version").fetchone()
        now = compute(c, make_query("buildings", "2019-01", "2019-03"))
        then = compute(c, make_query("buildings", "2019-01", "2019-03",
                                     known_at=(loaded + timedelta(seconds=1)).isoformat()))
        before = compute(c, make_query("buildings", "2019-01", "2019-03",
                                       known_at=(loaded - timedelta(days=1)).isoformat()))
    assert now["series"] == then["series"]
    assert all(p["total"] == 0 for s in before["series"] for p in s["points"])


# ------------------------------------------------------------ over HTTP

def get(base, topic, **params):
    return httpx.get(f"{base}/api/stats/{topic}", params=params, timeout=60)


PERSONAL = ("id_number", "birth_date", "phone", "legal_representative", "stream_url")


def test_every_topic_over_http_aggregates_only(live, demo_url):
    with psycopg.connect(demo_url) as c:
        secrets = [v for row in c.execute(
            "select id_number, name from city.persons_version limit 50") for v in row]
        secrets += [r[0] for r in c.execute("select legal_representative from city.legal_persons"
                                            " where legal_representative is not null limit 20")]
    listing = httpx.get(f"{live}/api/stats").json()
    ids = [t["id"] for t in listing["topics"]]
    assert ids[:6] == ["population", "legal-persons", "buildings", "cameras", "cases",
                       "evaluation"]
    # and the base map's published layers, each counted by its declared category
    assert sorted(ids[6:]) == ["place-names", "pois", "roads", "water"]
    for topic in [t["id"] for t in listing["topics"]]:
        r = get(live, topic, **{"from": "2024-01", "to": "2024-06"})  # anonymous
        assert r.status_code == 200, (topic, r.text)
        body = r.json()
        assert [s["area"] for s in body["series"]][:1] == ["210400"]
        assert all(len(s["points"]) == 6 for s in body["series"])
        text = r.text
        assert not any(k in text for k in PERSONAL), topic
        assert not any(v in text for v in secrets), topic
        keys = {k for s in body["series"] for p in s["points"] for k in p}
        assert not keys & {"name", *PERSONAL}, keys
    pois = get(live, "pois", **{"from": "2026-01", "to": "2026-01"}).json()
    with psycopg.connect(demo_url) as c:  # a point-in-polygon count, straight
        want = dict(c.execute("""
            select a.code, count(*) from city.pois_version v join city.admin_areas a
              on a.level in ('district', 'county') and st_intersects(a.geom, v.geom)
            where upper_inf(v.recorded) and v.valid @> '2026-01-01 00:00+08'::timestamptz
            group by 1""").fetchall())
    got = {s["area"]: s["points"][0]["total"] for s in pois["series"]}
    assert {a: n for a, n in got.items() if n and a != "210400"} == want
    assert got["210400"] == sum(want.values()) > 0
    cams = get(live, "cameras", **{"from": "2026-01", "to": "2026-01", "area": "210400"}).json()
    p = cams["series"][0]["points"][0]
    assert p["status.ON"] + p["status.OFF"] == p["total"] > 0
    assert p["online_rate"] == round(p["status.ON"] / p["total"], 4)


def test_csv_equals_json(live):
    for topic, params in (("population", {}), ("evaluation", {"by": "department"}),
                          ("legal-persons", {"area": "210402"})):
        params = {"from": "2023-11", "to": "2024-02", **params}
        js = get(live, topic, **params).json()
        for r in (get(live, topic, f="csv", **params),
                  httpx.get(f"{live}/api/stats/{topic}", params=params,
                            headers={"Accept": "text/csv"})):
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(r.text)))
            key = "department" if "by" in params else "area"
            want = [(s[key], p) for s in js["series"] for p in s["points"]]
            assert len(rows) == len(want) > 0
            for row, (k, p) in zip(rows, want, strict=True):
                assert row[key] == k and row["month"] == p["month"]
                for f, v in p.items():
                    if f != "month":
                        assert row[f] == ("" if v is None else str(v)), (topic, f)


def test_process_answers_the_same(live):
    params = {"topic": "population", "from": "2024-01", "to": "2024-03", "area": "210402"}
    r = httpx.post(f"{live}/ogc/processes/stats-timeseries/execution",
                   json={"inputs": params}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == get(live, "population", **{k: v for k, v in params.items()
                                                  if k != "topic"}).json()
    bad = httpx.post(f"{live}/ogc/processes/stats-timeseries/execution",
                     json={"inputs": {"topic": "population", "from": "2024-13"}}, timeout=60)
    assert bad.status_code == 400 and "YYYY-MM" in bad.text


@pytest.mark.parametrize("topic, params, says", [
    ("population", {"from": "2024-13"}, "YYYY-MM"),
    ("population", {"from": "2024-1"}, "YYYY-MM"),
    ("population", {"from": "2024-05", "to": "2024-01"}, "before"),
    ("population", {"from": "1900-01", "to": "2200-01"}, "at most"),
    ("population", {"area": "21040"}, "6-digit"),
    ("population", {"area": "999999"}, "unknown area"),
    ("population", {"by": "grid"}, "evaluation topic only"),
    ("evaluation", {"by": "street"}, "by:"),
    ("population", {"known_at": "yesterday"}, "known_at"),
    ("population", {"known_at": "2024-01-01T00:00:00"}, "zone"),
    ("population", {"f": "xml"}, "json or csv"),
    ("population", {"colour": "red"}, "unknown parameter"),
])
def test_bad_parameters_are_400(live, topic, params, says):
    r = get(live, topic, **params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "InvalidParameterValue" and says in body["description"], body


def test_unknown_topic_is_404(live):
    r = get(live, "weather")
    assert r.status_code == 404 and "population" in r.json()["description"]


def test_access_rule():
    """Aggregates of unconditional and conditional layers are public; a not-shared layer's
    need a read grant; a layer the platform does not know is refused."""
    check_access("cameras", {"cameras": "conditional"}, ANONYMOUS)
    check_access("population", {"persons": "conditional"}, ANONYMOUS)
    with pytest.raises(AuthError):  # 401: no token
        check_access("cameras", {"cameras": "not_shared"}, ANONYMOUS)
    granted = Principal(token_id=1, grants={"cameras": frozenset({"read"})})
    check_access("cameras", {"cameras": "not_shared"}, granted)
    with pytest.raises(AccessDenied):  # 403: fail closed
        check_access("cameras", {}, granted)
    with pytest.raises(StatsError):
        make_query("population", "2018-01", "2017-12")


def test_small_person_counts_are_suppressed(pg):
    url = fresh_database(pg, "stats_small")
    store = TemporalStore(LAYERS["persons"].spec)
    people = [("210402199001011234", "registered"), ("210402198502022345", "floating")]
    with psycopg.connect(url) as c:
        store.insert(c, [Feature(f"p{i}", Point(123.9, 41.86), {
            "id_number": rid, "name": "张三", "sex": "M", "birth_date": "1990-01-01",
            "household_type": kind, "division_code": "210402"}) for i, (rid, kind) in
            enumerate(people)], valid_from="2019-06-15T00:00:00+08:00")
        c.commit()
        r = compute(c, make_query("population", "2019-06", "2019-07", area="210400"))
    june, july = r["series"][0]["points"]
    assert june == {"month": "2019-06", "registered": 0, "floating": 0, "total": 0}
    assert july == {"month": "2019-07", "registered": None, "floating": None, "total": None,
                    "suppressed": True}
    assert "张" not in json.dumps(r, ensure_ascii=False)


# ------------------------------------------------------------ the viewer's page

def test_stats_page_in_chromium(live):
    """/viewer/stats.html draws a line per figure with a dot per month, from its own
    origin only, without console errors; the evaluation by department; zh → en."""
    import subprocess
    from pathlib import Path

    from js import CHROMIUM, _node, require

    require(browser=True)
    repo = Path(__file__).resolve().parent.parent
    built = subprocess.run(["node", "gisplatform/viewer/build.mjs"], cwd=repo, check=False,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    out = _node("stats_check.mjs", {
        "url": f"{live}/viewer/stats.html#topic=population&series=210402&from=2024-01&to=2024-12",
        "chromium": str(CHROMIUM), "timeout_ms": 60000}, 120)
    assert "error" not in out, out.get("error")
    assert out["console_errors"] == [] and out["bad_responses"] == []
    assert out["request_failures"] == [] and out["foreign_requests"] == []
    first = out["first"]
    assert first["months"] == 12 and first["series"] == "210402" and first["options"] == 8
    assert {ln["figure"] for ln in first["lines"]} == {"registered", "floating", "total"}
    assert all(ln["points"] == 12 == ln["vertices"] for ln in first["lines"]), first["lines"]
    assert out["csv"] == "/api/stats/population?from=2024-01&to=2024-12&f=csv"
    ev = out["evaluation"]
    assert ev["months"] == 12 and ev["options"] == 7  # the demo's seven departments
    assert {ln["figure"] for ln in ev["lines"]} == {"closing_rate", "on_time_rate", "rework_rate"}
    api = get(live, "evaluation", by="department", **{"from": "2024-01", "to": "2024-12"}).json()
    shown = api["series"][0]  # the page shows the first department
    assert ev["series"] == shown["department"]
    for ln in ev["lines"]:  # a dot per month with a rate (null: nothing was due)
        assert ln["points"] == sum(p[ln["figure"]] is not None for p in shown["points"]) > 0
    assert "topic=evaluation" in ev["hash"] and "by=department" in ev["hash"]
    assert out["lang"] == {"before": "统计", "after": "Statistics", "topic": "Evaluation"}


# ------------------------------------------------------------ the exact answer cache

def _person(i: int, kind: str) -> Feature:
    return Feature(f"p{kind[0]}{i}", Point(123.9, 41.86), {
        "id_number": f"2104021990010{i:04d}{kind[0]}", "name": "李四", "sex": "F",
        "birth_date": "1990-01-01", "household_type": kind, "division_code": "210402"})


def _district_person(i: int, kind: str, district: str) -> Feature:
    f = _person(i, kind)
    return Feature(f"{f.fid}-{district}", f.geometry, {**f.properties, "division_code": district,
                                                   "id_number": f"{district}{i:08d}{kind[0]}"})


ROLLUP_QUERY = make_query("population", "2019-11", "2020-04")


def _direct_population(c) -> dict:
    """{district: [persons valid at each month start]}: plain count(*) per month."""
    return {d: [c.execute("select count(*) from city.persons_version where upper_inf(recorded)"
                          " and (division_code = %(d)s or %(d)s = '210400')"
                          f" and {contains_sql('valid', '%(t)s')}",
                          {"t": t, "d": d}).fetchone()[0] for t in ROLLUP_QUERY.months]
            for d in ("210402", "210403", "210400")}


def _served_population(c) -> dict:
    counts = stats_module._valid_counts(c, ROLLUP_QUERY, stats_module.COUNTED["persons"])
    out = {d: counts.get(d, {}).get("total", [0] * len(ROLLUP_QUERY.months))
           for d in ("210402", "210403")}
    out["210400"] = counts.get("210400", {}).get("total", [0] * len(ROLLUP_QUERY.months))
    return out


def _rollup_snapshot(c) -> str | None:
    row = c.execute("select snapshot::text from city.stats_rollup_state"
                    " where layer = 'persons'").fetchone()
    return row and row[0]


def test_rollup_follows_every_write(pg):
    """Counts from the rollup plus the change log equal direct count(*)s for a few months
    and districts after inserts, new versions, retirements, corrections, a write in flight
    while the rollup was counted, a purge and a TRUNCATE."""
    url = fresh_database(pg, "stats_rollup")
    store = TemporalStore(LAYERS["persons"].spec)
    with psycopg.connect(url, autocommit=True) as c, psycopg.connect(url) as writer:
        store.insert(writer, [_district_person(i, k, d) for i in range(4)
                              for k in ("registered", "floating") for d in ("210402", "210403")],
                     valid_from="2019-12-15T00:00:00+08:00")
        writer.commit()
        assert _rollup_snapshot(c) is None
        assert _served_population(c) == _direct_population(c)  # built lazily
        built = _rollup_snapshot(c)
        assert built is not None
        assert _direct_population(c)["210400"] == [0, 0, 16, 16, 16, 16]
        # committed writes after the build: answered as R + delta, R kept
        store.insert(writer, [_district_person(9, "registered", "210403")],
                     valid_from="2020-02-01T00:00:00+08:00")  # exactly a month start
        store.retire(writer, ["pr0-210402"], at="2020-02-20T00:00:00+08:00")
        store.update(writer, [Feature("pf1-210403", Point(123.9, 41.86), {
            **_district_person(1, "floating", "210403").properties, "name": "王五"})],
            valid_from="2020-03-10T00:00:00+08:00")  # a new version
        store.correct(writer, writer.execute(
            "select vid from city.persons_version where fid = 'pf2-210402'"
            " and upper_inf(recorded)").fetchone()[0],
            valid=("2020-03-15T00:00:00+08:00", None))  # recorded closed, corrected copy
        writer.commit()
        assert _served_population(c) == _direct_population(c)
        assert _rollup_snapshot(c) == built
        assert _direct_population(c)["210402"] == [0, 0, 7, 7, 6, 7]
        # a write in flight while R is counted, committed after: the answer includes it
        with writer.transaction():
            store.insert(writer, [_district_person(i, "registered", "210402") for i in (7, 8)],
                         valid_from="2019-10-01T00:00:00+08:00")
            stats_module.rebuild_all(c, ["persons"])
            rebuilt = _rollup_snapshot(c)
            assert rebuilt != built
            assert _served_population(c)["210402"] == [0, 0, 7, 7, 6, 7]
        assert _served_population(c) == _direct_population(c)
        assert _direct_population(c)["210402"] == [2, 2, 9, 9, 8, 9]
        assert _rollup_snapshot(c) == rebuilt
        # a purge deletes rows the rollup counted: rebuilt, then exact
        store.purge(writer, "pr3-210403", reason="test erasure", actor="test")
        writer.commit()
        assert _served_population(c) == _direct_population(c)
        assert _direct_population(c)["210403"] == [0, 0, 7, 8, 8, 8]
        assert _rollup_snapshot(c) != rebuilt
        c.execute("truncate city.persons_version")  # bypasses the change log
        assert _served_population(c) == _direct_population(c)
        assert _direct_population(c)["210400"] == [0] * 6


def test_concurrent_rebuilds_and_a_locked_builder(pg, monkeypatch):
    """Rebuilds racing each other leave one exact rollup; while one session holds the
    rebuild lock, others answer exactly from the old rollup plus the delta."""
    import threading

    url = fresh_database(pg, "stats_rollup_race")
    store = TemporalStore(LAYERS["persons"].spec)
    with psycopg.connect(url) as writer:
        store.insert(writer, [_district_person(i, k, "210402") for i in range(20)
                              for k in ("registered", "floating")],
                     valid_from="2019-12-15T00:00:00+08:00")
        writer.commit()
    errors, answers = [], []

    def race():
        try:
            with psycopg.connect(url, autocommit=True) as c:
                stats_module.rebuild_all(c, ["persons"])
                answers.append(_served_population(c))
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)
    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with psycopg.connect(url, autocommit=True) as c, psycopg.connect(url) as holder, \
            psycopg.connect(url) as writer:
        direct = _direct_population(c)
        assert answers == [direct] * 4
        assert c.execute("select count(*) from city.stats_rollup_state").fetchone()[0] == 1
        before = _rollup_snapshot(c)
        monkeypatch.setattr(stats_module.Rollup, "REBUILD_FIXED", 0)  # any change: rebuild
        store.retire(writer, ["pf0-210402", "pr1-210402"], at="2020-01-20T00:00:00+08:00")
        writer.commit()
        holder.execute("select pg_advisory_xact_lock(hashtext('gisplatform.stats_rollup'),"
                       " hashtext('persons'))")
        assert _served_population(c) == _direct_population(c) != direct
        assert _rollup_snapshot(c) == before  # the lock holder would rebuild
        holder.rollback()
        assert _served_population(c) == _direct_population(c)
        assert _rollup_snapshot(c) != before  # now this session rebuilt it


def test_stats_cli_rebuild_and_status(pg, tmp_path):
    """`gisplatform stats rebuild` counts the rollups (then --if-needed leaves them);
    `status` reports them; an unknown layer is a usage error."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    url = fresh_database(pg, "stats_cli")
    cli = str(Path(sys.executable).with_name("gisplatform"))
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(tmp_path)}

    def run(*args):
        return subprocess.run([cli, "stats", *args], env=env, capture_output=True, text=True,
                              check=False,
                              timeout=120)
    r = run("rebuild", "-l", "persons")
    assert r.returncode == 0 and r.stdout.startswith("persons: ") and r.stdout.strip()[-1] == "s"
    r = run("rebuild", "--if-needed")
    assert r.returncode == 0, r.stderr
    assert "persons: up to date" in r.stdout and "cameras: up to date" not in r.stdout
    r = run("status")
    assert r.returncode == 0 and "persons: counted" in r.stdout and "0 changed since" in r.stdout
    r = run("rebuild", "-l", "nope")
    assert r.returncode == 2 and "unknown layer(s) nope" in r.stderr
