"""What every `gisplatform` sub-command shares: stderr, the one-line failure, and the
database connection from the settings (failures to reach it are that one line too)."""

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
