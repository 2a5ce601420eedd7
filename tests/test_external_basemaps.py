"""Registered external basemaps (issue 22): `gisplatform basemap …`, the proxy at
/basemaps/{name}/…, the style and /api/basemaps, against a fake tile server on loopback.

The key reaches the source and nothing else (style, listing, CLI, logs, error bodies);
proxied tiles are the source's bytes; a failing source (stopped, 500, HTML, a lying
content type, a redirect to another host, too big, hanging) is answered with the
platform's orthophoto tile and `X-Basemap-Fallback: ortho`, and skipped for a while;
nothing is fetched before a tile is asked for.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import psycopg
import pytest
from conftest import fresh_database
from fastapi.testclient import TestClient
from PIL import Image
from test_raster import X, Y, decode, geotiff, tile_at
from typer.testing import CliRunner

from gisplatform.app import create_app
from gisplatform.cli import app as cli_app
from gisplatform.config import Settings, get_settings
from gisplatform.crs.tile_grids import CGCS2000
from gisplatform.db import distribution as d
from layers import LAYERS
from tiles.basemap_routes import TOTAL_TIMEOUT
from tiles.basemaps import Basemap, add_basemap, list_basemaps
from tiles.raster import add_raster

KEY = "tk-4f9c2a7e1b8d-secret"
HERE = (X + 0.003, Y - 0.002)  # inside the orthophoto
WEB_TILE = tile_at(*HERE, 16)
C = CGCS2000.tms.tile(*HERE, 15)
CGCS_TILE = f"{C.z}/{C.x}/{C.y}"


class Upstream:
    """A tile server on loopback, in a thread. The path's first segment says how it
    answers: ok (a PNG), wmts (a PNG), same (a redirect on this host), redirect (to
    another host), missing (404), 500, html, liar (HTML as image/png), big (5 MB),
    hang (until stopped). It records every request's path and query."""

    def __init__(self):
        self.seen: list[str] = []
        self.served: dict[str, bytes] = {}
        self.release = threading.Event()
        up = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, ctype, body=b"", **headers):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                up.seen.append(self.path)
                mode = self.path.split("?")[0].split("/")[1]
                rest = self.path.split("/", 2)[2] if self.path.count("/") > 1 else ""
                try:
                    if mode in ("ok", "wmts"):
                        up.served[self.path] = png(self.path)
                        self.send(200, "image/png", up.served[self.path])
                    elif mode == "same":
                        self.send(302, "text/plain", Location=f"/ok/{rest}")
                    elif mode == "redirect":
                        port = self.server.server_address[1]
                        self.send(302, "text/plain", Location=f"http://localhost:{port}/ok/{rest}")
                    elif mode == "missing":
                        self.send(404, "text/plain", b"no tile")
                    elif mode == "500":
                        self.send(500, "text/plain", b"upstream broke")
                    elif mode == "html":
                        self.send(200, "text/html", b"<html>login first</html>")
                    elif mode == "liar":
                        self.send(200, "image/png", b"<html>not a png</html>")
                    elif mode == "big":
                        self.send(200, "image/png", png(self.path) + b"\0" * (5 << 20))
                    elif mode == "hang":
                        up.release.wait(60)
                except OSError:
                    pass  # the proxy hung up (too big, timed out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def png(path: str) -> bytes:
    """A small PNG of a colour of its own per request path."""
    rgb = tuple(hashlib.sha256(path.encode()).digest()[:3])
    out = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(out, "PNG")
    return out.getvalue()


def cli(ctx, *args):
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli_app, ["basemap", *map(str, args)], env={
            "DATABASE_URL": ctx["url"], "GISPLATFORM_DATA_DIR": str(ctx["data_dir"])})
    finally:
        get_settings.cache_clear()


