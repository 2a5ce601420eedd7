"""`gisplatform stats …`: the statistics rollups (rollup.py, `Rollup`).

    stats rebuild [--layer L] [--if-needed]   count the rollups anew (seconds per layer)
    stats status                              when each was counted, changes since

A rollup is also built on first use; building it ahead (after a bulk load, and by
`gisplatform up`) keeps that cost off the first request. Exit codes: 1 = the operation
failed, 2 = bad usage.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated

import typer

from gisplatform.console import connection, fail

from . import rollup as stats


def stats_app(load_layers: Callable[[], object]) -> typer.Typer:
    """The command group; `load_layers()` reads the published layers, whose category
    topics have rollups too (topics.publish_layer_topics)."""
    app = typer.Typer(help="Statistics: the persisted rollups behind /api/stats.",
                      no_args_is_help=True)
    app.command("rebuild")(_loading(load_layers, rebuild))
    app.command("status")(_loading(load_layers, status))
    return app


def _loading(load_layers, command):
    @wraps(command)
    def run(*args, **kwargs):
        load_layers()
        return command(*args, **kwargs)
    return run


def rebuild(layer: Annotated[list[str] | None, typer.Option(
                "--layer", "-l", help="a counted layer (built-in: "
                f"{', '.join(stats.BUILT_IN_COUNTED)}; or a published one); repeatable")] = None,
            if_needed: Annotated[bool, typer.Option(
                "--if-needed", help="only rollups missing or past correcting")] = False) -> None:
    """Count the rollups anew (one pass over each layer's version table)."""
    unknown = [x for x in layer or [] if x not in stats.COUNTED]
    if unknown:
        raise fail(f"unknown layer(s) {', '.join(unknown)}; layers: {', '.join(stats.COUNTED)}", 2)
    with connection(autocommit=True) as conn:
        if not stats._ROLLUP.usable(conn):
            raise fail("no change feed here (migration 0011 missing, or Citus): statistics "
                        "are counted directly, there is no rollup to build")
        took = stats.rebuild_all(conn, layer or None, if_needed=if_needed)
    for name, seconds in took.items():
        typer.echo(f"{name}: {'up to date' if seconds is None else f'{seconds:.2f}s'}")


def status() -> None:
    """Each rollup: when it was counted, how long it took, versions counted, changes since."""
    with connection(autocommit=True) as conn:
        if not stats._ROLLUP.usable(conn):
            raise fail("no change feed here (migration 0011 missing, or Citus): no rollups")
        for name, counted in stats.COUNTED.items():
            state = stats._ROLLUP.check(conn, counted)
            if state is None:
                typer.echo(f"{name}: not built")
                continue
            built, took = conn.execute("select built_at, build_s from city.stats_rollup_state"
                                       " where layer = %s", (name,)).fetchone()
            typer.echo(f"{name}: counted {built:%Y-%m-%d %H:%M:%S%z} in {took:.2f}s, "
                       f"{state['versions']} versions, {state['changed']} changed since"
                       + ("" if state["usable"] else " (needs a rebuild)"))
