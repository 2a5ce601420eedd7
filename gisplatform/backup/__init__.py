"""Backups that lose nothing (issue 21): the database and the platform's files with a
manifest (take.py, manifest.py), checked and restored (restore.py), point-in-time recovery
from the embedded cluster's WAL archive, a digest to compare a restore with its source
(digest.py)."""

from .digest import differences, digest
from .manifest import BackupError, Manifest, complete, locate
from .restore import files_digest, restore_logical, restore_physical, verify
from .take import create, flush_wal, prune

__all__ = ["BackupError", "Manifest", "complete", "create", "differences", "digest",
           "files_digest", "flush_wal", "locate", "prune", "restore_logical",
           "restore_physical", "verify"]
