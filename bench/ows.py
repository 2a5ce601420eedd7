"""WMS GetMap through MapServer next to the same map as the platform's vector tiles.

    .venv/bin/python bench/ows.py --size city      # the issue's figure
    .venv/bin/python bench/ows.py --size small     # quick check

Serves the database of bench/ogc_vs_tipg.py (bench/.data/<size>) with `gisplatform serve`,
tile cache off (every tile rendered), and for `--seconds` with `--clients` threads:

- **wms**: GetMap 1024 × 768 PNG of `buildings` in EPSG:3857 over the urban core box of
  bench/ogc_vs_tipg.py (BBOX), through /wms (the front door, the caller's view, MapServer's
  FastCGI processes);
- **mvt**: the same view as the platform's vector tiles: the WebMercatorQuad tiles of the
  zoom a 1024-pixel-wide map of that box shows (512 px tiles, as MapLibre draws them),
  fetched one after another per map; a "map" is all of them.

Then the two map servers side by side, each asked directly over FastCGI (no HTTP, no
front door), 2 processes each, the same GetMap:

- **mapserver**: `mapserv` with the mapfile the platform wrote for anonymous callers;
- **qgis_server**: Debian's QGIS Server (`qgis_mapserv.fcgi`, `apt-get install
  --no-install-recommends qgis-server`; skipped when it is not installed) with a project
  written here by QGIS itself (/usr/bin/python3, python3-qgis): one PostGIS layer,
  `buildings`, from the same snapshot SQL (now, current knowledge), the same colour.

Prints maps/s and latency per map for each. The browser still draws the MVT map (not
counted); the PNG is ready to show.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import morecantile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import BBOX, database, serve  # noqa: E402

from gisplatform.db.embedded import free_port  # noqa: E402
from gisplatform.services.mapfile import data_sql  # noqa: E402
from gisplatform.services.mapserv import MapServerPool  # noqa: E402

QGIS_SERVER = "/usr/lib/cgi-bin/qgis_mapserv.fcgi"
# Run by /usr/bin/python3 (python3-qgis): the project QGIS Server serves
QGIS_PROJECT = r'''
import sys
from qgis.core import (QgsApplication, QgsDataSourceUri, QgsFillSymbol, QgsProject,
                       QgsSingleSymbolRenderer, QgsVectorLayer, QgsWkbTypes)
app = QgsApplication([], False)
app.initQgis()
out, conninfo, query, colour = sys.argv[1:5]
uri = QgsDataSourceUri(conninfo)
uri.setDataSource("", "(" + query + ")", "geom", "", "vid")
uri.setSrid("4490")
uri.setWkbType(QgsWkbTypes.MultiPolygon)
layer = QgsVectorLayer(uri.uri(False), "buildings", "postgres")
assert layer.isValid(), "the buildings layer is not valid"
symbol = QgsFillSymbol.createSimple({"color": colour + "59", "outline_color": colour,
                                     "outline_width": "0.26"})
layer.setRenderer(QgsSingleSymbolRenderer(symbol))
project = QgsProject.instance()
project.addMapLayer(layer)
project.writeEntry("WMSServiceCapabilities", "/", True)
project.writeEntry("WMSCrsList", "/", ["EPSG:3857", "EPSG:4490"])
assert project.write(out)
print("ok")
'''


def qgis_project(directory: Path, url: str, colour: str) -> Path:
    """The QGIS Server project for the comparison, written by QGIS."""
    import subprocess

    from psycopg.conninfo import conninfo_to_dict

    from gisplatform.services.mapfile import Column, OwsLayer

    directory.mkdir(parents=True, exist_ok=True)
    layer = OwsLayer("buildings", "buildings", "MultiPolygon", "buildings_version",
                     (Column("name", 'v."name"'), Column("floors", 'v."floors"')))
    sql = (data_sql(layer).split(" from (", 1)[1].rsplit(") as t", 1)[0]
           .replace("'%datetime%'", "'now'").replace("'%known_at%'", "'infinity'"))
    params = conninfo_to_dict(url)
    conninfo = " ".join(f"{k}='{v}'" for k, v in
                        (("dbname", params["dbname"]), ("host", params.get("host", "")),
                         ("port", params.get("port", "5432")), ("user", params["user"]),
                         ("password", params.get("password", ""))))
    script, out = directory / "project.py", directory / "buildings.qgs"
    script.write_text(QGIS_PROJECT)
    env = {**os.environ, "HOME": str(directory), "QT_QPA_PLATFORM": "offscreen",
           "XDG_RUNTIME_DIR": str(directory)}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    os.chmod(directory, 0o700)
    r = subprocess.run(["/usr/bin/python3", str(script), str(out), conninfo, sql, colour],
                       env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return out


def run(fetch, seconds: float, clients: int) -> dict:
    lat, errors = [], []
    stop = time.monotonic() + seconds

    def worker():
        with httpx.Client(timeout=120) as c:
            while time.monotonic() < stop:
                t = time.perf_counter()
                ok = fetch(c)
                lat.append(time.perf_counter() - t)
                if not ok:
                    errors.append(1)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"maps": len(lat), "maps_per_s": round(len(lat) / wall, 2), "errors": len(errors),
            "p50_ms": round(statistics.median(lat) * 1000) if lat else None,
            "p95_ms": round(lat[int(len(lat) * 0.95)] * 1000) if lat else None}


def servers(data: Path, url: str, params: dict, args) -> dict:
    """MapServer and QGIS Server, each asked directly over FastCGI."""
    from urllib.parse import urlencode

    query = urlencode(params)
    mapfiles = sorted((data / "ows").glob("*.map"), key=lambda p: p.stat().st_mtime)
    mapfile = next(p for p in reversed(mapfiles) if '"buildings"' in p.read_text())
    found = {}
    pools = {"mapserver": (MapServerPool(data / "ows" / "mapserver.conf", 2),
                           {"MS_MAPFILE": str(mapfile)})}
    if Path(QGIS_SERVER).exists():
        home = data / "qgis-server"
        from gisplatform.wiring import tile_sources

        project = qgis_project(home, url, tile_sources()["buildings"].color)
        pools["qgis_server"] = (MapServerPool(None, 2, binary=QGIS_SERVER, env={
            "QGIS_PROJECT_FILE": str(project), "QT_QPA_PLATFORM": "offscreen",
            "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "QGIS_SERVER_LOG_LEVEL": "2"}), {})
    else:
        found["qgis_server"] = f"not installed ({QGIS_SERVER})"
    for name, (pool, extra) in pools.items():
        cgi = {"REQUEST_METHOD": "GET", "QUERY_STRING": query, "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "SCRIPT_NAME": "/wms", **extra}
        try:
            first = pool.ask(cgi)
            if first.content_type != "image/png":
                found[name] = f"no map: {first.body[:300]!r}"
                continue

            def fetch(_client, pool=pool, cgi=cgi):
                return pool.ask(cgi).content_type == "image/png"
            found[name] = {"png_bytes": len(first.body), **run(fetch, args.seconds, args.clients)}
        finally:
            pool.close()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=("small", "city"))
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    pg, url = database(args.size)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = Path(__file__).resolve().parent / ".data" / f"serve-{args.size}"
    proc = serve([str(Path(sys.executable).with_name("gisplatform")), "serve", "--port", str(port)],
                 {"DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(data),
                  "GISPLATFORM_TILE_CACHE_MEMORY_MB": "0", "GISPLATFORM_TILE_CACHE_DISK_MB": "0",
                  "GISPLATFORM_PUBLIC_URL": base}, f"{base}/health")
    try:
        w, s, e, n = map(float, BBOX[args.size].split(","))
        wm = morecantile.tms.get("WebMercatorQuad")
        x0, y0 = wm.xy(w, s)
        x1, y1 = wm.xy(e, n)
        # fit the box's width into 1024 px, keep 4:3
        cx, cy, half_w = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        half_h = half_w * 768 / 1024
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        params = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap",
                  "LAYERS": "buildings", "STYLES": "", "CRS": "EPSG:3857",
                  "BBOX": ",".join(map(str, box)), "WIDTH": 1024, "HEIGHT": 768,
                  "FORMAT": "image/png"}
        # MapLibre's zoom for that map: 512-px tiles, so tile zoom = map zoom
        z = round(math.log2(2 * math.pi * 6378137 / ((box[2] - box[0]) / 1024) / 512))
        lw, ls = wm.lnglat(box[0], box[1])
        le, ln = wm.lnglat(box[2], box[3])
        tiles = list(wm.tiles(lw, ls, le, ln, [z]))

        def wms(c):
            r = c.get(f"{base}/wms", params=params)
            return r.status_code == 200 and r.headers["content-type"] == "image/png"

        def mvt(c):
            return all(c.get(f"{base}/tiles/buildings/{t.z}/{t.x}/{t.y}.mvt").status_code
                       in (200, 204) for t in tiles)

        wms(httpx.Client(timeout=120))  # first use starts the MapServer processes
        out = {"size": args.size, "box_3857": [round(v) for v in box], "clients": args.clients,
               "wms_getmap_1024x768_png": run(wms, args.seconds, args.clients),
               "mvt": {"zoom": z, "tiles_per_map": len(tiles),
                       **run(mvt, args.seconds, args.clients)}}
        out["servers"] = servers(data, url, params, args)
        print(json.dumps(out, indent=2))
    finally:
        proc.terminate()
        proc.wait(30)
        pg.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
