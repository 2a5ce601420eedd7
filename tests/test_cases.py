"""The case workflow (gisplatform/cases): the lifecycle through HTTP for each role, every
illegal transition refused with nothing written, departments, concurrent steps, deadlines
across a time-limit change and a suspension, locating a report by its address."""

from __future__ import annotations

import getpass
import threading
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
import shapely
from conftest import LIFECYCLE_MISMATCHES, fresh_database, serving

from gisplatform import wiring
from gisplatform.cases import Conflict, Step, WorkflowError, get, report, set_limit, take_step
from gisplatform.cases.workflow import ACTIONS, FROM, STATUSES
from gisplatform.security import AccessDenied, AuthError, Principal, create_token
from gisplatform.temporal import BEIJING_TIME, Feature, TemporalStore
from layers import LAYERS

BOX = shapely.box(123.90, 41.86, 123.94, 41.88)
INSIDE = [123.91, 41.87]
T0 = "2015-01-01T00:00:00+08:00"
ALL_ROLES = frozenset({"accept", "dispatch", "handle", "verify", "close", "manage"})


@pytest.fixture(scope="module")
def url(pg):
    """A small city of our own: a district, a grid cell, an address."""
    url = fresh_database(pg, "cases_workflow")
    with psycopg.connect(url, autocommit=True) as c:
        TemporalStore(LAYERS["admin-areas"].spec).insert(c, [Feature(
            "210402", shapely.MultiPolygon([BOX]),
            {"code": "210402", "name": "新抚区", "level": "district"})], T0)
        TemporalStore(LAYERS["grid-cells"].spec).insert(c, [Feature(
            "210402001001001", shapely.MultiPolygon([BOX]), {"grid_code": "210402001001001"})], T0)
        TemporalStore(LAYERS["addresses"].spec).insert(c, [Feature(
            "抚顺市新抚区榆林1路39号", shapely.Point(123.925, 41.875),
            {"address": "抚顺市新抚区榆林1路39号", "division_code": "210402",
             "street_name": "榆林1路", "house_number": "39号"})], T0)
    return url


@pytest.fixture(scope="module")
def live(url, tmp_path_factory):
    """One server over the module's database (each test makes its own cases)."""
    with serving(url, tmp_path_factory.mktemp("cases")) as base:
        yield base


def setup():
    return wiring.case_setup()


def who(department: str, *roles: str) -> Principal:
    return Principal(token_id=1, department=department,
                     grants={"cases": frozenset(roles)})


BOSS = who("chengguan", *ALL_ROLES)
WORKER = who("zhujian", "handle")


def new_case(conn, big="01") -> str:
    return report(conn, setup(), {"type": "Feature", "geometry": {
        "type": "Point", "coordinates": INSIDE}, "properties": {
        "kind": "event", "big_class": big, "source": "patrol", "description": "井盖缺失"}},
        BOSS)["id"]


def drive(conn, number: str, *steps: Step) -> dict:
    out = None
    for s in steps:
        out = take_step(conn, setup(), number, s, WORKER if s.action == "handle" else BOSS)
    return out


TO = {  # a way to each state
    "reported": (),
    "registered": (Step("register"),),
    "rejected": (Step("reject", note="重复上报"),),
    "dispatched": (Step("register"), Step("dispatch", "zhujian")),
    "suspended": (Step("register"), Step("dispatch", "zhujian"), Step("suspend", note="等待审批")),
    "handled": (Step("register"), Step("dispatch", "zhujian"), Step("handle", note="已修复")),
    "verified": (Step("register"), Step("dispatch", "zhujian"), Step("handle"),
                 Step("verify", result="pass")),
    "closed": (Step("register"), Step("dispatch", "zhujian"), Step("handle"),
               Step("verify", result="pass"), Step("close")),
}
ARGS = {"reject": Step("reject", note="x"), "dispatch": Step("dispatch", "zhujian"),
        "verify": Step("verify", result="pass"), "suspend": Step("suspend", note="x")}


def written(conn, number: str) -> tuple[int, int]:
    return (conn.execute("select count(*) from city.cases_version where fid = %s",
                         (number,)).fetchone()[0],
            conn.execute("select count(*) from city.case_steps where case_number = %s",
                         (number,)).fetchone()[0])


