"""Faults (issue 8 item 4): the database restarting under load, an import killed with
SIGKILL mid-file, a read-only data directory and full disks — each ends in a clear
answer, nothing half done, and recovery without a restart of the app.

PostGIS is restarted here, so this module runs its own throwaway cluster (the session's
`pg` serves every other test). Disk faults use tmpfs mounts (we are root); a test that
needs one skips, saying why, where mounting is not allowed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import DEMO_UNTIL, serving, throwaway_cluster

from gisplatform.db.embedded import free_port
from gisplatform.temporal import TemporalStore, parse_instant
from layers import LAYERS

CLI = str(Path(sys.executable).with_name("gisplatform"))
REQUEST_TIMEOUT = 20.0  # the clients give up on a request after this
POOL_TIMEOUT = 2.0  # the served app's wait for a database connection (GISPLATFORM_POOL_TIMEOUT)
HANG_BOUND = 3.0 + 5.0  # /health waits 3 s for a connection; a request slower than this hung
OUTAGE = 4.0  # seconds PostGIS stays down
RECOVERY_BOUND = 10.0  # seconds from "the database is back" to every path answering 200


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def cluster():
    """A dedicated PostGIS cluster holding the small demo city: this module stops and
    starts it. A watchdog removes it if the test process dies without cleaning up."""
    with throwaway_cluster("gisplatform-faults-") as pg:
        from layers.demo import load_demo
        with psycopg.connect(pg.url()) as c:
            load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
        yield pg


@pytest.fixture(scope="module")
def url(cluster) -> str:
    return cluster.url()


def mount_tmpfs(path: Path, size: str, read_only: bool = False) -> str | None:
    """Mount a small tmpfs at `path`; None, or why it cannot be done here."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                       check=False, capture_output=True, text=True)
    if r.returncode != 0:
        return (f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}), so no "
                "read-only or full file system can be made (chmod does not stop root)")
    return None


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small tmpfs at `path` for the test (skips it, saying why, where none can be made)."""
    why = mount_tmpfs(path, size, read_only)
    if why:
        pytest.skip(why)
    try:
        yield path
    finally:
        umount(path)


def fill(directory: Path) -> None:
    """Write into `directory` until its file system is full."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.fixture(scope="module")
def served(url, tmp_path_factory):
    """`gisplatform serve` over the cluster, as the two server tests need it: a 2 s wait
    for a database connection (so an outage shows within the test), and the tile cache's
    disk (data_dir/tiles) a 64 KiB tmpfs filled up. Yields (base URL, data dir, the full
    tiles dir or why there is none). One server for both: each start costs 5-15 s here."""
    data = tmp_path_factory.mktemp("served")
    tiles_dir = data / "tiles"
    why = mount_tmpfs(tiles_dir, "64k")
    if why is None:
        fill(tiles_dir)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GISPLATFORM_POOL_TIMEOUT", str(POOL_TIMEOUT))
            with serving(url, data) as base:
                yield base, data, why or tiles_dir
    finally:
        if why is None:
            umount(tiles_dir)


# ------------------------------------------------- 1. PostGIS restart under load

def building_tile(url: str) -> tuple[str, str]:
    """(fid, tile path at z15) of a current demo building."""
    import morecantile
    with psycopg.connect(url) as c:
        fid, lon, lat = c.execute(
            "select fid, st_x(st_pointonsurface(geom)), st_y(st_pointonsurface(geom))"
            " from city.buildings order by fid limit 1").fetchone()
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 15)
    return fid, f"/tiles/buildings/{t.z}/{t.x}/{t.y}.mvt"


KINDS = ("items", "history", "tiles", "health", "metrics")


