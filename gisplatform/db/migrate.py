"""Run the alembic migrations in `migrations/` against a database URL."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from alembic import command
from alembic.config import Config

from ..config import REPO_ROOT


def sqlalchemy_url(url: str) -> str:
    """libpq URL -> SQLAlchemy URL using psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    # ConfigParser interpolation: a % in the password must be doubled.
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def migration_module(filename: str) -> ModuleType:
    """A migration's module (migrations/versions/`filename`), for a later migration that
    runs its statements again (a downgrade restoring them, a function rebuilt from them)."""
    path = REPO_ROOT / "migrations" / "versions" / filename
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The applied revision, or None on a database never migrated."""
    from .connections import connect

    with connect(url, "gisplatform-migrate") as conn:
        if conn.execute("select to_regclass('city.alembic_version')").fetchone()[0] is None:
            return None
        row = conn.execute("select version_num from city.alembic_version").fetchone()
    return row[0] if row else None


def head() -> str:
    """The newest revision in `migrations/`."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
