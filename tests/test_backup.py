"""Backups (gisplatform/backup, issue 21), driven through the `gisplatform backup` CLI as an
operator would: backup → restore → equal digests of every table and every file;
point-in-time recovery between two imports; a damaged backup found by `verify`; a
non-empty target refused; a backup taken under writes restores whole transactions; a
backup killed with SIGKILL is never listed; the pg_dump path for an external database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import shapely
from conftest import fresh_database

from gisplatform.backup import differences, digest, files_digest
from gisplatform.backup.schedule import status as backup_status
from gisplatform.db.embedded import EmbeddedPostgres, free_port
from gisplatform.wiring import backup_stores

CLI = str(Path(sys.executable).with_name("gisplatform"))


def run(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


class Platform:
    """An embedded platform (durable, its WAL archived) in a temp data dir, run by the CLI."""

    def __init__(self, root: Path, name: str):
        self.data_dir = root / name
        self.env = {**os.environ, "GISPLATFORM_DATA_DIR": str(self.data_dir),
                    "GISPLATFORM_PG_PORT": str(free_port()),
                    "GISPLATFORM_BACKUP_DIR": str(root / "backups")}
        for k in ("DATABASE_URL", "GISPLATFORM_DATABASE_URL", "GISPLATFORM_WAL_ARCHIVE_DIR"):
            self.env.pop(k, None)

    def cli(self, *args, **kw) -> subprocess.CompletedProcess:
        return run(self.env, *args, **kw)

    @property
    def cluster(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.data_dir, port=int(self.env["GISPLATFORM_PG_PORT"]))

    def url(self) -> str:
        return self.cluster.url()

    def start(self) -> str:
        """The cluster started as `gisplatform up` starts it (in this process: faster)."""
        return self.cluster.start()

    def stop(self) -> None:
        if self.cluster.initialized:
            self.cluster.stop()


@pytest.fixture(scope="module")
def root():
    # mkdtemp is 0700; the server user (postgres, when we are root) must traverse it
    d = Path(tempfile.mkdtemp(prefix="gisplatform-backup-test-"))
    os.chmod(d, 0o755)
    made: list[Platform] = []
    yield d, made
    for p in made:
        p.stop()
    shutil.rmtree(d, ignore_errors=True)


def platform(root, name: str, start: bool = True) -> Platform:
    d, made = root
    p = Platform(d, name)
    made.append(p)
    if start:
        r = p.cli("db", "start")
        assert r.returncode == 0, r.stderr
    return p


def building_file(path: Path, codes: list[int], floors: int) -> Path:
    feats = [{"type": "Feature", "geometry": json.loads(shapely.to_geojson(
        shapely.box(123.9 + i * 1e-3, 41.87, 123.9004 + i * 1e-3, 41.8704))), "properties": {
        "building_code": f"210402{i:08d}", "floors": floors, "height": 3.0 * floors,
        "use": "residential", "structure": "brick_concrete", "year_built": 1995}}
        for i in codes]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def import_buildings(p: Platform, path: Path) -> None:
    r = p.cli("import", "buildings", str(path))
    assert r.returncode == 0, r.stderr


def add_files(p: Platform) -> None:
    stores = backup_stores(p.data_dir)
    (stores["case-photos"] / "ab").mkdir(parents=True)
    (stores["case-photos"] / "ab" / ("ab" * 32 + ".jpg")).write_bytes(b"\xff\xd8jpeg\xff\xd9")
    (stores["rasters"]).mkdir(parents=True)
    (stores["rasters"] / "ortho-2024.tif").write_bytes(os.urandom(300_000))


def table_digest(url: str) -> dict:
    with psycopg.connect(url) as c:
        return digest(c)


@pytest.fixture(scope="module")
def source(root, tmp_path_factory):
    """A platform with two imports, files, and a backup of it (the id)."""
    p = platform(root, "source")
    tmp = tmp_path_factory.mktemp("files")
    import_buildings(p, building_file(tmp / "a.geojson", [1, 2, 3], 6))
    import_buildings(p, building_file(tmp / "b.geojson", [2, 3, 4], 9))  # 2, 3: new versions
    add_files(p)
    r = p.cli("backup", "create")
    assert r.returncode == 0, r.stderr
    return p, r.stdout.strip().splitlines()[-1]


def test_backup_restore_gives_back_every_table_and_file(root, source):
    p, backup_id = source
    listed = p.cli("backup", "list").stdout
    assert listed.startswith(f"{backup_id}\tpg_basebackup\t")
    manifest = json.loads((root[0] / "backups" / backup_id / "manifest.json").read_text())
    assert manifest["revision"] and manifest["start_wal"] and manifest["stores"] == [
        "case-photos", "rasters"]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    before, files = table_digest(p.url()), files_digest(backup_stores(p.data_dir))
    assert before["buildings_version"][0] >= 6  # 4 buildings, 2 of them in 2 versions
    r = p.cli("backup", "verify", backup_id)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    q = platform(root, "restored", start=False)
    r = q.cli("backup", "restore", backup_id)
    assert r.returncode == 0, r.stderr
    assert q.cli("db", "start").returncode == 0
    assert differences(before, table_digest(q.url())) == []
    assert files_digest(backup_stores(q.data_dir)) == files
    # the restored platform answers as the source did
    with psycopg.connect(q.url()) as c:
        assert c.execute("select floors from city.buildings_version where fid ="
                         " '21040200000002' and upper_inf(valid) and upper_inf(recorded)"
                         ).fetchone()[0] == 9
    q.stop()


def test_point_in_time_between_two_imports(root, source, tmp_path):
    p, _ = source
    r = p.cli("backup", "create", "--to", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    backup_id = r.stdout.strip().splitlines()[-1]
    import_buildings(p, building_file(tmp_path / "1.geojson", [11, 12], 5))
    first = table_digest(p.url())
    time.sleep(0.5)
    between = datetime.now(UTC)
    time.sleep(0.5)
    import_buildings(p, building_file(tmp_path / "2.geojson", [12, 13], 7))  # the bad one
    q = platform(root, "pitr-restored", start=False)
    # as an operator on the same machine: the source's settings, another data dir
    r = p.cli("backup", "restore", backup_id, "--dir", str(tmp_path / "b"), "--data-dir",
              str(q.data_dir), "--until", between.isoformat())
    assert r.returncode == 0, r.stderr  # the source's last WAL archived by the restore
    got = table_digest(q.start())
    assert differences(first, got) == []  # exactly the first import
    with psycopg.connect(q.url()) as c:
        assert c.execute("show recovery_target_time").fetchone()[0] == ""
    q.stop()
    # before the backup ended: refused, nothing written
    z = platform(root, "pitr-too-early", start=False)
    r = z.cli("backup", "restore", backup_id, "--dir", str(tmp_path / "b"), "--until",
              "2020-01-01T00:00:00+08:00")
    assert r.returncode == 1 and "before backup" in r.stderr
    assert not z.data_dir.exists() or not any(z.data_dir.iterdir())


def test_a_damaged_backup_is_found_and_never_restored(root, source, tmp_path):
    p, backup_id = source
    copy = tmp_path / "copy"
    shutil.copytree(root[0] / "backups" / backup_id, copy / backup_id)
    env = {**p.env, "GISPLATFORM_BACKUP_DIR": str(copy)}
    victim = next(f for f in (copy / backup_id / "files" / "rasters").iterdir())
    with open(victim, "r+b") as f:  # one byte flipped
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 1]))
    r = run(env, "backup", "verify", backup_id)
    assert r.returncode == 1 and "files/rasters/ortho-2024.tif" in r.stderr, r.stderr
    target = tmp_path / "target"
    r = run({**env, "GISPLATFORM_DATA_DIR": str(target), "GISPLATFORM_PG_PORT": str(free_port())},
            "backup", "restore", backup_id)
    assert r.returncode == 1 and "damaged" in r.stderr
    assert not target.exists() or not any(target.iterdir())  # nothing written
    (copy / backup_id / "files" / "rasters" / "extra.tif").write_bytes(b"x")
    victim.unlink()
    r = run(env, "backup", "verify", backup_id)
    assert r.returncode == 1 and "missing" in r.stderr and "extra.tif" in r.stderr
    assert run(env, "backup", "verify", "../etc").returncode == 1


def test_restore_refuses_a_target_that_is_not_empty(root, source):
    p, backup_id = source
    before = sorted(x.name for x in p.data_dir.iterdir())
    r = p.cli("backup", "restore", backup_id)  # onto the running source itself
    assert r.returncode == 1 and "not empty" in r.stderr
    assert sorted(x.name for x in p.data_dir.iterdir()) == before
    assert p.cli("db", "status").returncode == 0


def test_a_backup_under_writes_restores_whole_transactions(root, source):
    p, _ = source
    url = p.url()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("create table public.batches (batch int, part int)")
    stop = threading.Event()
    written = [0]

    def write():
        with psycopg.connect(url, autocommit=True) as c:
            while not stop.is_set():
                with c.transaction():
                    for part in range(3):
                        c.execute("insert into public.batches values (%s, %s)",
                                  (written[0], part))
                written[0] += 1
    t = threading.Thread(target=write)
    t.start()
    try:
        time.sleep(0.5)
        r = p.cli("backup", "create")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    q = platform(root, "busy-restored", start=False)
    assert q.cli("backup", "restore", r.stdout.strip().splitlines()[-1]).returncode == 0
    with psycopg.connect(q.start()) as c:
        n, partial = c.execute("select count(distinct batch), count(*) filter (where k <> 3)"
                               " from (select batch, count(*) k from public.batches"
                               " group by batch) b").fetchone()
    assert n > 0 and partial == 0, (n, partial)
    assert n <= written[0]
    q.stop()


def test_a_killed_backup_is_never_listed(root, source):
    p, _ = source
    before = p.cli("backup", "list").stdout
    proc = subprocess.Popen([CLI, "backup", "create"], env=p.env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backups = root[0] / "backups"
    deadline = time.monotonic() + 60
    while not list(backups.glob("*.partial")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(backups.glob("*.partial")), "the backup never started"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its pg_basebackup
    proc.wait()
    r = p.cli("backup", "list")
    assert r.stdout == before and "not complete" in r.stderr


def test_an_external_database_is_dumped_and_restored(pg, root, tmp_path):
    """DATABASE_URL: pg_dump in an exported snapshot (its digest in the manifest), restored
    with pg_restore into an empty database, verified in a throwaway cluster."""
    url = fresh_database(pg, "backup_external")
    env = {**os.environ, "DATABASE_URL": url, "GISPLATFORM_DATA_DIR": str(tmp_path / "d"),
           "GISPLATFORM_BACKUP_DIR": str(tmp_path / "b")}
    r = run(env, "import", "buildings", str(building_file(tmp_path / "x.geojson", [21, 22], 4)))
    assert r.returncode == 0, r.stderr
    r = run(env, "backup", "create")
    assert r.returncode == 0, r.stderr
    backup_id = r.stdout.strip().splitlines()[-1]
    assert run(env, "backup", "list").stdout.split("\t")[1] == "pg_dump"
    r = run(env, "backup", "verify", backup_id)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(pg.url("postgres"), autocommit=True) as c:
        c.execute("drop database if exists backup_external_restored")
        c.execute("create database backup_external_restored")
    target = pg.url("backup_external_restored")
    r = run({**env, "DATABASE_URL": target, "GISPLATFORM_DATA_DIR": str(tmp_path / "d2")},
            "backup", "restore", backup_id)
    assert r.returncode == 0, r.stderr
    assert differences(table_digest(url), table_digest(target)) == []
    r = run({**env, "DATABASE_URL": target}, "backup", "restore", backup_id)
    assert r.returncode == 1 and "already holds" in r.stderr
    r = run(env, "backup", "restore", backup_id, "--until", "2026-01-01T00:00:00+08:00")
    assert r.returncode == 1 and "operator" in r.stderr


def test_scheduled_backups_keep_the_newest_and_show_in_health(pg, tmp_path, monkeypatch):
    """GISPLATFORM_BACKUP_EVERY: the server backs up on its own (one replica at a time),
    keeps GISPLATFORM_BACKUP_KEEP, and /health and /metrics tell the newest one's age."""
    import httpx
    from conftest import serving

    url = fresh_database(pg, "backup_scheduled")
    monkeypatch.setenv("GISPLATFORM_BACKUP_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("GISPLATFORM_BACKUP_KEEP", "2")
    (tmp_path / "d").mkdir()
    # before any backup: a warning in /health, not a failure
    assert "no backup yet" in backup_status(tmp_path / "b", 0)["warning"]
    monkeypatch.setenv("GISPLATFORM_BACKUP_EVERY", "1s")
    with serving(url, tmp_path / "d") as base:
        deadline, seen = time.monotonic() + 90, set()
        while time.monotonic() < deadline:
            now = {d.name for d in (tmp_path / "b").glob("2*") if "." not in d.name}
            seen |= now
            if len(seen) >= 3:  # three rounds, and the oldest pruned
                break
            time.sleep(0.2)
        h = httpx.get(f"{base}/health", timeout=10).json()
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert h["status"] == "ok" and h["backup"]["last"] and "warning" not in h["backup"]
    assert h["backup"]["method"] == "pg_dump" and h["backup"]["size_bytes"] > 0
    assert "gisplatform_backup_last_age_seconds" in metrics
    done = sorted(d.name for d in (tmp_path / "b").iterdir() if "." not in d.name)
    assert len(seen) >= 3 and 1 <= len(done) <= 2, (seen, done)  # kept: the newest 2
    assert min(seen) not in done
