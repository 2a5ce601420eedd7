"""What every `gisplatform` sub-command shares: stderr, the one-line failure, the
database connection from the settings (failures to reach it are that one line too) and
who `--token` makes the command act as."""

from __future__ import annotations

import psycopg
import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: MESSAGE` on stderr and return the Exit to raise (1 = failed or
    refused, 2 = bad usage)."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def database_url() -> str:
    """The platform's database URL (DATABASE_URL or the embedded cluster's)."""
    from gisplatform.config import get_settings
    from gisplatform.db.embedded import EmbeddedError
    from gisplatform.db.embedded import database_url as url_of

    try:
        return url_of(get_settings())
    except EmbeddedError as e:
        raise fail(str(e)) from None


def connection(application_name: str = "gisplatform-cli", **kwargs) -> psycopg.Connection:
    """A connection with the platform's session options (gisplatform/db/connections.py)."""
    from gisplatform.config import get_settings
    from gisplatform.db.embedded import EmbeddedError, connect

    try:
        return connect(get_settings(), application_name=application_name, **kwargs)
    except EmbeddedError as e:
        raise fail(str(e)) from None


def principal(url: str, secret: str | None, application_name: str = "gisplatform-cli"):
    """Who a command acts as: the principal of `--token` SECRET (its department and
    grants, exactly as over HTTP), or the anonymous public without one. An unknown,
    revoked or expired token, or no database, is the one-line failure."""
    from gisplatform.db.connections import connect
    from gisplatform.security import ANONYMOUS, AuthError, principal_for_token

    if not secret:
        return ANONYMOUS
    try:
        with connect(url, application_name) as conn:
            return principal_for_token(conn, secret.strip())
    except AuthError as e:
        raise fail(f"--token: {e}") from None
    except psycopg.OperationalError as e:
        raise fail(f"cannot connect to the database: {str(e).strip().splitlines()[0]}") from None