class Load:
    """One client thread per kind of request — items, history, uncached tiles, /health,
    /metrics — each looping until stopped, recording (kind, start, end, status or the
    exception's name, body of a 5xx) for every request."""

    def __init__(self, base: str, tile: str):
        self.base, self.tile = base, tile
        self.stop = threading.Event()
        self.log: list[tuple[str, float, float, object, str]] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(kind,), daemon=True)
                        for kind in KINDS]

    def _request(self, kind: str, n: int) -> tuple[str, dict]:
        if kind == "items":
            return "/ogc/collections/buildings/items", {"limit": 5, "offset": n % 50, "f": "json"}
        if kind == "history":
            return "/ogc/collections/buildings-history/items", {"limit": 5, "f": "json"}
        if kind == "tiles":  # a new instant every time: never from the cache, always rendered
            return self.tile, {"datetime": f"2024-01-01T00:00:00.{n:06d}+08:00"}
        return f"/{kind}", {}

    def _run(self, kind: str):
        n = 0
        with httpx.Client(base_url=self.base, timeout=REQUEST_TIMEOUT) as client:
            while not self.stop.is_set():
                n += 1
                path, params = self._request(kind, n)
                t0 = time.monotonic()
                try:
                    r = client.get(path, params=params)
                    status, body = r.status_code, r.text[:300] if r.status_code >= 500 else ""
                except httpx.HTTPError as e:
                    status, body = type(e).__name__, str(e)
                with self._lock:
                    self.log.append((kind, t0, time.monotonic(), status, body))
                if kind == "metrics":
                    time.sleep(0.05)  # a scraper, not a flood

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(REQUEST_TIMEOUT + 5)


def listener_ready(url: str) -> bool:
    """The server's tile-invalidation connection is back and following (its replay done:
    the last thing it ran is the state save before waiting for notifications)."""
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("select count(*) from pg_stat_activity where application_name ="
                         " 'gisplatform-tiles' and state = 'idle' and query like 'select now()%'"
                         ).fetchone()[0] == 1


def wait_for(check, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def first_ok_after(log, kind: str, since: float) -> float | None:
    """When the first request of `kind` started after `since` came back 200/204."""
    done = [t1 for k, t0, t1, s, _ in log if k == kind and t0 >= since and s in (200, 204)]
    return min(done) if done else None


def test_the_app_recovers_by_itself_when_postgis_restarts_under_load(cluster, url, served):
    """5 clients loop over items, history, uncached tiles, /health and /metrics while
    PostGIS stops for 4 s and starts again on the same port: during the outage the app
    answers a JSON 503 within the pool's wait (2 s here), never a 500 or a hang; once the
    database is back every path answers 200 again within seconds, without touching the
    app; the tile-invalidation listener reconnects (a later write still evicts)."""
    base = served[0]
    fid, tile = building_tile(url)

    def get(path, **params):
        return httpx.get(base + path, params=params, timeout=REQUEST_TIMEOUT)

    assert wait_for(lambda: listener_ready(url))
    with Load(base, tile) as load:
        time.sleep(1.5)
        down = time.monotonic()
        cluster.stop()
        time.sleep(OUTAGE)
        cluster.start()  # same data, same port
        up = time.monotonic()
        wait_for(lambda: all(first_ok_after(list(load.log), k, up) for k in KINDS),
                 RECOVERY_BOUND)
        time.sleep(1.5)  # and it stays up
    log = list(load.log)
    recovery = {k: first_ok_after(log, k, up) for k in KINDS}
    print(f"\n{len(log)} requests, outage {up - down:.1f}s; statuses "
          f"{sorted(Counter((k, s) for k, _, _, s, _ in log).items(), key=str)}; "
          "200 again after the database was back: "
          + ", ".join(f"{k} {t - up:.2f}s" for k, t in recovery.items() if t)
          + f"; slowest request {max(t1 - t0 for _, t0, t1, _, _ in log):.2f}s")

    # every request answered, none hung
    assert all(isinstance(s, int) for _, _, _, s, _ in log), \
        [e for e in log if not isinstance(e[3], int)][:5]
    slow = [e for e in log if e[2] - e[1] > HANG_BOUND]
    assert not slow, slow[:5]
    # back by itself, within the bound, and it stays back
    for kind, t in recovery.items():
        assert t is not None and t - up < RECOVERY_BOUND, (kind, recovery)
        later = [e for e in log if e[0] == kind and e[1] >= t and e[3] not in (200, 204)]
        assert not later, later[:5]
    # before the outage all was well; during it, a clear 503 (JSON), never a 500
    assert all(s in (200, 204) for _, _, t1, s, _ in log if t1 < down)
    assert {s for *_, s, _ in log} <= {200, 204, 503}
    for _, _, _, s, body in log:
        if s == 503:
            doc = json.loads(body)
            assert doc.get("code") == "ServiceUnavailable" or doc.get("status") == "unavailable"
    for kind in ("items", "history", "tiles", "health"):
        assert any(k == kind and s == 503 for k, _, _, s, _ in log), \
            f"no {kind} request met the outage"
    assert all(s == 200 for k, *_, s, _ in log if k == "metrics")
    metrics = get("/metrics").text
    assert 'gisplatform_db_connections_errors{pool="async"} 0' not in metrics  # it saw it

    # the LISTEN connection is back: a write from elsewhere still evicts a cached tile
    assert wait_for(lambda: listener_ready(url))
    get(tile)
    assert get(tile).headers["x-cache"] == "hit"
    with psycopg.connect(url) as c:
        TemporalStore(LAYERS["buildings"].spec).patch(c, fid, properties={"floors": 33})
        c.commit()
    assert wait_for(lambda: get(tile).headers["x-cache"] == "miss", 10)


# ------------------------------------------------------ 2. kill -9 of an import

VALID_FROM = "2024-01-01T00:00:00+08:00"


def write_buildings(path: Path, n: int, first: int, bad: int = 0) -> Path:
    """A GeoJSON of `n` new buildings on a grid in the urban core (codes from `first`),
    then `bad` rows that fail the layer's checks (floors 0)."""
    feats = []
    for i in range(n + bad):
        x, y = 123.70 + (i % 400) * 0.0015, 41.80 + (i // 400) * 0.0012
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[
            [x, y], [x + 0.0004, y], [x + 0.0004, y + 0.0003], [x, y + 0.0003], [x, y]]]},
            "properties": {"building_code": f"210402{first + i:09d}", "height": 19.5,
                           "floors": 6 if i < n else 0, "use": "residential"}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def snapshot(url: str) -> dict:
    with psycopg.connect(url) as c:
        return {"versions": c.execute("select count(*) from city.buildings_version").fetchone()[0],
                "tile_changes": c.execute("select count(*), max(seq) from city.tile_changes"
                                          ).fetchone()}


