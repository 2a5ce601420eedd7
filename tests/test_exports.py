"""Exports (CLI, HTTP jobs) and open data over the small demo city: every format read back with
GDAL / pyarrow and compared with the database (rows, values, geometry, CRS, masking), access
refused without a grant, audit rows for unmasked exports, atomic writes, the job lifecycle and
its creator-only rule, open data versions with checksums, the catalogue and /opendata/."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import psycopg
import pyarrow.parquet as pq
import pyogrio
import pyproj
import pytest
import shapely
from conftest import DEMO_UNTIL, serving
from typer.testing import CliRunner

from gisplatform.exports import (
    ExportError,
    ExportJobs,
    ExportRefused,
    export,
    format_of,
    make_request,
)
from gisplatform.opendata import publish, versions
from gisplatform.security import (
    ANONYMOUS,
    create_token,
    mask_value,
    principal_for_token,
)
from layers import LAYERS

CLI = str(Path(sys.executable).with_name("gisplatform"))
OLD = "2019-06-01T00:00:00+08:00"
FORMATS = ("gpkg", "geojson", "csv", "parquet")


@pytest.fixture(scope="module")
def tokens(demo_url):
    """Secrets: persons read (masked), read_personal (unmasked), and a grant elsewhere."""
    with psycopg.connect(demo_url, autocommit=True) as c:
        return {
            "read": create_token(c, "minzheng", [("persons", "read")])[1],
            "personal": create_token(c, "gongan", [("persons", "read_personal"),
                                                   ("legal-persons", "read_personal")])[1],
            "other": create_token(c, "zhujian", [("buildings", "read")])[1],
        }


def principal(url, secret):
    with psycopg.connect(url) as c:
        return principal_for_token(c, secret)


def snapshot(url, layer, at=None, columns="*"):
    """{fid: row} of the layer valid at `at` (default now), current knowledge, from the DB."""
    vt = LAYERS[layer].spec.version_table
    with psycopg.connect(url) as c:
        cur = c.execute(f"select fid, st_x(st_pointonsurface(geom)) x, st_y(st_pointonsurface("
                        f"geom)) y, {columns} from city.{vt} where upper_inf(recorded)"
                        " and valid @> coalesce(%s::timestamptz, now())", (at,))
        names = [d.name for d in cur.description]
        return {r[0]: dict(zip(names, r)) for r in cur}


def read(path: Path) -> dict[str, dict]:
    """{fid: properties + 'geom'} of an exported file, read by GDAL (pyarrow: GeoParquet)."""
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        geoms = shapely.from_wkb([r.pop("geometry") for r in rows])
    else:
        meta, table = pyogrio.read_arrow(path)
        gcol = meta.get("geometry_name") or "wkb_geometry"
        rows = table.to_pylist()
        geoms = shapely.from_wkb([r.pop(gcol) for r in rows])
    for r, g in zip(rows, geoms):
        r["geom"] = g
    return {r["fid"]: r for r in rows}


def audits(url, layer):
    with psycopg.connect(url) as c:
        return c.execute("select token_id, action, detail from city.audit_log where layer = %s"
                         " and action = 'export' order by id", (layer,)).fetchall()


# ---------------------------------------------------------------------------- formats

@pytest.mark.parametrize("fmt", FORMATS)
def test_format_round_trip_masks_personal_fields(demo_url, tmp_path, fmt):
    """legal-persons (unconditional; legal_representative is personal) as the public sees
    it: same rows, values and points as the database, the personal field as mask_value."""
    layer = LAYERS["legal-persons"]
    out = tmp_path / f"lp.{fmt}"
    r = export(demo_url, layer, make_request(LAYERS, "legal-persons", fmt), ANONYMOUS, out)
    db = snapshot(demo_url, "legal-persons", r.at)
    got = read(out)
    assert r.rows == len(db) == len(got) > 50 and not r.unmasked
    assert set(got) == set(db)
    masked = 0
    for fid, row in db.items():
        g = got[fid]
        assert g["legal_representative"] == mask_value("name", row["legal_representative"])
        masked += row["legal_representative"] != g["legal_representative"]
        assert g["name"] == row["name"] and g["industry_code"] == row["industry_code"]
        assert g["geom"].x == pytest.approx(row["x"], abs=1e-7)
        assert g["geom"].y == pytest.approx(row["y"], abs=1e-7)
    assert masked > 50  # the mask changed something real
    one = next(iter(db.values()))
    if fmt == "csv":  # text, ISO 8601
        assert got[one["fid"]]["valid_from"] == one["valid"].lower.astimezone(
            dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        vf = got[one["fid"]]["valid_from"]
        vf = dt.datetime.fromisoformat(vf) if isinstance(vf, str) else vf
        assert vf.replace(tzinfo=vf.tzinfo or dt.UTC) == one["valid"].lower
    if fmt == "parquet":
        geo = json.loads(pq.read_schema(out).metadata[b"geo"])
        col = geo["columns"]["geometry"]
        assert geo["primary_column"] == "geometry" and col["encoding"] == "WKB"
        assert col["geometry_types"] == ["Point"]
        assert pyproj.CRS.from_json_dict(col["crs"]).to_epsg() == 4490
        xs = [row["x"] for row in db.values()]
        assert col["bbox"][0] == pytest.approx(min(xs)) and col["bbox"][2] == pytest.approx(max(xs))


def test_persons_masked_for_a_read_grant(demo_url, tokens, tmp_path):
    out = tmp_path / "persons.parquet"
    before = len(audits(demo_url, "persons"))
    r = export(demo_url, LAYERS["persons"], make_request(LAYERS, "persons", "parquet"),
               principal(demo_url, tokens["read"]), out)
    db = snapshot(demo_url, "persons", r.at)
    got = read(out)
    assert r.rows == len(db) == len(got) > 100 and not r.unmasked
    for fid, row in db.items():
        for name, kind in (("id_number", "id_number"), ("name", "name"), ("phone", "phone"),
                           ("birth_date", "date")):
            assert got[fid][name] == mask_value(kind, row[name]), (fid, name)
    assert len(audits(demo_url, "persons")) == before  # masked: nothing to audit


def test_cli_unmasked_gpkg_opens_in_gdal_with_datetime_validity(demo_url, tokens, tmp_path):
    """The CLI with a read_personal token: real values, an audit row; the GeoPackage has
    DateTime valid_from/valid_to (QGIS's temporal controller), Point, EPSG:4490, all rows."""
    out = tmp_path / "persons.gpkg"
    env = {**os.environ, "DATABASE_URL": demo_url, "GISPLATFORM_TOKEN": tokens["personal"]}
    p = subprocess.run([CLI, "export", "persons", str(out)], env=env, capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "unmasked, audited" in p.stderr
    info = pyogrio.read_info(out)
    types = dict(zip(info["fields"], info["ogr_types"]))
    assert types["valid_from"] == types["valid_to"] == "OFTDateTime"
    assert info["geometry_type"] == "Point" and info["crs"] == "EPSG:4490"
    assert info["fid_column"] == "vid"
    db = snapshot(demo_url, "persons")
    assert info["features"] == len(db)
    got = read(out)
    fid = min(db)
    assert got[fid]["id_number"] == db[fid]["id_number"] and got[fid]["name"] == db[fid]["name"]
    with psycopg.connect(demo_url) as c:
        token_id = principal_for_token(c, tokens["personal"]).token_id
    token, action, detail = audits(demo_url, "persons")[-1]
    assert (token, action) == (token_id, "export")
    assert detail["rows"] == len(db) and detail["format"] == "gpkg" and detail["file"] == out.name
    # ogrinfo, as a GIS analyst would check it (when GDAL's tools are installed)
    ogrinfo = subprocess.run(["ogrinfo", "-so", str(out), "persons"], capture_output=True,
                             text=True, check=False) if shutil.which("ogrinfo") else None
    if ogrinfo is not None:
        assert "valid_from: DateTime" in ogrinfo.stdout, ogrinfo.stdout


def test_history_has_recorded_columns(demo_url, tmp_path):
    out = tmp_path / "b.gpkg"
    r = export(demo_url, LAYERS["buildings"], make_request(LAYERS, "buildings", "gpkg",
                                                           history=True), ANONYMOUS, out)
    info = pyogrio.read_info(out)
    types = dict(zip(info["fields"], info["ogr_types"]))
    assert types["recorded_from"] == types["recorded_to"] == "OFTDateTime"
    with psycopg.connect(demo_url) as c:
        n = c.execute("select count(*) from city.buildings_version where upper_inf(recorded)"
                      ).fetchone()[0]
    assert r.rows == info["features"] == n
    assert n > len(snapshot(demo_url, "buildings"))  # more versions than current buildings


def test_datetime_picks_the_snapshot(demo_url, tmp_path):
    old = tmp_path / "old.geojson"
    r = export(demo_url, LAYERS["buildings"], make_request(LAYERS, "buildings", "geojson",
                                                           datetime=OLD), ANONYMOUS, old)
    then, now = snapshot(demo_url, "buildings", OLD), snapshot(demo_url, "buildings")
    assert len(then) != len(now)  # the demo city changed since: the test can tell
    got = read(old)
    assert set(got) == set(then) and r.rows == len(then)
    assert r.at == dt.datetime.fromisoformat(OLD)


def test_crs_transform_at_a_known_point(demo_url, tmp_path):
    db = snapshot(demo_url, "addresses")
    fid, row = min(db.items())
    for crs, fmt, epsg in (("EPSG:3857", "geojson", 3857), ("EPSG:4550", "gpkg", 4550),
                           ("EPSG:4326", "csv", 4326)):
        out = tmp_path / f"a-{epsg}.{fmt}"
        export(demo_url, LAYERS["addresses"], make_request(LAYERS, "addresses", fmt, crs=crs),
               ANONYMOUS, out)
        x, y = pyproj.Transformer.from_crs(4490, epsg, always_xy=True).transform(row["x"],
                                                                               row["y"])
        g = read(out)[fid]["geom"]
        assert (g.x, g.y) == (pytest.approx(x, abs=0.01), pytest.approx(y, abs=0.01)), crs
        if fmt != "csv":  # a CSV states no CRS
            assert pyogrio.read_info(out)["crs"] == f"EPSG:{epsg}"
    # GeoJSON by default is CRS84 (RFC 7946), the same numbers as CGCS2000
    out = tmp_path / "a.geojson"
    export(demo_url, LAYERS["addresses"], make_request(LAYERS, "addresses", "geojson"),
           ANONYMOUS, out)
    assert "crs" not in json.loads(out.read_text()) or "CRS84" in out.read_text()[:400]


# ---------------------------------------------------------------------------- refusals

def test_bad_requests_are_clear():
    with pytest.raises(ExportError, match="unknown layer 'castles'"):
        make_request(LAYERS, "castles", "gpkg")
    with pytest.raises(ExportError, match="must end in .gpkg, .geojson, .csv, .parquet"):
        format_of("out.shp")
    with pytest.raises(ExportError, match="crs: unsupported CRS"):
        make_request(LAYERS, "buildings", "gpkg", crs="EPSG:4547")
    with pytest.raises(ExportError, match="crs: .*input only"):
        make_request(LAYERS, "buildings", "gpkg", crs="GCJ02")
    with pytest.raises(ExportError, match="datetime: .*no time zone"):
        make_request(LAYERS, "buildings", "gpkg", datetime="2024-01-01T00:00:00")
    with pytest.raises(ExportError, match="not both"):
        make_request(LAYERS, "buildings", "gpkg", datetime=OLD, history=True)


def test_cli_refusals(demo_url, tokens, tmp_path, monkeypatch):
    from gisplatform.cli import app
    from gisplatform.config import get_settings

    monkeypatch.setenv("DATABASE_URL", demo_url)
    monkeypatch.delenv("GISPLATFORM_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        run = CliRunner().invoke
        out = tmp_path / "p.gpkg"
        r = run(app, ["export", "persons", str(out)])
        assert r.exit_code == 1 and "needs a token" in r.output and "--token" in r.output
        r = run(app, ["export", "persons", str(out), "--token", tokens["other"]])
        assert r.exit_code == 1 and "no grant on persons" in r.output
        r = run(app, ["export", "persons", str(out), "--token", "gp_forged"])
        assert r.exit_code == 1 and "unknown token" in r.output
        r = run(app, ["export", "buildings", str(tmp_path / "b.shp")])
        assert r.exit_code == 2 and ".gpkg, .geojson, .csv, .parquet" in r.output
        r = run(app, ["export", "buildings", str(out), "--crs", "EPSG:99999"])
        assert r.exit_code == 2 and "crs" in r.output
        r = run(app, ["export", "buildings", str(out), "--datetime", "yesterday"])
        assert r.exit_code == 2 and "datetime" in r.output
        r = run(app, ["export", "buildings", str(tmp_path / "no" / "such" / "b.gpkg")])
        assert r.exit_code == 1 and "does not exist" in r.output
        assert list(tmp_path.iterdir()) == []
    finally:
        get_settings.cache_clear()


# ---------------------------------------------------------------------------- atomic

@pytest.mark.parametrize("fmt", FORMATS)
def test_failure_mid_stream_leaves_nothing(demo_url, tmp_path, fmt):
    """An error after rows were written: no file under the name, no temporary file; a file
    already there stays as it was."""
    out = tmp_path / f"b.{fmt}"
    out.write_bytes(b"the previous export")

    def boom(done, total):
        raise RuntimeError("disk on fire")

    with pytest.raises(Exception, match="disk on fire"):
        export(demo_url, LAYERS["buildings"], make_request(LAYERS, "buildings", fmt),
               ANONYMOUS, out, progress=boom)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert out.read_bytes() == b"the previous export"


def test_unwritable_target(demo_url, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match="does not exist"):
        export(demo_url, LAYERS["buildings"], make_request(LAYERS, "buildings", "csv"),
               ANONYMOUS, tmp_path / "afile" / "b.csv")
    with pytest.raises(ExportError, match="is a directory"):
        (tmp_path / "d.csv").mkdir()
        export(demo_url, LAYERS["buildings"], make_request(LAYERS, "buildings", "csv"),
               ANONYMOUS, tmp_path / "d.csv")
    with pytest.raises(ExportRefused) as e:
        export(demo_url, LAYERS["cameras"], make_request(LAYERS, "cameras", "csv"),
               ANONYMOUS, tmp_path / "c.csv")
    assert e.value.status == 401
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "d.csv"]


# ---------------------------------------------------------------------------- jobs (in process)

def wait(jobs, job_id, p, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(job_id, p)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def test_job_failure_is_reported_and_expired_jobs_are_swept(demo_url, tokens, tmp_path):
    p = principal(demo_url, tokens["personal"])
    bad = ExportJobs("postgresql://nobody@127.0.0.1:1/none", LAYERS, tmp_path / "x", 24, 1)
    job = bad.submit(p, make_request(LAYERS, "buildings", "csv"), None)
    done = wait(bad, job["id"], p)
    assert done["status"] == "failed" and "OperationalError" in done["error"]
    assert not (tmp_path / "x" / job["id"] / "buildings.csv").exists()
    bad.close()

    jobs = ExportJobs(demo_url, LAYERS, tmp_path / "y", 1 / 3600, 1)  # 1 s to live
    job = jobs.submit(p, make_request(LAYERS, "admin-areas", "geojson"), None)
    assert wait(jobs, job["id"], p)["status"] == "done"
    assert jobs.sweep() == 0 and (tmp_path / "y" / job["id"]).is_dir()
    time.sleep(1.1)
    assert jobs.sweep() == 1 and not (tmp_path / "y" / job["id"]).exists()
    jobs.close()


# ---------------------------------------------------------------------------- over HTTP

@pytest.fixture(scope="module")
def served(demo_url, tmp_path_factory):
    data = tmp_path_factory.mktemp("exports-live")
    with serving(demo_url, data) as base:
        yield base, data


def test_http_job_lifecycle_and_creator_only(demo_url, tokens, served):
    base, _ = served
    auth = {"Authorization": f"Bearer {tokens['personal']}"}
    r = httpx.post(f"{base}/api/exports", json={"layer": "persons", "format": "csv",
                                                "datetime": DEMO_UNTIL}, headers=auth)
    assert r.status_code == 202, r.text
    url = r.headers["location"]
    assert url.endswith(f"/api/exports/{r.json()['id']}")
    deadline = time.monotonic() + 60
    while (job := httpx.get(url, headers=auth).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "done", job
    db = snapshot(demo_url, "persons", DEMO_UNTIL)
    assert job["progress"]["rows"] == len(db) and job["personal_fields"] == "unmasked"
    f = httpx.get(f"{url}/file", headers=auth)
    assert f.status_code == 200 and f.headers["content-type"].startswith("text/csv")
    assert "attachment" in f.headers["content-disposition"]
    lines = f.text.splitlines()
    assert len(lines) == len(db) + 1
    assert any(row["id_number"] in f.text for row in list(db.values())[:3])  # unmasked
    detail = audits(demo_url, "persons")[-1][2]
    assert detail["format"] == "csv" and detail["rows"] == len(db)
    # only its creator: another token, or none, is told there is no such job
    for headers in ({"Authorization": f"Bearer {tokens['read']}"}, {}):
        assert httpx.get(url, headers=headers).status_code == 404
        assert httpx.get(f"{url}/file", headers=headers).status_code == 404
    assert httpx.get(f"{base}/api/exports/..%2f..%2fetc", headers=auth).status_code == 404


def test_http_refusals(tokens, served):
    base, _ = served
    body = {"layer": "persons", "format": "gpkg"}
    assert httpx.post(f"{base}/api/exports", json=body).status_code == 401
    r = httpx.post(f"{base}/api/exports", json=body,
                   headers={"Authorization": f"Bearer {tokens['other']}"})
    assert r.status_code == 403 and "no grant on persons" in r.json()["description"]
    auth = {"Authorization": f"Bearer {tokens['read']}"}
    for bad, why in (({"layer": "persons", "format": "shp"}, "unknown format"),
                     ({"layer": "castles", "format": "csv"}, "unknown layer"),
                     ({"layer": "persons", "format": "csv", "crs": "EPSG:1"}, "crs"),
                     ({"layer": "persons", "format": "csv", "datetime": "soon"}, "datetime"),
                     ({"layer": "persons", "format": "csv", "x": 1}, "unknown fields"),
                     ([1, 2], "JSON object")):
        r = httpx.post(f"{base}/api/exports", json=bad, headers=auth)
        assert r.status_code == 400 and why in r.json()["description"], (bad, r.text)


# ---------------------------------------------------------------------------- open data

def test_opendata_publish_verify_and_serve(demo_url, served):
    base, data = served
    layers = [LAYERS["legal-persons"], LAYERS["admin-areas"]]
    t1 = dt.datetime.fromisoformat(OLD)
    first = publish(demo_url, layers, data, at=t1, keep=2, public_url=base)
    assert [p.unchanged for p in first] == [False, False]
    d = first[0].directory
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["legal-persons.gpkg", "legal-persons.geojson", "legal-persons.csv", "SHA256SUMS",
         "metadata.json"])
    for line in (d / "SHA256SUMS").read_text().splitlines():  # sha256sum -c, by hand
        digest, name = line.split("  ")
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest
    meta = json.loads((d / "metadata.json").read_text())
    then = snapshot(demo_url, "legal-persons", t1)
    assert meta["rows"] == len(then) and {f["rows"] for f in meta["files"]} == {len(then)}
    assert meta["license"] and meta["bbox"] and meta["temporal_extent"][1].startswith("2019-05-31")
    got = read(d / "legal-persons.geojson")
    fid = min(then)
    assert got[fid]["legal_representative"] == mask_value("name", then[fid]["legal_representative"])

    # unchanged: nothing written
    listing = sorted(str(p) for p in (data / "opendata").rglob("*"))
    again = publish(demo_url, layers, data, at=t1, keep=2, public_url=base)
    assert all(p.unchanged for p in again)
    assert sorted(str(p) for p in (data / "opendata").rglob("*")) == listing
    # changed (a later snapshot): a new version; keep=1 prunes the old one
    later = publish(demo_url, layers[:1], data, keep=1, public_url=base)
    assert not later[0].unchanged and versions(data, "legal-persons") == [later[0].version]

    # served read-only, ETag = checksum, immutable
    v = later[0].version
    index = httpx.get(f"{base}/opendata/").json()
    assert {x["layer"] for x in index["layers"]} == {"legal-persons", "admin-areas"}
    f = httpx.get(f"{base}/opendata/legal-persons/{v}/legal-persons.gpkg")
    sums = dict(reversed(line.split("  ")) for line in httpx.get(
        f"{base}/opendata/legal-persons/{v}/SHA256SUMS").text.splitlines())
    assert f.status_code == 200 and hashlib.sha256(f.content).hexdigest() == sums[
        "legal-persons.gpkg"]
    assert f.headers["etag"] == f'"{sums["legal-persons.gpkg"]}"'
    assert "immutable" in f.headers["cache-control"]
    assert httpx.get(f.url, headers={"If-None-Match": f.headers["etag"]}).status_code == 304
    r = httpx.get(f"{base}/opendata/legal-persons/latest", follow_redirects=True)
    assert r.json()["version"] == v and r.json()["files"][0]["href"].startswith(base)
    for bad in ("/opendata/..%2f..%2f..%2fetc%2fpasswd", "/opendata/legal-persons/..%2f..%2f",
                f"/opendata/legal-persons/{v}/..%2fmetadata.json",
                f"/opendata/legal-persons/{v}/%2e%2e%2f%2e%2e%2fSHA256SUMS",
                "/opendata/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                f"/opendata/legal-persons/{v}/.hidden", "/opendata/persons/"):
        r = httpx.get(base + bad)
        # 404, or Starlette's redirect to the same path without its trailing slash (which
        # then is a 404 of ours, or outside /opendata once the client resolves the dots)
        assert r.status_code in (404, 307) and "root:" not in r.text, bad
        if r.status_code == 307:
            assert r.headers["location"] == base + unquote(bad).rstrip("/")

    # the catalogue has a record with download links and checksums
    rec = httpx.get(f"{base}/ogc/collections/catalogue/items/opendata-legal-persons",
                    params={"f": "json"}).json()
    links = {ln["title"]: ln for ln in rec["links"] if ln["rel"] == "enclosure"}
    assert links["legal-persons.gpkg"]["file:checksum"] == f"sha256:{sums['legal-persons.gpkg']}"
    assert links["legal-persons.csv"]["href"] == f"{base}/opendata/legal-persons/{v}/legal-persons.csv"
    assert rec["properties"]["version"] == v and rec["properties"]["license"]
    found = httpx.get(f"{base}/ogc/collections/catalogue/items",
                      params={"f": "json", "q": "open data", "limit": 50}).json()
    assert {"opendata-legal-persons", "opendata-admin-areas"} <= {
        x["id"] for x in found["features"]}


def test_opendata_refuses_conditional_layers(demo_url, tmp_path):
    with pytest.raises(ExportError, match="only unconditionally shared"):
        publish(demo_url, [LAYERS["persons"]], tmp_path)
    assert not (tmp_path / "opendata").exists()


def test_scheduled_round_takes_the_advisory_lock(demo_url, tmp_path):
    """With N replicas one publishes per round: a round finding the lock taken skips."""
    from gisplatform.opendata import ADVISORY_LOCK, parse_every, publish_locked

    assert [parse_every(x) for x in ("0", "", "90s", "30m", "24h", "1d")] == [
        0, 0, 90, 1800, 86400, 86400]
    with pytest.raises(ValueError, match="like 24h"):
        parse_every("daily")
    layers = [LAYERS["admin-areas"]]
    with psycopg.connect(demo_url, autocommit=True) as other:
        other.execute("select pg_advisory_lock(%s)", (ADVISORY_LOCK,))
        assert publish_locked(demo_url, layers, tmp_path, 5, "CC-BY-4.0", "") is None
        assert not (tmp_path / "opendata").exists()
        other.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK,))
    done = publish_locked(demo_url, layers, tmp_path, 5, "CC-BY-4.0", "")
    assert [p.layer for p in done] == ["admin-areas"] and versions(tmp_path, "admin-areas")


def test_cli_opendata_publish_and_list(demo_url, tmp_path, monkeypatch):
    from gisplatform.cli import app
    from gisplatform.config import get_settings

    monkeypatch.setenv("DATABASE_URL", demo_url)
    monkeypatch.setenv("GISPLATFORM_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        run = CliRunner().invoke
        r = run(app, ["opendata", "publish", "--layer", "grid-cells"])
        assert r.exit_code == 0, r.output
        (v,) = versions(tmp_path, "grid-cells")
        assert v in r.output
        r = run(app, ["opendata", "publish", "--layer", "grid-cells"])
        assert r.exit_code == 0 and "unchanged" in r.output
        r = run(app, ["opendata", "list"])
        assert r.output.split() == ["grid-cells", "1", v]
        r = run(app, ["opendata", "publish", "--layer", "persons"])
        assert r.exit_code == 1 and "only unconditionally shared" in r.output
        r = run(app, ["opendata", "publish", "--layer", "castles"])
        assert r.exit_code == 2 and "unknown layer" in r.output
    finally:
        get_settings.cache_clear()
