"""Settings: one object, read from the environment and `.env`.

Every variable is `GISPLATFORM_<NAME>`; two well-known names are also accepted
unprefixed because deployment tools set them: `DATABASE_URL` and `PORT`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GISPLATFORM_", env_file=".env", extra="ignore"
    )

    # External PostGIS. Empty = the project starts its own embedded cluster.
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "GISPLATFORM_DATABASE_URL"),
    )
    # Where the embedded cluster, its password and generated files live.
    data_dir: Path = REPO_ROOT / ".gisplatform"
    pg_port: int = 55432
    pg_host: str = "127.0.0.1"
    # OS user that runs the embedded server when we are root (initdb refuses root).
    pg_os_user: str = "postgres"
    # The embedded cluster's WAL archive (point-in-time recovery); default data_dir/wal-archive.
    wal_archive_dir: Path | None = None
    # Backups (gisplatform/backup): where they go (default data_dir/backups), how often the
    # server takes one ("24h"; "0" = only `gisplatform backup create`), how many are kept.
    backup_dir: Path | None = None
    backup_every: str = "0"
    backup_keep: int = 7

    host: str = "127.0.0.1"
    port: int = Field(default=8000, validation_alias=AliasChoices("PORT", "GISPLATFORM_PORT"))
    workers: int = 1
    pool_min: int = 1
    pool_max: int = 10
    # Seconds a request waits for a database connection before it is answered 503
    # (the database down or every connection busy).
    pool_timeout: float = 10.0
    # Vector tile cache (tiles/cache.py): memory per worker, disk shared under data_dir/tiles.
    tile_cache_memory_mb: int = 256
    tile_cache_disk_mb: int = 2048
    # Tile renders running at once per worker (0 = one per CPU): heavy low-zoom renders
    # queue here instead of taking every database core from the OGC requests.
    tile_renders: int = 0
    # Change feed (gisplatform/changefeed/): days of log kept; webhook retry backoff base.
    change_retention_days: float = 30
    webhook_retry_seconds: float = 1.0
    # Published layers (layers/published.py): how often each app worker looks at the layer
    # registry, serving a new, altered or retired layer without a restart.
    layer_poll_seconds: float = Field(2.0, gt=0)
    # The TrueType font map labels are drawn with, served at /tiles/fonts/label.ttf (Debian's
    # fonts-droid-fallback: Chinese and Latin in one file; scripts/bootstrap.sh installs it).
    label_font: Path = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")
    # WMS / WFS / WMTS (gisplatform/services): MapServer FastCGI processes per app worker
    # (each holds one database connection per layer it has drawn).
    ows_processes: int = Field(2, ge=1, le=32)
    # Exports over HTTP (gisplatform/exports/routes.py): jobs and files under data_dir/exports,
    # deleted this many hours after they were asked for; jobs run at once (the rest queue).
    exports_ttl_hours: float = 24
    exports_workers: int = 1
    # Case photos (gisplatform/cases/photos.py) taken further than this from the case are
    # accepted with a warning.
    case_photo_max_distance_m: float = 200
    # The periods of a working day (Beijing time) for limits in working hours
    # (gisplatform/cases/clock.py); holidays and moved days: `gisplatform cases calendar`.
    case_working_hours: str = "08:30-12:00,13:30-17:30"
    # Open data (gisplatform/opendata/): publish every e.g. "24h" ("0" = never, only by
    # `gisplatform opendata publish`); versions kept per layer; the licence stated.
    opendata_every: str = "0"
    opendata_keep: int = 5
    opendata_license: str = "CC-BY-4.0"

    # How clients reach the server (links in OGC documents); default http://host:port.
    public_base_url: str | None = Field(default=None, validation_alias="GISPLATFORM_PUBLIC_URL")

    @field_validator("case_working_hours")
    @classmethod
    def _working_hours(cls, v: str) -> str:
        from gisplatform.cases.clock import parse_periods

        parse_periods(v)  # ValueError names what is wrong, at start-up
        return v

    @property
    def public_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"


@lru_cache
def get_settings() -> Settings:
    return Settings()