@pytest.mark.parametrize("state", STATUSES)
def test_every_illegal_transition_is_a_conflict_and_writes_nothing(url, state):
    assert set(TO) == set(STATUSES)
    with psycopg.connect(url, autocommit=True) as c:
        for action in ACTIONS:
            if state in FROM[action]:
                continue
            number = new_case(c)
            drive(c, number, *TO[state])
            assert get(c, setup(), number)["properties"]["status"] == state
            before = written(c, number)
            with pytest.raises(Conflict) as e:
                take_step(c, setup(), number, ARGS.get(action, Step(action)), BOSS)
            assert e.value.allowed == [a for a in ACTIONS if state in FROM[a]], action
            assert written(c, number) == before


def test_roles_and_the_handling_department(url):
    with psycopg.connect(url, autocommit=True) as c:
        number = new_case(c)
        with pytest.raises(AuthError):
            take_step(c, setup(), number, Step("register"), Principal())
        with pytest.raises(AccessDenied):  # a handler does not register
            take_step(c, setup(), number, Step("register"), WORKER)
        drive(c, number, Step("register"), Step("dispatch", "zhujian"))
        with pytest.raises(AccessDenied):  # another department's handler
            take_step(c, setup(), number, Step("handle"), who("gongan", "handle"))
        with pytest.raises(WorkflowError, match="unknown department"):
            drive(c, new_case(c), Step("register"), Step("dispatch", "nobody"))
        with pytest.raises(AuthError):
            new = {"type": "Feature", "geometry": {"type": "Point", "coordinates": INSIDE},
                   "properties": {"kind": "event", "big_class": "01", "source": "patrol"}}
            report(c, setup(), new, Principal())


