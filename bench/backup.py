"""Backup and restore of the city demo: the platform's against plain pg_dump / pg_restore.

    .venv/bin/python bench/backup.py --size city     # the issue's figure (~15 GB of disk)
    .venv/bin/python bench/backup.py --size small    # quick check

Over the database of bench/ogc_vs_tipg.py (bench/.data/<size>; started if need be), in one
run, one after the other, on this machine:
- ours: `gisplatform.backup.create` (pg_basebackup, tar, WAL streamed; the manifest's
  SHA-256 of every file) and `restore_physical` into an empty data dir (unpack, then the
  cluster replays to the end of the backup), then the same `digest` of every table on both
  sides (timed too: it is what proves the restore);
- the peer: `pg_dump -Fc` of the same database and `pg_restore -j 2` into a new empty
  database of the same cluster (indexes rebuilt).
Reports rows (version tables), database size, and per method: seconds, bytes.
Everything it writes goes under a temp dir next to bench/.data, removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogc_vs_tipg import ROOT, database  # noqa: E402

from gisplatform.backup import create, differences, digest, restore_physical  # noqa: E402
from gisplatform.backup.manifest import Manifest  # noqa: E402
from gisplatform.db.embedded import EmbeddedPostgres, find_bindir, free_port  # noqa: E402


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small", choices=["small", "medium", "city"])
    args = ap.parse_args()
    pg, url = database(args.size)
    work = Path(tempfile.mkdtemp(prefix="backup-bench-", dir=ROOT / ".data"))
    work.chmod(0o755)
    try:
        with psycopg.connect(url) as c:
            tables = [r[0] for r in c.execute(
                "select relname from pg_class where relnamespace = 'city'::regnamespace"
                " and relkind = 'r' and relname like '%\\_version'")]
            rows = sum(c.execute(f'select count(*) from city."{t}"').fetchone()[0]
                       for t in tables)
            size = c.execute("select pg_database_size(current_database())").fetchone()[0]
        print(f"{args.size}: {rows:,} version rows, database {size / 1e9:.2f} GB", flush=True)

        m, t_backup = timed(lambda: create(url, work / "backups", {}, pg))
        b_size = du(work / "backups" / m.id)
        print(f"ours    backup  {t_backup:7.1f} s  {b_size / 1e6:8.1f} MB  (pg_basebackup)",
              flush=True)
        target = EmbeddedPostgres(work / "restored", port=free_port())
        d = work / "backups" / m.id
        _, t_restore = timed(lambda: restore_physical(d, Manifest.load(d), target, {}))
        print(f"ours    restore {t_restore:7.1f} s  (unpack, replay)", flush=True)
        with psycopg.connect(url) as c:
            src, t_digest = timed(lambda: digest(c))
        restored_url = target.start()
        with psycopg.connect(restored_url) as c:
            got = digest(c)
        target.stop()
        diff = differences(src, got)
        print(f"digest of {len(src)} tables: {t_digest:.1f} s; restored equal: {not diff}"
              + (f" {diff[:3]}" if diff else ""), flush=True)
        shutil.rmtree(work / "restored")

        bindir = find_bindir()
        dump = work / "city.dump"
        _, t_dump = timed(lambda: subprocess.run(
            [str(bindir / "pg_dump"), f"--dbname={url}", "-Fc", "-f", str(dump)], check=True))
        print(f"pg_dump backup  {t_dump:7.1f} s  {dump.stat().st_size / 1e6:8.1f} MB  (-Fc)",
              flush=True)
        with psycopg.connect(pg.url("postgres"), autocommit=True) as c:
            c.execute("drop database if exists bench_restored")
            c.execute("create database bench_restored")
        _, t_pgr = timed(lambda: subprocess.run(
            [str(bindir / "pg_restore"), f"--dbname={pg.url('bench_restored')}", "-j", "2",
             "--no-owner", str(dump)], check=True, capture_output=True))
        print(f"pg_dump restore {t_pgr:7.1f} s  (pg_restore -j 2)", flush=True)
        with psycopg.connect(pg.url("postgres"), autocommit=True) as c:
            c.execute("drop database bench_restored")
        print(f"\nratios: backup {t_backup / t_dump:.2f}x pg_dump's time, "
              f"{b_size / dump.stat().st_size:.2f}x its size; restore {t_restore / t_pgr:.2f}x "
              "pg_restore's time")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
