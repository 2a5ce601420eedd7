"""Rasters: `gisplatform raster add/list/remove`, /raster (titiler over registered COGs only),
the orthophoto time series, hillshade, and the demo rasters."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import morecantile
import numpy as np
import psycopg
import pytest
import rasterio
from conftest import DEMO_UNTIL, fresh_database
from fastapi.testclient import TestClient
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from gisplatform.app import create_app
from gisplatform.cli import app as cli_app
from gisplatform.config import Settings, get_settings
from tiles.raster import RasterError, add_raster, file_in, list_rasters, raster_dir

WEB = morecantile.tms.get("WebMercatorQuad")
X, Y = 123.905, 41.872  # a spot in Xinfu district
T2019 = "2019-07-01T00:00:00+08:00"


def geotiff(path: Path, *, bands: int = 3, dtype: str = "uint8", crs: str = "EPSG:4550",
            size: tuple[int, int] = (300, 200), res: float = 4.0, at=(X, Y), value=None) -> Path:
    """A GeoTIFF in a projected CRS (CGCS2000 GK, CM 123°E) whose top-left is at AT."""
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(*at)
    w, h = size
    if value is not None:
        data = np.broadcast_to(np.asarray(value, dtype)[:, None, None], (bands, h, w))
    elif dtype == "uint8":
        rng = np.random.default_rng(1)
        data = rng.integers(30, 220, (bands, h, w)).astype(dtype)
    else:  # a hill
        yy, xx = np.mgrid[0:h, 0:w]
        hill = 100 + 300 * np.exp(-(((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2))
        data = np.broadcast_to(hill.astype(dtype), (bands, h, w))
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=bands, dtype=dtype,
                       crs=crs, transform=from_origin(x, y, res, res)) as dst:
        dst.write(data)
    return path


def decode(png: bytes) -> np.ndarray:
    with warnings.catch_warnings():  # a PNG tile has no georeferencing, rightly
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.MemoryFile(png) as mem, mem.open() as img:
            return img.read()


def tile_at(lon: float, lat: float, z: int) -> str:
    t = WEB.tile(lon, lat, z)
    return f"{t.z}/{t.x}/{t.y}"


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def reg(pg, tmp_path_factory):
    """A migrated database with no rasters, and a data dir."""
    return fresh_database(pg, "rasters"), tmp_path_factory.mktemp("raster-data")


def cli(reg, *args):
    url, data_dir = reg
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli_app, ["raster", *map(str, args)], env={
            "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data_dir)})
    finally:
        get_settings.cache_clear()


def registered(reg) -> dict:
    with psycopg.connect(reg[0]) as c:
        return {r.name: r for r in list_rasters(c)}


def files(reg) -> set[str]:
    root = raster_dir(reg[1])
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_add_converts_reprojects_registers(reg, tmp_path):
    src = geotiff(tmp_path / "photo.tif")
    r = cli(reg, "add", src, "--name", "xinfu-2019", "--kind", "ortho", "--time", T2019)
    assert r.exit_code == 0, r.output
    assert "xinfu-2019" in r.stderr
    raster = registered(reg)["xinfu-2019"]
    assert raster.kind == "ortho" and raster.crs == "EPSG:3857"
    assert raster.at.timestamp() == 1561910400  # 2019-07-01T00:00:00+08:00
    path = file_in(raster_dir(reg[1]), raster.path)
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid, errors
    with rasterio.open(path) as cog:
        assert cog.crs.to_epsg() == 3857 and cog.count == 3 and cog.dtypes[0] == "uint8"
        assert (cog.width, cog.height, cog.count) == (raster.width, raster.height, raster.bands)
    with rasterio.open(src) as s:
        expected = transform_bounds(s.crs, "EPSG:4490", *s.bounds, densify_pts=21)
    assert raster.bounds == pytest.approx(expected, abs=1e-7)
    assert raster.bounds[0] == pytest.approx(X, abs=1e-3) and raster.bounds[3] == pytest.approx(Y, abs=1e-3)
    with psycopg.connect(reg[0]) as c:  # a real EPSG:4490 polygon in the table
        assert c.execute("select st_srid(bounds), geometrytype(bounds) from city.rasters"
                         " where name = 'xinfu-2019'").fetchone() == (4490, "POLYGON")

    r = cli(reg, "list")
    assert r.exit_code == 0 and "xinfu-2019" in r.stdout and "2019-07-01T00:00+08:00" in r.stdout


BAD = [
    (["{missing}", "--name", "a1", "--kind", "ortho", "--time", T2019], 1, "no such file"),
    (["{text}", "--name", "a1", "--kind", "ortho", "--time", T2019], 1, "not a raster"),
    (["{tif}", "--name", "a1", "--kind", "photo", "--time", T2019], 2, "--kind"),
    (["{tif}", "--name", "a1", "--kind", "ortho", "--time", "2019-07-01T00:00:00"], 2, "time zone"),
    (["{tif}", "--name", "a1", "--kind", "ortho", "--time", "2019-07-01"], 2, "time zone"),
    (["{tif}", "--name", "a1", "--kind", "ortho", "--time", "next year"], 2, "ISO 8601"),
    (["{tif}", "--name", "Xinfu", "--kind", "ortho", "--time", T2019], 2, "--name"),
    (["{tif}", "--name", "../etc", "--kind", "ortho", "--time", T2019], 2, "--name"),
    (["{tif}", "--name", "-x", "--kind", "ortho", "--time", T2019], 2, "--name"),
    (["{tif}", "--name", "a" * 64, "--kind", "ortho", "--time", T2019], 2, "--name"),
    (["{tif}", "--name", "ortho", "--kind", "ortho", "--time", T2019], 2, "reserved"),
    (["{tif}", "--name", "xinfu-2019", "--kind", "ortho", "--time", T2019], 1, "--replace"),
    (["{tif}", "--name", "a1", "--kind", "dem", "--time", T2019], 1, "one band"),
    (["{far}", "--name", "a1", "--kind", "ortho", "--time", T2019], 1, "outside the city"),
    (["{nocrs}", "--name", "a1", "--kind", "ortho", "--time", T2019], 1, "no CRS"),
]


@pytest.mark.parametrize("args, code, message", BAD, ids=[m for _, _, m in BAD])
def test_add_refuses_clearly_and_leaves_nothing(reg, tmp_path, args, code, message):
    if not registered(reg):
        test_add_converts_reprojects_registers(reg, tmp_path)  # the duplicate case needs it
    text = tmp_path / "notes.tif"
    text.write_text("not a raster\n")
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=10, height=10, count=3, dtype="uint8",
                       transform=from_origin(500000, 4600000, 1, 1)) as d:
        d.write(np.zeros((3, 10, 10), "uint8"))
    paths = {"missing": tmp_path / "missing.tif", "text": text, "nocrs": nocrs,
             "tif": geotiff(tmp_path / "ok.tif"),
             "far": geotiff(tmp_path / "far.tif", crs="EPSG:4326", res=0.001, at=(116.4, 39.9))}
    before, before_files = registered(reg), files(reg)
    r = cli(reg, "add", *[a.format(**paths) for a in args])
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert "Traceback" not in r.output
    assert registered(reg).keys() == before.keys()
    assert files(reg) == before_files  # no COG, no .part left behind


def test_replace_and_remove(reg, tmp_path):
    r = cli(reg, "add", geotiff(tmp_path / "a.tif"), "--name", "swap", "--kind", "ortho",
            "--time", T2019)
    assert r.exit_code == 0, r.output
    first = registered(reg)["swap"].path
    r = cli(reg, "add", geotiff(tmp_path / "b.tif", size=(100, 80)), "--name", "swap",
            "--kind", "ortho", "--time", "2020-07-01T00:00:00+08:00", "--replace")
    assert r.exit_code == 0, r.output
    second = registered(reg)["swap"]
    assert second.path != first and second.at.year == 2020 and second.width < 200
    assert first not in files(reg) and second.path in files(reg)
    r = cli(reg, "remove", "swap")
    assert r.exit_code == 0 and "removed swap" in r.stderr
    assert "swap" not in registered(reg) and second.path not in files(reg)
    r = cli(reg, "remove", "swap")
    assert r.exit_code == 1 and r.stderr.startswith("error: no raster named 'swap'")


def test_registry_refuses_paths_and_analysts_may_read_it(reg):
    with pytest.raises(RasterError):
        file_in(raster_dir(reg[1]), "../../etc/passwd")
    with psycopg.connect(reg[0]) as c:
        for path in ("../x.tif", "/etc/passwd", "a/../../b.tif", "file:///etc/passwd"):
            with pytest.raises(psycopg.errors.CheckViolation), c.transaction():
                c.execute("insert into city.rasters (name, kind, at, bounds, crs, path, width,"
                          " height, bands, dtype) values ('evil', 'ortho', now(),"
                          " st_makeenvelope(123.9, 41.8, 124, 41.9, 4490), 'EPSG:3857', %s,"
                          " 1, 1, 1, 'uint8')", (path,))
        assert c.execute("select has_table_privilege('gisplatform_analyst', 'city.rasters',"
                         " 'select')").fetchone()[0]


# ----------------------------------------------------------------------------- /raster

@pytest.fixture(scope="module")
def series(pg, tmp_path_factory):
    """Three yearly orthos of one colour each, and a DEM, in their own database; the app."""
    url = fresh_database(pg, "raster_series")
    data_dir = tmp_path_factory.mktemp("raster-series")
    src = tmp_path_factory.mktemp("raster-src")
    colours = {2018: (200, 30, 30), 2019: (30, 200, 30), 2020: (30, 30, 200)}
    with psycopg.connect(url, autocommit=True) as c:
        for year, colour in colours.items():
            add_raster(c, geotiff(src / f"{year}.tif", value=colour), name=f"city-{year}",
                       kind="ortho", at=f"{year}-07-01T00:00:00+08:00", data_dir=data_dir)
        add_raster(c, geotiff(src / "dem.tif", bands=1, dtype="float32", res=20.0),
                   name="hills", kind="dem", at="2018-01-01T00:00:00+08:00", data_dir=data_dir)
    with TestClient(create_app(Settings(data_dir=data_dir), db_url=url)) as client:
        yield client, colours, data_dir


def test_listing(series):
    client, _, _ = series
    r = client.get("/raster/")
    assert r.status_code == 200
    doc = r.json()
    by_name = {d["name"]: d for d in doc["rasters"]}
    assert set(by_name) == {"city-2018", "city-2019", "city-2020", "hills"}
    d = by_name["city-2019"]
    assert d["kind"] == "ortho" and d["time"] == "2019-07-01T00:00:00+08:00"
    assert d["bounds"][0] == pytest.approx(X, abs=1e-3) and d["bounds"][3] == pytest.approx(Y, abs=1e-3)
    assert d["links"]["tiles"].endswith("/raster/city-2019/tiles/WebMercatorQuad/{z}/{x}/{y}.png")
    tj = client.get(d["links"]["tilejson"].replace("http://testserver", ""))
    assert tj.status_code == 200 and tj.json()["tiles"][0].startswith(
        "http://testserver/raster/city-2019/tiles/WebMercatorQuad/")
    assert "ortho" in doc["series"] and "{datetime}" in doc["series"]["ortho"]["tiles"]


def test_tile_inside_and_outside(series):
    client, colours, _ = series
    r = client.get(f"/raster/city-2019/tiles/WebMercatorQuad/{tile_at(X + 0.003, Y - 0.002, 16)}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    assert "max-age" in r.headers["cache-control"]
    img = decode(r.content)
    assert img.shape == (4, 256, 256)  # RGB + alpha
    assert img[3].any()  # not all transparent
    opaque = img[3] > 0
    assert tuple(int(np.median(img[b][opaque])) for b in range(3)) == pytest.approx(
        colours[2019], abs=6)
    # outside the raster: titiler's TileOutsideBounds, a 404
    r = client.get(f"/raster/city-2019/tiles/WebMercatorQuad/{tile_at(124.9, 42.3, 16)}.png")
    assert r.status_code == 404 and "outside bounds" in r.json()["description"]


@pytest.mark.parametrize("when, name", [
    ("2019-06-30T23:59:59+08:00", "city-2018"),
    ("2019-07-01T00:00:00+08:00", "city-2019"),
    ("2019-06-30T16:00:00Z", "city-2019"),
    ("2020-07-01", "city-2020"),  # a bare date: 00:00 in UTC+8
    ("2031-01-01T00:00:00+08:00", "city-2020"),
    (None, "city-2020"),  # now
])
def test_ortho_series_picks_latest_at_or_before(series, when, name):
    client, colours, _ = series
    params = {"datetime": when} if when else {}
    r = client.get(f"/raster/ortho/{tile_at(X + 0.003, Y - 0.002, 16)}.png", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["x-raster-name"] == name
    img = decode(r.content)
    opaque = img[3] > 0
    year = int(name[-4:])
    assert tuple(int(np.median(img[b][opaque])) for b in range(3)) == pytest.approx(
        colours[year], abs=6)


def test_ortho_series_errors(series):
    client, _, _ = series
    path = f"/raster/ortho/{tile_at(X + 0.003, Y - 0.002, 16)}.png"
    r = client.get(path, params={"datetime": "2017-12-31T00:00:00+08:00"})
    assert r.status_code == 404 and "no ortho raster" in r.json()["description"]
    r = client.get(path, params={"datetime": "2019-07-01T00:00:00"})
    assert r.status_code == 400 and "time zone" in r.json()["description"]
    tj = client.get("/raster/ortho/tilejson.json", params={"datetime": "2019-12-01"}).json()
    assert tj["name"] == "city-2019" and tj["tiles"] == [
        "http://testserver/raster/ortho/{z}/{x}/{y}.png?datetime=2019-12-01T00:00:00%2B08:00"]


def test_hillshade(series):
    client, _, _ = series
    where = tile_at(X + 0.03, Y - 0.02, 14)
    r = client.get(f"/raster/dem/hillshade/{where}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    assert r.headers["x-raster-name"] == "hills"
    img = decode(r.content)
    assert img.shape[1:] == (256, 256) and img[-1].any()
    shade = img[0][img[-1] > 0]
    assert shade.max() - shade.min() > 40  # the hill is lit on one side, shaded on the other
    # titiler's algorithm on the DEM itself; refused on an ortho
    r = client.get(f"/raster/hills/tiles/WebMercatorQuad/{where}.png",
                   params={"algorithm": "hillshade", "buffer": 3})
    assert r.status_code == 200 and decode(r.content).shape[1:] == (256, 256)
    r = client.get(f"/raster/city-2019/tiles/WebMercatorQuad/{where}.png",
                   params={"algorithm": "hillshade"})
    assert r.status_code == 400 and "DEM" in r.json()["description"]
    assert client.get(f"/raster/dem/hillshade/{where}.png",
                      params={"datetime": "2017-01-01T00:00:00+08:00"}).status_code == 404


EVIL = [
    "/raster/nope/info",
    "/raster/nope/tiles/WebMercatorQuad/16/54940/24800.png",
    "/raster/city-2019/info?url=file:///etc/passwd",
    "/raster/city-2019/info?URL=/etc/passwd",
    "/raster/city-2019/tiles/WebMercatorQuad/0/0/0.png?url=http://169.254.169.254/latest/meta-data",
    "/raster/city-2019/WebMercatorQuad/tilejson.json?url=s3://bucket/key.tif",
    "/raster/ortho/16/54940/24800.png?url=/etc/passwd",
    "/raster/info?url=file:///etc/passwd",
    "/raster/%2e%2e%2f%2e%2e%2fetc%2fpasswd/info",
    "/raster/..%2F..%2Fetc%2Fpasswd/info",
    "/raster/%2e%2e/info",
    "/raster/../../etc/passwd",
    "/raster/%2Fetc%2Fpasswd/info",
    "/raster/file:%2F%2F%2Fetc%2Fpasswd/info",
    "/raster/file:/info",
    "/raster/http:%2F%2F169.254.169.254%2Flatest/info",
    "/raster/s3:%2F%2Fbucket%2Fkey.tif/info",
    "/raster/ortho/info",
    "/raster/dem/info",
    "/raster/city-2019.tif/info",
    "/raster/CITY-2019/info",
    "/raster/city-2019%0A/info",
]


def test_refuses_everything_but_registered_names(series, monkeypatch):
    """Unregistered names, url= and paths are 4xx, and rasterio never opens them: every
    dataset rasterio is asked to open is a registered COG in the raster directory."""
    client, _, data_dir = series
    opened = []
    real_open = rasterio.open

    def spy(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", spy)
    for path in EVIL:
        r = client.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code)
    assert opened == []
    # the spy does see the one way in: a registered name
    assert client.get("/raster/city-2019/info").status_code == 200
    root = raster_dir(data_dir).resolve()
    assert opened and all(Path(p).resolve().parent == root for p in opened)


# ----------------------------------------------------------------------------- the demo

def test_demo_rasters(pg, tmp_path):
    """`gisplatform demo` draws the orthophotos of 2018-2020 from the buildings standing
    then, and the DEM: within budget, valid COGs, the years differ, the series works."""
    from tiles import raster_demo

    url, data_dir = fresh_database(pg, "raster_demo"), tmp_path / "data"
    get_settings.cache_clear()
    t = time.perf_counter()
    try:
        r = CliRunner().invoke(cli_app, ["demo", "--until", DEMO_UNTIL], env={
            "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data_dir)})
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    secs = time.perf_counter() - t
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("demo rasters:"))
    raster_secs = float(line.split(" in ")[1].split("s")[0])
    with psycopg.connect(url) as c:
        rasters = {x.name: x for x in list_rasters(c)}
    assert set(rasters) == {"ortho-2018", "ortho-2019", "ortho-2020", "dem-fushun"}
    total_mb = sum(p.stat().st_size for p in raster_dir(data_dir).iterdir()) / 1e6
    print(f"demo city + rasters {secs:.1f}s; rasters {raster_secs:.1f}s, {total_mb:.1f} MB")
    assert raster_secs < 25 and total_mb < 60  # budget: 15 s on 2 idle cores, 60 MB
    for x in rasters.values():
        assert cog_validate(str(file_in(raster_dir(data_dir), x.path)), quiet=True)[0]
    assert rasters["ortho-2019"].bounds == pytest.approx((123.65, 41.78, 124.30, 41.98), abs=1e-3)
    assert rasters["dem-fushun"].bounds == pytest.approx((123.65, 41.233, 125.484, 42.467), abs=1e-3)

    with TestClient(create_app(Settings(data_dir=data_dir), db_url=url)) as client:
        where = tile_at(123.90, 41.87, 14)  # the small demo city, on the Hun River
        years = {}
        for year in (2018, 2019, 2020):
            r = client.get(f"/raster/ortho/{where}.png", params={"datetime": f"{year}-12-31"})
            assert r.status_code == 200 and r.headers["x-raster-name"] == f"ortho-{year}"
            years[year] = decode(r.content)[:3].astype(int)
        assert np.abs(years[2018] - years[2019]).mean() > 3  # the years visibly differ
        assert np.abs(years[2019] - years[2020]).mean() > 3
        r = client.get(f"/raster/dem/hillshade/{tile_at(124.9, 41.9, 10)}.png")
        assert r.status_code == 200 and r.headers["x-raster-name"] == "dem-fushun"
        r = client.get("/raster/dem-fushun/point/124.9,42.3")  # mountains in the east
        east = r.json()["values"][0]
        west = client.get("/raster/dem-fushun/point/123.9,41.872").json()["values"][0]
        assert 60 < west < 150 and east > west + 200

    # deterministic: the same database draws the same pixels (cheaply, at 200 m)
    with psycopg.connect(url) as c:
        a, _ = raster_demo._ortho(c, 2019, 200.0)
        b, _ = raster_demo._ortho(c, 2019, 200.0)
    assert np.array_equal(a, b)
    assert np.array_equal(raster_demo._dem(900.0)[0], raster_demo._dem(900.0)[0])


def test_tiles_coarser_than_the_overviews_are_refused_fast(series):
    """A z0 orthophoto tile would read the whole full-resolution image (minutes, GBs)."""
    import time as _t

    client, _, _ = series
    t = _t.perf_counter()
    r = client.get("/raster/city-2019/tiles/WebMercatorQuad/0/0/0.png")
    assert r.status_code == 404 and "coarser" in r.text, r.text
    for path in ("/raster/ortho/0/0/0.png", "/raster/ortho/2/3/1.png"):  # basemaps: empty
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert _t.perf_counter() - t < 5
