"""WMS 1.3.0 and WFS 2.0 (/wms, /wfs, through MapServer) as their clients meet them:
OWSLib's WMS and WFS clients, GDAL's WFS and WMS drivers, raw KVP from a stranger."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import psycopg
import pyogrio.raw
import pytest
from owslib.wfs import WebFeatureService
from owslib.wms import WebMapService
from PIL import Image

from gisplatform.security import create_token, mask_value

PUBLIC = ("admin-areas", "grid-cells", "addresses", "buildings", "legal-persons", "components",
          "cases", "responsibility-zones")
CORE = (41.84, 123.85, 41.90, 123.95)  # lat/lon order: EPSG:4490 in WMS 1.3.0


def _image(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def _drawn(content: bytes) -> int:
    """Pixels that are not the white background."""
    return int((_image(content).sum(axis=2) < 750).sum())


def _snapshot_count(url: str, table: str, where: str = "true", at: str | None = None) -> int:
    with psycopg.connect(url) as c:
        return c.execute(
            f"select count(*) from city.{table}_version where upper_inf(recorded)"
            f" and valid @> coalesce(%s::timestamptz, now()) and {where}", (at,)).fetchone()[0]


@pytest.fixture(scope="module")
def tokens(demo_url):
    with psycopg.connect(demo_url) as c:
        _, read = create_token(c, "gongan", [("legal-persons", "read"), ("persons", "read")],
                               label="ows-read")
        _, personal = create_token(c, "gongan", [("legal-persons", "read_personal")],
                                   label="ows-personal")
        c.commit()
    return {"read": read, "personal": personal}


def test_owslib_wms_reads_every_public_layer(live):
    wms = WebMapService(f"{live}/wms", version="1.3.0", timeout=60)
    names = set(wms.contents)
    assert set(PUBLIC) <= names, names
    assert "persons" not in names and "cameras" not in names  # conditional: not for anonymous
    # the orthophoto is listed once one is registered (none in this data dir)
    assert any(d.lower() == "time" for d in wms["buildings"].dimensions), wms["buildings"].dimensions
    lonlat = (CORE[1], CORE[0], CORE[3], CORE[2])  # OWSLib swaps to the CRS's axis order
    for crs, bbox in (("EPSG:4490", lonlat), ("EPSG:4326", lonlat),
                      ("EPSG:3857", (13784000, 5138000, 13795000, 5146000)),
                      ("EPSG:4529", (41572000, 4635000, 41577000, 4640000)),
                      ("EPSG:4550", (572000, 4635000, 577000, 4640000))):
        img = wms.getmap(layers=["buildings"], srs=crs, bbox=bbox, size=(512, 384),
                         format="image/png")
        assert _drawn(img.read()) > 500, crs
    for name in PUBLIC:
        img = wms.getmap(layers=[name], srs="EPSG:4490", bbox=(123.6, 41.7, 124.3, 42.1),
                         size=(256, 256), format="image/jpeg")
        assert img.info()["Content-Type"].startswith("image/jpeg"), name
    legend = httpx.get(f"{live}/wms", params={"SERVICE": "WMS", "VERSION": "1.3.0",
                       "REQUEST": "GetLegendGraphic", "LAYER": "buildings", "FORMAT": "image/png"})
    assert legend.status_code == 200 and legend.headers["content-type"] == "image/png"
    assert _drawn(legend.content) > 10


def test_getfeatureinfo_answers_the_building_under_the_pixel(live, demo_url):
    with psycopg.connect(demo_url) as c:
        fid, x, y = c.execute(
            "select fid, st_x(p), st_y(p) from (select fid, st_pointonsurface(geom) p"
            " from city.buildings_version where upper_inf(recorded) and upper_inf(valid)"
            " order by fid limit 1) b").fetchone()
    d = 0.001
    r = httpx.get(f"{live}/wms", params={
        "SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo",
        "LAYERS": "buildings", "QUERY_LAYERS": "buildings", "STYLES": "", "CRS": "EPSG:4490",
        "BBOX": f"{y - d},{x - d},{y + d},{x + d}", "WIDTH": 101, "HEIGHT": 101, "I": 50,
        "J": 50, "INFO_FORMAT": "application/json", "FORMAT": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text
    assert fid in [f["properties"]["fid"] for f in r.json()["features"]]


def test_wfs_paging_bbox_and_gdal_agree_with_the_database(live, demo_url):
    wfs = WebFeatureService(f"{live}/wfs", version="2.0.0", timeout=60)
    assert set(PUBLIC) <= {n.split(":")[-1] for n in wfs.contents}
    total = _snapshot_count(demo_url, "buildings")
    seen, start = [], 0
    while True:
        r = httpx.get(f"{live}/wfs", params={
            "SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
            "TYPENAMES": "buildings", "COUNT": 200, "STARTINDEX": start,
            "OUTPUTFORMAT": "application/json"}, timeout=60)
        assert r.status_code == 200, r.text
        page = [f["properties"]["fid"] for f in r.json()["features"]]
        seen += page
        if len(page) < 200:
            break
        start += 200
    assert len(seen) == len(set(seen)) == total
    w, s, e, n = 123.88, 41.86, 123.93, 41.89
    r = httpx.get(f"{live}/wfs", params={
        "SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature", "TYPENAMES": "buildings",
        "BBOX": f"{s},{w},{n},{e},urn:ogc:def:crs:EPSG::4490", "OUTPUTFORMAT": "geojson"})
    assert len(r.json()["features"]) == _snapshot_count(
        demo_url, "buildings", f"geom && st_makeenvelope({w}, {s}, {e}, {n}, 4490)")
    meta, _, geoms, fields = pyogrio.raw.read(f"WFS:{live}/wfs?VERSION=2.0.0",
                                              layer="gisplatform:addresses")
    assert len(geoms) == _snapshot_count(demo_url, "addresses")
    # GDAL's WMS driver: a GetMap through its XML description
    import rasterio

    xml = (f"<GDAL_WMS><Service name='WMS'><Version>1.3.0</Version>"
           f"<ServerUrl>{live}/wms?</ServerUrl><CRS>EPSG:3857</CRS><ImageFormat>image/png"
           f"</ImageFormat><Layers>buildings</Layers></Service><DataWindow>"
           f"<UpperLeftX>13784000</UpperLeftX><UpperLeftY>5146000</UpperLeftY>"
           f"<LowerRightX>13795000</LowerRightX><LowerRightY>5138000</LowerRightY>"
           f"<SizeX>1024</SizeX><SizeY>745</SizeY></DataWindow><BandsCount>3</BandsCount>"
           f"</GDAL_WMS>")
    with rasterio.open(xml) as ds:
        band = ds.read(1, out_shape=(256, 186))
    assert (band < 250).sum() > 100


def test_time_selects_the_snapshot(live, demo_url):
    with psycopg.connect(demo_url) as c:
        (early,) = c.execute("select percentile_disc(0.5) within group (order by lower(valid))"
                             " from city.buildings_version where upper_inf(recorded)").fetchone()
    at = early.isoformat()
    params = {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
              "TYPENAMES": "buildings", "RESULTTYPE": "hits"}
    now = httpx.get(f"{live}/wfs", params=params).text
    then = httpx.get(f"{live}/wfs", params={**params, "TIME": at}).text
    assert f'numberMatched="{_snapshot_count(demo_url, "buildings")}"' in now
    assert f'numberMatched="{_snapshot_count(demo_url, "buildings", at=at)}"' in then
    assert _snapshot_count(demo_url, "buildings", at=at) != _snapshot_count(demo_url, "buildings")
    get = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": "buildings",
           "STYLES": "", "CRS": "EPSG:4490", "BBOX": ",".join(map(str, CORE)), "WIDTH": 512,
           "HEIGHT": 384, "FORMAT": "image/png"}
    a = httpx.get(f"{live}/wms", params=get).content
    b = httpx.get(f"{live}/wms", params={**get, "TIME": at}).content
    assert _drawn(a) > _drawn(b)  # fewer buildings stood then
    # an interval: what was alive in it (WFS)
    r = httpx.get(f"{live}/wfs", params={**params, "datetime": f"{at}/.."})
    assert r.status_code == 200 and "numberMatched" in r.text


def test_personal_columns_follow_the_callers_grant(live, demo_url, tokens):
    params = {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
              "TYPENAMES": "legal-persons", "COUNT": 5, "OUTPUTFORMAT": "application/json",
              "SORTBY": "fid"}
    anon = httpx.get(f"{live}/wfs", params=params).json()["features"]
    assert anon and all("legal_representative" not in f["properties"] for f in anon)
    with psycopg.connect(demo_url) as c:
        plain = dict(c.execute("select fid, legal_representative from city.legal_persons_version"
                               " where upper_inf(recorded) and upper_inf(valid)").fetchall())
    masked = httpx.get(f"{live}/wfs", params=params,
                       headers={"Authorization": f"Bearer {tokens['read']}"}).json()["features"]
    for f in masked:
        p = f["properties"]
        assert p["legal_representative"] == mask_value("name", plain[p["fid"]]), p
    with psycopg.connect(demo_url) as c:
        before = c.execute("select count(*) from city.audit_log where layer = 'legal-persons'"
                           " and action = 'read_personal'").fetchone()[0]
    full = httpx.get(f"{live}/wfs", params={**params, "token": tokens["personal"]}).json()
    assert all(f["properties"]["legal_representative"] == plain[f["properties"]["fid"]]
               for f in full["features"])
    with psycopg.connect(demo_url) as c:
        after = c.execute("select count(*) from city.audit_log where layer = 'legal-persons'"
                          " and action = 'read_personal'").fetchone()[0]
    assert after == before + 1
    # a masked field is no input: not filtered, sorted or selected by
    for key, value in (("SORTBY", "legal_representative"),
                       ("FILTER", "<fes:Filter xmlns:fes='http://www.opengis.net/fes/2.0'>"
                                  "<fes:PropertyIsLike wildCard='*' singleChar='.' escapeChar='!'>"
                                  "<fes:ValueReference>legal_representative</fes:ValueReference>"
                                  "<fes:Literal>刘*</fes:Literal></fes:PropertyIsLike></fes:Filter>")):
        r = httpx.get(f"{live}/wfs", params={**params, key: value},
                      headers={"Authorization": f"Bearer {tokens['read']}"})
        assert r.status_code == 400 and "personal field" in r.text, r.text
    # conditional layers: 401 anonymous, readable with the grant, 403 without it
    q = {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature", "TYPENAMES": "persons",
         "COUNT": 1, "OUTPUTFORMAT": "application/json"}
    assert httpx.get(f"{live}/wfs", params=q).status_code == 401
    r = httpx.get(f"{live}/wfs", params={**q, "token": tokens["read"]})
    assert r.status_code == 200, r.text
    person = r.json()["features"][0]["properties"]
    assert "*" in person["id_number"] and "*" in person["name"]
    assert httpx.get(f"{live}/wfs", params={**q, "token": tokens["personal"]}).status_code == 403
    wms = httpx.get(f"{live}/wms", params={"SERVICE": "WMS", "REQUEST": "GetCapabilities",
                                           "token": tokens["read"]}).text
    assert "<Name>persons</Name>" in wms and "<Name>cameras</Name>" not in wms


HOSTILE = [
    ("wms", {"REQUEST": "GetMap", "LAYERS": "nope"}, "LayerNotDefined"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "CRS": "EPSG:2000"}, "InvalidCRS"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "WIDTH": "100000"}, "WIDTH"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "WIDTH": "-5"}, "WIDTH"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "BBOX": "42,124,41,123"}, "BBOX"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "BBOX": "nan,1,2,3"}, "BBOX"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "FORMAT": "text/html"}, "InvalidFormat"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "FORMAT": "image/png%0d%0aX-A: b"},
     "InvalidFormat"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "SLD": "http://10.0.0.1/x.sld"}, "SLD"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "SLD_BODY": "<x/>"}, "SLD_BODY"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "map": "/etc/passwd"}, "MAP"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "TIME": "yesterday-ish"},
     "InvalidDimensionValue"),
    ("wms", {"REQUEST": "GetMap", "LAYERS": "buildings", "STYLES": "../../x"}, "StyleNotDefined"),
    ("wms", {"REQUEST": "DropTables"}, "OperationNotSupported"),
    ("wms", {"SERVICE": "WFS", "REQUEST": "GetCapabilities"}, "SERVICE"),
    ("wfs", {"REQUEST": "GetFeature", "TYPENAMES": "nope"}, "InvalidParameterValue"),
    ("wfs", {"REQUEST": "GetFeature", "TYPENAMES": "buildings", "COUNT": "99999999"}, "COUNT"),
    ("wfs", {"REQUEST": "GetFeature", "TYPENAMES": "buildings", "OUTPUTFORMAT": "shape-zip"},
     "OUTPUTFORMAT"),
    ("wfs", {"REQUEST": "GetFeature", "TYPENAMES": "buildings",
             "FILTER": "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><Filter>&e;</Filter>"},
     "FILTER"),
    ("wfs", {"REQUEST": "GetFeature", "TYPENAMES": "buildings", "FILTER": "<Filter><broken"},
     None),
    ("wfs", {"REQUEST": "Transaction"}, "OperationNotSupported"),
]


@pytest.mark.parametrize("path,params,expect", HOSTILE)
def test_bad_parameters_are_ogc_exceptions(live, path, params, expect):
    base = {"SERVICE": path.upper(), "VERSION": "1.3.0" if path == "wms" else "2.0.0",
            "STYLES": "", "CRS": "EPSG:4490", "BBOX": ",".join(map(str, CORE)), "WIDTH": "256",
            "HEIGHT": "256", "FORMAT": "image/png"}
    r = httpx.get(f"{live}/{path}", params={**base, **params}, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    root = ET.fromstring(r.content)
    assert root.tag.endswith("ExceptionReport"), r.text
    if expect:
        assert expect in r.text, r.text
    assert "password" not in r.text and "select" not in r.text.lower()


def test_the_access_crawler_paths_answer_401_not_data(live):
    """Anonymous GetFeatureInfo / GetMap / DescribeFeatureType of a conditional layer are
    refused like every other path; the capabilities do not name it."""
    for path, params in (
            ("wms", {"REQUEST": "GetMap", "LAYERS": "cameras"}),
            ("wms", {"REQUEST": "GetLegendGraphic", "LAYER": "persons"}),
            ("wfs", {"REQUEST": "DescribeFeatureType", "TYPENAMES": "persons"})):
        r = httpx.get(f"{live}/{path}", params={
            "SERVICE": path.upper(), "CRS": "EPSG:4490", "BBOX": ",".join(map(str, CORE)),
            "WIDTH": 64, "HEIGHT": 64, "FORMAT": "image/png", "STYLES": "", **params})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    described = httpx.get(f"{live}/wfs", params={"SERVICE": "WFS", "VERSION": "2.0.0",
                                                  "REQUEST": "DescribeFeatureType"}).text
    assert "persons" not in described.replace("legal-persons", "")
    assert json.dumps("stream_url")[1:-1] not in described


def test_wmts_kvp_and_restful_in_both_grids(live, demo_url):
    import morecantile
    from owslib.wmts import WebMapTileService

    from gisplatform.crs.tile_grids import GRIDS

    wmts = WebMapTileService(f"{live}/wmts", timeout=60)
    assert set(PUBLIC) <= set(wmts.contents) and "persons" not in wmts.contents
    assert {"WebMercatorQuad", "CGCS2000Quad"} <= set(wmts.tilematrixsets)
    with psycopg.connect(demo_url) as c:
        x, y = c.execute("select st_x(p), st_y(p) from (select st_pointonsurface(geom) p"
                         " from city.buildings_version where upper_inf(recorded)"
                         " and upper_inf(valid) order by fid limit 1) b").fetchone()
    for tms, z in (("WebMercatorQuad", 16), ("CGCS2000Quad", 15)):
        t = GRIDS[tms].tms.tile(x, y, z) if tms == "CGCS2000Quad" else \
            morecantile.tms.get("WebMercatorQuad").tile(x, y, z)
        kvp = wmts.gettile(layer="buildings", tilematrixset=tms, tilematrix=str(z), row=t.y,
                           column=t.x, format="image/png").read()
        alpha = np.asarray(Image.open(io.BytesIO(kvp)).convert("RGBA"))[..., 3]
        assert (alpha > 0).sum() > 50, tms  # the building is drawn in both grids
        rest = httpx.get(f"{live}/wmts/1.0.0/buildings/default/{tms}/{z}/{t.y}/{t.x}.png")
        assert rest.status_code == 200 and rest.content == kvp
    for params, status, code in (
            ({"LAYER": "buildings", "TILEMATRIXSET": "EPSG:900913"}, 400, "TileMatrixSet"),
            ({"LAYER": "buildings", "TILEROW": "999999"}, 400, "TileOutOfRange"),
            ({"LAYER": "persons"}, 401, "Unauthorized"),
            ({"LAYER": "nope"}, 400, "nope")):
        q = {"SERVICE": "WMTS", "REQUEST": "GetTile", "STYLE": "default", "FORMAT": "image/png",
             "TILEMATRIXSET": "WebMercatorQuad", "TILEMATRIX": "3", "TILEROW": "2",
             "TILECOL": "6", **params}
        r = httpx.get(f"{live}/wmts", params=q)
        assert r.status_code == status and code in r.text, r.text
        assert ET.fromstring(r.content).tag.endswith("ExceptionReport")


# Run by Debian's QGIS (the system Python): its WMS and WFS providers on our services
QGIS_READS = r'''
import json, os, sys
from qgis.core import QgsApplication, QgsFeatureRequest, QgsRasterLayer, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
base = sys.argv[1]
wms = QgsRasterLayer(f"crs=EPSG:4490&format=image/png&layers=buildings&styles=&url={base}/wms",
                     "buildings", "wms")
wfs = QgsVectorLayer(f"url='{base}/wfs' typename='gisplatform:buildings' version='2.0.0'",
                     "buildings", "WFS")
# (error().summary() of a valid layer crashes QGIS 3.22)
out = {"wms": [wms.isValid(), "" if wms.isValid() else wms.error().summary()],
       "wfs": [wfs.isValid(), sum(1 for _ in wfs.getFeatures(QgsFeatureRequest()))]}
if wms.isValid():
    block = wms.dataProvider().block(1, wms.extent(), 128, 128)
    out["wms_pixels"] = sum(1 for r in range(128) for c in range(128) if block.value(r, c))
print(json.dumps(out), flush=True)
os._exit(0)
'''


def test_qgis_reads_wms_and_wfs(live, demo_url, tmp_path):
    import os
    import subprocess

    env = {**os.environ, "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen",
           "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    os.chmod(tmp_path, 0o700)
    if subprocess.run(["/usr/bin/python3", "-c", "import qgis.core"], env=env,
                      capture_output=True).returncode != 0:
        pytest.skip("/usr/bin/python3 cannot import qgis.core (python3-qgis; make test "
                    "installs it)")
    script = tmp_path / "reads.py"
    script.write_text(QGIS_READS)
    r = subprocess.run(["/usr/bin/python3", str(script), live], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["wms"][0], out
    assert out["wms_pixels"] > 0, out
    assert out["wfs"] == [True, _snapshot_count(demo_url, "buildings")], out


def test_wfs_next_link_keeps_the_time_and_the_token(live, demo_url, tokens):
    import re

    at = "2026-06-01T00:00:00Z"
    r = httpx.get(f"{live}/wfs", params={
        "SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature", "TYPENAMES": "persons",
        "COUNT": 5, "TIME": at, "token": tokens["read"]})
    assert r.status_code == 200, r.text
    link = re.search(r'next="([^"]+)"', r.text)
    assert link, r.text[:2000]
    nxt = link.group(1).replace("&amp;", "&")
    assert "token=" in nxt and "datetime=2026-06-01T00" in nxt, nxt
    page = httpx.get(nxt)
    assert page.status_code == 200 and 'numberReturned="5"' in page.text, page.text[:1000]
