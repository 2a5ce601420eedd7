"""`gisplatform token …` and `gisplatform analyst …`: typer apps the composition root mounts.

    token create --department D --grant LAYER:LEVEL [--grant …] [--label L] [--expires-in-days N]
    token list          id, department, label, grants, expires, revoked (never secrets)
    token revoke ID
    token departments   the department codes tokens are issued to
    analyst create USERNAME   a PostGIS login for QGIS (password prompted)

Layer names are checked for shape only (`^[a-z][a-z0-9-]*$`): the kernel does not import the
layer registry; the composition root may wrap `create` to check names against it.
Exit codes: 1 = the operation failed (unknown department or token, database unreachable),
2 = bad usage (malformed grant, level or option).
"""

from __future__ import annotations

import datetime

import typer

from gisplatform.console import connection, fail

from .analyst import create_analyst_user
from .principals import LEVELS
from .tokens import create_token, list_departments, list_tokens, parse_grant, revoke_token

token_app = typer.Typer(help="API tokens for departments (grants per layer).", no_args_is_help=True)
analyst_app = typer.Typer(help="PostGIS logins for GIS analysts (read-only, public views).",
                          no_args_is_help=True)


@analyst_app.callback()
def _analyst() -> None:
    """PostGIS logins for GIS analysts (read-only, public views)."""  # keeps `create` a subcommand


def _missing_tables(e: Exception) -> typer.Exit:
    return fail(f"{str(e).strip().splitlines()[0]} (run `gisplatform db migrate`)")


@token_app.command("create")
def token_create(
    department: str = typer.Option(..., "--department", "-d",
                                   help="Department code (see `token departments`)."),
    grant: list[str] = typer.Option([], "--grant", "-g",
                                    help=f"LAYER:LEVEL, repeatable; levels: {', '.join(LEVELS)}."),
    label: str = typer.Option(None, help="What the token is for (shown in `token list`)."),
    expires_in_days: int = typer.Option(None, help="Days until the token stops working."),
) -> None:
    """Create a token and print its secret (shown once only)."""
    import psycopg

    try:
        grants = [parse_grant(g) for g in grant]
    except ValueError as e:
        raise fail(str(e), 2) from None
    expires_at = None
    if expires_in_days is not None:
        if expires_in_days < 1:
            raise fail("--expires-in-days must be at least 1", 2)
        expires_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=expires_in_days)
    with connection(autocommit=True) as conn:
        try:
            token_id, secret = create_token(conn, department, grants, label, expires_at)
        except ValueError as e:
            raise fail(str(e)) from None
        except psycopg.errors.UndefinedTable as e:
            raise _missing_tables(e) from None
    typer.echo(secret)
    typer.echo(f"token {token_id} for {department}"
               + (f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "")
               + ". Store the secret now: it cannot be shown again.", err=True)


def _ts(value: datetime.datetime | None) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


@token_app.command("list")
def token_list() -> None:
    """Every token: id, department, label, grants, expiry, revocation (never secrets)."""
    import psycopg

    with connection(autocommit=True) as conn:
        try:
            tokens = list_tokens(conn)
        except psycopg.errors.UndefinedTable as e:
            raise _missing_tables(e) from None
    typer.echo("id\tdepartment\tlabel\tgrants\texpires\trevoked")
    for t in tokens:
        typer.echo("\t".join([str(t["id"]), t["department"], t["label"] or "-",
                              ",".join(t["grants"]) or "-", _ts(t["expires_at"]),
                              _ts(t["revoked_at"])]))


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="The token's id (see `token list`).")) -> None:
    """Revoke a token: it stops working on the next request."""
    import psycopg

    with connection(autocommit=True) as conn:
        try:
            was_active = revoke_token(conn, token_id)
        except LookupError as e:
            raise fail(str(e)) from None
        except psycopg.errors.UndefinedTable as e:
            raise _missing_tables(e) from None
    typer.echo(f"token {token_id} revoked" if was_active else f"token {token_id} was already revoked",
               err=True)


@token_app.command("departments")
def token_departments() -> None:
    """The departments tokens can be issued to (code and name)."""
    import psycopg

    with connection(autocommit=True) as conn:
        try:
            rows = list_departments(conn)
        except psycopg.errors.UndefinedTable as e:
            raise _missing_tables(e) from None
    for code, name in rows:
        typer.echo(f"{code}\t{name}")


@analyst_app.command("create")
def analyst_create(
    username: str = typer.Argument(..., help="Login name: ^[a-z_][a-z0-9_]{0,62}$."),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                 help="Prompted when omitted (keeps it out of shell history)."),
) -> None:
    """Create a PostGIS login that can read the public snapshot views and aggregates."""
    import psycopg

    from .analyst import ANALYST_USERNAME

    if not ANALYST_USERNAME.match(username) or username.startswith("pg_"):
        raise fail(f"username {username!r} must match ^[a-z_][a-z0-9_]{{0,62}}$ "
                    "and not start with pg_", 2)

    with connection(autocommit=True) as conn:
        try:
            create_analyst_user(conn, username, password)
        except ValueError as e:
            raise fail(str(e)) from None
        except psycopg.errors.InsufficientPrivilege as e:
            raise fail(str(e).strip().splitlines()[0]) from None
    typer.echo(f"analyst login {username} created (role gisplatform_analyst)", err=True)
