"""CRS registry and input conversion: offline pyproj, no database."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Point, Polygon

from gisplatform.crs import (
    REGISTRY,
    STORAGE_CRS,
    STORAGE_SRID,
    CRSError,
    from_storage,
    gk_zone_for_lon,
    resolve_crs,
    srid_for_gk_zone,
    to_storage,
    transform_geometry,
)
from gisplatform.crs import chinese_offsets as co

GEOD = pyproj.Geod(ellps="GRS80")
FUSHUN = (123.95, 41.88)  # city centre, CGCS2000 lon/lat
# Fushun municipality, generously: 123.6-125.5E, 41.2-42.5N.
_lon, _lat = np.meshgrid(np.linspace(123.6, 125.5, 120), np.linspace(41.2, 42.5, 80))
GRID_LON, GRID_LAT = _lon.ravel(), _lat.ravel()


def metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


# --- GCJ-02 / BD-09 -------------------------------------------------------------------


def test_formula_matches_published_reference_vector():
    # wandergis/coordtransform README, reproduced verbatim by many independent ports.
    assert co.wgs84_to_gcj02(116.404, 39.915) == pytest.approx(
        (116.41024449916938, 39.91640428150164), abs=1e-12
    )
    assert co.gcj02_to_bd09(116.404, 39.915) == pytest.approx(
        (116.41036949371029, 39.92133699351021), abs=1e-12
    )
    # Their inverses are the one-step / published approximations: pins the starting point.
    assert co.gcj02_to_wgs84(116.404, 39.915, iterations=1) == pytest.approx(
        (116.39775550083061, 39.91359571849836), abs=1e-12
    )
    assert co.bd09_to_gcj02(116.404, 39.915, iterations=0) == pytest.approx(
        (116.39762729119315, 39.90865673957631), abs=1e-12
    )


def test_gcj02_offset_at_fushun_has_the_known_magnitude():
    g_lon, g_lat = co.wgs84_to_gcj02(GRID_LON, GRID_LAT)
    d = metres(GRID_LON, GRID_LAT, g_lon, g_lat)
    assert 100 < d.min() and d.max() < 700  # measured 506-596 m


def test_gcj02_iterated_inverse_round_trip_over_fushun():
    g_lon, g_lat = co.wgs84_to_gcj02(GRID_LON, GRID_LAT)
    one_step = metres(GRID_LON, GRID_LAT, *co.gcj02_to_wgs84(g_lon, g_lat, iterations=1))
    iterated = metres(GRID_LON, GRID_LAT, *co.gcj02_to_wgs84(g_lon, g_lat))
    # Why we iterate: the one-step inverse is metres off (measured max 3.1 m here).
    assert one_step.max() > 1.0
    # Measured ~1e-9 m (float64 resolution); brief requires < 1 cm.
    assert iterated.max() < 1e-3


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.floats(123.6, 125.5, allow_nan=False),
    st.floats(41.2, 42.5, allow_nan=False),
)
def test_gcj02_round_trip_property(lon, lat):
    back = co.gcj02_to_wgs84(*co.wgs84_to_gcj02(lon, lat))
    assert metres(lon, lat, *back) < 0.01


def test_bd09_round_trip_over_fushun():
    b_lon, b_lat = co.wgs84_to_bd09(GRID_LON, GRID_LAT)
    assert metres(GRID_LON, GRID_LAT, *co.bd09_to_wgs84(b_lon, b_lat)).max() < 1e-3
    g_lon, g_lat = co.wgs84_to_gcj02(GRID_LON, GRID_LAT)
    published = metres(g_lon, g_lat, *co.bd09_to_gcj02(b_lon, b_lat, iterations=0))
    iterated = metres(g_lon, g_lat, *co.bd09_to_gcj02(b_lon, b_lat))
    assert 0.01 < published.max() < 1.0  # measured ~0.17 m
    assert iterated.max() < 1e-3


@pytest.mark.parametrize(
    "lon, lat",
    [(-0.1246, 51.5007), (139.6917, 35.6895), (151.2, -33.9), (100.0, 56.0), (72.0, 40.0)],
)
def test_outside_china_unchanged(lon, lat):
    assert co.wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert co.gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_china_box_is_pinned():
    assert co.CHINA_BBOX == (72.004, 0.8293, 137.8347, 55.8271)
    inside = co.out_of_china([72.005, 137.83, 100.0], [30.0, 30.0, 55.82])
    assert not inside.any()


def test_scalar_in_scalar_out_array_in_array_out():
    lon, lat = co.wgs84_to_gcj02(*FUSHUN)
    assert np.ndim(lon) == 0 and isinstance(lon, np.floating)
    lon2, lat2 = co.bd09_to_wgs84(np.full((2, 3), 123.9), np.full((2, 3), 41.9))
    assert lon2.shape == lat2.shape == (2, 3)


# --- registry and resolve_crs ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("CRS84", "OGC:CRS84"),
        ("OGC:CRS84", "OGC:CRS84"),
        ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "OGC:CRS84"),
        ("https://www.opengis.net/def/crs/OGC/1.3/CRS84", "OGC:CRS84"),
        ("urn:ogc:def:crs:OGC:1.3:CRS84", "OGC:CRS84"),
        ("EPSG:4490", "EPSG:4490"),
        ("epsg:4490", "EPSG:4490"),
        ("4490", "EPSG:4490"),
        (4490, "EPSG:4490"),
        (" EPSG:4490 ", "EPSG:4490"),
        ("http://www.opengis.net/def/crs/EPSG/0/4490", "EPSG:4490"),
        ("https://www.opengis.net/def/crs/EPSG/0/4490", "EPSG:4490"),
        ("urn:ogc:def:crs:EPSG::4490", "EPSG:4490"),
        ("urn:ogc:def:crs:EPSG:9.8:4326", "EPSG:4326"),
        ("EPSG:3857", "EPSG:3857"),
        ("EPSG:4529", "EPSG:4529"),
        ("EPSG:4530", "EPSG:4530"),
        ("EPSG:4550", "EPSG:4550"),
        ("EPSG:4551", "EPSG:4551"),
        ("GCJ02", "GCJ02"),
        ("GCJ-02", "GCJ02"),
        ("gcj-02", "GCJ02"),
        ("BD09", "BD09"),
        ("BD-09", "BD09"),
    ],
)
def test_resolve_crs_spellings(text, key):
    assert resolve_crs(text).key == key


@pytest.mark.parametrize(
    "text",
    [
        "EPSG:999999",
        "EPSG:2000",  # valid EPSG (Anguilla 1957), not ours
        "EPSG:4528",  # GK zone 40 exists but is not in the registry
        "http://www.opengis.net/def/crs/EPSG/0/3395",
        "urn:ogc:def:crs:OGC:1.3:CRS84h",
        "WGS 84 / UTM 51N",
        "",
        None,
    ],
)
def test_resolve_crs_rejects(text):
    with pytest.raises(CRSError) as exc:
        resolve_crs(text)
    assert "EPSG:4490" in str(exc.value)  # message lists what is supported
    assert isinstance(exc.value, ValueError)


def test_registry_matches_pyproj():
    assert STORAGE_SRID == 4490 and STORAGE_CRS == "EPSG:4490"
    for info in REGISTRY.values():
        if info.obfuscated:
            assert info.srid is None and info.uri is None
            continue
        crs = pyproj.CRS.from_user_input(info.key)
        if info.srid is not None:
            assert crs.name == info.title
            assert info.uri == f"http://www.opengis.net/def/crs/EPSG/0/{info.srid}"
        # Authority axis order, as EPSG/OGC define it (X = northing for the GK CRSs).
        assert info.latlon_axis_order == (crs.axis_info[0].direction == "north"), info.key
    assert REGISTRY["EPSG:4529"].latlon_axis_order and not REGISTRY["OGC:CRS84"].latlon_axis_order


# --- pyproj conversions ---------------------------------------------------------------


def test_gauss_kruger_zone_41_round_trip_and_prefix():
    e41, n41 = from_storage("EPSG:4529")(*FUSHUN)
    assert str(int(e41)).startswith("41") and len(str(int(e41))) == 8
    e, n = from_storage("EPSG:4550")(*FUSHUN)
    # Same projection, false easting 500 000 instead of 41 500 000.
    assert e == pytest.approx(e41 - 41_000_000, abs=1e-6) and n == pytest.approx(n41, abs=1e-6)
    assert 500_000 + 70_000 < e < 500_000 + 90_000  # 0.95 deg east of CM 123E
    assert 4_600_000 < n < 4_700_000
    for crs, (x, y) in (("EPSG:4529", (e41, n41)), ("EPSG:4550", (e, n))):
        assert metres(*FUSHUN, *to_storage(crs)(x, y)) < 1e-3


def test_gauss_kruger_zone_42_east_of_124_5():
    lon, lat = 125.0, 41.7  # Xinbin county
    assert gk_zone_for_lon(lon) == 42
    e, n = from_storage(f"EPSG:{srid_for_gk_zone(42)}")(lon, lat)
    assert str(int(e)).startswith("42")
    assert metres(lon, lat, *to_storage("EPSG:4530")(e, n)) < 1e-3


def test_unprefixed_easting_declared_as_prefixed_crs_is_an_error():
    e, n = from_storage("EPSG:4550")(*FUSHUN)
    with pytest.raises(CRSError, match="easting"):
        to_storage("EPSG:4529")(np.array([e]), np.array([n]))


def test_gk_zone_numbers_and_srids_verified_by_pyproj():
    assert gk_zone_for_lon(123.0) == 41
    assert gk_zone_for_lon(FUSHUN[0]) == 41
    assert gk_zone_for_lon(121.5) == 41 and gk_zone_for_lon(121.49) == 40
    assert gk_zone_for_lon(124.5) == 42
    for zone in (40, 41, 42):
        prefixed = pyproj.CRS.from_epsg(srid_for_gk_zone(zone))
        plain = pyproj.CRS.from_epsg(srid_for_gk_zone(zone, with_prefix=False))
        assert prefixed.name == f"CGCS2000 / 3-degree Gauss-Kruger zone {zone}"
        assert plain.name == f"CGCS2000 / 3-degree Gauss-Kruger CM {3 * zone}E"
    assert [srid_for_gk_zone(z) for z in (40, 41, 42)] == [4528, 4529, 4530]
    assert [srid_for_gk_zone(z, with_prefix=False) for z in (40, 41, 42)] == [4549, 4550, 4551]
    with pytest.raises(CRSError):
        srid_for_gk_zone(43)


def test_web_mercator_round_trip():
    x, y = from_storage("EPSG:3857")(GRID_LON, GRID_LAT)
    assert x[0] == pytest.approx(6378137.0 * np.radians(GRID_LON[0]), abs=1e-6)
    back = to_storage("http://www.opengis.net/def/crs/EPSG/0/3857")(x, y)
    assert metres(GRID_LON, GRID_LAT, *back).max() < 1e-3


@pytest.mark.parametrize("crs", ["CRS84", "EPSG:4326", "EPSG:4490"])
def test_wgs84_is_taken_as_cgcs2000(crs):
    # x/y order in, lon/lat out, whatever the authority axis order; null ballpark datum step.
    lon, lat = to_storage(crs)(np.array([FUSHUN[0]]), np.array([FUSHUN[1]]))
    assert (lon[0], lat[0]) == pytest.approx(FUSHUN, abs=1e-12)


def test_obfuscated_input_converts_output_refused():
    g_lon, g_lat = co.wgs84_to_gcj02(*FUSHUN)
    assert metres(*FUSHUN, *to_storage("GCJ-02")(g_lon, g_lat)) < 1e-3
    b_lon, b_lat = co.wgs84_to_bd09(*FUSHUN)
    assert metres(*FUSHUN, *to_storage("BD09")(b_lon, b_lat)) < 1e-3
    for crs in ("GCJ02", "BD-09"):
        with pytest.raises(CRSError, match="input only"):
            from_storage(crs)


def test_transform_geometry_keeps_type_and_z():
    fn = to_storage("GCJ02")
    shell = [(123.9, 41.85), (124.0, 41.85), (124.0, 41.9), (123.9, 41.9), (123.9, 41.85)]
    hole = [(123.94, 41.86), (123.96, 41.86), (123.96, 41.88), (123.94, 41.86)]
    triangle = Polygon([(124.1, 41.9), (124.2, 41.9), (124.1, 42.0)])
    mp = MultiPolygon([Polygon(shell, [hole]), triangle])
    out = transform_geometry(mp, fn)
    assert out.geom_type == "MultiPolygon" and len(out.geoms) == 2
    assert len(out.geoms[0].interiors) == 1
    x, y = fn(np.array([123.9]), np.array([41.85]))
    assert out.geoms[0].exterior.coords[0] == pytest.approx((x[0], y[0]))

    p = transform_geometry(Point(123.95, 41.88, 87.5), from_storage("EPSG:4529"))
    assert p.has_z and p.z == 87.5 and str(int(p.x)).startswith("41")
    assert transform_geometry(Polygon(), fn).is_empty
    arr = transform_geometry(np.array([Point(FUSHUN), Point(124, 42)]), fn)
    assert shapely.get_type_id(arr).tolist() == [0, 0]
