"""Layers as data (layers/definition.py, published.py, inference.py, cli.py): a dataset
published from a file with `gisplatform layer create` is a layer like the built-in ones —
served through OGC API (OWSLib), vector tiles and the change feed, its personal attribute
masked on each — and bad definitions and files get one clear error and leave nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import psycopg
import pytest
from conftest import fresh_database, serving

from gisplatform.registry.definition import DefinitionError, describe, parse, parse_toml
from layers import LAYERS
from layers.fushun import URBAN_BBOX
from layers.inference import infer

CLI = str(Path(sys.executable).with_name("gisplatform"))
X0, Y0 = (URBAN_BBOX[0] + URBAN_BBOX[2]) / 2, (URBAN_BBOX[1] + URBAN_BBOX[3]) / 2
def _resident_id() -> str:
    """A valid GB 11643 number (layers/codes.py)."""
    import datetime

    from layers.codes import make_resident_id
    return make_resident_id("210402", datetime.date(1990, 1, 1), 123)


def schools(path: Path, n: int = 5, **change) -> Path:
    """A GeoJSON of schools: id, 名称, 学生数, 联系人, 电话 (the last two personal)."""
    feats = []
    for i in range(n):
        props = {"id": f"S{i:03d}", "名称": f"第{i + 1}中学", "students": 300 + i,
                 "联系人": "张三", "电话": f"1391234{i:04d}", "opened": "2001-09-01"}
        geom = {"type": "Point", "coordinates": [X0 + i * 0.001, Y0 + i * 0.001]}
        feats.append({"type": "Feature", "properties": props, "geometry": geom})
    for i, f in change.get("features", {}).items():
        feats[i] = f
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats},
                               ensure_ascii=False), encoding="utf-8")
    return path


def run(url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data_dir)}
    return subprocess.run([CLI, "layer", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def url(pg):
    return fresh_database(pg, "published")


def nothing_left(url: str, name: str) -> bool:
    table = name.replace("-", "_")
    with psycopg.connect(url) as c:
        return (c.execute("select count(*) from city.layer_registry where name = %s",
                          (name,)).fetchone()[0] == 0
                and c.execute("select to_regclass(%s)", (f"city.{table}_version",)
                              ).fetchone()[0] is None)


def test_every_builtin_layer_has_a_definition_that_round_trips():
    for layer in LAYERS.values():
        d = describe(layer)
        assert d.builtin and parse_toml(d.to_toml()) == d
        assert [a.name for a in d.attributes] == list(layer.spec.attribute_names)
        assert {a.name for a in d.attributes if a.personal} == set(layer.personal)
    assert describe(LAYERS["persons"]).id_rule.startswith("keyed pseudonym")


def test_inference_marks_personal_columns_by_name_and_value(tmp_path):
    rows = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [X0, Y0 + i / 1e3]},
             "properties": {"code": f"C{i}", "who": _resident_id(), "contact_no": "13912345678",
                            "座机": "024-57671234", "名称": "x", "人数": i,
                            "day": "2010-01-15", "serial": "20100115"}} for i in range(3)]
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": rows}), encoding="utf-8")
    got = infer(path, "things", department="test")
    attrs = {a.source: a for a in got.definition.attributes}
    assert attrs["who"].personal and attrs["who"].mask == "id_number"  # by value
    assert attrs["contact_no"].personal and attrs["contact_no"].mask == "phone"
    assert attrs["座机"].personal and attrs["座机"].mask == "phone"
    # dates and digit codes are not phone numbers
    assert not attrs["day"].personal and attrs["day"].type == "date"
    assert not attrs["serial"].personal
    assert not attrs["名称"].personal and attrs["名称"].name == "name"
    assert attrs["名称"].title_zh == "名称"
    assert attrs["人数"].type == "integer" and attrs["code"].type == "text"
    assert got.definition.id_attribute == "code"
    assert any("personal (id_number)" in n for n in got.notes)
    # --public-field makes a column public, and says so
    got = infer(path, "things", department="test", public=("contact_no",))
    assert not {a.source: a for a in got.definition.attributes}["contact_no"].personal


def test_dry_run_prints_the_definition_and_writes_nothing(url, tmp_path):
    r = run(url, tmp_path, "create", "schools-dry", "--from", str(schools(tmp_path / "s.geojson")),
            "--department", "教育局", "--dry-run")
    assert r.returncode == 0, r.stderr
    d = parse_toml(r.stdout)
    by_source = {a.source: a for a in d.attributes}
    assert by_source["联系人"].personal and by_source["电话"].personal
    assert by_source["opened"].type == "date" and by_source["students"].type == "integer"
    assert "personal" in r.stderr and "nothing written" in r.stderr
    assert nothing_left(url, "schools-dry")


@pytest.fixture(scope="module")
def published(url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schools")
    r = run(url, tmp, "create", "schools", "--from", str(schools(tmp / "schools.geojson")),
            "--department", "抚顺市教育局 Education Bureau", "--sharing", "unconditional",
            "--title", "学校", "--title-en", "Schools",
            "--valid-from", "2020-01-01T00:00:00+08:00")
    assert r.returncode == 0, r.stderr
    assert "5 inserted" in r.stderr
    return url


def test_it_is_listed_and_versioned(published, tmp_path):
    r = run(published, tmp_path, "list", "--json")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    mine = next(x for x in rows if x["name"] == "schools")
    assert mine["builtin"] is False and mine["title"] == "学校 Schools"
    assert {x["name"] for x in rows} >= set(LAYERS)
    with psycopg.connect(published) as c:
        n, = c.execute("select count(*) from city.schools_version where upper_inf(recorded)"
                       ).fetchone()
        actor, action = c.execute("select actor, action from city.layer_registry"
                                  " where name = 'schools'").fetchone()
    assert n == 5 and action == "create" and actor.startswith("cli:")


def test_it_is_served_like_a_builtin_layer_with_its_personal_fields_masked(published, tmp_path):
    from owslib.ogcapi.features import Features

    with serving(published, tmp_path) as base:
        api = Features(f"{base}/ogc")
        assert "schools" in [c["id"] for c in api.collections()["collections"]]
        items = api.collection_items("schools", limit=10)
        props = {f["id"]: f["properties"] for f in items["features"]}
        assert len(props) == 5
        p = props["S001"]
        assert p["name"] == "第2中学" and p["students"] == 301
        assert p["phone"] != "13912340001" and "*" in p["phone"]  # masked for anonymous
        assert p["contact"] != "张三"
        # queryables carry the zh titles; a personal attribute is not queryable
        q = httpx.get(f"{base}/ogc/collections/schools/queryables", timeout=30).json()
        assert "phone" not in q["properties"] and "name" in q["properties"]
        assert q["properties"]["name"]["title"] == "名称"  # the source column, its zh title
        assert q["properties"]["students"]["title"] == "students"
        q = httpx.get(f"{base}/ogc/collections/buildings/queryables", timeout=30).json()
        assert q["properties"]["floors"]["title"] == "floors above ground"  # its description
        r = httpx.get(f"{base}/ogc/collections/schools/items",
                      params={"filter": "phone = '13912340001'"}, timeout=30)
        assert r.status_code == 400
        r = httpx.get(f"{base}/ogc/collections/schools/items",
                      params={"filter": "students > 302"}, timeout=30)
        assert sorted(f["id"] for f in r.json()["features"]) == ["S003", "S004"]
        # history collection and datetime
        r = httpx.get(f"{base}/ogc/collections/schools/items",
                      params={"datetime": "2019-06-01T00:00:00+08:00"}, timeout=30)
        assert r.json()["features"] == []
        # vector tiles at the detail zoom: the features, without personal attributes
        t = morecantile.tms.get("WebMercatorQuad").tile(X0, Y0, 14)
        r = httpx.get(f"{base}/tiles/schools/14/{t.x}/{t.y}.mvt", timeout=30)
        assert r.status_code == 200
        feats = mapbox_vector_tile.decode(r.content)["schools"]["features"]
        assert feats and all("phone" not in f["properties"] and "contact" not in f["properties"]
                             for f in feats)
        assert any(f["properties"].get("name") == "第1中学" for f in feats)
        style = httpx.get(f"{base}/tiles/style.json", timeout=30).json()
        assert "schools" in style["sources"]
        # the catalogue record: owner, sharing, the personal fields marked
        rec = httpx.get(f"{base}/ogc/collections/catalogue/items/schools", timeout=30).json()
        fields = {f["name"]: f for f in rec["properties"]["fields"]}
        assert fields["phone"]["personal"] and not fields["name"]["personal"]
        assert "教育局" in json.dumps(rec, ensure_ascii=False)
        # the change feed: the five first versions, masked
        feed = httpx.get(f"{base}/api/changes", params={"layer": "schools"}, timeout=30).json()
        opened = [c for c in feed["changes"] if c["properties"]]
        assert len(opened) == 5 and all("*" in c["properties"]["phone"] for c in opened)
        # GDAL's OAPIF driver (QGIS's) lists and reads it
        import pyogrio

        assert "schools" in pyogrio.list_layers(f"OAPIF:{base}/ogc")[:, 0]
        meta, _, geoms, fields = pyogrio.raw.read(f"OAPIF:{base}/ogc", layer="schools")
        assert len(geoms) == 5 and meta["crs"] == "EPSG:4490"
        assert "phone" in meta["fields"]
    # an export (CLI), masked without a grant
    out = tmp_path / "schools.geojson"
    env = {**os.environ, "DATABASE_URL": published, "GISPLATFORM_DATA_DIR": str(tmp_path)}
    r = subprocess.run([CLI, "export", "schools", str(out)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["features"]
    assert len(rows) == 5 and all("*" in f["properties"]["phone"] for f in rows)


def test_alter_adds_and_keeps_every_version(published, tmp_path):
    r = run(published, tmp_path, "show", "schools")
    d = parse_toml(r.stdout)
    added = d.model_dump(mode="json")
    added["attributes"].append({"name": "principal_phone", "type": "text", "personal": True,
                                "mask": "phone"})
    spec = tmp_path / "schools.toml"
    spec.write_text(parse(added).to_toml(), encoding="utf-8")
    r = run(published, tmp_path, "alter", "schools", "--spec", str(spec))
    assert r.returncode == 0 and "added principal_phone" in r.stderr, r.stderr
    with psycopg.connect(published) as c:
        assert c.execute("select count(*) from city.schools where principal_phone is null"
                         ).fetchone()[0] == 5
        assert c.execute("select count(*) from city.layer_registry where name = 'schools'"
                         ).fetchone()[0] == 2
    # destructive changes are refused and change nothing
    dropped = d.model_dump(mode="json")
    dropped["attributes"] = [a for a in dropped["attributes"] if a["name"] != "students"]
    spec.write_text(parse(dropped).to_toml(), encoding="utf-8")
    r = run(published, tmp_path, "alter", "schools", "--spec", str(spec))
    assert r.returncode == 1 and "students cannot be dropped" in r.stderr
    r = run(published, tmp_path, "show", "schools", "--history")
    assert [json.loads(x)["action"] for x in r.stdout.splitlines()] == ["create", "alter"]


@pytest.mark.parametrize("name, why", [
    ("persons", "built-in collection"), ("population", "statistics topic"),
    ("select", "reserved"), ("../etc", "layer name"),
    ("Bad_Name", "layer name"), ("x-history", "reserved"), ("schools", "already published"),
])
def test_dangerous_or_taken_names_are_refused(published, tmp_path, name, why):
    r = run(published, tmp_path, "create", name, "--from",
            str(schools(tmp_path / "s.geojson")), "--department", "d")
    assert r.returncode != 0 and why in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_bad_files_and_definitions_leave_nothing(url, tmp_path):
    def refused(name: str, path: Path, *extra: str) -> str:
        r = run(url, tmp_path, "create", name, "--from", str(path), "--department", "d", *extra)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        assert nothing_left(url, name)
        return r.stderr

    dup = schools(tmp_path / "dup.geojson")
    data = json.loads(dup.read_text())
    data["features"][3]["properties"]["id"] = "S001"
    dup.write_text(json.dumps(data), encoding="utf-8")
    assert "rows 2 and 4 both have 'S001'" in refused("dup-ids", dup)
    data["features"][3]["properties"]["id"] = "S003"
    data["features"][2]["geometry"] = {"type": "LineString",
                                       "coordinates": [[X0, Y0], [X0 + 0.01, Y0]]}
    mixed = tmp_path / "mixed.geojson"
    mixed.write_text(json.dumps(data), encoding="utf-8")
    assert "mixed geometry types" in refused("mixed", mixed)
    nogeom = tmp_path / "nogeom.csv"
    nogeom.write_text("id,name\n1,a\n2,b\n", encoding="utf-8")
    assert "no geometries" in refused("no-geom", nogeom, "--crs", "EPSG:4490")
    outside = schools(tmp_path / "far.geojson")
    data = json.loads(outside.read_text())
    data["features"][4]["geometry"]["coordinates"] = [116.4, 39.9]  # Beijing
    outside.write_text(json.dumps(data), encoding="utf-8")
    assert "outside Fushun" in refused("far", outside)
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("id,名称,lon,lat\n1,学校,123.9,41.87\n".encode("gbk"))
    assert "cannot read CSV" in refused("gbk", gbk, "--crs", "EPSG:4490")
    # a definition that cannot be a layer
    for bad, msg in (({"attributes": [{"name": "a", "type": "money"}]}, "unknown attribute types"),
                     ({"attributes": [{"name": "a"}, {"name": "a"}]}, "used twice"),
                     ({"attributes": [{"name": "geom"}]}, "reserved"),
                     ({"attributes": [{"name": "a", "personal": True}]}, "is personal")):
        with pytest.raises(DefinitionError, match=msg):
            parse({"name": "bad", "department": "d", "geometry_type": "Point",
                   "id_attribute": "a", **bad})


def test_a_file_over_the_limit_is_refused_before_reading(tmp_path):
    path = schools(tmp_path / "s.geojson")
    with pytest.raises(DefinitionError, match="over the 0 MB limit"):
        infer(path, "big", department="d", max_bytes=100)


def test_a_running_server_serves_a_new_layer_without_restart(url, tmp_path):
    """Two workers: a layer created, then retired, while they run — each worker picks the
    change up from the registry (app.py _watch_layers), every request agrees."""
    import time

    from conftest import free_port

    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(tmp_path),
           "GISPLATFORM_LAYER_POLL_SECONDS": "0.5"}
    env.pop("GISPLATFORM_PUBLIC_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(Path(CLI)), "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def statuses(path: str) -> set[int]:
        return {httpx.get(f"{base}{path}", timeout=30).status_code for _ in range(12)}

    def until(path: str, want: int) -> None:
        deadline = time.monotonic() + 30
        while statuses(path) != {want}:
            assert time.monotonic() < deadline, (path, statuses(path),
                                                 (tmp_path / "serve.log").read_text()[-2000:])
            time.sleep(0.3)
    try:
        deadline = time.monotonic() + 60
        while True:  # started: both workers answer
            try:
                if statuses("/health") == {200}:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.2)
        assert statuses("/ogc/collections/parks") == {404}
        path = schools(tmp_path / "parks.geojson")
        r = run(url, tmp_path, "create", "parks", "--from", str(path), "--department", "园林局",
                "--sharing", "unconditional")
        assert r.returncode == 0, r.stderr
        until("/ogc/collections/parks/items?limit=1", 200)
        items = httpx.get(f"{base}/ogc/collections/parks/items", timeout=30).json()
        assert len(items["features"]) == 5
        t = morecantile.tms.get("WebMercatorQuad").tile(X0, Y0, 14)
        assert statuses(f"/tiles/parks/14/{t.x}/{t.y}.mvt") == {200}
        hits = httpx.get(f"{base}/api/search", params={"q": "第3中学"}, timeout=30).json()
        assert [h["fid"] for h in hits["results"] if h["layer"] == "parks"] == ["S002"]
        r = run(url, tmp_path, "retire", "parks")
        assert r.returncode == 0, r.stderr
        until("/ogc/collections/parks", 404)
        assert statuses(f"/tiles/parks/14/{t.x}/{t.y}.mvt") == {404}
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    with psycopg.connect(url) as c:  # retired: hidden, its versions kept
        assert c.execute("select count(*) from city.parks_version").fetchone()[0] == 5


def test_publishing_over_http_is_a_job_for_a_publish_grant(url, tmp_path):
    """POST /api/layers: 401 anonymous, 403 without layers:publish or for another
    department, 400 for a bad name or file type; else a job whose progress is shown and
    whose layer is then served; a failing job leaves nothing."""
    import time

    from gisplatform.security import create_token

    with psycopg.connect(url) as c:
        _, publisher = create_token(c, "ziran", [("layers", "publish")])
        _, reader = create_token(c, "ziran", [("buildings", "read")])
        c.commit()
    path = schools(tmp_path / "wells.geojson")

    def post(token: str | None, data: dict, file: Path | None = path, name="wells.geojson"):
        files = {"file": (name, file.read_bytes(), "application/geo+json")} if file else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{base}/api/layers", data=data, files=files, headers=headers,
                          timeout=60)

    def job(r) -> dict:
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while True:
            j = httpx.get(r.headers["Location"], timeout=30,
                          headers={"Authorization": f"Bearer {publisher}"}).json()
            if j["status"] in ("done", "failed"):
                return j
            assert time.monotonic() < deadline, j
            time.sleep(0.3)

    with serving(url, tmp_path) as base:
        data = {"name": "wells", "sharing": "unconditional", "title": "水井"}
        assert post(None, data).status_code == 401
        assert post(reader, data).status_code == 403
        r = post(publisher, {**data, "department": "gongan"})
        assert r.status_code == 403 and "publishes for" in r.json()["description"]
        for bad in ("select", "../x", "persons", "layers"):
            r = post(publisher, {**data, "name": bad})
            assert r.status_code == 400, (bad, r.text)
        assert post(publisher, data, name="wells.exe").status_code == 400
        # a failing job: duplicate ids — nothing left
        dup = json.loads(path.read_text())
        dup["features"][1]["properties"]["id"] = "S000"
        bad_file = tmp_path / "dup.geojson"
        bad_file.write_text(json.dumps(dup), encoding="utf-8")
        j = job(post(publisher, data, file=bad_file))
        assert j["status"] == "failed" and "both have 'S000'" in j["error"]
        assert nothing_left(url, "wells")
        # the job; another token does not see it
        r = post(publisher, data)
        j = job(r)
        assert j["status"] == "done", j
        assert j["progress"] == {"rows": 5, "total": 5} and "5 inserted" in j["summary"]
        assert httpx.get(r.headers["Location"], timeout=30,
                         headers={"Authorization": f"Bearer {reader}"}).status_code == 404
        d = httpx.get(f"{base}/api/layers/wells", timeout=30).json()
        assert d["department"] == "抚顺市自然资源局 Natural Resources Bureau"
        assert {a["source"]: a["personal"] for a in d["attributes"]}["电话"] is True
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/ogc/collections/wells/items", timeout=30).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        items = httpx.get(f"{base}/ogc/collections/wells/items", timeout=30).json()
        assert len(items["features"]) == 5
        assert all("*" in f["properties"]["phone"] for f in items["features"])
    with psycopg.connect(url) as c:
        actor, = c.execute("select actor from city.layer_registry where name = 'wells'"
                           ).fetchone()
    assert actor.startswith("token:")


def test_the_viewer_lists_it_with_its_titles(published, tmp_path):
    """Chromium: the layer tree shows the published layer under its theme with its zh
    title, and its features are drawn (its tiles load) with no console error."""
    from js import viewer_check

    r = subprocess.run(["node", str(Path(__file__).resolve().parent.parent / "gisplatform"
                                    / "viewer" / "build.mjs")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    with serving(published, tmp_path) as base:
        style = httpx.get(f"{base}/tiles/style.json", timeout=30).json()
        meta = next(x["metadata"] for x in style["layers"] if x.get("source") == "schools")
        assert meta["gisplatform:fields"]["name"] == "名称"
        out = viewer_check(base + "/", width=900, height=600,
                           skip=["slider", "click", "search", "lang", "signin", "3d"])
    assert "error" not in out, out.get("error")
    assert out["console_errors"] == [] and out["bad_responses"] == []
    assert "schools" in out["tree"] and "published" in out["themes"]
    assert out["tree_titles"]["schools"] == "学校"


def test_ogc_transactions_check_a_published_layer_declaratively(published, tmp_path):
    """A write grant on the published layer: a feature missing a required attribute or
    outside the city is a 400 naming it and writes nothing; a good one is a first version."""
    from gisplatform.security import create_token

    with psycopg.connect(published) as c:
        _, writer = create_token(c, "ziran", [("schools", "write")])
        c.commit()
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [X0, Y0]},
               "properties": {"id_value": "S900", "name": "新校", "students": 10, "contact": "李四",
                              "phone": "13900000000", "opened": "2026-09-01",
                              "valid_from": "2026-09-01T00:00:00+08:00"}}
    headers = {"Content-Type": "application/geo+json", "Authorization": f"Bearer {writer}"}
    with serving(published, tmp_path) as base, psycopg.connect(published) as c:
        url = f"{base}/ogc/collections/schools/items"
        n0 = c.execute("select count(*) from city.schools_version").fetchone()[0]
        missing = json.loads(json.dumps(feature))
        del missing["properties"]["students"]
        far = {**feature, "geometry": {"type": "Point", "coordinates": [116.4, 39.9]}}
        for bad, why in ((missing, "students is required"), (far, "outside Fushun")):
            r = httpx.post(url, content=json.dumps(bad), headers=headers, timeout=30)
            assert r.status_code == 400 and why in r.text, r.text
        assert c.execute("select count(*) from city.schools_version").fetchone()[0] == n0
        r = httpx.post(url, content=json.dumps(feature), headers=headers, timeout=30)
        assert r.status_code == 201, r.text
        got = httpx.get(f"{url}/S900", params={"f": "json"}, timeout=30).json()
        assert got["properties"]["students"] == 10 and "*" in got["properties"]["phone"]


def test_statistics_count_it_by_its_category_per_district(url, tmp_path):
    """A layer declaring a `category` attribute is a statistics topic of its name: features
    valid at each month start, by category, in the district their geometry lies in — the
    same counts as a direct point-in-polygon count, before and after a later change."""
    import shapely

    from gisplatform.temporal import Feature, TemporalStore

    west, east = (shapely.box(X0 - 0.05, Y0 - 0.05, X0, Y0 + 0.05),
                  shapely.box(X0, Y0 - 0.05, X0 + 0.05, Y0 + 0.05))
    with psycopg.connect(url, autocommit=True) as c:
        TemporalStore(LAYERS["admin-areas"].spec).insert(c, [
            Feature(code, shapely.MultiPolygon([box]), {"code": code, "name": name,
                                                       "level": "district"})
            for code, name, box in (("210402", "新抚区", west), ("210403", "东洲区", east))],
            "2010-01-01T00:00:00+08:00")
    kinds = ["诊所", "诊所", "药店", "诊所", "药店", "药店"]  # 4 west, 2 east
    feats = [{"type": "Feature", "properties": {"code": f"K{i}", "kind": k, "名称": f"医{i}"},
              "geometry": {"type": "Point", "coordinates": [
                  X0 - 0.01 * (i + 1) if i < 4 else X0 + 0.01 * (i - 3), Y0]}}
             for i, k in enumerate(kinds)]
    src = tmp_path / "clinics.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": feats},
                              ensure_ascii=False), encoding="utf-8")
    r = run(url, tmp_path, "create", "clinics", "--from", str(src), "--department", "卫健委",
            "--dry-run")
    assert r.returncode == 0, r.stderr
    spec = tmp_path / "clinics.toml"
    spec.write_text(parse_toml(r.stdout).model_copy(update={"category": "kind"}).to_toml(),
                    encoding="utf-8")
    r = run(url, tmp_path, "create", "clinics", "--spec", str(spec), "--from", str(src),
            "--valid-from", "2020-01-01T00:00:00+08:00")
    assert r.returncode == 0, r.stderr

    def direct(month: str) -> dict:
        """(district, kind) -> count at the month start, by SQL over the version table."""
        with psycopg.connect(url) as c:
            return {(a, k): n for a, k, n in c.execute("""
                select a.code, v.kind, count(*) from city.clinics_version v
                join city.admin_areas a on st_intersects(a.geom, st_pointonsurface(v.geom))
                where upper_inf(v.recorded) and v.valid @> (%s || '-01 00:00+08')::timestamptz
                group by 1, 2""", (month,)).fetchall()}

    with serving(url, tmp_path) as base:
        assert "clinics" in {t["id"] for t in httpx.get(f"{base}/api/stats", timeout=30
                                                        ).json()["topics"]}
        process = httpx.get(f"{base}/ogc/processes/stats-timeseries", timeout=30).json()
        assert "clinics" in process["inputs"]["topic"]["schema"]["enum"]

        def served(month_to: str) -> dict:
            r = httpx.get(f"{base}/api/stats/clinics",
                          params={"from": "2019-12", "to": month_to}, timeout=30)
            assert r.status_code == 200, r.text
            return {s["area"]: s["points"] for s in r.json()["series"]}

        got = served("2020-02")
        assert got["210402"][0] == {"month": "2019-12", "total": 0, "kind.药店": 0, "kind.诊所": 0}
        for area in ("210402", "210403"):
            point = got[area][1]
            assert {k: v for k, v in point.items() if k.startswith("kind.") and v} == {
                f"kind.{k}": n for (a, k), n in direct("2020-01").items() if a == area}
            assert point["total"] == sum(n for (a, _), n in direct("2020-01").items() if a == area)
        assert got["210400"][1]["total"] == 6 and got["210402"][1]["kind.诊所"] == 3
        # a later change: K0 (west, 诊所) retired in February, K5 moves west
        with psycopg.connect(url, autocommit=True) as c:
            store = TemporalStore(wiring_spec(url, "clinics"))
            store.retire(c, ["K0"], "2020-02-10T00:00:00+08:00")
            moved = store.current(c, "K5")
            store.update(c, [Feature("K5", shapely.Point(X0 - 0.03, Y0 + 0.01),
                                     {k: moved[k] for k in ("code", "kind", "name")})],
                         "2020-02-20T00:00:00+08:00")
        got = served("2020-03")
        for area in ("210402", "210403"):
            assert got[area][3]["total"] == sum(
                n for (a, _), n in direct("2020-03").items() if a == area)
        assert (got["210402"][3]["total"], got["210403"][3]["total"]) == (4, 1)
        assert got["210402"][3]["kind.诊所"] == 2 and got["210402"][2]["total"] == 4


def wiring_spec(url: str, name: str):
    from gisplatform import wiring
    return wiring.all_layers(url)[name].spec


def test_analysts_read_a_public_layer_in_qgis_and_nothing_personal(pg, published, tmp_path):
    """The analyst role (QGIS on PostGIS) reads the snapshot view of an unconditional layer
    with no personal attribute, as it reads the built-in public views; not one with a
    personal attribute, nor one retired."""
    from gisplatform.security import create_analyst_user

    r = run(published, tmp_path, "create", "benches", "--from",
            str(schools(tmp_path / "b.geojson")), "--department", "园林局", "--sharing",
            "unconditional", "--public-field", "联系人", "--public-field", "电话")
    assert r.returncode == 0, r.stderr
    with psycopg.connect(published, autocommit=True) as c:
        create_analyst_user(c, "analyst_layers", "pw")
    dbname = published.rsplit("/", 1)[1]

    def analyst():
        return psycopg.connect(host=pg.host, port=pg.port, user="analyst_layers", password="pw",
                               dbname=dbname, autocommit=True)
    with analyst() as a:
        assert a.execute("select count(*) from city.benches").fetchone()[0] == 5
        for table in ("schools", "schools_version", "benches_version"):  # personal; versions
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(f"select 1 from city.{table} limit 1")
    assert run(published, tmp_path, "retire", "benches").returncode == 0
    with analyst() as a, pytest.raises(psycopg.errors.InsufficientPrivilege):
        a.execute("select 1 from city.benches limit 1")
