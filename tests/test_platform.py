"""The server and the CLI as users meet them."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from gisplatform.app import create_app
from gisplatform.config import Settings
from gisplatform.db import migrate
from gisplatform.db.embedded import free_port

CLI = str(Path(sys.executable).with_name("gisplatform"))


def test_health_reports_database(db_url):
    with TestClient(create_app(Settings(), db_url=db_url)) as client:
        r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["database"]["reachable"] is True
    assert body["database"]["postgis"].startswith("3.")
    assert body["database"]["postgresql"][:2].isdigit()


def test_health_is_503_when_database_is_down():
    url = f"postgresql://nobody:x@127.0.0.1:{free_port()}/none"
    with TestClient(create_app(Settings(), db_url=url)) as client:
        r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["database"]["reachable"] is False


def test_password_is_required_over_tcp(pg):
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://gisplatform:wrong@127.0.0.1:{pg.port}/gisplatform",
                        connect_timeout=5)


def _env(pg) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(GISPLATFORM_DATA_DIR=str(pg.data_dir), GISPLATFORM_PG_PORT=str(pg.port))
    return env


def test_cli_db_url_status_migrate(pg):
    env = _env(pg)
    url = subprocess.run([CLI, "db", "url"], env=env, capture_output=True, text=True, check=True)
    assert url.stdout.strip() == pg.url()
    status = subprocess.run([CLI, "db", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "running" in status.stdout
    assert f"migration revision: {migrate.head()}" in status.stdout
    mig = subprocess.run([CLI, "db", "migrate"], env=env, capture_output=True, text=True)
    assert mig.returncode == 0, mig.stderr


def test_cli_errors_are_clear_without_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["GISPLATFORM_DATA_DIR"] = str(tmp_path / "none")
    r = subprocess.run([CLI, "db", "url"], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "gisplatform db start" in r.stderr and "Traceback" not in r.stderr


def _runnable_by(user: pwd.struct_passwd) -> bool:
    try:
        return subprocess.run([CLI, "--help"], capture_output=True, user=user.pw_uid,
                              group=user.pw_gid, extra_groups=[], cwd="/").returncode == 0
    except PermissionError:
        return False


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the unprivileged path from root")
def test_embedded_db_as_a_normal_user():
    """`db start` / `db stop` run by an unprivileged user own their cluster."""
    user = pwd.getpwnam("nobody")
    if not _runnable_by(user):
        pytest.skip("the venv's Python is not readable by 'nobody' (e.g. pyenv under /root)")
    root = Path(tempfile.mkdtemp(prefix="gisplatform-nobody-"))
    os.chmod(root, 0o755)
    os.chown(root, user.pw_uid, user.pw_gid)
    env = {"PATH": os.environ["PATH"], "GISPLATFORM_DATA_DIR": str(root / "data"),
           "GISPLATFORM_PG_PORT": str(free_port()), "HOME": str(root)}
    run = dict(env=env, capture_output=True, text=True, user=user.pw_uid, group=user.pw_gid,
               extra_groups=[], cwd=root)
    try:
        start = subprocess.run([CLI, "db", "start"], **run)
        assert start.returncode == 0, start.stderr
        assert (root / "data/pgdata").stat().st_uid == user.pw_uid
        url = subprocess.run([CLI, "db", "url"], **run).stdout.strip()
        with psycopg.connect(url) as c:
            assert c.execute("select extname from pg_extension where extname = 'btree_gist'").fetchone()
        stop = subprocess.run([CLI, "db", "stop"], **run)
        assert stop.returncode == 0 and "stopped" in stop.stderr
    finally:
        subprocess.run([CLI, "db", "stop"], **run)
        shutil.rmtree(root, ignore_errors=True)
