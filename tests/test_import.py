"""`gisplatform import`: formats, CRSs, idempotence, versions, and every class of bad row."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import psycopg
import pyogrio.raw
import pytest
import shapely
from conftest import fresh_database
from shapely.geometry import Point, Polygon, box

from gisplatform.crs import from_storage, resolve_crs, transform_geometry
from gisplatform.crs.chinese_offsets import wgs84_to_bd09, wgs84_to_gcj02
from gisplatform.temporal import TemporalStore
from layers import LAYERS
from layers.codes import make_gb28181, make_resident_id, make_uscc
from layers.importer import ImportFailed, run_import

CLI = str(Path(sys.executable).with_name("gisplatform"))
BUILDINGS = LAYERS["buildings"]
X, Y = 123.905, 41.872  # a spot in Xinfu district


@pytest.fixture(scope="module")
def url(pg):
    return fresh_database(pg, "imports")


@pytest.fixture
def conn(url):
    with psycopg.connect(url) as c:
        c.execute("truncate city.buildings_version, city.cameras_version, city.legal_persons_version,"
                  " city.persons_version, city.addresses_version")
        c.commit()
        yield c


def footprint(i: int) -> Polygon:
    x, y = X + i * 0.001, Y
    return box(x, y, x + 0.0003, y + 0.0002)


def building(i: int, **over) -> dict:
    p = {"building_code": f"210402{i:08d}", "floors": 6, "height": 19.5, "use": "residential",
         "structure": "brick_concrete", "year_built": 1995, "address": f"抚顺市新抚区测试路{i}号"}
    p.update(over)
    return p


def write_vector(path: Path, geoms, props: list[dict], crs: str, driver: str) -> Path:
    fields = list(props[0])
    data = [np.array([p.get(f) for p in props], dtype=object) for f in fields]
    for k, f in enumerate(fields):  # typed columns, as real files have them
        if all(isinstance(v, int) for v in data[k]):
            data[k] = data[k].astype("int64")
        elif all(isinstance(v, float) for v in data[k]):
            data[k] = data[k].astype("float64")
    gtype = shapely.get_type_id(geoms[0])
    pyogrio.raw.write(str(path), np.array(shapely.to_wkb(geoms), dtype=object), data, fields,
                      driver=driver, crs=crs,
                      geometry_type={0: "Point", 3: "Polygon", 6: "MultiPolygon"}[gtype])
    return path


def write_geojson(path: Path, geoms, props: list[dict]) -> Path:
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": json.loads(shapely.to_geojson(g)), "properties": p}
        for g, p in zip(geoms, props)]}
    path.write_text(json.dumps(fc, ensure_ascii=False))
    return path


def count(conn, layer="buildings") -> int:
    return conn.execute(f'select count(*) from city."{LAYERS[layer].spec.version_table}"').fetchone()[0]


def stored(conn, fid: str, layer=BUILDINGS):
    cur = TemporalStore(layer.spec).current(conn, fid)
    return shapely.geometry.shape(cur["geometry"]), cur


# --------------------------------------------------------------- formats and CRSs

@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "shp", "csv"])
def test_each_format_round_trips(tmp_path, conn, fmt):
    geoms = [footprint(i) for i in range(3)]
    props = [building(i) for i in range(3)]
    if fmt == "geojson":
        path = write_geojson(tmp_path / "b.geojson", geoms, props)
    elif fmt == "csv":
        path = tmp_path / "b.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[*props[0], "wkt"])
            w.writeheader()
            for g, p in zip(geoms, props):
                w.writerow({**p, "wkt": g.wkt})
    else:
        driver = {"gpkg": "GPKG", "shp": "ESRI Shapefile"}[fmt]
        path = write_vector(tmp_path / f"b.{fmt}", geoms, props, "EPSG:4490", driver)
    report = run_import(conn, BUILDINGS, path, crs="EPSG:4490" if fmt == "csv" else None,
                        valid_from="2024-01-01T00:00:00+08:00")
    assert not report.rejected, report.rejected
    assert report.result.inserted == 3
    for i in range(3):
        g, cur = stored(conn, f"210402{i:08d}")
        # Shapefiles store rings clockwise: compare normalised
        assert g.normalize().equals_exact(shapely.MultiPolygon([geoms[i]]).normalize(), 1e-9)
        assert (cur["floors"], cur["height"], cur["use"]) == (6, 19.5, "residential")


def test_zone41_shapefile_lands_within_10cm_of_cgcs2000(tmp_path, url):
    """The same building from a Gauss-Kruger zone 41 Shapefile and from EPSG:4490 GeoJSON."""
    geom = footprint(0)
    gk = transform_geometry(geom, from_storage(resolve_crs("EPSG:4529")))
    assert gk.bounds[0] > 41_000_000  # zone-prefixed easting
    shp = write_vector(tmp_path / "gk.shp", [gk], [building(1)], "EPSG:4529", "ESRI Shapefile")
    gj = write_geojson(tmp_path / "cgcs.geojson", [geom], [building(2)])
    with psycopg.connect(url) as c:
        run_import(c, BUILDINGS, shp)
        run_import(c, BUILDINGS, gj, crs="EPSG:4490")
        d = c.execute("""
            select st_hausdorffdistance(st_transform(a.geom, 4550), st_transform(b.geom, 4550))
            from city.buildings a, city.buildings b
            where a.fid = '21040200000001' and b.fid = '21040200000002'""").fetchone()[0]
    assert d < 0.1, f"{d} m apart"


@pytest.mark.parametrize("crs, convert, tolerance_m", [
    ("EPSG:3857", None, 0.01),
    ("EPSG:4326", None, 0.01),
    ("GCJ02", wgs84_to_gcj02, 0.01),
    ("BD09", wgs84_to_bd09, 0.01),
])
def test_input_crs_are_converted(tmp_path, conn, crs, convert, tolerance_m):
    pt = Point(X, Y)
    if convert:
        x, y = convert(np.array([X]), np.array([Y]))
        src = Point(float(x[0]), float(y[0]))
    else:
        src = transform_geometry(pt, from_storage(resolve_crs(crs)))
    did = make_gb28181("210402", "01", "08", "132", "6", 77)
    path = tmp_path / "cams.csv"
    path.write_text(f"device_id,name,status,lon,lat\n{did},测试点位,ON,{src.x!r},{src.y!r}\n")
    report = run_import(conn, LAYERS["cameras"], path, crs=crs)
    assert not report.rejected, report.rejected
    d = conn.execute("select st_distance(geom::geography, st_setsrid(st_makepoint(%s, %s), 4490)::geography)"
                     " from city.cameras where fid = %s", (X, Y, did)).fetchone()[0]
    assert d < tolerance_m
    sector = conn.execute("select sector from city.cameras where fid = %s", (did,)).fetchone()[0]
    assert sector == "city_management"


def test_csv_by_standard_address(tmp_path, conn):
    conn.execute("insert into city.addresses_version (fid, valid, geom, address)"
                 " values ('抚顺市新抚区永安1路3号', tstzrange('2018-01-01', null),"
                 " st_setsrid(st_makepoint(123.9, 41.87), 4490), '抚顺市新抚区永安1路3号')")
    conn.commit()
    code = make_uscc("9", "1", "210402", "MA0ABCDE")
    path = tmp_path / "lp.csv"
    path.write_text("credit_code,name,status,address\n"
                    f"{code},抚顺测试有限公司,active,抚顺市新抚区 永安1路3号\n"
                    f"{make_uscc('9', '1', '210402', 'MA0ABCDF')},无地址公司,active,抚顺市不存在路1号\n"
                    # as people write it: geocoded (gisplatform/geocode), not matched exactly
                    f"{make_uscc('9', '1', '210402', 'MA0ABCDG')},另一公司,active,永安一路三号楼下\n")
    report = run_import(conn, LAYERS["legal-persons"], path)
    assert report.result.inserted == 2
    assert [r.number for r in report.rejected] == [2]
    assert "matches no standard address" in report.rejected[0].reason
    assert "best candidates: 抚顺市新抚区永安1路" in report.rejected[0].reason
    g, cur = stored(conn, code, LAYERS["legal-persons"])
    assert (round(g.x, 6), round(g.y, 6), cur["check_ok"]) == (123.9, 41.87, True)


# ---------------------------------------------------------------- versions

def test_reimport_changes_nothing_and_a_changed_row_is_a_new_version(tmp_path, conn):
    geoms = [footprint(i) for i in range(3)]
    path = write_geojson(tmp_path / "b.geojson", geoms, [building(i) for i in range(3)])
    first = run_import(conn, BUILDINGS, path, valid_from="2024-01-01T00:00:00+08:00")
    assert first.result.inserted == 3
    n = count(conn)
    again = run_import(conn, BUILDINGS, path, valid_from="2024-06-01T00:00:00+08:00")
    assert (again.result.unchanged, again.result.inserted, again.result.updated) == (3, 0, 0)
    assert count(conn) == n
    props = [building(0, floors=7, height=22.5), building(1)]  # 0 changed, 2 missing
    path2 = write_geojson(tmp_path / "b2.geojson", geoms[:2], props)
    r = run_import(conn, BUILDINGS, path2, valid_from="2025-01-01T00:00:00+08:00", retire_missing=True)
    assert (r.result.updated, r.result.unchanged, r.result.retired) == (1, 1, 1)
    hist = TemporalStore(BUILDINGS.spec).history(conn, "21040200000000")
    assert [h["floors"] for h in hist] == [6, 7]
    assert TemporalStore(BUILDINGS.spec).current(conn, "21040200000002")["valid_to"] is not None


def test_dry_run_writes_nothing(tmp_path, conn):
    path = write_geojson(tmp_path / "b.geojson", [footprint(0)], [building(0)])
    r = run_import(conn, BUILDINGS, path, dry_run=True)
    assert r.result.inserted == 1 and "dry run" in r.summary()
    assert count(conn) == 0


def test_mapping_file_and_valid_from_column(tmp_path, conn):
    props = [{"BM": "21040200000009", "CS": 3, "GD": 10.0, "YT": "commercial", "QS": "2020-05-01T00:00:00+08:00"}]
    path = write_geojson(tmp_path / "m.geojson", [footprint(9)], props)
    mapping = tmp_path / "map.toml"
    mapping.write_text('valid_from_column = "QS"\n[columns]\nBM = "building_code"\nCS = "floors"\n'
                       'GD = "height"\nYT = "use"\n')
    r = run_import(conn, BUILDINGS, path, mapping_path=mapping)
    assert r.result.inserted == 1 and not r.rejected
    cur = TemporalStore(BUILDINGS.spec).current(conn, "21040200000009")
    assert cur["valid_from"].isoformat().startswith("2020-04-30T16:00:00")


# ---------------------------------------------------------------- bad rows

PERSON = {"name": "张三", "household_type": "registered"}
GOOD_ID = make_resident_id("210402", __import__("datetime").date(1990, 5, 17), 123)


def bad_building_cases():
    bowtie = Polygon([(X, Y), (X + 0.001, Y + 0.001), (X + 0.001, Y), (X, Y + 0.001)])
    swapped = box(Y, X, Y + 0.0002, X + 0.0003)
    return [
        ("self-intersecting", bowtie, building(0), "invalid geometry"),
        ("outside the city", box(116.4, 39.9, 116.401, 39.901), building(0), "outside Fushun"),
        ("swapped axes", swapped, building(0), "swap the axes"),
        ("wrong geometry type", Point(X, Y), building(0), "layer takes MultiPolygon"),
        ("missing required", footprint(0), {**building(0), "use": None}, "use is required"),
        ("bad type", footprint(0), building(0, floors="six"), "floors: 'six' is not an integer"),
        ("bad choice", footprint(0), building(0, use="castle"), "use 'castle' is not one of"),
        ("bad code", footprint(0), building(0, building_code="11x"), "building_code"),
        ("impossible height", footprint(0), building(0, floors=30, height=12.0), "too low"),
    ]


@pytest.mark.parametrize("case", bad_building_cases(), ids=lambda c: c[0])
def test_bad_building_rows_are_rejected_with_reason(tmp_path, conn, case):
    _, geom, props, reason = case
    good = footprint(5)
    path = write_geojson(tmp_path / "b.geojson", [good, geom], [building(5), props])
    r = run_import(conn, BUILDINGS, path, all_or_nothing=True)
    assert [x.number for x in r.rejected] == [2]
    assert reason in r.rejected[0].reason
    assert count(conn) == 0  # all or nothing: the good row is not written either
    r = run_import(conn, BUILDINGS, path)
    assert r.result.inserted == 1 and len(r.rejected) == 1
    assert count(conn) == 1


@pytest.mark.parametrize("layer, props, reason", [
    ("persons", {**PERSON, "id_number": GOOD_ID[:-1] + ("0" if GOOD_ID[-1] != "0" else "1")}, "check character"),
    ("persons", {**PERSON, "id_number": "21040219901317123X"}, "birth date"),
    ("persons", {**PERSON, "id_number": GOOD_ID, "sex": "F" if int(GOOD_ID[16]) % 2 else "M"}, "contradicts"),
    ("legal-persons", {"credit_code": "91210402MA0ABCDEI1", "name": "x", "status": "active"}, "GB 32100"),
    ("cameras", {"device_id": "2104020108132600007", "name": "x", "status": "ON"}, "20"),
    ("cameras", {"device_id": make_gb28181("210402", "01", "08", "118", "6", 1), "name": "x",
                 "status": "ON"}, "not a camera"),
    ("cameras", {"device_id": make_gb28181("210402", "01", "08", "132", "6", 2), "name": "x",
                 "status": "ON", "stream_url": "file:///etc/passwd"}, "stream_url"),
])
def test_bad_codes_are_rejected_with_reason(tmp_path, conn, layer, props, reason):
    path = write_geojson(tmp_path / "x.geojson", [Point(X, Y)], [props])
    r = run_import(conn, LAYERS[layer], path)
    assert len(r.rejected) == 1
    assert reason.lower() in r.rejected[0].reason.lower(), r.rejected[0].reason
    assert count(conn, layer) == 0


def test_pilot_credit_code_is_kept_with_a_flag(tmp_path, conn):
    path = write_geojson(tmp_path / "x.geojson", [Point(X, Y)],
                         [{"credit_code": "91350100M0001TGQXM", "name": "试点企业", "status": "active"}])
    r = run_import(conn, LAYERS["legal-persons"], path)
    assert r.result.inserted == 1 and r.warnings
    assert stored(conn, "91350100M0001TGQXM", LAYERS["legal-persons"])[1]["check_ok"] is False


def test_duplicate_ids_and_valid_from_conflicts(tmp_path, conn):
    path = write_geojson(tmp_path / "b.geojson", [footprint(0), footprint(1)], [building(0), building(0)])
    r = run_import(conn, BUILDINGS, path, valid_from="2024-01-01T00:00:00+08:00")
    assert r.result.inserted == 1 and "duplicate of row 1" in r.rejected[0].reason
    path2 = write_geojson(tmp_path / "b2.geojson", [footprint(0)], [building(0, floors=9, height=30.0)])
    r2 = run_import(conn, BUILDINGS, path2, valid_from="2023-01-01T00:00:00+08:00")
    assert r2.result.updated == 0 and "not after" in r2.rejected[0].reason
    assert [h["floors"] for h in TemporalStore(BUILDINGS.spec).history(conn, "21040200000000")] == [6]


def test_files_that_cannot_be_imported(tmp_path, conn):
    with pytest.raises(ImportFailed, match="no such file"):
        run_import(conn, BUILDINGS, tmp_path / "missing.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(ImportFailed, match="cannot read"):
        run_import(conn, BUILDINGS, bad)
    csv_path = tmp_path / "nocrs.csv"
    csv_path.write_text("building_code,lon,lat\n1,123.9,41.87\n")
    with pytest.raises(ImportFailed, match="no CRS"):
        run_import(conn, BUILDINGS, csv_path)
    with pytest.raises(ImportFailed, match="not supported|Unknown|unknown"):
        run_import(conn, BUILDINGS, csv_path, crs="EPSG:2000")
    with pytest.raises(ImportFailed, match="time zone"):
        run_import(conn, BUILDINGS, csv_path, crs="EPSG:4490", valid_from="2024-01-01T00:00:00")
    with pytest.raises(ImportFailed, match="unsupported format"):
        run_import(conn, BUILDINGS, tmp_path / "x.xlsx")


def test_cli_exit_code_summary_and_reject_file(tmp_path, pg, url):
    path = write_geojson(tmp_path / "b.geojson", [footprint(0), box(116.4, 39.9, 116.401, 39.901)],
                         [building(0), building(1)])
    env = {**os.environ, "DATABASE_URL": url}
    rejects = tmp_path / "rej.csv"
    r = subprocess.run([CLI, "import", "buildings", str(path), "--rejects", str(rejects),
                        "--valid-from", "2024-01-01T00:00:00+08:00"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert "1 inserted" in r.stderr and "1 rejected" in r.stderr and "row 2" in r.stderr
    rows = list(csv.DictReader(open(rejects)))
    assert rows[0]["row"] == "2" and "outside Fushun" in rows[0]["reason"]
    ok = subprocess.run([CLI, "import", "buildings", str(write_geojson(
        tmp_path / "ok.geojson", [footprint(0)], [building(0)])), "--valid-from",
        "2024-06-01T00:00:00+08:00"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "1 unchanged" in ok.stderr
    unknown = subprocess.run([CLI, "import", "castles", str(path)], env=env, capture_output=True,
                             text=True)
    assert unknown.returncode == 2 and "unknown layer" in unknown.stderr
