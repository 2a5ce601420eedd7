"""The viewer's command view (监督指挥) and the department inbox, in headless Chromium over a
small city whose cases went through the workflow's HTTP API: open cases coloured by status
with the overdue ones drawn as overdue (as GET /api/cases decides it), a case's timeline
equal to the API's, the inbox equal to GET /api/tasks, no inbox for a token without
cases:handle, the reporter's phone never unmasked, nothing asked of another origin."""

from __future__ import annotations

import io
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest
import shapely
from conftest import fresh_database, serving
from js import CHROMIUM, _node, require

from gisplatform.security import create_token
from gisplatform.temporal import Feature, TemporalStore
from layers import LAYERS

REPO = Path(__file__).resolve().parent.parent
VIEWER = REPO / "gisplatform" / "viewer"
BOX = shapely.box(123.90, 41.86, 123.94, 41.88)
T0 = "2015-01-01T00:00:00+08:00"
CENTER = [123.9145, 41.868]
BEIJING = timezone(timedelta(hours=8))
PHONE, NAME = "13912345678", "王小明"
# where each case is, and what happens to it (dispatched to 住建 unless said otherwise)
PLACES = {"A": (123.915, 41.868), "B": (123.917, 41.869), "C": (123.912, 41.867),
          "D": (123.918, 41.8665), "E": (123.913, 41.8695), "F": (123.916, 41.8668),
          "G": (123.911, 41.8685)}


def build() -> None:
    """The viewer as `make run` builds it (skipped when up to date). Another build running
    at once may move dist away under this one (ENOENT / rename): then once more."""
    require(browser=True)
    for attempt in range(3):
        r = subprocess.run(["node", str(VIEWER / "build.mjs")], cwd=REPO, capture_output=True,
                           text=True, timeout=300, check=False)
        if r.returncode == 0:
            return
        if attempt == 2 or not any(s in r.stderr for s in ("ENOENT", "rename", "ENOTEMPTY")):
            raise AssertionError(r.stderr)
        time.sleep(1)


def _jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 80, 40)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def city(pg, tmp_path_factory):
    """A district and a grid cell; cases reported, registered and dispatched through the
    API: A (with a photo and a hotline caller), B (a 1 s limit: overdue), C, D (reported
    only), E (to another department), F (closed), G (a 1 s limit, handled late)."""
    build()
    url = fresh_database(pg, "command_view")
    with psycopg.connect(url, autocommit=True) as c:
        TemporalStore(LAYERS["admin-areas"].spec).insert(c, [Feature(
            "210402", shapely.MultiPolygon([BOX]),
            {"code": "210402", "name": "新抚区", "level": "district"})], T0)
        TemporalStore(LAYERS["grid-cells"].spec).insert(c, [Feature(
            "210402001001001", shapely.MultiPolygon([BOX]), {"grid_code": "210402001001001"})], T0)
        roles = ("accept", "dispatch", "verify", "close", "manage")
        tokens = {"boss": create_token(c, "chengguan", [("cases", r) for r in roles])[1],
                  "handle": create_token(c, "zhujian", [("cases", "handle")])[1],
                  "other": create_token(c, "minzheng", [("persons", "read")])[1]}
    with serving(url, tmp_path_factory.mktemp("command")) as base:
        def call(method, path, who, **kw):
            r = httpx.request(method, f"{base}{path}", timeout=30,
                              headers={"Authorization": f"Bearer {tokens[who]}"}, **kw)
            assert r.status_code in (200, 201), (path, r.text)
            return r.json()

        def step(number, who, **body):
            return call("POST", f"/api/cases/{number}/steps", who, json=body)

        call("PUT", "/api/cases/limits", "boss",
             json={"limits": [{"kind": "event", "big_class": "06", "hours": 1 / 3600}]})
        big = {"A": "01", "B": "06", "C": "02", "D": "03", "E": "01", "F": "01", "G": "06"}
        cases = {}
        for key, (lon, lat) in PLACES.items():
            props = {"kind": "event", "big_class": big[key], "source": "patrol",
                     "description": f"测试案件 {key}"}
            if key == "A":
                props.update(source="hotline_12345", reporter_name=NAME, reporter_phone=PHONE)
            cases[key] = call("POST", "/api/cases", "boss", json={
                "type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": props})["id"]
            if key != "D":
                step(cases[key], "boss", action="register")
                step(cases[key], "boss", action="dispatch", note="请按时处置",
                     department="gongan" if key == "E" else "zhujian")
        photo = httpx.post(f"{base}/api/cases/{cases['A']}/photos", content=_jpeg(), timeout=30,
                           headers={"Content-Type": "image/jpeg",
                                    "Authorization": f"Bearer {tokens['handle']}"})
        assert photo.status_code == 201, photo.text
        step(cases["F"], "handle", action="handle", note="已修复")
        step(cases["F"], "boss", action="verify", result="pass")
        step(cases["F"], "boss", action="close")
        time.sleep(1.5)  # B's and G's deadlines pass
        step(cases["G"], "handle", action="handle", note="已修复（超时）")
        yield {"base": base, "tokens": tokens, "cases": cases, "photo": photo.json()["sha256"],
               "call": call}


