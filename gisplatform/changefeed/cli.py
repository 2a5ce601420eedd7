"""`gisplatform changes …`: webhook subscriptions to the change feed, and its retention.

    changes subscribe URL --layer L --token-id N [--from-start]   prints the secret once
    changes list                                                   never shows secrets
    changes unsubscribe ID
    changes prune [--older-than-days D]

The composition root passes the layer names it serves (the kernel does not import the
layer registry). Exit codes: 1 = the operation failed, 2 = bad usage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta

import typer

from gisplatform.console import connection, fail


def changes_app(layer_names: Callable[[], Iterable[str]]) -> typer.Typer:
    app = typer.Typer(help="The change feed: webhook subscriptions and retention.",
                      no_args_is_help=True)

    @app.command("subscribe")
    def subscribe_(
        url: str = typer.Argument(..., help="Where to POST batches (http or https)."),
        layer: str = typer.Option(..., "--layer", "-l", help="Layer (collection id)."),
        token_id: int = typer.Option(..., "--token-id", help="Deliver with this token's "
                                     "grants (see `token list`)."),
        from_start: bool = typer.Option(False, help="Start at the oldest retained change "
                                        "instead of what commits from now on."),
    ) -> None:
        """Subscribe URL to a layer's changes; prints the signing secret (shown once)."""
        from .webhooks import check_url, subscribe

        names = set(layer_names())
        name = layer.removesuffix("-history")
        if name not in names:
            raise fail(f"unknown layer {layer!r} (known: {', '.join(sorted(names))})", 2)
        try:
            check_url(url)
        except ValueError as e:
            raise fail(str(e), 2) from None
        with connection(autocommit=True) as conn:
            try:
                sub_id, secret = subscribe(conn, url, name, token_id, from_start)
            except ValueError as e:
                raise fail(str(e)) from None
        typer.echo(f"subscription {sub_id}: {name} -> {url}")
        typer.echo(f"secret: {secret}")
        typer.echo("(shown once: the receiver checks X-Gisplatform-Signature with it)", err=True)

    @app.command("list")
    def list_() -> None:
        """Subscriptions and their delivery state (never a secret)."""
        from .webhooks import list_subscriptions

        with connection(autocommit=True) as conn:
            rows = list_subscriptions(conn)
        for r in rows:
            state = "active" if r["active"] else "stopped"
            typer.echo(f"{r['id']}\t{r['layer']}\t{r['url']}\ttoken {r['token_id']}\t{state}"
                       f"\tdelivered {r['delivered']}\tattempts {r['attempts']}"
                       + (f"\tlast error: {r['last_error']}" if r["last_error"] else ""))

    @app.command("unsubscribe")
    def unsubscribe_(sub_id: int = typer.Argument(...)) -> None:
        """Delete a subscription."""
        from .webhooks import unsubscribe

        with connection(autocommit=True) as conn:
            try:
                unsubscribe(conn, sub_id)
            except LookupError as e:
                raise fail(str(e)) from None
        typer.echo(f"subscription {sub_id} deleted")

    @app.command("prune")
    def prune_(older_than_days: float = typer.Option(30, help="Keep this many days.")) -> None:
        """Delete change-log entries older than the retention; older cursors get 410."""
        from .feed import prune

        if older_than_days < 0:
            raise fail("--older-than-days must be >= 0", 2)
        with connection(autocommit=True) as conn:
            n = prune(conn, timedelta(days=older_than_days))
        typer.echo(f"{n} change-log entries pruned")

    return app
