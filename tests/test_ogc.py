"""OGC API Features at /ogc as clients meet it: OWSLib, GDAL's OAPIF driver, raw HTTP."""

from __future__ import annotations

import json

import httpx
import psycopg
import pyogrio.raw
import pytest
import shapely
from conftest import DEMO_UNTIL
from owslib.ogcapi.features import Features
from pyproj import Transformer

from gisplatform.security import create_token, mask_value
from gisplatform.temporal import TemporalStore
from layers import LAYERS

PUBLIC = ["admin-areas", "grid-cells", "addresses", "buildings", "legal-persons", "components",
          "cases", "responsibility-zones", "population-grid", "population-areas"]
GRANTED = ["housing-units", "persons", "cameras"]
F = {"f": "json"}


def items(base, cid, **params):
    r = httpx.get(f"{base}/ogc/collections/{cid}/items", params={**F, **params}, timeout=60)
    return r


def test_collections_have_metadata(live, demo_url):
    doc = httpx.get(f"{live}/ogc/collections", params=F).json()
    ids = {c["id"] for c in doc["collections"]}
    expected = set(LAYERS) | {f"{n}-history" for n in LAYERS} | {"population-grid"}
    assert expected <= ids
    b = next(c for c in doc["collections"] if c["id"] == "buildings")
    assert "Owner" in b["description"] and "unconditional" in b["description"]
    # extents are the data's (the planner's estimate of the bbox: float4, a little wider)
    with psycopg.connect(demo_url) as c:
        box = c.execute("select st_xmin(e), st_ymin(e), st_xmax(e), st_ymax(e) from"
                        " (select st_extent(geom) e from city.buildings_version) x").fetchone()
    assert b["extent"]["spatial"]["bbox"][0] == pytest.approx(box, abs=1e-4)
    assert b["extent"]["temporal"]["interval"][0][0].startswith("2017-12-31T16:00:00")
    assert b["extent"]["temporal"]["interval"][0][1] is None  # buildings still stand
    assert "http://www.opengis.net/def/crs/EPSG/0/4490" in b["crs"]
    assert b["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/4490"


def test_owslib_reads_every_public_collection(live):
    w = Features(f"{live}/ogc")
    for cid in PUBLIC + [f"{c}-history" for c in PUBLIC if not c.startswith("population")]:
        res = w.collection_items(cid, limit=5)
        assert res["numberReturned"] == len(res["features"]) > 0, cid
        assert res["numberMatched"] >= res["numberReturned"]
    q = w.collection_queryables("buildings")
    assert {"floors", "height", "use", "valid_from"} <= set(q["properties"])


@pytest.mark.parametrize("cid", PUBLIC + ["buildings-history", "legal-persons-history"])
def test_gdal_oapif_reads_all_pages(live, cid):
    expected = items(live, cid, limit=1).json()["numberMatched"]
    meta, _, geoms, fields = pyogrio.raw.read(f"OAPIF:{live}/ogc", layer=cid,
                                              datetime_as_string=True)
    assert len(geoms) == expected > 0
    # GDAL asks for the storage CRS and hands coordinates back in GIS (lon, lat) order
    assert meta["crs"] == "EPSG:4490"
    x0, y0, x1, y1 = shapely.total_bounds(shapely.from_wkb(geoms))
    assert 123.6 < x0 <= x1 < 125.5 and 41.2 < y0 <= y1 < 42.5


def _follow(url, params):
    """Every page from `url` on through the `next` links: (ids, the next hrefs)."""
    seen, hrefs = [], []
    while url:
        page = httpx.get(url, params=params, timeout=60).json()
        seen += [f["id"] for f in page["features"]]
        url = next((ln["href"] for ln in page["links"] if ln["rel"] == "next"), None)
        hrefs += [url] if url else []
        params = None
    return seen, hrefs


def test_paging_follows_next_without_gaps(live, demo_url):
    """`next` links carry a cursor (the last row's key) in the default order, and walk
    exactly the snapshot / the history, in order, as the database holds it at a date."""
    at = "2021-06-01T00:00:00+08:00"
    seen, hrefs = _follow(f"{live}/ogc/collections/buildings/items",
                          {**F, "limit": 100, "datetime": at})
    with psycopg.connect(demo_url) as c:
        want = [r[0] for r in c.execute(
            "select fid from city.buildings_version where upper_inf(recorded)"
            " and valid @> %s::timestamptz order by fid, vid", (at,))]
        versions = [r[0] for r in c.execute(
            "select vid from city.cameras_version where upper_inf(recorded) order by vid")]
    assert seen == want and len(hrefs) == len(want) // 100
    assert all("cursor=" in h and "datetime=" in h and "f=json" in h for h in hrefs)
    # offsets in the links count the rows before the page, for `prev` and numberMatched
    assert "offset=200" in hrefs[1]
    page = httpx.get(hrefs[1], timeout=60).json()
    prev = next(ln["href"] for ln in page["links"] if ln["rel"] == "prev")
    assert "offset=100" in prev and "cursor" not in prev
    assert [f["id"] for f in httpx.get(prev, timeout=60).json()["features"]] == want[100:200]
    # the history collection pages by version id (cameras: with a read grant)
    with psycopg.connect(demo_url) as c:
        _, token = create_token(c, "gongan", [("cameras", "read")], label="paging")
        c.commit()
    seen, hrefs = _follow(f"{live}/ogc/collections/cameras-history/items",
                          {**F, "limit": 50, "token": token})
    assert [int(v) for v in seen] == versions and hrefs
    # a sort order pages by offset, as before
    seen, hrefs = _follow(f"{live}/ogc/collections/buildings/items",
                          {**F, "limit": 300, "sortby": "-floors", "datetime": at})
    assert sorted(seen) == sorted(want) and not any("cursor=" in h for h in hrefs)


@pytest.mark.parametrize("cursor", ["x", "WyJhIl0", "WyJhIiwgIjEiXQ", "WzEsIDJd", "%00"])
def test_a_cursor_not_ours_is_400(live, cursor):
    r = items(live, "buildings", cursor=cursor)
    assert r.status_code == 400 and "cursor" in r.json()["description"]
    r = items(live, "buildings", sortby="floors", cursor="WyJhIiwgMV0")
    assert r.status_code == 400 and "sortby" in r.json()["description"]


# ------------------------------------------------------------------- CRS

def first_coord(feature):
    c = feature["geometry"]["coordinates"]
    while isinstance(c[0], list):
        c = c[0]
    return c


def test_crs_output_and_axis_order(live):
    base = items(live, "buildings", limit=1, sortby="building_code").json()["features"][0]
    lon, lat = first_coord(base)
    assert 123 < lon < 125 and 41 < lat < 43
    for uri, check in [
        ("http://www.opengis.net/def/crs/EPSG/0/4490", lambda x, y: (x, y) == (lat, lon)),
        ("http://www.opengis.net/def/crs/EPSG/0/4326", lambda x, y: (x, y) == (lat, lon)),
        ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", lambda x, y: (x, y) == (lon, lat)),
    ]:
        r = items(live, "buildings", limit=1, sortby="building_code", crs=uri)
        assert r.headers["content-crs"] == f"<{uri}>"
        assert check(*first_coord(r.json()["features"][0])), uri
    r = items(live, "buildings", limit=1, sortby="building_code",
              crs="http://www.opengis.net/def/crs/EPSG/0/3857")
    x, y = first_coord(r.json()["features"][0])
    ex, ey = Transformer.from_crs("EPSG:4490", "EPSG:3857", always_xy=True).transform(lon, lat)
    assert (x, y) == pytest.approx((ex, ey), abs=0.01)
    r = items(live, "buildings", limit=1, sortby="building_code",
              crs="http://www.opengis.net/def/crs/EPSG/0/4550")
    n, e = first_coord(r.json()["features"][0])  # EPSG:4550 is northing, easting
    ee, en = Transformer.from_crs("EPSG:4490", "EPSG:4550", always_xy=True).transform(lon, lat)
    assert (n, e) == pytest.approx((en, ee), abs=0.01)
    assert items(live, "buildings", crs="http://www.opengis.net/def/crs/EPSG/0/2000").status_code == 400


def test_bbox_in_each_crs_selects_the_same_features(live):
    lon0, lat0, lon1, lat1 = 123.87, 41.86, 123.88, 41.87
    ref = items(live, "buildings", bbox=f"{lon0},{lat0},{lon1},{lat1}", limit=1000).json()
    ids = {f["id"] for f in ref["features"]}
    assert ids
    latlon = items(live, "buildings", bbox=f"{lat0},{lon0},{lat1},{lon1}", limit=1000,
                   **{"bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4490"}).json()
    assert {f["id"] for f in latlon["features"]} == ids
    t = Transformer.from_crs("EPSG:4490", "EPSG:3857", always_xy=True)
    x0, y0 = t.transform(lon0, lat0)
    x1, y1 = t.transform(lon1, lat1)
    merc = items(live, "buildings", bbox=f"{x0},{y0},{x1},{y1}", limit=1000,
                 **{"bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/3857"}).json()
    assert {f["id"] for f in merc["features"]} == ids


# ------------------------------------------------------------------ time

def test_datetime_moves_the_snapshot(live, demo_url):
    with psycopg.connect(demo_url) as c:
        store = TemporalStore(LAYERS["buildings"].spec)
        for at in ("2018-06-01T00:00:00+08:00", DEMO_UNTIL):
            want = {r["fid"] for r in store.snapshot(c, at=at)}
            got = items(live, "buildings", datetime=at.replace("+08:00", "+08:00"), limit=10000).json()
            assert {f["id"] for f in got["features"]} == want
    inst = items(live, "buildings", datetime="2018-06-01T00:00:00Z", limit=1).json()["numberMatched"]
    span = items(live, "buildings", datetime="2018-06-01T00:00:00Z/..", limit=1).json()["numberMatched"]
    before = items(live, "buildings", datetime="../2018-01-02T00:00:00Z", limit=1).json()["numberMatched"]
    assert span > inst and before > 0
    ids = [f["id"] for f in items(live, "buildings", datetime="2018-06-01T00:00:00Z/..",
                                   limit=10000).json()["features"]]
    assert len(ids) == len(set(ids))  # alive during the interval: one item per building


@pytest.mark.parametrize("bad", ["2019-01-01T00:00:00", "garbage", "2020-01-01T00:00:00Z/2019-01-01T00:00:00Z"])
def test_bad_datetime_is_400(live, bad):
    r = items(live, "buildings", datetime=bad)
    assert r.status_code == 400, r.text


def test_known_at_is_transaction_time(live):
    now = items(live, "buildings", limit=1).json()["numberMatched"]
    # the demo was loaded today: in 2020 the platform knew nothing yet
    assert items(live, "buildings", limit=1, known_at="2020-01-01T00:00:00Z").json()["numberMatched"] == 0
    assert items(live, "buildings", limit=1, known_at="2999-01-01T00:00:00Z").json()["numberMatched"] == now
    assert items(live, "buildings", known_at="yesterday").status_code == 400


def test_history_collection_has_versions(live, demo_url):
    with psycopg.connect(demo_url) as c:
        fid = c.execute("select fid from city.buildings_version where upper_inf(recorded)"
                        " group by fid having count(*) > 1 limit 1").fetchone()[0]
    r = items(live, "buildings-history", building_code=fid, sortby="valid_from").json()
    versions = [f["properties"] for f in r["features"]]
    assert len(versions) >= 2 and all(v["fid"] == fid for v in versions)
    assert versions[0]["valid_to"] == versions[1]["valid_from"]
    vid = r["features"][0]["id"]
    one = httpx.get(f"{live}/ogc/collections/buildings-history/items/{vid}", params=F).json()
    assert one["properties"]["fid"] == fid


# -------------------------------------------------------------- filters

def test_property_filters_sort_properties_skip_geometry(live):
    r = items(live, "buildings", use="commercial", sortby="-floors", properties="floors,use",
              skipGeometry="true", limit=50).json()
    floors = [f["properties"]["floors"] for f in r["features"]]
    assert floors == sorted(floors, reverse=True) and r["features"]
    assert all(set(f["properties"]) == {"floors", "use"} and f["geometry"] is None
               for f in r["features"])
    assert items(live, "buildings", sortby="nope").status_code == 400


def test_cql2_text_and_json(live):
    txt = items(live, "buildings", filter="floors > 20 AND use = 'residential'", limit=1000).json()
    assert txt["features"] and all(f["properties"]["floors"] > 20 for f in txt["features"])
    spatial = items(live, "buildings", limit=1000, filter=(
        "S_INTERSECTS(geometry, POLYGON((123.87 41.86, 123.88 41.86, 123.88 41.87, 123.87 41.87,"
        " 123.87 41.86)))")).json()
    box = items(live, "buildings", bbox="123.87,41.86,123.88,41.87", limit=1000).json()
    assert {f["id"] for f in spatial["features"]} <= {f["id"] for f in box["features"]}
    assert spatial["features"]
    js = {"op": "and", "args": [{"op": ">", "args": [{"property": "floors"}, 20]},
                                {"op": "=", "args": [{"property": "use"}, "residential"]}]}
    # CQL2 JSON goes in a POST body (pygeoapi parses the GET `filter` as CQL2 text)
    r = httpx.post(f"{live}/ogc/collections/buildings/items", params={**F, "limit": 1000},
                   content=json.dumps(js), headers={"Content-Type": "application/query-cql-json"})
    assert r.status_code == 200, r.text
    assert {f["id"] for f in r.json()["features"]} == {f["id"] for f in txt["features"]}
    like = items(live, "addresses", filter="address LIKE '抚顺市新抚区%'", limit=5).json()
    assert like["features"] and all(f["properties"]["address"].startswith("抚顺市新抚区")
                                    for f in like["features"])


@pytest.mark.parametrize("bad", ["nope > 1", "floors = 1; drop table city.buildings_version",
                                 "floors >", "name = 'x'' or 1=1 --'"])
def test_bad_or_hostile_filters(live, demo_url, bad):
    r = items(live, "buildings", filter=bad)
    assert r.status_code in (200, 400), r.text  # the quoted one is a valid (empty) query
    if r.status_code == 200:
        assert r.json()["numberMatched"] == 0
    with psycopg.connect(demo_url) as c:
        assert c.execute("select count(*) from city.buildings_version").fetchone()[0] > 0


# --------------------------------------------------------------- access

@pytest.fixture(scope="module")
def tokens(demo_url):
    with psycopg.connect(demo_url) as c:
        _, read = create_token(c, "gongan", [("persons", "read"), ("cameras", "read")], label="t-read")
        _, full = create_token(c, "gongan", [("persons", "read_personal")], label="t-full")
        c.commit()
    return {"read": read, "full": full}


def test_personal_layers_need_a_token(live, tokens):
    for cid in GRANTED + ["persons-history"]:
        assert items(live, cid).status_code == 401, cid
    r = items(live, "persons", limit=1, headers=None)
    assert r.status_code == 401
    assert httpx.get(f"{live}/ogc/collections/persons/items", params=F,
                     headers={"Authorization": "Bearer gp_not-a-token"}).status_code == 401
    # a token without a grant on the layer
    assert httpx.get(f"{live}/ogc/collections/housing-units/items", params=F,
                     headers={"Authorization": f"Bearer {tokens['read']}"}).status_code == 403


def test_masking_and_audit(live, tokens, demo_url):
    def get(secret, **kw):
        r = httpx.get(f"{live}/ogc/collections/persons/items",
                      params={**F, "limit": 5, "sortby": "vid", **kw},
                      headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200, r.text
        return r.json()

    with psycopg.connect(demo_url) as c:
        audits = lambda: c.execute("select count(*) from city.audit_log").fetchone()[0]  # noqa: E731
        n0 = audits()
        masked = get(tokens["read"])["features"]
        assert audits() == n0  # masked reads are not personal reads
        full = get(tokens["full"])["features"]
        assert audits() == n0 + 1
        row = c.execute("select layer, action, detail from city.audit_log order by id desc limit 1").fetchone()
    assert row[0] == "persons" and row[2]["features"] == 5
    for m, u in zip(masked, full):
        mp, up = m["properties"], u["properties"]
        assert mp["id_number"] == mask_value("id_number", up["id_number"]) != up["id_number"]
        assert mp["name"] == mask_value("name", up["name"])
        assert mp["phone"] == mask_value("phone", up["phone"])
        assert mp["birth_date"] == mask_value("date", up["birth_date"])
        assert mp["household_type"] == up["household_type"]
    # the token as a query parameter, for clients that cannot set headers
    r = httpx.get(f"{live}/ogc/collections/persons/items", params={**F, "token": tokens["read"], "limit": 1})
    assert r.status_code == 200


def test_public_layer_masks_personal_fields_for_everyone(live, demo_url):
    lp = items(live, "legal-persons", limit=20).json()["features"]
    with psycopg.connect(demo_url) as c:
        for f in lp:
            real = c.execute("select legal_representative from city.legal_persons where fid = %s",
                             (f["id"],)).fetchone()[0]
            assert f["properties"]["legal_representative"] == mask_value("name", real)


def test_population_aggregates_are_public(live, demo_url):
    at = "2024-01-01T00:00:00+08:00"
    grid = items(live, "population-areas", datetime=at, limit=100).json()
    with psycopg.connect(demo_url) as c:
        persons = len(TemporalStore(LAYERS["persons"].spec).snapshot(c, at=at))
    assert sum(f["properties"]["total"] for f in grid["features"]) == persons
    assert items(live, "population-grid", limit=3).json()["numberMatched"] > 0


# --------------------------------------------------------- transactions

def building_feature(code: str, floors: int = 6, **extra) -> dict:
    x, y = 123.915, 41.862
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[
        [x, y], [x + 0.0003, y], [x + 0.0003, y + 0.0002], [x, y + 0.0002], [x, y]]]},
        "properties": {"building_code": code, "floors": floors, "height": floors * 3.2,
                       "use": "residential", **extra}}