def command_check(city: dict, **options) -> dict:
    require(browser=True)
    cases = city["cases"]
    opts = {"url": city["base"] + "/viewer/", "center": CENTER, "zoom": 15,
            "cases": {cases[k]: list(p) for k, p in PLACES.items()},
            "click": cases["A"], "inbox_click": cases["B"], "missing": "FS000",
            "handle_token": city["tokens"]["handle"], "other_token": city["tokens"]["other"],
            "timeout_ms": 60000, "chromium": str(CHROMIUM), **options}
    return _node("command_check.mjs", opts, 180)


def beijing(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def test_the_command_view_and_the_inbox_in_chromium(city, tmp_path):
    out = command_check(city)
    assert "error" not in out, (out.get("error"), out.get("state"))
    cases, call = city["cases"], city["call"]
    api = {k: call("GET", f"/api/cases/{n}", "boss") for k, n in cases.items()}
    status = {k: a["properties"]["status"] for k, a in api.items()}
    assert status == {"A": "dispatched", "B": "dispatched", "C": "dispatched", "D": "reported",
                      "E": "dispatched", "F": "closed", "G": "handled"}
    overdue = {k for k, a in api.items() if a["properties"]["overdue"]}
    assert overdue == {"B", "G"}, overdue  # G: handled after its deadline
    number = {n: k for k, n in cases.items()}

    # off at first; then the open cases by status, the overdue ones in their own layer
    assert out["before"] == {"legend_hidden": True, "inbox_hidden": True, "button": "监督指挥"}
    a = out["anonymous"]
    assert a["pressed"] == "true" and not a["platform_point"]
    drawn = {number[f]: v for f, v in a["cases"].items()}
    assert set(drawn) == set(PLACES) - {"F"}, drawn  # F is closed: not an open case
    for k, v in drawn.items():
        assert v["status"] == status[k], k
        assert v["layer"] == ("cmd-cases-overdue" if k in overdue else "cmd-cases"), (k, v)
    assert a["overdue_paint"]["stroke"] == "#e31a1c"
    assert a["overdue_paint"]["width"] > a["open_paint"]["width"]
    assert a["open_paint"]["stroke"] != a["overdue_paint"]["stroke"]
    # the instant is a literal in the filter, as the tiles write times (UTC+8)
    now = datetime.now(BEIJING).strftime("%Y-%m-%d ")
    assert f'"{now}' in a["filter"] and '+08"' in a["filter"]
    # the legend: every open status and the overdue mark, in Chinese
    assert [s for s, _ in a["legend"]] == ["reported", "registered", "dispatched", "handled",
                                           "verified", "suspended", "overdue"]
    assert dict(a["legend"])["dispatched"] == "已派遣" and dict(a["legend"])["overdue"] == "超期"
    assert a["legend_title"] == "案件状态"
    assert a["inbox"]["hidden"] and a["inbox"]["entries"] == []  # anonymous: no inbox

    # a click on A: its timeline as the API answers it, in Beijing time, with its photo
    steps = api["A"]["properties"]["steps"]
    for panel in (out["click_anonymous"], out["click"]):
        assert panel["fid"] == cases["A"] and panel["layer"] == "cases" and not panel["error"]
        assert [s["step"] for s in panel["steps"]] == [s["step"] for s in steps]
        assert [s["at"] for s in panel["steps"]] == [s["at"] for s in steps]
        assert [s["time"] for s in panel["steps"]] == [beijing(s["at"]) for s in steps]
        assert [s["name"] for s in panel["steps"]] == ["上报", "立案", "派遣"]
        assert [s["note"] for s in panel["steps"]] == [s["note"] for s in steps]
        f = panel["fields"]
        assert f["deadline"] == beijing(api["A"]["properties"]["deadline"])
        assert f["overdue"] == "否" and f["remaining"].startswith("剩余") and f["status"] == "已派遣"
        assert f["department"] == "抚顺市住房和城乡建设局"
        assert f["reporter_phone"] == api["A"]["properties"]["reporter_phone"] == "139****5678"
        assert f["reporter_name"] == api["A"]["properties"]["reporter_name"] != NAME
    photos = out["click"]["steps"][-1]["photos"]  # fetched with the token, shown from a blob
    assert photos == [{"sha": city["photo"], "state": "loaded", "blob": True, "width": 64}]

    # the inbox of 住建 (cases:handle): exactly GET /api/tasks, in its order
    tasks = call("GET", "/api/tasks", "handle")["cases"]
    assert [t["id"] for t in tasks] == [cases[k] for k in ("B", "A", "C")]
    inbox = out["inbox"]
    assert not inbox["hidden"] and inbox["title"] == "待办案件 (3)"
    assert [e["case"] for e in inbox["entries"]] == [t["id"] for t in tasks]
    assert [e["overdue"] for e in inbox["entries"]] == [t["properties"]["overdue"] for t in tasks]
    assert inbox["entries"][0]["remaining"].startswith("已超期")
    assert "扩展事件" in inbox["entries"][0]["text"]  # event class 06, by its name
    for e, t in zip(inbox["entries"], tasks, strict=True):
        assert beijing(t["properties"]["deadline"])[:16] in e["text"]
    # a click on an entry: the map flies there and the case's timeline opens
    c = out["inbox_click"]
    assert c["panel"]["fid"] == cases["B"] and c["panel"]["overdue"] == "true"
    assert c["panel"]["fields"]["overdue"] == "是" and c["panel"]["fields"]["remaining"].startswith("已超期")
    assert [s["step"] for s in c["panel"]["steps"]] == [
        s["step"] for s in api["B"]["properties"]["steps"]]
    assert abs(c["center"][0] - PLACES["B"][0]) < 1e-4 and abs(c["center"][1] - PLACES["B"][1]) < 1e-4
    assert c["zoom"] >= 17 and c["active"] == [cases["B"]]
    assert {number[f]: v["layer"] for f, v in out["signed_in"]["cases"].items()} == {
        k: v["layer"] for k, v in drawn.items()}

    # personal data: only as the API answers it (masked without read_personal)
    assert PHONE not in out["html"] and NAME not in out["html"]
    assert "139****5678" in out["html"]

    # English
    e = out["english"]
    assert e["legend_title"] == "Case status" and e["button"] == "Command"
    assert e["inbox"]["title"] == "Inbox (3)"
    assert [s["name"] for s in e["panel"]["steps"]] == ["reported", "registered", "dispatched"]

    # the time slider: in 2019 no case was open; back to now, the same picture
    assert out["in_2019"]["label"] == "2019-01-01" and out["in_2019"]["cases"] == {}
    assert '"2019-01-01 00:00:00.000+08"' in out["in_2019"]["filter"]
    assert out["back_now"]["cases"] == out["signed_in"]["cases"]

    # signed out: no inbox; a token without cases:handle: none either, the rest works
    assert out["signed_out"]["inbox"]["hidden"] and out["signed_out"]["inbox"]["entries"] == []
    o = out["other"]
    assert o["inbox"]["hidden"] and o["inbox"]["entries"] == [] and o["inbox"]["state"] == "denied"
    assert "cases:handle" in o["inbox"]["message"] and o["message"] == ""
    assert {number[f] for f in o["rendered"]["cases"]} == set(drawn)
    assert o["panel"]["fid"] == cases["A"] and len(o["panel"]["steps"]) == len(steps)

    # the view off: the platform's own cases layer, no legend, no inbox
    off = out["off"]
    assert off["platform_point"] and off["layers"] == [] and off["legend_hidden"] and off["inbox_hidden"]

    # a case the API does not have: the panel says what the API says
    m = out["missing"]
    assert m["fid"] == "FS000" and "404" in m["error"] and "no case FS000" in m["error"]
    assert m["steps"] == []

    # same origin only; the refusals are the inbox asked with a token without the role and
    # the missing case (the browser logs each as a console error; the viewer shows them)
    assert out["foreign_requests"] == [] and out["request_failures"] == []
    assert out["bad_responses"] == ["403 /api/tasks", "404 /api/cases/FS000"]
    assert out["console_errors"] == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)",
        "Failed to load resource: the server responded with a status of 404 (Not Found)"]

