"""The field supervisors' phone page (/viewer/report.html, 城管通 · 无线数据采集): driven in
headless Chromium as a phone (360×740, touch, the position overridden) over a small city of
one district and one grid cell; what it reports is checked in the database and the API."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import httpx
import psycopg
import pytest
import shapely
from conftest import fresh_database, serving
from js import report_check, require

from gisplatform.security import create_token, revoke_token
from gisplatform.temporal import Feature, TemporalStore
from layers import LAYERS

REPO = Path(__file__).resolve().parent.parent
VIEWER = REPO / "gisplatform" / "viewer"
BOX = shapely.box(123.90, 41.86, 123.94, 41.88)
GRID, DIVISION = "210402001001001", "210402"
T0 = "2015-01-01T00:00:00+08:00"
PHONE = {"lon": 123.912345, "lat": 41.871234}  # the device's position: inside the cell
HOST = re.compile(rb"(?:https?:)?//([a-z0-9.-]+\.[a-z]{2,})(?=[/\"'`:)\s])", re.IGNORECASE)


def _jpeg(color=(200, 80, 40), gps: tuple[float, float] | None = None) -> bytes:
    """A small JPEG as a phone takes it (a time, a position when `gps` is given)."""
    from PIL import Image

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2026:11:30 10:15:00"
    if gps is not None:
        def dms(v):
            d = int(v)
            m = int((v - d) * 60)
            return (d, m, round(((v - d) * 60 - m) * 60, 4))
        lon, lat = gps
        exif[0x8825] = {1: "N", 2: dms(lat), 3: "E", 4: dms(lon)}
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def dist() -> Path:
    """The viewer built (rebuilt when its sources changed), report.html with it."""
    require(browser=False)
    r = subprocess.run(["node", str(VIEWER / "build.mjs")], cwd=REPO, capture_output=True,
                       text=True, timeout=300, check=False)
    if r.returncode != 0 and ("ENOENT" in r.stderr or "ENOTEMPTY" in r.stderr):
        # another build renamed dist at the same moment: once more
        r = subprocess.run(["node", str(VIEWER / "build.mjs")], cwd=REPO, capture_output=True,
                           text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    return VIEWER / "dist"


@pytest.fixture(scope="module")
def city(pg, dist, tmp_path_factory):
    """A district with one grid cell, served; a supervisor's token (cases:accept), a
    revoked one and one that only reads cases."""
    url = fresh_database(pg, "report_page")
    with psycopg.connect(url, autocommit=True) as c:
        TemporalStore(LAYERS["admin-areas"].spec).insert(c, [Feature(
            DIVISION, shapely.MultiPolygon([BOX]),
            {"code": DIVISION, "name": "新抚区", "level": "district"})], T0)
        TemporalStore(LAYERS["grid-cells"].spec).insert(c, [Feature(
            GRID, shapely.MultiPolygon([BOX]), {"grid_code": GRID})], T0)
        token = create_token(c, "chengguan", [("cases", "accept")], label="report page")[1]
        revoked_id, revoked = create_token(c, "chengguan", [("cases", "accept")], label="revoked")
        revoke_token(c, revoked_id)
        reader = create_token(c, "chengguan", [("cases", "read")], label="no role")[1]
    data = tmp_path_factory.mktemp("report")
    with serving(url, data) as base:
        yield {"url": url, "base": base, "token": token, "revoked": revoked, "reader": reader,
               "data": data}


def test_the_page_names_no_other_host(dist):
    for name in ("report.html", "report.js", "css/report.css"):
        hosts = {m.group(1) for m in HOST.finditer((dist / name).read_bytes())} - {b"www.w3.org"}
        assert not hosts, f"{name} names external hosts: {hosts}"
    html = (dist / "report.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not re.match(r"^(?:[a-z]+:)?//", ref), ref
    assert 'accept="image/*" capture="environment"' in html


def test_case_classes_are_public_with_chinese_names(city):
    r = httpx.get(f"{city['base']}/api/cases/classes", timeout=30)
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    kinds = {k["code"]: k for k in r.json()["kinds"]}
    assert set(kinds) == {"event", "component"}
    assert kinds["event"]["name"] == "事件" and kinds["component"]["name"] == "部件"
    big = {b["code"]: b for b in kinds["component"]["big_classes"]}
    assert big["01"]["name"] == "公用设施"
    assert {"code": "0101", "name": "上水井盖"} in big["01"]["small_classes"]
    assert all(s["code"][:2] == c for c, b in big.items() for s in b["small_classes"])
    assert {b["code"]: b["name"] for b in kinds["event"]["big_classes"]}["01"] == "市容环境"
    # not taken for a case number
    assert httpx.get(f"{city['base']}/api/cases/limits", timeout=30).status_code == 200


def test_report_from_a_phone(city, tmp_path):
    far = (PHONE["lon"] + 0.01, PHONE["lat"])  # ~830 m east: the photo answer warns
    (tmp_path / "photo.jpg").write_bytes(_jpeg(gps=far))
    (tmp_path / "offline.jpg").write_bytes(_jpeg((30, 120, 200)))
    out = report_check(
        f"{city['base']}/viewer/report.html", token=city["token"], bad_token=city["revoked"],
        norole_token=city["reader"],
        position=PHONE, photo=tmp_path / "photo.jpg", offline_photo=tmp_path / "offline.jpg",
        report={"kind": "component", "big_class": "01", "small_class": "0101",
                "description": "井盖破损，人行道东侧"},
        offline_report={"kind": "event", "big_class": "05", "description": "占道经营（离线）"},
        screenshots=tmp_path / "shots", timeout_s=60)
    assert "error" not in out, (out.get("error"), out.get("console"))
    base = city["base"]

    # a phone's page, from its own origin only, without errors
    s = out["start"]
    assert out["landing_status"] == 200 and s["title"] == "城管通"
    assert s["inner_width"] == 360 and s["scroll_width"] <= 360 and out["end_scroll_width"] <= 360
    assert s["touch"] > 0 and s["file_input"] == {"type": "file", "accept": "image/*",
                                         "capture": "environment"}
    assert s["map"] == "1", "the map did not load"
    assert ["event", "事件"] in s["kinds"] and ["component", "部件"] in s["kinds"]
    assert s["position"]["how"] == "gps"
    assert abs(float(s["position"]["lon"]) - PHONE["lon"]) < 1e-9
    assert abs(float(s["position"]["lat"]) - PHONE["lat"]) < 1e-9
    assert out["foreign_requests"] == []
    assert out["request_failures"] == [], out["request_failures"]
    # the only refusals: the revoked token's 401 and the reader's 403 (which the browser
    # logs as failed resources)
    refused = {"bad_token": 401, "norole": 403}
    assert sorted((b["step"], b["status"]) for b in out["bad_responses"]) == sorted(
        refused.items()), out["bad_responses"]
    unexpected = [c for c in out["console"]
                  if str(refused.get(c["step"])) not in c["text"]]
    assert unexpected == [], unexpected

    # a bad token: the platform's description shown, nothing kept
    description = httpx.get(f"{base}/api/cases/limits", timeout=30, headers={
        "Authorization": f"Bearer {city['revoked']}"}).json()["description"]
    assert description == "token revoked"
    b = out["bad_token"]
    assert "令牌无效或已过期" in b["message"] and description in b["message"]
    assert not b["signed_in"] and b["stored"] is None
    assert out["signin"]["stored"] and out["signin"]["text"] == "已登录"
    # a token without a role: the report refused with the platform's description
    description = httpx.post(f"{base}/api/cases", timeout=30, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [PHONE["lon"], PHONE["lat"]]},
        "properties": {"kind": "event", "big_class": "01", "source": "patrol"}},
        headers={"Authorization": f"Bearer {city['reader']}"}).json()["description"]
    assert "reporting needs a role" in description
    assert "上报失败" in out["norole"]["text"] and description in out["norole"]["text"]
    assert out["norole"]["mine"] == 0

    # a tap on the map places the point there; "定位" takes the device's again
    tap = out["tap"]
    assert tap["how"] == "map" and tap["marker"]
    assert abs(tap["got"][0] - tap["expected"][0]) < 1e-5 and abs(tap["got"][1] - tap["expected"][1]) < 1e-5
    assert abs(tap["marker"][0] - tap["got"][0]) < 1e-9
    assert tap["back"]["how"] == "gps" and abs(float(tap["back"]["lon"]) - PHONE["lon"]) < 1e-9

    # the pickers: the component big classes and small classes, in Chinese
    r = out["report"]
    assert ["01", "01 公用设施"] in r["big_options"] and ["06", "06 其他设施"] in r["big_options"]
    assert ["0101", "0101 上水井盖"] in r["small_options"]
    assert not any(v and v[:2] != "01" for v, _ in r["small_options"])
    assert r["preview"]["width"] == 64

    # submitted: the case number shown, the photo's warning shown, the form cleared
    assert r["state"] == "done", r
    number = r["case_number"]
    assert re.fullmatch(r"FS\d{8}\d{7}", number) and number in r["text"]
    assert r["warning"] and "照片提示" in r["warning"] and "from the case" in r["warning"]
    assert r["photo_error"] is None and r["cleared"]

    with psycopg.connect(city["url"]) as c:
        row = c.execute(
            "select st_distance(geom::geography, st_setsrid(st_point(%s, %s), 4490)::geography),"
            " grid_code, division_code, kind, big_class, small_class, source, description, status"
            " from city.cases_version where fid = %s and upper_inf(recorded) and upper_inf(valid)",
            (PHONE["lon"], PHONE["lat"], number)).fetchone()
        assert row is not None, number
        distance, *rest = row
        assert distance < 1.0, distance
        assert rest == [GRID, DIVISION, "component", "01", "0101", "patrol", "井盖破损，人行道东侧",
                        "reported"]
        photos = c.execute("select sha256, distance_m, actor from city.case_photos"
                           " where case_number = %s", (number,)).fetchall()
    assert len(photos) == 1 and photos[0][1] > 500
    case = httpx.get(f"{base}/api/cases/{number}", timeout=30).json()["properties"]
    assert case["status"] == "reported" and photos[0][0] in case["steps"][-1]["photos"]

    # "my reports": this phone's case with its status (in Chinese) and its deadline (none yet)
    mine = {m["case"]: m for m in out["mine"]}
    assert number in mine and mine[number]["status"] == "reported"
    assert mine[number]["status_text"] == "已上报" and "派遣后计时" in mine[number]["deadline"]
    assert "部件" in mine[number]["meta"] and "公用设施" in mine[number]["meta"]
    assert [m["n"] for m in out["stored_mine"]][0] == number

    # English and back
    assert out["lang"]["en"] == "City patrol" and out["lang"]["back"] == "城管通"
    assert out["lang"]["en_status"] == "reported" and "Event" in out["lang"]["en_kind"]

    # offline: queued with its photo, posted when the network came back
    off = out["offline"]
    assert "离线" in off["result"] and len(off["queue"]) == 1 and "含照片" in off["queue"][0]
    (queued,) = off["stored"]
    assert queued["properties"] == {"kind": "event", "big_class": "05", "source": "patrol",
                                    "description": "占道经营（离线）"}
    assert queued["photo_bytes"] == (tmp_path / "offline.jpg").stat().st_size
    assert queued["photo_type"] == "image/jpeg"
    sent = off["sent"]["case_number"]
    assert sent and sent != number and off["sent"]["queue_hidden"] and sent in off["mine"]
    with psycopg.connect(city["url"]) as c:
        row = c.execute(
            "select st_distance(geom::geography, st_setsrid(st_point(%s, %s), 4490)::geography),"
            " grid_code, kind, big_class, source from city.cases_version where fid = %s"
            " and upper_inf(recorded) and upper_inf(valid)",
            (PHONE["lon"], PHONE["lat"], sent)).fetchone()
        assert row is not None and row[0] < 1.0 and list(row[1:]) == [GRID, "event", "05", "patrol"]
        assert c.execute("select count(*) from city.case_photos where case_number = %s",
                         (sent,)).fetchone()[0] == 1