def test_transactions_are_versioned_writes(live, demo_url):
    with psycopg.connect(demo_url) as c:
        _, writer = create_token(c, "zhujian", [("buildings", "write")], label="t-write")
        _, reader = create_token(c, "zhujian", [("buildings", "read")], label="t-ro")
        c.commit()
    url = f"{live}/ogc/collections/buildings/items"
    h = {"Content-Type": "application/geo+json"}
    auth = {**h, "Authorization": f"Bearer {writer}"}
    code = "21040299990001"
    body = json.dumps(building_feature(code, valid_from="2025-01-01T00:00:00+08:00"))
    assert httpx.post(url, content=body, headers=h).status_code == 401
    assert httpx.post(url, content=body, headers={**h, "Authorization": f"Bearer {reader}"}).status_code == 403
    with psycopg.connect(demo_url) as c:
        n0 = c.execute("select count(*) from city.buildings_version").fetchone()[0]
        a0 = c.execute("select count(*) from city.audit_log where action = 'write'").fetchone()[0]
    for bad, reason in [(building_feature("11x"), "building_code"),
                        (building_feature(code, floors=40), "too low"),
                        ({**building_feature(code), "geometry": {"type": "Point", "coordinates": [116.4, 39.9]}},
                         "outside Fushun")]:
        if reason == "too low":
            bad["properties"]["height"] = 20.0
        r = httpx.post(url, content=json.dumps(bad), headers=auth)
        assert r.status_code == 400 and reason in r.text, r.text
    with psycopg.connect(demo_url) as c:
        assert c.execute("select count(*) from city.buildings_version").fetchone()[0] == n0
    r = httpx.post(url, content=body, headers=auth)
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(f"/buildings/items/{code}")
    assert httpx.post(url, content=body, headers=auth).status_code == 409
    new = json.dumps(building_feature(code, floors=8, valid_from="2026-03-01T00:00:00+08:00"))
    assert httpx.put(f"{url}/{code}", content=new, headers=auth).status_code == 204
    assert httpx.put(f"{url}/21040299990002", content=new, headers=auth).status_code == 400
    got = httpx.get(f"{url}/{code}", params=F).json()
    assert got["properties"]["floors"] == 8
    patch = json.dumps({"properties": {"structure": "steel", "valid_from": "2026-06-01T00:00:00+08:00"}})
    assert httpx.patch(f"{url}/{code}", content=patch, headers=h).status_code == 401
    r = httpx.patch(f"{url}/{code}", content=patch, headers=auth)
    assert r.status_code == 204, r.text
    got = httpx.get(f"{url}/{code}", params=F).json()["properties"]
    assert (got["floors"], got["structure"]) == (8, "steel")
    bad = json.dumps({"properties": {"use": "castle"}})
    assert httpx.patch(f"{url}/{code}", content=bad, headers=auth).status_code == 400
    assert httpx.delete(f"{url}/{code}", headers=auth).status_code == 200
    assert httpx.get(f"{url}/{code}", params=F).status_code == 404
    hist = items(live, "buildings-history", building_code=code, sortby="valid_from").json()["features"]
    assert [(f["properties"]["floors"], f["properties"]["structure"]) for f in hist] == [
        (6, None), (8, None), (8, "steel")]
    assert all(f["properties"]["valid_to"] is not None for f in hist)
    with psycopg.connect(demo_url) as c:
        assert c.execute("select count(*) from city.audit_log where action = 'write'").fetchone()[0] == a0 + 4


