"""A backup on disk: `<root>/<id>/` holding `manifest.json` and the files it lists.

    <id>/manifest.json      what was taken (below), written last
    <id>/db/…               the database: base.tar + pg_wal.tar (pg_basebackup) or
                            database.dump (pg_dump custom format)
    <id>/pg-password        the embedded cluster's superuser password (its catalogue holds it)
    <id>/files/<store>/…    the platform's files: rasters, 3D tilesets, open data, photos

A backup is made in `<id>.partial/` and renamed to `<id>/` once its manifest is written, so
a backup killed half-way is never listed as complete. The manifest holds the SHA-256 and
size of every file, so `verify` names the file that changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FORMAT = 1
ID = re.compile(r"^\d{8}T\d{6}Z$")  # 20261203T183000Z: sorts by time, safe as a path
PARTIAL = ".partial"


class BackupError(Exception):
    """A backup that cannot be made, found, verified or restored: the one line to print."""


@dataclass
class Manifest:
    id: str
    created: str  # when the backup started (UTC, ISO 8601)
    method: str  # pg_basebackup | pg_dump
    platform: str  # gisplatform version
    revision: str | None  # the database's migration revision
    postgres: str  # server version
    stores: list[str]  # the file stores under files/
    files: dict[str, dict] = field(default_factory=dict)  # relative path -> sha256, size
    finished: str | None = None
    # pg_basebackup: the WAL archive the cluster wrote to and the first segment the backup
    # needs (point-in-time recovery replays from it)
    wal_archive: str | None = None
    start_wal: str | None = None
    # pg_dump: a digest of every table in the dump's snapshot (digest.py)
    digest: dict | None = None
    roles: list[str] = field(default_factory=list)  # pg_dump: roles its grants name
    format: int = FORMAT

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files.values())

    def save(self, directory: Path) -> None:
        path = directory / "manifest.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1, ensure_ascii=False)
            f.flush()
            import os

            os.fsync(f.fileno())
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        try:
            doc = json.loads((directory / "manifest.json").read_text())
            if doc.get("format") != FORMAT:
                raise BackupError(f"{directory.name}: manifest format {doc.get('format')}, "
                                  f"this code reads {FORMAT}")
            return cls(**doc)
        except (OSError, ValueError, TypeError) as e:
            raise BackupError(f"{directory.name}: no readable manifest ({e})") from None


def backups_dir(settings, given: Path | None = None) -> Path:
    """Where backups live: `given`, GISPLATFORM_BACKUP_DIR, or <data dir>/backups."""
    return Path(given or settings.backup_dir or settings.data_dir / "backups").resolve()


def new_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def walk(directory: Path) -> list[Path]:
    """Every regular file under `directory` but the manifest, in a stable order."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name != "manifest.json")


def locate(root: Path, backup_id: str) -> Path:
    """The complete backup `backup_id` under `root`; BackupError when there is none."""
    if not ID.match(backup_id or ""):
        raise BackupError(f"{backup_id!r} is not a backup id (YYYYMMDDTHHMMSSZ)")
    d = root / backup_id
    if not (d / "manifest.json").is_file():
        raise BackupError(f"no complete backup {backup_id} in {root}")
    return d


def complete(root: Path) -> list[Manifest]:
    """The complete backups under `root`, oldest first (partial ones are not backups)."""
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if ID.match(d.name) and (d / "manifest.json").is_file():
            try:
                out.append(Manifest.load(d))
            except BackupError:
                continue
    return out


def partial(root: Path) -> list[Path]:
    """Backups that never finished (killed, failed): kept out of every listing."""
    return sorted(root.glob(f"*{PARTIAL}")) if root.is_dir() else []


def check_files(directory: Path, manifest: Manifest, progress=lambda n: None) -> list[str]:
    """What is wrong with the backup's files: missing, changed or extra; [] when none."""
    problems = []
    for rel, want in manifest.files.items():
        path = directory / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != want["size"] or sha256_file(path) != want["sha256"]:
            problems.append(f"{rel}: changed (SHA-256 differs from the manifest)")
        progress(want["size"])
    listed = set(manifest.files)
    problems += [f"{p.relative_to(directory)}: not in the manifest"
                 for p in walk(directory) if str(p.relative_to(directory)) not in listed]
    return problems