class Records(logging.Handler):
    """Every log record of the process, at DEBUG (httpx's request lines among them)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


@pytest.fixture(scope="module")
def ctx(pg, tmp_path_factory):
    """A database with an orthophoto, three basemaps registered by the CLI (an XYZ one with
    a key, shown by default; a keyless one; a 天地图-like WMTS in CGCS2000Quad) and one
    disabled; the app; every log record."""
    upstream = Upstream()
    url = fresh_database(pg, "external_basemaps")
    data_dir = tmp_path_factory.mktemp("basemaps")
    src = tmp_path_factory.mktemp("basemaps-src")
    with psycopg.connect(url, autocommit=True) as c:
        add_raster(c, geotiff(src / "ortho.tif", value=(30, 200, 30)), name="ortho-2019",
                   kind="ortho", at="2019-07-01T00:00:00+08:00", data_dir=data_dir)
    ctx = {"url": url, "data_dir": data_dir, "up": upstream, "outputs": []}
    for args in (
        ["tdt-vec", "--kind", "xyz", "--url", f"{upstream.base}/ok/{{z}}/{{x}}/{{y}}.png?tk={{key}}",
         "--key", KEY, "--title", "天地图矢量 Tianditu vector", "--attribution", "天地图",
         "--default"],
        ["plain", "--kind", "xyz", "--url", f"{upstream.base}/ok/plain/{{z}}/{{x}}/{{y}}.png",
         "--max-zoom", "17"],
        ["tdt-c", "--kind", "wmts", "--url", f"{upstream.base}/wmts?tk={{key}}", "--key", KEY,
         "--layer", "vec", "--format", "tiles", "--matrix-set", "c", "--tms", "CGCS2000Quad",
         "--zoom-offset", "1", "--max-zoom", "17"],
        ["off", "--kind", "xyz", "--url", f"{upstream.base}/ok/off/{{z}}/{{x}}/{{y}}.png"],
    ):
        r = cli(ctx, "add", *args)
        assert r.exit_code == 0, r.output
        ctx["outputs"].append(r.output)
    r = cli(ctx, "disable", "off")
    assert r.exit_code == 0, r.output
    records = Records()
    app = create_app(Settings(data_dir=data_dir), db_url=url)
    levels = {n: logging.getLogger(n).level for n in LOGGERS}
    listen(records)
    with TestClient(app) as client:
        assert client.get("/tiles/style.json").status_code == 200
        assert client.get("/api/basemaps").status_code == 200
        ctx.update(client=client, records=records, answers=[],
                   seen_at_start=list(upstream.seen))
        try:
            yield ctx
        finally:
            for n, level in levels.items():
                logging.getLogger(n).removeHandler(records)
                logging.getLogger(n).setLevel(level)
            upstream.stop()


# the root (httpx, httpcore propagate to it) and the platform's (which does not)
LOGGERS = ("", "gisplatform", "httpx", "httpcore")


def listen(records: Records) -> None:
    for n in LOGGERS:
        logging.getLogger(n).addHandler(records)
        logging.getLogger(n).setLevel(logging.DEBUG)


def get(ctx, path: str):
    """A request to the app, its answer kept for the key check."""
    r = ctx["client"].get(path)
    ctx["answers"].append(r)
    return r


def register(ctx, name: str, url: str, **kw) -> None:
    with psycopg.connect(ctx["url"], autocommit=True) as c:
        add_basemap(c, Basemap(name=name, title=name, kind="xyz", url=url, **kw))


def ortho(ctx, path: str) -> bytes:
    r = ctx["client"].get(f"/raster/ortho/{path}.png")
    assert r.status_code == 200, r.text
    return r.content


# ----------------------------------------------------------------------------- start-up

def test_nothing_is_fetched_before_a_tile_is_asked_for(ctx):
    """The app started with four basemaps registered, then served the style and the
    list: the source saw nothing until a tile was asked for."""
    assert ctx["seen_at_start"] == []
    first = len(ctx["up"].seen)
    app = create_app(Settings(data_dir=ctx["data_dir"]), db_url=ctx["url"])
    listen(ctx["records"])  # create_app set the platform's log handlers anew
    with TestClient(app) as c:
        assert c.get("/tiles/style.json").status_code == 200
        assert c.get("/api/basemaps").status_code == 200
        assert len(ctx["up"].seen) == first  # another start: still nothing
        r = c.get(f"/basemaps/plain/{WEB_TILE}.png")
        assert r.status_code == 200 and len(ctx["up"].seen) == first + 1


# ----------------------------------------------------------------------------- style, list

def test_the_style_points_at_the_proxy_below_the_platforms_layers(ctx):
    style = get(ctx, "/tiles/style.json").json()
    text = str(style)
    assert KEY not in text and ctx["up"].base.split("//")[1] not in text
    src = style["sources"]["basemap:tdt-vec"]
    assert src["type"] == "raster" and src["attribution"] == "天地图"
    assert src["tiles"][0].endswith("/basemaps/tdt-vec/{z}/{x}/{y}.png")
    assert src["maxzoom"] == 18 and style["sources"]["basemap:plain"]["maxzoom"] == 17
    assert "basemap:tdt-c" not in style["sources"]  # CGCS2000Quad: MapLibre draws 3857 only
    assert "basemap:off" not in style["sources"]  # disabled
    ids = [x["id"] for x in style["layers"]]
    assert ids.index("basemap:tdt-vec") < ids.index("ortho")  # under the orthophoto
    assert ids.index("basemap:plain") < ids.index("ortho")
    layers = {x["id"]: x for x in style["layers"]}
    assert layers["basemap:tdt-vec"]["metadata"] == {"gisplatform:theme": "basemap",
                                                     "gisplatform:title": "天地图矢量 Tianditu vector"}
    assert "layout" not in layers["basemap:tdt-vec"]  # --default: shown
    assert layers["basemap:plain"]["layout"] == {"visibility": "none"}


def test_api_basemaps_lists_what_clients_may_know(ctx):
    r = get(ctx, "/api/basemaps")
    assert r.status_code == 200
    got = {b["name"]: b for b in r.json()["basemaps"]}
    assert set(got) == {"plain", "tdt-c", "tdt-vec"}
    assert got["tdt-c"]["tiles"].endswith("/basemaps/tdt-c/CGCS2000Quad/{z}/{x}/{y}.png")
    assert got["tdt-c"]["tile_matrix_set"] == "CGCS2000Quad"
    assert got["tdt-vec"]["default"] is True and got["plain"]["default"] is False
    assert KEY not in r.text and ctx["up"].base.split("//")[1] not in r.text
    assert set(got["plain"]) == {"name", "title", "tile_matrix_set", "minzoom", "maxzoom",
                                 "attribution", "default", "tiles"}


# ----------------------------------------------------------------------------- proxy

def test_tiles_are_the_sources_bytes_with_the_key_added_here(ctx):
    up = ctx["up"]
    r = get(ctx, f"/basemaps/tdt-vec/{WEB_TILE}.png")
    assert r.status_code == 200, r.text
    asked = up.seen[-1]
    assert asked == f"/ok/{WEB_TILE}.png?tk={KEY}"  # the key reached the source
    assert r.content == up.served[asked]
    assert r.headers["content-type"] == "image/png" and r.headers["x-cache"] == "miss"
    assert "max-age" in r.headers["cache-control"] and "x-basemap-fallback" not in r.headers
    n = len(up.seen)
    again = get(ctx, f"/basemaps/tdt-vec/WebMercatorQuad/{WEB_TILE}.png")  # the same tile
    assert again.content == r.content and again.headers["x-cache"] == "hit"
    assert len(up.seen) == n  # from the platform's tile cache


def test_wmts_in_the_cgcs2000_grid(ctx):
    """A 天地图-like WMTS `c` source: KVP GetTile with its level = our zoom + 1."""
    up = ctx["up"]
    r = get(ctx, f"/basemaps/tdt-c/CGCS2000Quad/{CGCS_TILE}.png")
    assert r.status_code == 200, r.text
    path, _, query = up.seen[-1].partition("?")
    assert path == "/wmts" and r.content == up.served[up.seen[-1]]
    q = {k: v[0] for k, v in parse_qs(query).items()}
    assert q == {"tk": KEY, "SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0",
                 "LAYER": "vec", "STYLE": "default", "FORMAT": "tiles", "TILEMATRIXSET": "c",
                 "TILEMATRIX": str(C.z + 1), "TILEROW": str(C.y), "TILECOL": str(C.x)}
    # its tiles are in CGCS2000Quad only: never warped, the other paths are 404s
    for other in (f"/basemaps/tdt-c/{WEB_TILE}.png",
                  f"/basemaps/tdt-c/WebMercatorQuad/{WEB_TILE}.png"):
        r = get(ctx, other)
        assert r.status_code == 404 and "CGCS2000Quad" in r.json()["description"]


@pytest.mark.parametrize("mode", ["500", "html", "liar", "redirect", "big"])
def test_a_failing_source_gives_the_orthophoto_and_is_skipped_a_while(ctx, mode):
    up = ctx["up"]
    name = f"fail-{mode}"
    register(ctx, name, f"{up.base}/{mode}/{{z}}/{{x}}/{{y}}.png")
    n = len(up.seen)
    r = get(ctx, f"/basemaps/{name}/{WEB_TILE}.png")
    assert r.status_code == 200, r.text
    assert r.headers["x-basemap-fallback"] == "ortho" and r.headers["x-raster-name"] == "ortho-2019"
    assert r.headers["content-type"] == "image/png"
    assert r.content == ortho(ctx, WEB_TILE)
    assert len(up.seen) == n + 1  # asked once (a redirect elsewhere is not followed)
    assert any(f"basemap {name}: " in line and "WARNING" in line
               for line in ctx["records"].lines)
    r = get(ctx, f"/basemaps/{name}/{tile_at(X, Y, 15)}.png")  # another tile: not asked
    assert r.headers["x-basemap-fallback"] == "ortho" and len(up.seen) == n + 1


def test_a_hanging_source_costs_one_timeout(ctx):
    up = ctx["up"]
    register(ctx, "hangs", f"{up.base}/hang/{{z}}/{{x}}/{{y}}.png")
    t = time.monotonic()
    r = get(ctx, f"/basemaps/hangs/{WEB_TILE}.png")
    first = time.monotonic() - t
    assert r.status_code == 200 and r.headers["x-basemap-fallback"] == "ortho"
    assert TOTAL_TIMEOUT - 0.5 < first < TOTAL_TIMEOUT + 3, first
    t = time.monotonic()
    r = get(ctx, f"/basemaps/hangs/{tile_at(X, Y, 15)}.png")
    assert r.headers["x-basemap-fallback"] == "ortho" and time.monotonic() - t < 1.0


def test_a_stopped_source(ctx):
    gone = Upstream()
    register(ctx, "stops", f"{gone.base}/ok/{{z}}/{{x}}/{{y}}.png")
    r = get(ctx, f"/basemaps/stops/{WEB_TILE}.png")
    assert r.status_code == 200 and "x-basemap-fallback" not in r.headers
    gone.stop()
    t = time.monotonic()
    r = get(ctx, f"/basemaps/stops/{tile_at(*HERE, 17)}.png")
    assert r.headers["x-basemap-fallback"] == "ortho"
    assert r.content == ortho(ctx, tile_at(*HERE, 17)) and time.monotonic() - t < 3


def test_a_redirect_on_the_same_host_is_followed(ctx):
    up = ctx["up"]
    register(ctx, "moved", f"{up.base}/same/{{z}}/{{x}}/{{y}}.png")
    r = get(ctx, f"/basemaps/moved/{WEB_TILE}.png")
    assert r.status_code == 200 and "x-basemap-fallback" not in r.headers
    assert up.seen[-2:] == [f"/same/{WEB_TILE}.png", f"/ok/{WEB_TILE}.png"]
    assert r.content == up.served[up.seen[-1]]


def test_a_missing_tile_does_not_trip_the_breaker(ctx):
    up = ctx["up"]
    register(ctx, "holes", f"{up.base}/missing/{{z}}/{{x}}/{{y}}.png")
    n = len(up.seen)
    for i, tile in enumerate((WEB_TILE, tile_at(X, Y, 15))):
        r = get(ctx, f"/basemaps/holes/{tile}.png")
        assert r.headers["x-basemap-fallback"] == "ortho" and len(up.seen) == n + i + 1


def test_the_cgcs2000_fallback_is_the_orthophoto_in_that_grid(ctx):
    up = ctx["up"]
    register(ctx, "c-broken", f"{up.base}/500/{{z}}/{{x}}/{{y}}.png", grid="CGCS2000Quad")
    r = get(ctx, f"/basemaps/c-broken/CGCS2000Quad/{CGCS_TILE}.png")
    assert r.status_code == 200 and r.headers["x-basemap-fallback"] == "ortho"
    assert r.content == ortho(ctx, f"CGCS2000Quad/{CGCS_TILE}")
    # far from the city, in a failing source: a transparent tile, no orthophoto there
    far = CGCS2000.tms.tile(10.0, 10.0, 15)
    r = get(ctx, f"/basemaps/c-broken/CGCS2000Quad/{far.z}/{far.x}/{far.y}.png")
    assert r.status_code == 200 and r.headers["x-basemap-fallback"] == "ortho"
    assert "x-raster-name" not in r.headers and not decode(r.content)[-1].any()


@pytest.mark.parametrize("path, says", [
    ("/basemaps/nope/1/0/0.png", "no basemap named 'nope'"),
    ("/basemaps/off/1/0/0.png", "no basemap named 'off'"),  # disabled
    ("/basemaps/A%20B/1/0/0.png", "no basemap named 'A B'"),
    ("/basemaps/plain/18/0/0.png", "outside basemap 'plain''s zooms 0..17"),
    ("/basemaps/plain/2/4/0.png", "outside WebMercatorQuad"),
    ("/basemaps/plain/2/-1/0.png", "outside WebMercatorQuad"),
    ("/basemaps/plain/EPSG:4326/2/0/0.png", "no tile matrix set"),
])
def test_what_is_not_a_basemap_tile_is_a_404(ctx, path, says):
    r = get(ctx, path)
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["code"] == "NotFound" and says in body["description"], body


# ----------------------------------------------------------------------------- the CLI

@pytest.mark.parametrize("args, says", [
    (["x1", "--kind", "xyz", "--url", "file:///etc/passwd"], "--url: 'file' is not http"),
    (["x2", "--kind", "xyz", "--url", "http://me:pw@example.org/{z}/{x}/{y}.png"],
     "--url: credentials in the URL"),
    (["Bad", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png"], "NAME: name 'Bad'"),
    (["../x", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png"], "NAME: name"),
    (["x3", "--kind", "tms", "--url", "http://example.org/{z}/{x}/{y}.png"], "--kind: kind 'tms'"),
    (["ortho", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png"],
     "the platform's own raster layer"),
    (["hillshade", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png"],
     "the platform's own raster layer"),
    (["x4", "--kind", "xyz", "--url", f"http://example.org/{{z}}/{{x}}/{{y}}.png?tk={KEY}"],
     "--url: the URL holds a value for tk="),
    (["x5", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png?tk={key}"],
     "--key: the URL has {key}"),
    (["x6", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png", "--key", KEY],
     "--url: a key needs {key}"),
    (["x7", "--kind", "xyz", "--url", "http://example.org/{z}/{y}.png"], "needs {x}"),
    (["x8", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}/{s}.png"],
     "unknown placeholder(s) {s}"),
    (["x9", "--kind", "wmts", "--url", "http://example.org/wmts?tk={key}", "--key", KEY],
     "--layer: a wmts source needs --layer"),
    (["x10", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png", "--layer", "vec"],
     "--layer: for --kind wmts only"),
    (["x11", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png", "--min-zoom", "9",
      "--max-zoom", "3"], "--min-zoom: zooms 9..3"),
    (["x12", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png", "--tms", "EPSG:3857"],
     "--tms: tile matrix set 'EPSG:3857'"),
    (["x13", "--kind", "xyz", "--url", "http://example.org/{z}/{x}/{y}.png?tk={key}", "--key",
      "two words"], "--key: the key is empty, too long or has whitespace"),
])
def test_bad_registrations_are_refused(ctx, args, says):
    before = {b.name for b in _registered(ctx)}
    r = cli(ctx, "add", *args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and says in lines[0], r.output
    assert KEY not in r.output and "Traceback" not in r.output
    assert {b.name for b in _registered(ctx)} == before


def _registered(ctx) -> list[Basemap]:
    with psycopg.connect(ctx["url"]) as c:
        return list_basemaps(c)


def test_cli_list_replace_disable_remove(ctx):
    r = cli(ctx, "list")
    assert r.exit_code == 0 and KEY not in r.output
    rows = {ln.split()[0]: ln for ln in r.output.splitlines()[1:]}
    assert {"tdt-vec", "tdt-c", "plain", "off"} <= set(rows)
    assert " set " in rows["tdt-vec"] and "{key}" in rows["tdt-vec"]
    assert "disabled" in rows["off"] and "enabled, default" in rows["tdt-vec"]
    assert "[vec/default/tiles/c]" in rows["tdt-c"]
    assert all(KEY not in out for out in ctx["outputs"])  # nor when they were added

    up = ctx["up"]
    url = f"{up.base}/ok/swap/{{z}}/{{x}}/{{y}}.png"
    assert cli(ctx, "add", "swap", "--kind", "xyz", "--url", url).exit_code == 0
    assert get(ctx, f"/basemaps/swap/{WEB_TILE}.png").headers["x-cache"] == "miss"
    assert get(ctx, f"/basemaps/swap/{WEB_TILE}.png").headers["x-cache"] == "hit"
    cached = ctx["data_dir"] / "tiles" / "basemap:swap"
    assert cached.is_dir()  # the platform's tile cache on disk
    r = cli(ctx, "add", "swap", "--kind", "xyz", "--url", url)
    assert r.exit_code == 1 and "exists; use --replace" in r.output
    r = cli(ctx, "add", "swap", "--kind", "xyz", "--url", url.replace("swap", "swap2"),
            "--replace")
    assert r.exit_code == 0, r.output
    r = get(ctx, f"/basemaps/swap/{WEB_TILE}.png")  # the new registration: not the old tiles
    assert r.headers["x-cache"] == "miss" and up.seen[-1] == f"/ok/swap2/{WEB_TILE}.png"

    assert cli(ctx, "disable", "swap").exit_code == 0
    assert get(ctx, f"/basemaps/swap/{WEB_TILE}.png").status_code == 404
    assert cli(ctx, "enable", "swap").exit_code == 0
    assert get(ctx, f"/basemaps/swap/{WEB_TILE}.png").status_code == 200
    assert cli(ctx, "remove", "swap").exit_code == 0
    assert get(ctx, f"/basemaps/swap/{WEB_TILE}.png").status_code == 404
    assert not cached.exists()
    for cmd in ("remove", "disable"):
        r = cli(ctx, cmd, "swap")
        assert r.exit_code == 1 and "no basemap named 'swap'" in r.output


def test_the_key_is_read_from_stdin(ctx):
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli_app, [
            "basemap", "add", "stdin-key", "--kind", "xyz", "--key", "-", "--url",
            f"{ctx['up'].base}/ok/stdin/{{z}}/{{x}}/{{y}}.png?tk={{key}}"],
            input=f"{KEY}\n", env={"DATABASE_URL": ctx["url"],
                                   "GISPLATFORM_DATA_DIR": str(ctx["data_dir"])})
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0 and KEY not in r.output, r.output
    get(ctx, f"/basemaps/stdin-key/{WEB_TILE}.png")
    assert ctx["up"].seen[-1].endswith(f"?tk={KEY}")


# ----------------------------------------------------------------------------- the key

def test_the_key_is_nowhere_but_at_the_source(ctx):
    """Through a good tile, a fallback, errors, the style and the list: the key is in no
    answer (body or header) and in no log record (httpx logs its requests' URLs)."""
    get(ctx, f"/basemaps/tdt-vec/{tile_at(*HERE, 14)}.png")
    get(ctx, f"/basemaps/tdt-c/CGCS2000Quad/{CGCS_TILE}.png")
    get(ctx, "/basemaps/tdt-vec/30/0/0.png")
    get(ctx, "/basemaps/tdt-vec/CGCS2000Quad/1/0/0.png")
    get(ctx, "/tiles/style.json")
    get(ctx, "/api/basemaps")
    assert any(KEY in p for p in ctx["up"].seen)
    assert len(ctx["answers"]) >= 6
    for r in ctx["answers"]:
        assert KEY.encode() not in r.content, str(r.url)
        assert KEY not in str(r.headers), str(r.url)
    lines = ctx["records"].lines
    assert any("HTTP Request: GET http://127.0.0.1:" in ln for ln in lines)  # httpx's, kept
    assert not [ln for ln in lines if KEY in ln]


def test_the_table_is_kept_from_analysts_and_off_citus_workers(ctx):
    assert d.OTHER_TABLES["basemaps"][0] == d.LOCAL
    with psycopg.connect(ctx["url"]) as c:
        assert not c.execute("select has_table_privilege('gisplatform_analyst',"
                             " 'city.basemaps', 'select')").fetchone()[0]
        plan = d.plan([layer.spec for layer in LAYERS.values()])
        assert not [p for p in d.problems(c, plan) if "basemaps" in p]