def test_two_dispatches_at_once_one_wins(url):
    with psycopg.connect(url, autocommit=True) as c:
        number = new_case(c)
        drive(c, number, Step("register"))
    results = []

    def dispatch():
        with psycopg.connect(url, autocommit=True) as c:
            try:
                take_step(c, setup(), number, Step("dispatch", "zhujian"), BOSS)
                results.append("ok")
            except Conflict:
                results.append("conflict")
    threads = [threading.Thread(target=dispatch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "ok"]
    with psycopg.connect(url) as c:
        assert [s["step"] for s in get(c, setup(), number)["properties"]["steps"]] == [
            "reported", "registered", "dispatched"]


def test_deadlines_follow_the_limit_in_effect_and_stop_while_suspended(url):
    with psycopg.connect(url, autocommit=True) as c:
        before = drive(c, new_case(c, "05"), Step("register"), Step("dispatch", "zhujian"))
        p = before["properties"]
        hours = (datetime.fromisoformat(p["deadline"])
                 - datetime.fromisoformat(p["dispatched_at"])) / timedelta(hours=1)
        assert hours == pytest.approx(4)  # event 05: 4 h (migration 0022)
        set_limit(c, "event", "05", 10, datetime.now(UTC), "test")
        after = drive(c, new_case(c, "05"), Step("register"), Step("dispatch", "zhujian"))
        q = after["properties"]
        assert (datetime.fromisoformat(q["deadline"]) - datetime.fromisoformat(
            q["dispatched_at"])) / timedelta(hours=1) == pytest.approx(10)
        # the earlier case keeps its deadline
        assert get(c, setup(), before["id"])["properties"]["deadline"] == p["deadline"]
        # suspended: the clock stops
        s = take_step(c, setup(), before["id"], Step("suspend", note="等待"), BOSS)
        r = take_step(c, setup(), before["id"], Step("resume"), BOSS)
        at = {x["step"]: datetime.fromisoformat(x["at"]) for x in r["properties"]["steps"]}
        assert s["properties"]["status"] == "suspended"
        assert r["properties"]["status"] == "dispatched"
        moved = datetime.fromisoformat(r["properties"]["deadline"]) - datetime.fromisoformat(
            p["deadline"])
        assert moved == at["resumed"] - at["suspended"] > timedelta(0)


def test_working_hour_limits_and_the_clock_of_each_step(url):
    """A limit in working hours ends inside the working day, as far in working time as
    the limit; a suspension keeps the working time left; the step due next has its own
    limit (register from the report)."""
    from gisplatform.cases.clock import load_clock

    with psycopg.connect(url, autocommit=True) as c:
        now = datetime.now(UTC)
        set_limit(c, "event", "02", 3, now, "test", "handle", "working")
        set_limit(c, "event", "02", 0.5, now, "test", "register", "calendar")
        number = new_case(c, "02")
        got = get(c, setup(), number)["properties"]
        reported = datetime.fromisoformat(got["reported_at"])
        assert datetime.fromisoformat(got["step_deadline"]) == reported + timedelta(minutes=30)
        assert got["step_overdue"] is False
        p = drive(c, number, Step("register"), Step("dispatch", "zhujian"))["properties"]
        clock = load_clock(c, setup().working_hours)
        dispatched, deadline = (datetime.fromisoformat(p[k]) for k in ("dispatched_at", "deadline"))
        assert clock.between(dispatched, deadline, "working") == timedelta(hours=3)
        assert deadline - dispatched >= timedelta(hours=3)
        assert p["step_deadline"] == p["deadline"]
        local = deadline.astimezone(BEIJING_TIME)
        assert local.weekday() < 5 and (
            "08:30" < f"{local:%H:%M}" <= "12:00" or "13:30" < f"{local:%H:%M}" <= "17:30")
        take_step(c, setup(), number, Step("suspend", note="等待审批"), BOSS)
        r = take_step(c, setup(), number, Step("resume"), BOSS)["properties"]
        at = {x["step"]: datetime.fromisoformat(x["at"]) for x in r["steps"]}
        assert clock.between(at["resumed"], datetime.fromisoformat(r["deadline"]), "working") \
            == clock.between(at["suspended"], deadline, "working")
        # a later calendar change leaves the deadline set at dispatch alone
        c.execute("insert into city.work_calendar (day, working, actor) values"
                  " (%s, false, 'test')", ((deadline.astimezone(BEIJING_TIME)).date(),))
        assert get(c, setup(), number)["properties"]["deadline"] == r["deadline"]
        c.execute("delete from city.work_calendar where actor = 'test'")


def test_calendar_and_departments_over_http(url, live):
    with psycopg.connect(url, autocommit=True) as c:
        manager = create_token(c, "chengguan", [("cases", "manage")])[1]
        dispatcher = create_token(c, "chengguan", [("cases", "dispatch")])[1]
    auth = {"Authorization": f"Bearer {manager}"}
    days = {"days": [{"day": "2032-05-01", "working": False, "note": "劳动节"}]}
    assert httpx.put(f"{live}/api/cases/calendar", json=days, timeout=30).status_code == 401
    assert httpx.put(f"{live}/api/cases/calendar", json=days, timeout=30, headers={
        "Authorization": f"Bearer {dispatcher}"}).status_code == 403
    r = httpx.put(f"{live}/api/cases/calendar", json=days, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    got = httpx.get(f"{live}/api/cases/calendar", params={"year": 2032}, timeout=30).json()
    assert [(d["day"], d["working"], d["note"]) for d in got["days"]] == [
        ("2032-05-01", False, "劳动节")]
    assert got["working_hours"] == "08:30-12:00,13:30-17:30"
    for year in (19257156201228924, -1, 99999):  # schemathesis found the first a 500
        r = httpx.get(f"{live}/api/cases/calendar", params={"year": year}, timeout=30)
        assert r.status_code == 400 and "year" in r.json()["description"]
    for bad in ({"days": [{"day": "2032-13-01", "working": False}]},
                {"days": [{"day": "2032-05-02", "working": "no"}]},
                {"days": []}, {"day": "2032-05-01"}, [1]):
        r = httpx.put(f"{live}/api/cases/calendar", json=bad, headers=auth, timeout=30)
        assert r.status_code == 400, (bad, r.text)
    deps = {"departments": [{"code": "shuiwu", "name": "市水务局"}]}
    r = httpx.put(f"{live}/api/cases/departments", json=deps, headers=auth, timeout=30)
    assert r.status_code == 200 and {"code": "shuiwu", "name": "市水务局"} in r.json()["departments"]
    for bad in ({"departments": [{"code": "Shui Wu", "name": "x"}]},
                {"departments": [{"code": "shuiwu"}]}):
        r = httpx.put(f"{live}/api/cases/departments", json=bad, headers=auth, timeout=30)
        assert r.status_code == 400, (bad, r.text)
    listed = httpx.get(f"{live}/api/cases/departments", timeout=30).json()["departments"]
    assert {"code": "shuiwu", "name": "市水务局"} in listed
    # the new department takes cases at once
    with psycopg.connect(url, autocommit=True) as c:
        number = new_case(c)
        r = drive(c, number, Step("register"), Step("dispatch", "shuiwu"))
        assert r["properties"]["department"] == "市水务局"


def test_the_lifecycle_over_http_for_each_role(url, live, tmp_path):
    with psycopg.connect(url, autocommit=True) as c:
        tokens = {role: create_token(c, "chengguan", [("cases", role)])[1]
                  for role in ("accept", "dispatch", "verify", "close")}
        tokens["handle"] = create_token(c, "zhujian", [("cases", "handle")])[1]
        tokens["other"] = create_token(c, "gongan", [("cases", "handle")])[1]
    with nullcontext(live) as base:  # the module's server
        def call(method, path, role=None, **kw):
            headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
            return httpx.request(method, f"{base}{path}", headers=headers, timeout=30, **kw)

        feature = {"type": "Feature", "geometry": None, "properties": {
            "kind": "event", "big_class": "01", "source": "hotline_12345",
            "description": "路灯不亮", "address": "新抚区榆林一路三十九号楼下"}}
        assert call("POST", "/api/cases", json=feature).status_code == 401
        r = call("POST", "/api/cases", "accept", json=feature)
        assert r.status_code == 201, r.text
        case = r.json()
        number = case["id"]
        assert r.headers["Location"].endswith(f"/api/cases/{number}")
        assert case["properties"]["status"] == "reported"
        assert case["properties"]["grid_code"] == "210402001001001"
        assert case["geometry"]["coordinates"] == [123.925, 41.875]  # geocoded
        for bad in ({**feature, "properties": {**feature["properties"], "status": "closed"}},
                    {**feature, "geometry": {"type": "Point", "coordinates": [10, 10]}},
                    {**feature, "properties": {**feature["properties"], "address": "不存在路1号"}},
                    {**feature, "properties": {**feature["properties"], "big_class": "99"}},
                    [1, 2], "x"):
            r = call("POST", "/api/cases", "accept", json=bad)
            assert r.status_code == 400, (bad, r.text)

        def step(role, **body):
            return call("POST", f"/api/cases/{number}/steps", role, json=body)
        assert step("accept", action="register").status_code == 200
        r = step("accept", action="dispatch", department="zhujian")
        assert r.status_code == 403  # accept does not dispatch
        assert step("dispatch", action="dispatch", department="zhujian").status_code == 200
        inbox = call("GET", "/api/tasks", "handle").json()["cases"]
        assert number in [x["id"] for x in inbox]  # with the other tests' open cases
        assert {x["properties"]["status"] for x in inbox} == {"dispatched"}
        assert len({x["properties"]["department"] for x in inbox}) == 1
        order = [(not x["properties"]["overdue"], x["properties"]["deadline"]) for x in inbox]
        assert order == sorted(order)  # overdue first, then by deadline
        assert call("GET", "/api/tasks", "other").json()["cases"] == []
        assert step("other", action="handle").status_code == 403
        assert step("handle", action="handle", note="已更换灯泡").status_code == 200
        r = step("verify", action="verify", result="rework", note="仍不亮")
        assert r.status_code == 200 and r.json()["properties"]["status"] == "dispatched"
        assert r.json()["properties"]["rework_count"] == 1
        assert step("handle", action="handle").status_code == 200
        assert step("verify", action="verify", result="pass").status_code == 200
        assert step("close", action="register").status_code == 403  # the role, first
        r = step("accept", action="register")  # the role, but not from this state
        assert r.status_code == 409 and r.json()["allowed"] == ["close"]
        r = step("close", action="close")
        assert r.status_code == 200 and r.json()["properties"]["status"] == "closed"
        got = call("GET", f"/api/cases/{number}").json()  # anonymous: an unconditional layer
        assert [s["step"] for s in got["properties"]["steps"]] == [
            "reported", "registered", "dispatched", "handled", "reworked", "handled",
            "verified", "closed"]
        assert got["properties"]["overdue"] is False
        assert call("GET", "/api/cases/FS000").status_code == 404
        assert step("close", action="fly").status_code == 400
        # every step a version: the history collection has them all
        hist = call("GET", "/ogc/collections/cases-history/items",
                    params={"case_number": number, "limit": 50}).json()
        assert len(hist["features"]) >= 8


def test_limits_are_set_over_http_by_a_manager(url, live, tmp_path):
    with psycopg.connect(url, autocommit=True) as c:
        manager = create_token(c, "chengguan", [("cases", "manage")])[1]
        dispatcher = create_token(c, "chengguan", [("cases", "dispatch")])[1]
    with nullcontext(live) as base:  # the module's server
        put = {"limits": [{"kind": "component", "big_class": "02", "hours": 36}]}
        r = httpx.put(f"{base}/api/cases/limits", json=put,
                      headers={"Authorization": f"Bearer {dispatcher}"}, timeout=30)
        assert r.status_code == 403
        for bad in ({"limits": []}, {"limits": [{"kind": "x", "big_class": "02", "hours": 1}]},
                    {"limits": [{"kind": "event", "big_class": "02", "hours": -1}]},
                    {**put, "effective": "later"}, [1]):
            r = httpx.put(f"{base}/api/cases/limits", json=bad,
                          headers={"Authorization": f"Bearer {manager}"}, timeout=30)
            assert r.status_code == 400, (bad, r.text)
        r = httpx.put(f"{base}/api/cases/limits", json=put,
                      headers={"Authorization": f"Bearer {manager}"}, timeout=30)
        assert r.status_code == 200, r.text
        now = {(x["kind"], x["big_class"]): x["hours"]
               for x in httpx.get(f"{base}/api/cases/limits", timeout=30).json()["limits"]}
        assert now[("component", "02")] == 36 and now[("event", "01")] == 4
    with psycopg.connect(url) as c:  # the earlier limit stays on record
        assert c.execute("select array_agg(hours order by effective) from city.case_time_limits"
                         " where kind = 'component' and big_class = '02'").fetchone()[0] == [48, 36]


def test_evaluation_of_cases_driven_through_the_workflow(url):
    """/api/stats/evaluation (by department) equals the figures counted by hand for cases
    that went through the workflow: on time, reworked, late, and one not yet due."""
    import time

    from gisplatform.stats import StatsCity, compute, make_query

    handler = who("ziran", "handle")

    def run(number, *steps):
        for s in steps:
            take_step(c, setup(), number, s, handler if s.action == "handle" else BOSS)

    with psycopg.connect(url, autocommit=True) as c:
        set_limit(c, "event", "06", 1 / 3600, datetime.now(UTC), "test")  # 1 s
        full = (Step("register"), Step("dispatch", "ziran"), Step("handle"),
                Step("verify", result="pass"), Step("close"))
        on_time = new_case(c)
        run(on_time, *full)
        reworked = new_case(c)
        run(reworked, Step("register"), Step("dispatch", "ziran"), Step("handle"),
            Step("verify", result="rework"), Step("handle"), Step("verify", result="pass"),
            Step("close"))
        late = new_case(c, "06")
        run(late, Step("register"), Step("dispatch", "ziran"))
        time.sleep(1.5)
        run(late, Step("handle"), Step("verify", result="pass"), Step("close"))
        open_ = new_case(c)  # deadline hours ahead: not due yet
        run(open_, Step("register"), Step("dispatch", "ziran"))
        months = sorted(  # the deadlines' months (UTC+8): one, or two at a month's end
            datetime.fromisoformat(get(c, setup(), n)["properties"]["deadline"])
            .astimezone(BEIJING_TIME).strftime("%Y-%m") for n in (late, on_time, open_))
        name = c.execute("select name from city.departments where code = 'ziran'").fetchone()[0]
        q = make_query("evaluation", months[0], months[-1], by="department",
                       city=StatsCity("210400", "抚顺市", "2018-01"))
        points = {s["department"]: s["points"] for s in compute(c, q)["series"]}[name]
    figures = ("due", "closed", "on_time", "overdue", "reworked")
    got = {k: sum(p[k] for p in points) for k in figures}
    assert got == {"due": 3, "closed": 3, "on_time": 2, "overdue": 1, "reworked": 1}
    if len(points) == 1:
        assert points[0]["on_time_rate"] == round(2 / 3, 4)
        assert points[0]["rework_rate"] == round(1 / 3, 4)


def test_the_reporters_contact_is_personal_on_every_path(url, live, tmp_path):
    with psycopg.connect(url, autocommit=True) as c:
        accept = create_token(c, "chengguan", [("cases", "accept")])[1]
        personal_id, personal = create_token(c, "chengguan", [("cases", "read_personal")])
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": INSIDE},
               "properties": {"kind": "event", "big_class": "01", "source": "hotline_12345",
                              "description": "噪音扰民", "reporter_name": "王小明",
                              "reporter_phone": "13912345678"}}
    with nullcontext(live) as base:  # the module's server
        def call(method, path, token=None, **kw):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.request(method, f"{base}{path}", headers=headers, timeout=30, **kw)
        patrol = {**feature, "properties": {**feature["properties"], "source": "patrol"}}
        assert call("POST", "/api/cases", accept, json=patrol).status_code == 400
        r = call("POST", "/api/cases", accept, json=feature)
        assert r.status_code == 201, r.text
        number = r.json()["id"]
        answers = [r, call("GET", f"/api/cases/{number}"),
                   call("GET", f"/ogc/collections/cases/items/{number}"),
                   call("GET", "/ogc/collections/cases-history/items",
                        params={"case_number": number})]
        for a in answers:
            assert a.status_code in (200, 201) and "13912345678" not in a.text
            assert "王小明" not in a.text
        with psycopg.connect(url) as c:
            before = c.execute("select count(*) from city.audit_log where layer = 'cases'"
                               " and token_id = %s", (personal_id,)).fetchone()[0]
        clear = call("GET", f"/api/cases/{number}", personal).json()["properties"]
        assert (clear["reporter_name"], clear["reporter_phone"]) == ("王小明", "13912345678")
        with psycopg.connect(url) as c:
            assert c.execute("select count(*) from city.audit_log where layer = 'cases'"
                             " and token_id = %s", (personal_id,)).fetchone()[0] == before + 1


def test_limits_from_the_command_line(url, live, tmp_path, monkeypatch, request):
    """`gisplatform cases …`: the installed command once, then the same typer app in this
    process (twenty interpreter starts cost most of a minute)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from gisplatform.cli import app
    from gisplatform.config import get_settings

    env = {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(tmp_path)}
    r = subprocess.run([str(Path(sys.executable).with_name("gisplatform")), "cases", "limits"],
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "event\t01\thandle" in r.stdout, r.stderr
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)  # no later test sees these settings
    runner = CliRunner()

    def run(*args):
        out = runner.invoke(app, ["cases", *args])
        return SimpleNamespace(returncode=out.exit_code, stdout=out.stdout, stderr=out.stderr)
    r = run("set-limit", "component", "03", "30", "--effective", "2030-01-01")
    assert r.returncode == 0, r.stderr
    assert "component\t03\thandle\t24 h calendar" in run("limits").stdout  # not yet
    assert "component\t03\thandle\t30 h calendar" in run("limits", "--at", "2030-06-01").stdout
    r = run("set-limit", "component", "03", "2", "--step", "verify", "--unit", "working",
            "--effective", "2030-01-01")
    assert r.returncode == 0, r.stderr
    got = run("limits", "--at", "2030-06-01").stdout
    assert "component\t03\tverify\t2 h working" in got
    assert "component\t03\thandle\t30 h calendar" in got  # each step its own limit
    assert run("set-day", "2031-10-01", "--holiday", "--note", "国庆节").returncode == 0
    assert run("set-day", "2031-10-11", "--working").returncode == 0
    assert run("calendar", "--year", "2031").stdout.splitlines() == [
        f"2031-10-01\tholiday\t国庆节\tcli:{getpass.getuser()}",
        f"2031-10-11\tworking\t\tcli:{getpass.getuser()}"]
    assert run("set-department", "wenlv", "市文化旅游局").returncode == 0
    assert run("set-department", "wenlv", "市文化旅游和广播电视局").returncode == 0
    assert "wenlv\t市文化旅游和广播电视局" in run("departments").stdout
    with psycopg.connect(url) as c:  # both directories keep their history
        assert c.execute("select old->>'name', new->>'name' from city.directory_changes"
                         " where tbl = 'departments' and new->>'code' = 'wenlv' order by id"
                         ).fetchall() == [(None, "市文化旅游局"), ("市文化旅游局", "市文化旅游和广播电视局")]
        assert c.execute("select count(*) from city.directory_changes where tbl ="
                         " 'work_calendar' and new->>'day' like '2031-%'").fetchone()[0] == 2
    for bad in (("set-limit", "x", "03", "30"), ("set-limit", "event", "3", "30"),
                ("set-limit", "event", "03", "0"), ("limits", "--at", "soon"),
                ("set-limit", "event", "03", "5", "--step", "fly"),
                ("set-limit", "event", "03", "5", "--unit", "weeks"),
                ("set-day", "2031-02-30", "--holiday"), ("set-department", "Bad Code", "x"),
                ("set-department", "ok", " ")):
        r = run(*bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (bad, r.stderr)


def _jpeg(lon: float | None = None, lat: float | None = None, size=(64, 48), extra=b"") -> bytes:
    """A JPEG with the EXIF a phone writes: maker, model, serial, owner, time, position."""
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x013B] = "Huawei", "P60", "张三"  # make, model, artist
    exif.get_ifd(0x8769)[0x9003] = "2026:11:30 10:15:00"
    exif.get_ifd(0x8769)[0xA431] = "SN-1234567"  # body serial number
    if lon is not None:
        def dms(v):
            d = int(v)
            m = int((v - d) * 60)
            return (d, m, round(((v - d) * 60 - m) * 60, 4))
        exif[0x8825] = {1: "N", 2: dms(lat), 3: "E", 4: dms(lon)}
    out = io.BytesIO()
    Image.new("RGB", size, (200, 80, 40)).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue() + extra


def test_photos_are_cleaned_stored_and_served_to_readers(url, live, tmp_path):
    import io
    import zipfile

    from PIL import Image

    with psycopg.connect(url, autocommit=True) as c:
        number = new_case(c)
        accept = create_token(c, "chengguan", [("cases", "accept")])[1]
    with nullcontext(live) as base:  # the module's server
        def post(data: bytes, kind: str = "image/jpeg", token: str | None = accept, case=number):
            headers = {"Content-Type": kind}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            return httpx.post(f"{base}/api/cases/{case}/photos", content=data, headers=headers,
                              timeout=30)
        assert post(_jpeg(), token=None).status_code == 401
        near = post(_jpeg(INSIDE[0], INSIDE[1]))
        assert near.status_code == 201, near.text
        body = near.json()
        assert body["distance_m"] < 5 and "warning" not in body
        assert body["taken_at"].startswith("2026-11-30T10:15:00")
        far = post(_jpeg(123.99, 41.95))
        assert far.status_code == 201 and "warning" in far.json()
        # what is stored: a new JPEG with only time and position
        r = httpx.get(f"{base}/api/cases/{number}/photos/{body['sha256']}.jpg", timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        stored = Image.open(io.BytesIO(r.content)).getexif()
        assert 0x010F not in stored and 0x0110 not in stored and 0x013B not in stored
        assert b"SN-1234567" not in r.content and "张三".encode() not in r.content
        assert stored.get(0x0132) == "2026:11:30 10:15:00" and stored.get_ifd(0x8825)
        heic = io.BytesIO()  # an iPhone's photo: accepted, stored as a JPEG
        import pillow_heif
        pillow_heif.register_heif_opener()
        Image.new("RGB", (32, 32), (10, 20, 30)).save(heic, "HEIF")
        r = post(heic.getvalue(), "image/heic")
        assert r.status_code == 201, r.text
        got = httpx.get(f"{base}/api/cases/{number}/photos/{r.json()['sha256']}.jpg", timeout=30)
        assert got.content.startswith(b"\xff\xd8\xff")
        steps = httpx.get(f"{base}/api/cases/{number}", timeout=30).json()["properties"]["steps"]
        assert body["sha256"] in steps[-1]["photos"]
        # refused
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, "PNG")
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as z:
            z.writestr("x.txt", "hello")
        for data, kind, status in (
                (b"hello", "text/plain", 415),
                (png.getvalue(), "image/jpeg", 400),             # not what it says
                (_jpeg(extra=zipped.getvalue()), "image/jpeg", 400),  # a polyglot: JPEG + ZIP
                (_jpeg()[:-2] + b"<script>alert(1)</script>\xff\xd9", "image/jpeg", 400),
                (_jpeg()[: len(_jpeg()) // 2], "image/jpeg", 400),    # truncated
                (b"\xff\xd8\xff" + b"\0" * (11 << 20) + b"\xff\xd9", "image/jpeg", 413),
                (b"", "image/jpeg", 400)):
            r = post(data, kind)
            assert r.status_code == status, (kind, status, r.text[:200])
        for name in ("../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "a" * 64 + ".jpg"):
            r = httpx.get(f"{base}/api/cases/{number}/photos/{name}", timeout=30)
            assert r.status_code == 404, name
        assert post(_jpeg(), case="FS000").status_code == 404


def test_oversized_or_unsized_bodies_are_refused_before_reading(url, live, tmp_path):
    import socket

    with psycopg.connect(url, autocommit=True) as c:
        accept = create_token(c, "chengguan", [("cases", "accept")])[1]
        number = new_case(c)
    with nullcontext(live) as base:  # the module's server
        auth = {"Authorization": f"Bearer {accept}"}
        big = {"type": "Feature", "geometry": None, "properties": {"description": "x" * 70_000}}
        r = httpx.post(f"{base}/api/cases", json=big, headers=auth, timeout=30)
        assert r.status_code == 400 and "64 kB" in r.text
        r = httpx.post(f"{base}/api/cases/{number}/steps", json={"action": "register",
                                                                 "note": "x" * 70_000},
                       headers=auth, timeout=30)
        assert r.status_code == 400
        # a chunked photo upload (no Content-Length) is refused, not read
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall((f"POST /api/cases/{number}/photos HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {accept}\r\nContent-Type: image/jpeg\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n").encode())
            assert b" 411 " in s.recv(4096).split(b"\r\n")[0]


def test_plain_ogc_writes_cannot_forge_the_lifecycle(url, live):
    """A `write` grant edits a case's description, never its status, deadline or times:
    those are the workflow's, so the evaluation figures stand on them."""
    with psycopg.connect(url, autocommit=True) as c:
        number = new_case(c)
        drive(c, number, Step("register"), Step("dispatch", "zhujian"))
        writer = create_token(c, "chengguan", [("cases", "write")])[1]
        before = written(c, number)
    auth = {"Authorization": f"Bearer {writer}", "Content-Type": "application/geo+json"}
    item = f"{live}/ogc/collections/cases/items/{number}"
    for forged in ({"status": "closed"}, {"deadline": "2099-01-01T00:00:00+08:00"},
                   {"handled_at": "2099-01-01T00:00:00+08:00"}, {"rework_count": 0,
                                                                 "department": "gongan"}):
        r = httpx.patch(item, json={"properties": forged}, headers=auth, timeout=30)
        assert r.status_code == 409, (forged, r.text)
        assert "/api/cases/{case_number}/steps" in r.json()["description"]
    assert httpx.patch(item, json={"properties": {"status": "closed"}}, timeout=30,
                       headers={"Content-Type": "application/geo+json"}).status_code == 401
    r = httpx.delete(item, headers=auth, timeout=30)
    assert r.status_code == 409, r.text
    r = httpx.post(f"{live}/ogc/collections/cases/items", headers=auth, timeout=30, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": INSIDE},
        "properties": {"case_number": "FS1", "kind": "event", "big_class": "01",
                       "source": "patrol", "status": "closed",
                       "reported_at": "2026-01-01T00:00:00+08:00"}})
    assert r.status_code == 409, r.text
    with psycopg.connect(url) as c:
        assert written(c, number) == before  # nothing written by the refusals
        assert c.execute("select count(*) from city.cases_version where fid = 'FS1'"
                         ).fetchone()[0] == 0
    # a plain field is a plain write: a new version, the lifecycle as it was
    r = httpx.patch(item, json={"properties": {"description": "井盖缺失（西侧）"}},
                    headers=auth, timeout=30)
    assert r.status_code == 204, r.text
    got = httpx.get(f"{live}/api/cases/{number}", timeout=30).json()["properties"]
    assert (got["description"], got["status"]) == ("井盖缺失（西侧）", "dispatched")


def test_the_versions_hold_the_timelines_times(url):
    """What the evaluation reads of a case (dispatched, handled, closed, reworks) is what
    its timeline in city.case_steps says, for every case the other tests drove (run last)."""
    with psycopg.connect(url) as c:
        assert c.execute("select count(*) from city.case_steps where step = 'reworked'"
                         ).fetchone()[0] > 0
        assert c.execute(LIFECYCLE_MISMATCHES).fetchall() == []
