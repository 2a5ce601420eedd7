"""`gisplatform cases …`: the workflow's maintenance (应用维护).

    cases limits [--at T]                              the time limits in effect
    cases set-limit KIND BIG_CLASS HOURS [--effective T]   a new limit from T on (default now)

Exit codes: 1 = the operation failed, 2 = bad usage.
"""

from __future__ import annotations

import getpass

import typer

from gisplatform.console import connection, fail

from .limits import limits, parse_limits, set_limit
from .workflow import WorkflowError

cases_app = typer.Typer(help="The case workflow: time limits.", no_args_is_help=True)


@cases_app.command("limits")
def limits_(at: str = typer.Option(None, "--at", help="In effect at this instant (ISO 8601; "
                                   "a bare date is 00:00 +08:00); default now.")) -> None:
    """The time limits in effect: kind, big class, hours, since when, set by whom."""
    from gisplatform.temporal import TemporalError, parse_request_instant

    try:
        when = parse_request_instant(at) if at else None
    except TemporalError as e:
        raise fail(f"--at: {e}", 2) from None
    with connection(autocommit=True) as conn:
        for x in limits(conn, when):
            typer.echo(f"{x['kind']}\t{x['big_class']}\t{x['hours']:g} h\tsince {x['effective']}"
                       f"\t{x['actor']}")


@cases_app.command("set-limit")
def set_limit_(kind: str = typer.Argument(..., help="event | component"),
               big_class: str = typer.Argument(..., help="2-digit big class, e.g. 01"),
               hours: float = typer.Argument(..., help="hours from dispatch"),
               effective: str = typer.Option(None, help="From this instant on (default now); "
                                             "cases dispatched before keep their deadline.")
               ) -> None:
    """Set a time limit from an instant on (the earlier limits stay on record)."""
    try:
        items, when = parse_limits({"limits": [{"kind": kind, "big_class": big_class,
                                                "hours": hours}], "effective": effective})
    except WorkflowError as e:
        raise fail(str(e), 2) from None
    with connection(autocommit=True) as conn:
        for k, b, h in items:
            set_limit(conn, k, b, h, when, f"cli:{getpass.getuser()}")
    typer.echo(f"{kind} {big_class}: {hours:g} h from {when.isoformat()}", err=True)
