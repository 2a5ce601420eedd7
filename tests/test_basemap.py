"""The demo city's 2D base map (layers/basemap/): roads, water, place names and points of
interest are published layers defined as data; addresses take their street from the road
they front; the style labels them in Chinese with the platform's own font, offline."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from conftest import DEMO_UNTIL, fresh_database, serving

from gisplatform.temporal import parse_instant
from layers.basemap import ORDER


@pytest.fixture(scope="module")
def url(pg):
    from layers.demo import load_demo

    url = fresh_database(pg, "basemap")
    with psycopg.connect(url) as c:
        counts = load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
        c.commit()
    assert all(counts.get(name, 0) > 0 for name in ORDER), counts
    return url


def test_the_base_map_layers_are_published_definitions(url):
    with psycopg.connect(url) as c:
        rows = dict(c.execute("select name, action from city.layer_registry"
                              " where upper_inf(recorded)").fetchall())
        assert {n: "create" for n in ORDER}.items() <= rows.items()
        water = dict(c.execute("select name, kind from city.water").fetchall())
        assert water == {"浑河": "river", "大伙房水库": "reservoir"}
        kinds = {k for (k,) in c.execute("select distinct kind from city.place_names")}
        assert {"district", "county", "landmark"} <= kinds


def test_every_address_fronts_the_road_it_names(url):
    """Each standard address's street is a road, and the address (its building) stands
    beside that road: within one lattice row of it."""
    with psycopg.connect(url) as c:
        far, unknown, total = c.execute("""
            select count(*) filter (where r.road_id is not null
                                      and st_distance(a.geom::geography, r.geom::geography) > 400),
                   count(*) filter (where r.road_id is null), count(*)
            from city.addresses a left join city.roads r on r.name = a.street_name""").fetchone()
    assert total > 0 and unknown == 0 and far == 0, (far, unknown, total)


def test_the_style_labels_them_with_the_platforms_font(url, tmp_path):
    from js import viewer_check

    with serving(url, tmp_path) as base:
        style = httpx.get(f"{base}/tiles/style.json", timeout=30).json()
        labels = {x["source"]: x for x in style["layers"] if x["type"] == "symbol"}
        assert set(ORDER) <= set(labels)
        assert labels["roads"]["layout"]["symbol-placement"] == "line"
        assert labels["roads"]["layout"]["text-field"] == ["get", "name"]
        font = style["font-faces"]["Droid Sans Fallback"]
        assert font == f"{base}/tiles/fonts/label.ttf"
        assert {x["layout"]["text-font"][0] for x in labels.values()} == {"Droid Sans Fallback"}
        r = httpx.get(font, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "font/ttf"
        assert r.content[:4] == b"\x00\x01\x00\x00"  # TrueType
        assert "glyphs" not in style  # no glyph server, inside or out
        # drawn in Chromium: no error, nothing fetched from elsewhere
        out = viewer_check(base + "/", width=900, height=600, screenshots=tmp_path,
                           skip=["slider", "click", "search", "lang", "signin", "3d"])
    assert "error" not in out, out.get("error")
    assert out["console_errors"] == [] and out["bad_responses"] == []
    assert out["foreign_requests"] == []
    assert {"roads", "water", "place-names"} <= set(out["tree"])
    assert (tmp_path / "viewer-2d.png").stat().st_size > 10_000


def test_line_and_point_layers_cluster_from_the_pyramid_as_from_the_versions(url):
    """Below their detail zoom, roads (lines: a point on each line) and points of interest
    cluster the same from the pyramid as from the versions; the app builds both."""
    from test_tile_pyramid import features, tiles_over_the_core

    from gisplatform import wiring
    from tiles.pyramid import built, ensure

    wiring.load_published(url)
    try:
        sources = wiring.tile_sources()
        with psycopg.connect(url) as conn:
            ensure(conn, [sources["roads"], sources["pois"]])  # if the app has not yet
            conn.commit()
            assert {"roads", "pois"} <= set(built(conn))
            counted = 0
            for name, z in (("roads", 6), ("roads", 7), ("pois", 11), ("pois", 12)):
                for z_, x, y in tiles_over_the_core(z):
                    for at in (None, parse_instant("2020-06-01T00:00:00+08:00")):
                        plain = features(conn, name, z_, x, y, at, pyramid=False, src=sources[name])
                        fast = features(conn, name, z_, x, y, at, pyramid=True, src=sources[name])
                        assert [n for n, _, _ in plain] == [n for n, _, _ in fast], (name, z_, x, y)
                        counted += sum(n for n, _, _ in plain)
    finally:
        wiring._PUBLISHED.clear()  # this process serves the built-in layers again
    assert counted > 0