def import_backend(conn: psycopg.Connection) -> tuple | None:
    """(state, query) of the import's database session, if it has one."""
    return conn.execute("select state, query from pg_stat_activity"
                        " where application_name = 'faults-import'").fetchone()


def test_an_import_killed_mid_file_leaves_nothing_and_a_rerun_finishes(url, tmp_path):
    """`gisplatform import` writes a file in one transaction (layers/importer.py: all or
    nothing per file, and a rerun is idempotent): killed with SIGKILL while it inserts the
    versions, nothing of it is visible, its transaction and locks are gone, no reject or
    temporary file is left; the same command run again imports every row."""
    n = 12_000
    work = tmp_path / "work"
    work.mkdir()
    write_buildings(work / "many.geojson", n, 900_000_000)
    env = {**os.environ, "DATABASE_URL": url + "?application_name=faults-import",
           "GISPLATFORM_DATA_DIR": str(tmp_path / "data")}
    cmd = [CLI, "import", "buildings", "many.geojson", "--valid-from", VALID_FROM]
    before = snapshot(url)

    with psycopg.connect(url, autocommit=True) as watch:
        proc = subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seen = None
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                seen = import_backend(watch)
                if seen and seen[0] == "active" and seen[1].startswith(
                        'insert into "city"."buildings_version"'):
                    break  # mid-file: its versions are going in
                time.sleep(0.01)
            assert proc.poll() is None, f"the import ended before it could be killed ({seen})"
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        t = time.monotonic()
        assert wait_for(lambda: import_backend(watch) is None, 30), "its session outlived it"
    print(f"\nkilled during {seen[1][:40]!r}; its session ended {time.monotonic() - t:.2f}s later")

    assert snapshot(url) == before  # no version, no tile change: nothing partial
    with psycopg.connect(url) as c:  # nothing holds a lock on what it was writing
        c.execute("set lock_timeout = '2s'")
        c.execute("lock table city.buildings_version, city.tile_changes in access exclusive mode")
        c.rollback()
    assert sorted(p.name for p in work.iterdir()) == ["many.geojson"]  # no reject / temp file

    t = time.monotonic()
    r = subprocess.run(cmd, cwd=work, env=env, check=False, capture_output=True, text=True, timeout=180)
    print(f"rerun: {r.stderr.strip().splitlines()[-1]} in {time.monotonic() - t:.1f}s")
    assert r.returncode == 0, r.stderr
    assert f"{n} rows read, {n} inserted" in r.stderr
    after = snapshot(url)
    assert after["versions"] == before["versions"] + n
    assert after["tile_changes"][1] > (before["tile_changes"][1] or 0)
    assert sorted(p.name for p in work.iterdir()) == ["many.geojson"]


# ------------------------------------------- 3. read-only data dir, full disks

