"""`gisplatform cases …`: the workflow's maintenance (应用维护).

    cases limits [--at T]                              the time limits in effect
    cases set-limit KIND BIG_CLASS HOURS [--step S] [--unit U] [--effective T]
                                                       a new limit from T on (default now)
    cases calendar [--year Y]                          holidays and moved working days
    cases set-day DAY (--holiday | --working) [--note N]   mark a day
    cases departments                                  the department directory
    cases set-department CODE NAME                     add or rename a department

Exit codes: 1 = the operation failed, 2 = bad usage.
"""

from __future__ import annotations

import getpass

import typer

from gisplatform.console import connection, fail

from .directory import (
    calendar,
    departments,
    parse_days,
    parse_departments,
    set_days,
    set_departments,
)
from .limits import limits, parse_limits, set_limit
from .workflow import WorkflowError

cases_app = typer.Typer(help="The case workflow: time limits, work calendar, departments.",
                        no_args_is_help=True)


@cases_app.command("limits")
def limits_(at: str = typer.Option(None, "--at", help="In effect at this instant (ISO 8601; "
                                   "a bare date is 00:00 +08:00); default now.")) -> None:
    """The time limits in effect: kind, big class, step, hours (calendar or working), since
    when, set by whom."""
    from gisplatform.temporal import TemporalError, parse_request_instant

    try:
        when = parse_request_instant(at) if at else None
    except TemporalError as e:
        raise fail(f"--at: {e}", 2) from None
    with connection(autocommit=True) as conn:
        for x in limits(conn, when):
            typer.echo(f"{x['kind']}\t{x['big_class']}\t{x['step']}\t{x['hours']:g} h"
                       f" {x['unit']}\tsince {x['effective']}\t{x['actor']}")


@cases_app.command("set-limit")
def set_limit_(kind: str = typer.Argument(..., help="event | component"),
               big_class: str = typer.Argument(..., help="2-digit big class, e.g. 01"),
               hours: float = typer.Argument(..., help="hours from the step before"),
               step: str = typer.Option("handle", help="The step timed: register, dispatch, "
                                        "handle (the case's deadline), verify, close."),
               unit: str = typer.Option("calendar", help="calendar | working (hours)"),
               effective: str = typer.Option(None, help="From this instant on (default now); "
                                             "cases dispatched before keep their deadline.")
               ) -> None:
    """Set a time limit from an instant on (the earlier limits stay on record)."""
    try:
        items, when = parse_limits({"limits": [{"kind": kind, "big_class": big_class,
                                                "hours": hours, "step": step, "unit": unit}],
                                    "effective": effective})
    except WorkflowError as e:
        raise fail(str(e), 2) from None
    with connection(autocommit=True) as conn:
        for k, b, s, h, u in items:
            set_limit(conn, k, b, h, when, f"cli:{getpass.getuser()}", s, u)
    typer.echo(f"{kind} {big_class} {step}: {hours:g} h {unit} from {when.isoformat()}", err=True)


@cases_app.command("calendar")
def calendar_(year: int = typer.Option(None, help="Only this year.")) -> None:
    """The work calendar: days that break the Monday–Friday week."""
    with connection(autocommit=True) as conn:
        for d in calendar(conn, year):
            typer.echo(f"{d['day']}\t{'working' if d['working'] else 'holiday'}"
                       f"\t{d['note'] or ''}\t{d['actor']}")


@cases_app.command("set-day")
def set_day(day: str = typer.Argument(..., help="YYYY-MM-DD"),
            working: bool = typer.Option(..., "--working/--holiday",
                                         help="A working day (调休) or a holiday."),
            note: str = typer.Option(None, help="e.g. 国庆节")) -> None:
    """Mark a day as working or not; deadlines computed from then on follow it."""
    try:
        days = parse_days({"days": [{"day": day, "working": working, "note": note}]})
    except WorkflowError as e:
        raise fail(str(e), 2) from None
    with connection(autocommit=True) as conn:
        set_days(conn, days, f"cli:{getpass.getuser()}")
    typer.echo(f"{day}: {'working' if working else 'holiday'}", err=True)


@cases_app.command("departments")
def departments_() -> None:
    """The department directory (code, name)."""
    with connection(autocommit=True) as conn:
        for d in departments(conn):
            typer.echo(f"{d['code']}\t{d['name']}")


@cases_app.command("set-department")
def set_department(code: str = typer.Argument(..., help="e.g. zhujian"),
                   name: str = typer.Argument(..., help="e.g. 市住房和城乡建设局")) -> None:
    """Add a department or rename one (logged in city.directory_changes)."""
    try:
        items = parse_departments({"departments": [{"code": code, "name": name}]})
    except WorkflowError as e:
        raise fail(str(e), 2) from None
    with connection(autocommit=True) as conn:
        set_departments(conn, items, f"cli:{getpass.getuser()}")
    typer.echo(f"{code}: {name}", err=True)
