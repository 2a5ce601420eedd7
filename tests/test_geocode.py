"""Geocoding (gisplatform/geocode): the parser on real-shaped forms, geocoding the demo's
standard addresses as people write them, reverse geocoding against point-in-polygon truth,
time-awareness (retired and renamed addresses), bad input, the CSV batch."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
import shapely
from conftest import DEMO_UNTIL, fresh_database, serving

from gisplatform.geocode import MATCH, Source, Sources, geocode, normalize, parse, reverse
from gisplatform.geocode.parse import AddressError, Gazetteer, check_query
from gisplatform.security import ANONYMOUS
from gisplatform.temporal import Feature, TemporalStore, parse_instant
from layers import LAYERS

CLI = str(Path(sys.executable).with_name("gisplatform"))
AT = parse_instant(DEMO_UNTIL)
SOURCES = Sources(*(Source(n, LAYERS[n].sharing) for n in (
    "addresses", "admin-areas", "grid-cells", "buildings", "responsibility-zones")))
G = Gazetteer.of({"新抚区": "210402", "东洲区": "210403", "望花区": "210404", "顺城区": "210411",
                  "抚顺县": "210421", "新宾满族自治县": "210422", "清原满族自治县": "210423"},
                 {"榆林街道": "210402001", "千金街道": "210402002", "永陵镇": "210422101",
                  "拉古满族乡": "210421201"}, "抚顺市")

# (as written, the parts expected); parts not named must be absent (None / "")
PARSED = [
    ("新抚区榆林一路三十九号楼下", dict(district="新抚区", road="榆林1路", number=39)),
    ("辽宁省抚顺市新抚区榆林街道榆林1路39号", dict(province="辽宁省", city="抚顺市", district="新抚区",
                                          town="榆林街道", road="榆林1路", number=39)),
    ("榆林1路39号", dict(road="榆林1路", number=39)),
    ("榆林１路３９号", dict(road="榆林1路", number=39)),
    ("  榆林 1 路 39 号 ", dict(road="榆林1路", number=39)),
    ("新抚榆林1路39号", dict(district="新抚", road="榆林1路", number=39)),
    ("抚顺新抚区榆林1路39号", dict(city="抚顺", district="新抚区", road="榆林1路", number=39)),
    ("抚顺市新抚区榆林1路39号附近", dict(city="抚顺市", district="新抚区", road="榆林1路", number=39)),
    ("新抚区榆林1路39号对面", dict(district="新抚区", road="榆林1路", number=39)),
    ("榆林1路39号旁边", dict(road="榆林1路", number=39)),
    ("榆林1路39号门口", dict(road="榆林1路", number=39)),
    ("榆林1路39号东侧一带", dict(road="榆林1路", number=39)),
    ("榆林1路39号3号楼", dict(road="榆林1路", number=39, building=3)),
    ("榆林1路39号3栋", dict(road="榆林1路", number=39, building=3)),
    ("榆林1路39号3幢", dict(road="榆林1路", number=39, building=3)),
    ("榆林1路39号3#楼", dict(road="榆林1路", number=39, building=3)),
    ("榆林1路39#", dict(road="榆林1路", number=39)),
    ("榆林1路39号3栋2单元", dict(road="榆林1路", number=39, building=3, unit=2)),
    ("榆林1路39号3栋2单元501室", dict(road="榆林1路", number=39, building=3, unit=2, room="501")),
    ("榆林1路39号3栋2单元501", dict(road="榆林1路", number=39, building=3, unit=2, room="501")),
    ("榆林1路39号3-2-501", dict(road="榆林1路", number=39, building=3, unit=2, room="501")),
    ("榆林1路39号3栋2门", dict(road="榆林1路", number=39, building=3, unit=2)),
    ("榆林一路三十九号三号楼二单元", dict(road="榆林1路", number=39, building=3, unit=2)),
    ("榆林二十路一百零五号", dict(road="榆林20路", number=105)),
    ("东洲区新华大街5号", dict(district="东洲区", road="新华大街", number=5)),
    ("新华街5号", dict(road="新华街", number=5)),
    ("新华道5号", dict(road="新华道", number=5)),
    ("新华大道5号", dict(road="新华大道", number=5)),
    ("新华巷5号", dict(road="新华巷", number=5)),
    ("东五道街39号", dict(road="东五道街", number=39)),
    ("新抚路5号", dict(road="新抚路", number=5)),
    ("望花区古城子1路17号院", dict(district="望花区", road="古城子1路", number=17)),
    ("新宾县永陵镇", dict(district="新宾县", town="永陵镇")),
    ("新宾满族自治县永陵镇", dict(district="新宾满族自治县", town="永陵镇")),
    ("抚顺县拉古满族乡", dict(district="抚顺县", town="拉古满族乡")),
    ("抚顺县", dict(district="抚顺县")),
    ("新抚区", dict(district="新抚区")),
    ("千金街道", dict(town="千金街道")),
    ("顺城区将军街道将军社区", dict(district="顺城区", town="将军街道", community="将军社区")),
    ("清原县大孤家镇大孤家村", dict(district="清原县", town="大孤家镇", community="大孤家村")),
    ("雷锋纪念馆", dict(extra="雷锋纪念馆")),
    ("裕民二路十五号对面", dict(road="裕民2路", number=15)),
    ("ＸＸ路１２号", dict(road="XX路", number=12)),
    ("永安1路与新华大街交叉口", dict(road="永安1路与新华大街")),
    ("榆林1路", dict(road="榆林1路")),
    ("五龙山路3号", dict(road="五龙山路", number=3)),  # a numeral inside a name stays
]


@pytest.mark.parametrize("text, parts", PARSED, ids=[t for t, _ in PARSED])
def test_the_parser_reads_the_structure_of_chinese_addresses(text, parts):
    p = parse(text, G)
    fields = ("province", "city", "district", "town", "community", "road", "number",
              "building", "unit", "room")
    got = {f: getattr(p, f) for f in fields if getattr(p, f) is not None}
    if p.extra:
        got["extra"] = p.extra
    assert got == parts


def test_normalisation_is_idempotent_and_names_keep_their_numerals():
    for text, _ in PARSED:
        once = normalize(text)
        assert normalize(once) == once
    assert normalize("五龙山路") == "五龙山路" and normalize("三家子路一号") == "三家子路1号"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 10_000, "榆林1路\x0039号", "榆林\u200b1路",
                                 "榆林1路\x07", None, 39])
def test_what_is_not_an_address_query_is_refused(bad):
    with pytest.raises(AddressError):
        check_query(bad)


# ----------------------------------------------------------------------------- the demo city

def _perturbed(address: str, rng: random.Random) -> list[str]:
    """The ways people write a standard address 抚顺市<district><road><n>号."""
    p = parse(address, G)
    road, n = p.road, p.number
    digits = "".join(ch for ch in road if ch.isdigit())
    cn = {"1": "一", "2": "二", "3": "三", "4": "四", "5": "五", "6": "六", "7": "七", "8": "八",
          "9": "九"}
    road_cn = road.replace(digits, cn[digits]) if len(digits) == 1 else road
    full = str.maketrans("0123456789", "０１２３４５６７８９")
    return [
        address,
        address.removeprefix("抚顺市"),                       # no city
        f"{road}{n}号",                                       # no city, no district
        f"{p.district}{road_cn}{n}号",                        # Chinese numerals in the road
        f"{road}{n}号".translate(full),                       # full-width digits
        f"{p.district}{road}{n}号楼下",                       # noise
        f"{road}{n}号附近",
        f"{road}{n}号3栋2单元",                               # finer than the address data
        f" {p.district} {road} {n} 号 ",                      # spaces
    ]


def test_the_demo_addresses_geocode_as_people_write_them(demo_url):
    rng = random.Random(7)
    with psycopg.connect(demo_url, autocommit=True) as c:
        sample = [r[0] for r in c.execute(
            "select fid from city.addresses_version where upper_inf(recorded)"
            " and valid @> %s::timestamptz order by fid", (AT,))]
        sample = rng.sample(sample, 12)
        for address in sample:
            for q in _perturbed(address, rng):
                best = geocode(c, SOURCES, q, AT, 3, ANONYMOUS)
                assert best and best[0].fid == address and best[0].score >= MATCH, (q, best[:2])
                assert best[0].level == "number"
                if len(best) > 1:
                    assert best[1].score < best[0].score
        # not in the city: an even number (the demo numbers odd), a road it has not
        for q in (sample[0].replace("号", "") + "0号", "长江路5号", "中山大街12号"):
            best = geocode(c, SOURCES, q, AT, 3, ANONYMOUS)
            assert not best or best[0].score < MATCH, (q, best[:1])


def test_candidates_carry_division_grid_cell_and_item(demo_url):
    with psycopg.connect(demo_url, autocommit=True) as c:
        address, division = c.execute(
            "select fid, division_code from city.addresses order by fid limit 1").fetchone()
        best = geocode(c, SOURCES, address, AT, 1, ANONYMOUS)[0]
        truth = c.execute("""
            select g.grid_code from city.grid_cells g, city.addresses a
            where a.fid = %s and st_intersects(g.geom, a.geom) order by g.grid_code limit 1""",
                          (address,)).fetchone()[0]
    assert (best.fid, best.division_code, best.grid_code, best.layer) == (
        address, division, truth, "addresses")


def test_reverse_geocoding_agrees_with_point_in_polygon(demo_url):
    rng = random.Random(3)
    with psycopg.connect(demo_url, autocommit=True) as c:
        w, s, e, n = c.execute("select st_xmin(x), st_ymin(x), st_xmax(x), st_ymax(x) from"
                               " (select st_extent(geom) x from city.buildings) b").fetchone()
        points = [(rng.uniform(w, e), rng.uniform(s, n)) for _ in range(25)]
        # and some inside buildings
        points += [tuple(r) for r in c.execute(
            "select st_x(p), st_y(p) from (select st_pointonsurface(geom) p from city.buildings"
            " order by fid limit 5) x")]
        for x, y in points:
            got = reverse(c, SOURCES, x, y, AT, ANONYMOUS)
            pt = "st_setsrid(st_point(%(x)s, %(y)s), 4490)"
            one = {"x": x, "y": y}

            def first(q: str):
                row = c.execute(q.replace("PT", pt), one).fetchone()
                return row[0] if row else None
            assert got["building"] == first(
                "select fid from city.buildings where st_intersects(geom, PT) order by fid limit 1")
            assert got["grid_code"] == first(
                "select grid_code from city.grid_cells where st_intersects(geom, PT)"
                " order by fid limit 1")
            assert (got["district"] or {}).get("code") == first(
                "select code from city.admin_areas where level in ('district', 'county')"
                " and st_intersects(geom, PT) order by fid limit 1")
            assert (got["street"] or {}).get("code") == first(
                "select code from city.admin_areas where level = 'street'"
                " and st_intersects(geom, PT) order by fid limit 1")
            assert got["responsibility_zone"] == first(
                "select fid from city.responsibility_zones where st_intersects(geom, PT)"
                " order by fid limit 1")
            nearest, dist = c.execute(
                f"select fid, st_distance(geom::geography, {pt}::geography) from city.addresses"
                f" order by st_distance(geom::geography, {pt}::geography) limit 1", one).fetchone()
            assert abs(got["distance_m"] - dist) < 0.5
            assert got["address"].fid == nearest or abs(got["distance_m"] - dist) < 0.5


# ------------------------------------------------------------------------------- over time

@pytest.fixture(scope="module")
def town(pg):
    """A small city of our own: one district and its street, a grid cell, and addresses
    that were retired or renamed."""
    url = fresh_database(pg, "geocode_time")
    box = shapely.box(123.90, 41.86, 123.94, 41.88)
    t0 = "2015-01-01T00:00:00+08:00"
    with psycopg.connect(url, autocommit=True) as c:
        TemporalStore(LAYERS["admin-areas"].spec).insert(c, [
            Feature("210402", shapely.MultiPolygon([box]),
                    {"code": "210402", "name": "新抚区", "level": "district"}),
            Feature("210402001", shapely.MultiPolygon([box]),
                    {"code": "210402001", "name": "榆林街道", "level": "street",
                     "parent_code": "210402"})], t0)
        TemporalStore(LAYERS["grid-cells"].spec).insert(c, [
            Feature("210402001001001", shapely.MultiPolygon([box]),
                    {"grid_code": "210402001001001"})], t0)
        addresses = TemporalStore(LAYERS["addresses"].spec)

        def address(text: str, road: str, n: int, x: float) -> Feature:
            return Feature(text, shapely.Point(x, 41.87),
                           {"address": text, "division_code": "210402", "street_name": road,
                            "house_number": f"{n}号"})
        addresses.insert(c, [address("抚顺市新抚区榆林1路39号", "榆林1路", 39, 123.91),
                             address("抚顺市新抚区旧街7号", "旧街", 7, 123.92)], t0)
        addresses.retire(c, ["抚顺市新抚区榆林1路39号"], "2021-03-01T00:00:00+08:00")
        # 旧街 renamed 新华街 in 2022: the old address retired, the new one from that day
        addresses.retire(c, ["抚顺市新抚区旧街7号"], "2022-01-01T00:00:00+08:00")
        addresses.insert(c, [address("抚顺市新抚区新华街7号", "新华街", 7, 123.92)],
                         "2022-01-01T00:00:00+08:00")
    return url


def test_a_retired_or_renamed_address_geocodes_for_its_time(town):
    def best(c, q: str, when: str):
        found = geocode(c, SOURCES, q, parse_instant(when), 1, ANONYMOUS)
        return (found[0].fid, found[0].score >= MATCH) if found else None

    with psycopg.connect(town, autocommit=True) as c:
        assert best(c, "榆林一路39号", "2020-06-01T00:00:00+08:00") == ("抚顺市新抚区榆林1路39号", True)
        gone = best(c, "榆林一路39号", "2021-06-01T00:00:00+08:00")
        assert gone is None or not gone[1]
        assert best(c, "旧街7号", "2021-12-31T23:59:59+08:00") == ("抚顺市新抚区旧街7号", True)
        assert best(c, "新华街7号", "2022-01-01T00:00:00+08:00") == ("抚顺市新抚区新华街7号", True)
        old = best(c, "旧街7号", "2023-01-01T00:00:00+08:00")
        assert old is None or not old[1]
        for when, want in (("2020-01-01", "抚顺市新抚区旧街7号"), ("2024-01-01", "抚顺市新抚区新华街7号")):
            got = reverse(c, SOURCES, 123.9201, 41.8701, parse_instant(when + "T12:00:00+08:00"),
                          ANONYMOUS)
            assert got["address"].fid == want and got["grid_code"] == "210402001001001"
            assert got["street"] == {"code": "210402001", "name": "榆林街道"}


# ------------------------------------------------------------------------------ HTTP and CLI

@pytest.fixture(scope="module")
def live(demo_url, tmp_path_factory):
    with serving(demo_url, tmp_path_factory.mktemp("geocode")) as base:
        yield base


def test_http_answers_the_contract(live, demo_url):
    with psycopg.connect(demo_url) as c:
        address, = c.execute("select fid from city.addresses order by fid limit 1").fetchone()
    r = httpx.get(f"{live}/api/geocode", params={"q": address.removeprefix("抚顺市") + "楼下",
                                                  "datetime": DEMO_UNTIL}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "FeatureCollection" and body["features"]
    f = body["features"][0]
    assert f["id"] == address and f["geometry"]["type"] == "Point"
    assert {"score", "level", "address", "division_code", "grid_code"} <= set(f["properties"])
    scores = [x["properties"]["score"] for x in body["features"]]
    assert scores == sorted(scores, reverse=True)
    item = httpx.get(f["properties"]["item"], timeout=30)
    assert item.status_code == 200 and item.json()["id"] == address
    lon, lat = f["geometry"]["coordinates"]
    r = httpx.get(f"{live}/api/reverse", params={"lon": lon, "lat": lat}, timeout=30)
    assert r.status_code == 200, r.text
    rev = r.json()
    assert rev["address"]["id"] == address and rev["distance_m"] < 1
    assert set(rev) >= {"address", "distance_m", "building", "grid_code", "community",
                        "street", "district", "responsibility_zone"}
    # the same point given in Web Mercator
    from pyproj import Transformer
    x, y = Transformer.from_crs(4490, 3857, always_xy=True).transform(lon, lat)
    r = httpx.get(f"{live}/api/reverse", params={"lon": x, "lat": y, "crs": "EPSG:3857"}, timeout=30)
    assert r.status_code == 200 and r.json()["address"]["id"] == address


@pytest.mark.parametrize("path, params, says", [
    ("geocode", {"q": ""}, "required"),
    ("geocode", {"q": "x" * 10_000}, "at most"),
    ("geocode", {"q": "榆林1路\x0739号"}, "control"),
    ("geocode", {"q": "榆林1路", "datetime": "yesterday"}, "datetime"),
    ("geocode", {"q": "榆林1路", "limit": "0"}, "limit"),
    ("reverse", {"lon": "41.87", "lat": "123.9"}, "swapped"),
    ("reverse", {"lon": "116.4", "lat": "39.9"}, "outside the city"),
    ("reverse", {"lon": "nan", "lat": "41.87"}, "finite"),
    ("reverse", {"lat": "41.87"}, "lon"),
    ("geocode", {"q": "榆林1路", "limit": "2.5"}, "limit"),
    ("reverse", {"lon": "123.9", "lat": "41.87", "crs": "EPSG:99999"}, "crs"),
    ("reverse", {"lon": "abc", "lat": "41.87"}, "lon"),
])
def test_http_bad_input_is_a_clear_400(live, path, params, says):
    r = httpx.get(f"{live}/api/{path}", params=params, timeout=30)
    assert r.status_code == 400, r.text
    assert says in r.text


def test_cli_geocodes_a_gb18030_csv(demo_url, tmp_path):
    with psycopg.connect(demo_url) as c:
        address, = c.execute("select fid from city.addresses order by fid limit 1").fetchone()
    src = tmp_path / "in.csv"
    src.write_bytes(("编号,地址\n1," + address.removeprefix("抚顺市") + "附近\n2,长江路5号\n3,\n")
                    .encode("gb18030"))
    out = tmp_path / "out.csv"
    env = {**os.environ, "DATABASE_URL": demo_url, "GISPLATFORM_DATA_DIR": str(tmp_path)}
    r = subprocess.run([CLI, "geocode", str(src), str(out), "--column", "地址",
                        "--datetime", DEMO_UNTIL], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "3 rows geocoded: 1 matched" in r.stderr
    rows = list(csv.DictReader(out.read_text(encoding="utf-8-sig").splitlines()))
    assert [x["编号"] for x in rows] == ["1", "2", "3"]
    assert rows[0]["geocode_fid"] == address and rows[0]["geocode_match"] == "yes"
    assert rows[0]["geocode_level"] == "number" and float(rows[0]["geocode_score"]) >= MATCH
    assert rows[1]["geocode_match"] == "no"
    assert rows[2]["geocode_error"] and rows[2]["geocode_fid"] == ""
    bad = subprocess.run([CLI, "geocode", str(src), str(tmp_path / "x.csv"), "--column", "addr"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no column 'addr'" in bad.stderr
    assert not (tmp_path / "x.csv").exists()


def test_batch_over_http_is_a_job_of_a_token(live, demo_url):
    from gisplatform.security import create_token

    with psycopg.connect(demo_url, autocommit=True) as c:
        address, = c.execute("select fid from city.addresses order by fid limit 1").fetchone()
        (_, mine), (_, other) = (create_token(c, "zhujian", [("buildings", "read")])
                                 for _ in range(2))
    body = ("id,address\n1," + address + "\n2,长江路5号\n").encode("gb18030")
    url = f"{live}/api/geocode/batch"
    assert httpx.post(url, content=body, headers={"Content-Type": "text/csv"}).status_code == 401

    def post(data: bytes, token: str = mine, **params):
        return httpx.post(url, content=data, params=params, timeout=30, headers={
            "Content-Type": "text/csv", "Authorization": f"Bearer {token}"})
    for data, params, status, says in (
            (body, {"column": "地址"}, 400, "no column"),
            (body, {"datetime": "soon"}, 400, "datetime"),
            (b"\xff\xfe\x00\x00", {}, 400, "CSV"),
            ("id,address,geocode_score\n1,x,1\n".encode(), {}, 400, "geocoded before")):
        r = post(data, **params)
        assert r.status_code == status and says in r.text, (params, r.text)
    r = httpx.post(url, content=body, headers={"Content-Type": "application/json",
                                               "Authorization": f"Bearer {mine}"})
    assert r.status_code == 415
    r = post(body, datetime=DEMO_UNTIL)
    assert r.status_code == 202, r.text
    where = r.headers["Location"]
    import time
    deadline = time.monotonic() + 60
    while (job := httpx.get(where, headers={"Authorization": f"Bearer {mine}"}).json()
           )["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "done" and job["matched"] == 1, job
    assert job["progress"] == {"rows": 2, "total": 2}
    # another token (or none) does not see it
    assert httpx.get(where, headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert httpx.get(where).status_code in (401, 404)
    result = next(x["href"] for x in job["links"] if x["rel"] == "enclosure")
    r = httpx.get(result, headers={"Authorization": f"Bearer {mine}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(r.content.decode("utf-8-sig").splitlines()))
    assert rows[0]["geocode_fid"] == address and rows[0]["geocode_match"] == "yes"
    assert rows[1]["geocode_match"] == "no"


def test_the_ogc_process_answers_as_the_api(live, demo_url):
    with psycopg.connect(demo_url) as c:
        address, = c.execute("select fid from city.addresses order by fid limit 1").fetchone()
    url = f"{live}/ogc/processes/geocode/execution"
    one = httpx.post(url, json={"inputs": {"address": address, "limit": 2,
                                           "datetime": DEMO_UNTIL}}, timeout=60)
    assert one.status_code == 200, one.text
    api = httpx.get(f"{live}/api/geocode", params={"q": address, "limit": 2,
                                                   "datetime": DEMO_UNTIL}, timeout=30).json()
    assert one.json()["features"] == api["features"] and api["features"][0]["id"] == address
    many = httpx.post(url, json={"inputs": {"addresses": [address, "长江路5号"]}}, timeout=60)
    assert many.status_code == 200 and len(many.json()["results"]) == 2
    for bad in ({}, {"address": address, "addresses": [address]}, {"address": ""},
                {"address": address, "limit": 0}, {"addresses": ["x"] * 1001}):
        r = httpx.post(url, json={"inputs": bad}, timeout=60)
        assert r.status_code == 400, (bad, r.text)
