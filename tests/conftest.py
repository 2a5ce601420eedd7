"""Test fixtures: one throwaway PostGIS cluster per test session, real migrations."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from gisplatform.db import migrate
from gisplatform.db.embedded import EmbeddedPostgres, free_port
from gisplatform.temporal import (
    Attribute,
    LayerSpec,
    TemporalStore,
    create_sql,
    drop_sql,
)

# Run beside the test session: when it dies without cleaning up (killed, SIGKILL), stop
# its throwaway cluster and delete it, so no server outlives its tests.
_WATCHDOG = """
import os, shutil, sys, time
from pathlib import Path
from gisplatform.db.embedded import EmbeddedPostgres
parent, root = int(sys.argv[1]), Path(sys.argv[2])
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
if root.exists():
    EmbeddedPostgres(root, durable=False).stop()
    shutil.rmtree(root, ignore_errors=True)
"""


@contextmanager
def throwaway_cluster(prefix: str = "gisplatform-test-"):
    """A started, migrated PostGIS cluster in a temp dir, stopped and deleted on exit (and
    by a watchdog if this process dies without cleaning up)."""
    import subprocess
    import sys

    # mkdtemp is 0700; the server user (postgres, when we are root) must traverse it.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    cluster = EmbeddedPostgres(root, port=free_port(), durable=False)
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(root)],
                                start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        migrate.upgrade(cluster.start())
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        watchdog.terminate()
        watchdog.wait(10)


@pytest.fixture(scope="session")
def pg():
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def db_url(pg) -> str:
    return pg.url()


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


THING_ATTRS = (
    Attribute("name", "text", required=True),
    Attribute("floors", "integer"),
    Attribute("owner_id", "text", personal=True),
)


@pytest.fixture
def things(db_url):
    """A fresh throwaway layer (Point, three attributes) and its store."""
    spec = LayerSpec(name=f"t-{uuid.uuid4().hex[:8]}", geometry_type="Point",
                     attributes=THING_ATTRS, title="test things")
    with psycopg.connect(db_url, autocommit=True) as c:
        for stmt in create_sql(spec):
            c.execute(stmt)
    yield TemporalStore(spec)
    with psycopg.connect(db_url, autocommit=True) as c:
        for stmt in drop_sql(spec):
            c.execute(stmt)


def fresh_database(pg: EmbeddedPostgres, name: str) -> str:
    """A new migrated database in the session's cluster; returns its URL."""
    with psycopg.connect(pg.url("postgres"), autocommit=True) as c:
        c.execute(f'drop database if exists "{name}"')
        c.execute(f'create database "{name}"')
    url = pg.url(name)
    migrate.upgrade(url)
    return url


DEMO_UNTIL = "2026-11-01T00:00:00+08:00"


@pytest.fixture(scope="session")
def demo_url(pg) -> str:
    """A database holding the small demo city, cut at DEMO_UNTIL (seed 42)."""
    from gisplatform.temporal import parse_instant
    from layers.demo import load_demo

    url = fresh_database(pg, "demo")
    with psycopg.connect(url) as c:
        load_demo(c, "small", 42, parse_instant(DEMO_UNTIL))
    return url


@contextmanager
def serving(db_url: str, data_dir: Path):
    """`gisplatform serve` on a free port over `db_url`, in its own process (as deployed;
    GDAL's OAPIF driver holds the GIL while it fetches, so an in-process server would
    deadlock). Yields the base URL; the server is stopped on exit."""
    import subprocess
    import sys
    import time as _time

    import httpx

    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "GISPLATFORM_DATA_DIR": str(data_dir)}
    # an app built in this process (other tests) leaves its public URL in os.environ
    env.pop("GISPLATFORM_PUBLIC_URL", None)
    cli = str(Path(sys.executable).with_name("gisplatform"))
    log = (Path(data_dir) / "serve.log").open("wb")
    proc = subprocess.Popen([cli, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = _time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or _time.monotonic() > deadline:
                raise RuntimeError("server did not start: "
                                   + (Path(data_dir) / "serve.log").read_text()[-2000:])
            _time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def live(demo_url, tmp_path_factory):
    """The app served over the demo database (see `serving`)."""
    with serving(demo_url, tmp_path_factory.mktemp("live")) as base:
        yield base


# Each case's lifecycle times as its version holds them (what the evaluation reads) and as
# its timeline (city.case_steps) says: the rows where they differ.
LIFECYCLE_MISMATCHES = """
    with s as (
      select case_number,
             max(at) filter (where step = 'dispatched') dispatched_at,
             max(at) filter (where step = 'closed') closed_at,
             count(*) filter (where step = 'reworked') rework_count,
             (array_agg(at order by at desc, id desc)
                filter (where step in ('handled', 'reworked')))[1] last_at,
             (array_agg(step order by at desc, id desc)
                filter (where step in ('handled', 'reworked')))[1] last_step
      from city.case_steps group by case_number)
    select v.fid, v.dispatched_at, s.dispatched_at, v.handled_at, s.last_step, s.last_at,
           v.closed_at, s.closed_at, v.rework_count, s.rework_count
    from city.cases_version v join s on s.case_number = v.fid
    where upper_inf(v.recorded) and upper_inf(v.valid)
      and (v.dispatched_at is distinct from s.dispatched_at
           or v.closed_at is distinct from s.closed_at
           or coalesce(v.rework_count, 0) <> s.rework_count
           or v.handled_at is distinct from
              case when s.last_step = 'handled' then s.last_at end)"""
