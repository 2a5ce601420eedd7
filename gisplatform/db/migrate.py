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


class DatabaseAhead(Exception):
    """The database was migrated by a newer release than this code: its revision is not
    one of `migrations/`. The message is the one line to print."""


def refuse_newer(url: str, unreachable_ok: bool = False) -> None:
    """Raise DatabaseAhead, touching nothing, when the database's migration revision is
    one this code does not know (a later release's). The one check `gisplatform up`,
    `serve` and `db migrate` make before they start (upgrade() makes it first).
    `unreachable_ok`: a database that cannot be reached passes (`serve` starts anyway and
    answers 503 until it is back)."""
    import psycopg
    from alembic.script import ScriptDirectory

    try:
        rev = current(url)
    except psycopg.OperationalError:
        if unreachable_ok:
            return
        raise
    if rev is None:
        return
    script = ScriptDirectory.from_config(alembic_config("postgresql://"))
    if rev not in {s.revision for s in script.walk_revisions()}:  # exact, not a prefix
        raise DatabaseAhead(
            f"the database is at migration revision {rev}, newer than this code's newest"
            f" ({script.get_current_head()}): run the release that migrated it (or newer);"
            " nothing was changed")


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations up to `revision`; DatabaseAhead (nothing applied) when the
    database is at a revision newer than this code's."""
    refuse_newer(url)
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
