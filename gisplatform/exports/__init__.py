"""Exports: a layer's snapshot (or history) as a GeoPackage, GeoJSON, CSV or GeoParquet file,
masked unless the principal's grant unmasks, audited when unmasked, written atomically.

- files.py: the streaming export (`export`, `make_request`, `ExportRequest`, formats);
- routes.py: `/api/exports`, export jobs over HTTP (`exports_router`);
- cli.py: `gisplatform export …` (`export_command`).
"""

from .cli import export_command
from .files import (
    FORMATS,
    MEDIA_TYPES,
    ExportError,
    ExportRefused,
    ExportRequest,
    ExportResult,
    check_access,
    export,
    format_of,
    make_request,
    snapshot_sql,
)
from .routes import ExportJobs, exports_router

__all__ = ["FORMATS", "MEDIA_TYPES", "ExportError", "ExportJobs", "ExportRefused",
           "ExportRequest", "ExportResult", "check_access", "export", "export_command",
           "exports_router", "format_of", "make_request", "snapshot_sql"]