# ------------------------------------------------------------ processes

def execute(base, pid, inputs, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{base}/ogc/processes/{pid}/execution", json={"inputs": inputs},
                      headers=headers, timeout=60)


def test_processes_answer_with_aggregates_and_public_fields(live, tokens, demo_url):
    ids = {p["id"] for p in httpx.get(f"{live}/ogc/processes", params=F).json()["processes"]}
    assert {"population-in-polygon", "cameras-covering", "case-hotspots", "legal-persons-near"} <= ids
    area = {"type": "Polygon", "coordinates": [[[123.85, 41.84], [123.95, 41.84], [123.95, 41.9],
                                                [123.85, 41.9], [123.85, 41.84]]]}
    at = "2024-01-01T00:00:00+08:00"
    r = execute(live, "population-in-polygon", {"geometry": area, "datetime": at})
    assert r.status_code == 200, r.text
    with psycopg.connect(demo_url) as c:
        want = c.execute("select count(*) from city.persons_version where upper_inf(recorded)"
                         " and valid @> %s::timestamptz and st_intersects(geom, st_setsrid("
                         "st_geomfromgeojson(%s), 4490))", (at, json.dumps(area))).fetchone()[0]
        cam = c.execute("select device_id, st_x(geom), st_y(geom), azimuth from city.cameras"
                        " where range_m > 40 limit 1").fetchone()
        bld = c.execute("select fid from city.buildings limit 1").fetchone()[0]
    body = r.json()
    assert body["total"] == want > 0 and body["registered"] + body["floating"] == want
    assert "id_number" not in json.dumps(body)
    import math
    did, x, y, az = cam
    px = x + 20 * math.sin(math.radians(az)) / (111320 * math.cos(math.radians(y)))
    py = y + 20 * math.cos(math.radians(az)) / 110540
    point = {"type": "Point", "coordinates": [px, py]}
    r = execute(live, "cameras-covering", {"geometry": point})  # no token: 401, as everywhere
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", r.text
    # a token without a grant on cameras: 403
    assert execute(live, "cameras-covering", {"geometry": point}, token=tokens["full"]).status_code == 403
    r = execute(live, "cameras-covering", {"geometry": point}, token=tokens["read"])
    assert r.status_code == 200, r.text
    assert did in [c["device_id"] for c in r.json()["cameras"]]
    assert "stream_url" not in r.text and "rtsp" not in r.text
    hot = execute(live, "case-hotspots", {"start": "2018-01-01T00:00:00+08:00",
                                          "end": DEMO_UNTIL, "top": 5}).json()["cells"]
    assert len(hot) == 5 and [h["cases"] for h in hot] == sorted((h["cases"] for h in hot), reverse=True)
    near = execute(live, "legal-persons-near", {"collection": "buildings", "id": bld, "distance": 500})
    assert near.status_code == 200, near.text
    dists = [p["distance_m"] for p in near.json()["legal_persons"]]
    assert dists == sorted(dists) and all(d <= 500 for d in dists)
    assert "legal_representative" not in near.text
    assert execute(live, "legal-persons-near", {"collection": "persons", "id": "x",
                                                "distance": 10}).status_code == 401
    assert execute(live, "legal-persons-near", {"collection": "castles", "id": "x",
                                                "distance": 10}).status_code == 400
    assert execute(live, "population-in-polygon", {"geometry": "nope"}).status_code == 400


def test_records_catalogue_describes_every_layer(live):
    recs = httpx.get(f"{live}/ogc/collections/catalogue/items", params={**F, "limit": 100}).json()
    by_id = {r["id"]: r for r in recs["features"]}
    assert set(LAYERS) <= set(by_id)
    persons = by_id["persons"]["properties"]
    assert persons["sharing"] == "conditional" and "id_number" in persons["personalFields"]
    assert persons["contacts"][0]["roles"] == ["owner"] and persons["updateFrequency"]
    assert {f["name"] for f in persons["fields"]} >= {"id_number", "household_type"}
    assert by_id["buildings"]["time"]["interval"] == ["2017-12-31T16:00:00Z", None]  # the data's
    hit = httpx.get(f"{live}/ogc/collections/catalogue/items", params={**F, "q": "Cameras"}).json()
    assert "cameras" in {r["id"] for r in hit["features"]}
    one = httpx.get(f"{live}/ogc/collections/catalogue/items/legal-persons", params=F).json()
    assert one["properties"]["layer"] == "legal-persons"