def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr  # one line, whole (a progress bar may come before)
    line = errors[0]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def test_serve_and_up_refuse_a_data_dir_they_cannot_write(url, tmp_path, caplog):
    """The data directory holds what the server writes as it starts (OGC configuration,
    embedded database, tile cache): read-only or full, `serve` and `up` say so in one
    line naming it and exit 1. A tile cache that cannot create its directory is turned
    off (memory only) with a warning, never an error."""
    from tiles.cache import Tile, TileCache

    env = {**os.environ, "DATABASE_URL": url}
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        for command in ("serve", "up"):
            r = subprocess.run([CLI, command, "--port", str(free_port())],
                               env={**env, "GISPLATFORM_DATA_DIR": str(ro)},
                               check=False, capture_output=True, text=True, timeout=60)
            print(f"\n{command}: {one_line_error(r, str(ro), 'Read-only file system')}")
        cache = TileCache(ro / "tiles", 1 << 20, 1 << 20)
        assert cache.dir is None and "cached in memory only" in caplog.text
        key = ("buildings", 15, 1, 2, "current")
        cache.put(key, Tile.of(b"tile"), cache.epoch("buildings"))
        assert cache.get(key).data == b"tile"
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        r = subprocess.run([CLI, "serve", "--port", str(free_port())],
                           env={**env, "GISPLATFORM_DATA_DIR": str(full)},
                           check=False, capture_output=True, text=True, timeout=60)
        print(f"full: {one_line_error(r, str(full), 'No space left on device')}")
        assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_a_full_tile_cache_disk_never_fails_a_tile(url, served):
    """The tile cache's disk (data_dir/tiles) full: every tile is still served (and
    cached in memory), no partial file is left there, the failure is logged once and
    counted in the cache's figures."""
    base, data, tiles_dir = served
    if isinstance(tiles_dir, str):
        pytest.skip(tiles_dir)
    _, tile = building_tile(url)
    statuses = []
    for day in range(1, 11):  # ten renders the cache has not seen
        r = httpx.get(base + tile, params={"datetime": f"2026-10-{day:02d}T12:00:00+08:00"},
                      timeout=30)
        statuses.append(r.status_code)
    assert set(statuses) <= {200, 204} and 200 in statuses, statuses
    again = httpx.get(base + tile, params={"datetime": "2026-10-01T12:00:00+08:00"}, timeout=30)
    assert again.status_code == 200 and again.headers["x-cache"] == "hit"  # from memory
    stats = httpx.get(base + "/tiles/cache", timeout=30).json()
    assert stats["disk_errors"] >= 1 and stats["disk_tiles"] == 0, stats
    left = [p.name for p in tiles_dir.rglob("*") if p.is_file() and p.name != "filler"]
    assert not left, left
    log = (data / "serve.log").read_text()
    assert log.count("tile cache: cannot write under") == 1 and "Traceback" not in log


def test_export_and_reject_file_on_a_full_disk_fail_clearly_and_leave_nothing(url, tmp_path):
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(tmp_path / "data")}
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        for name in ("urban.pmtiles", "urban.mbtiles"):
            r = subprocess.run([CLI, "tiles", "export", "buildings", str(full / name), "--zoom",
                                "12", "--bbox", "123.65,41.78,124.30,41.98"],
                               env=env, check=False, capture_output=True, text=True, timeout=120)
            print(f"\nexport: {one_line_error(r, str(full / name), 'no file written')}")
            assert "No space left on device" in r.stderr or "full" in r.stderr
        assert sorted(p.name for p in full.iterdir()) == ["filler"]

        src = write_buildings(tmp_path / "two.geojson", 1, 700_000_000, bad=1)
        for target in (full / "rejects.csv", Path("/dev/full")):
            r = subprocess.run([CLI, "import", "buildings", str(src), "--rejects", str(target),
                                "--valid-from", VALID_FROM],
                               env=env, check=False, capture_output=True, text=True, timeout=120)
            print(f"rejects: {one_line_error(r, str(target), 'No space left on device')}")
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
        assert Path("/dev/full").is_char_device()  # written to, not replaced by a file

    # with room, the reject file is written whole, and nothing else is left beside it
    from layers.importer import Reject, write_rejects
    out = tmp_path / "ok" / "rejects.csv"
    out.parent.mkdir()
    write_rejects(out, [Reject(2, "210402700000001", "floors 0 is below 1", {"floors": 0})])
    assert out.read_text().splitlines()[1].startswith("2,210402700000001,floors 0 is below 1,")
    assert [p.name for p in out.parent.iterdir()] == ["rejects.csv"]
