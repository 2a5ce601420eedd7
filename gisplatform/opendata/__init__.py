"""Open data: the unconditionally shared layers as static, versioned downloads with
checksums and metadata, listed in the OGC catalogue.

- publication.py: publishing a version (`publish`), versions on disk, catalogue records;
- routes.py: `/opendata/` (read-only) and the publication schedule (`opendata_router`);
- cli.py: `gisplatform opendata publish|list` (`opendata_app`).
"""

from .cli import opendata_app
from .publication import (
    ADVISORY_LOCK,
    FILE_FORMATS,
    Published,
    catalogue_records,
    latest,
    parse_every,
    publish,
    versions,
)
from .routes import opendata_router, publish_locked

__all__ = ["ADVISORY_LOCK", "FILE_FORMATS", "Published", "catalogue_records", "latest",
           "opendata_app", "opendata_router", "parse_every", "publish", "publish_locked",
           "versions"]
