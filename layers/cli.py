"""`gisplatform layer …`: publish a dataset as a time-versioned layer, without code.

create (from a file, inferred; or from a reviewed definition), list, show, alter, retire.
A creation is one transaction: the registry row, the version table and the first import
commit together or not at all.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import typer

from gisplatform.config import get_settings
from gisplatform.console import err
from gisplatform.db.connections import connect
from gisplatform.db.embedded import database_url

layer_app = typer.Typer(help="Published layers: any dataset as a time-versioned layer.",
                        no_args_is_help=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _builtin() -> set[str]:
    from layers import LAYERS

    return set(LAYERS)


@layer_app.command("create")
def create(
    name: str = typer.Argument(..., help="The collection id, e.g. bus-stops."),
    source: Path = typer.Option(None, "--from", help="GeoPackage, Shapefile, GeoJSON, FlatGeobuf or CSV."),
    spec: Path = typer.Option(None, help="A reviewed definition (TOML), instead of inferring one."),
    id_field: str = typer.Option(None, help="The column whose value identifies a feature."),
    department: str = typer.Option(None, help="The owning department."),
    sharing: str = typer.Option("conditional", help="unconditional | conditional | not_shared."),
    title: str = typer.Option(None, help="Chinese title."),
    title_en: str = typer.Option(None, help="English title."),
    public_field: list[str] = typer.Option([], help="A column that looks personal but is not (audited)."),
    crs: str = typer.Option(None, help="The file's CRS when it declares none (CSV)."),
    valid_from: str = typer.Option(None, help="When the rows became true (ISO 8601 with zone); default now."),
    source_layer: str = typer.Option(None, help="Layer inside a multi-layer file (GeoPackage)."),
    dry_run: bool = typer.Option(False, help="Print the definition (TOML) and write nothing."),
) -> None:
    """Create a layer from a file (definition inferred) or a definition, and import the
    file as its first versions; every row must pass, or nothing is created."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from gisplatform.security.principals import Principal

    from .publishing import PublishFailed, PublishRequest, prepare, publish

    if source is None and spec is None:
        raise _fail("give --from FILE (definition inferred), --spec layer.toml, or both", 2)
    if spec is not None:
        try:
            text = spec.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise _fail(f"{spec}: cannot read ({e})") from None
    req = PublishRequest(name, department, sharing, id_field, title, title_en,
                         tuple(public_field), crs, valid_from, source_layer,
                         definition=text if spec is not None else None)
    try:
        prepared = prepare(req, source)
    except PublishFailed as e:
        raise _fail(str(e)) from None
    for note in prepared.notes:
        err.print(f"[cyan]note:[/cyan] {note}")
    if dry_run:
        print(prepared.definition.to_toml(), end="")
        err.print("dry run: nothing written")
        return
    with (connect(database_url(get_settings()), "gisplatform-layer") as conn,
          Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                   transient=True) as bar):
        def factory(total: int):
            task = bar.add_task(f"checking {source.name}", total=total)
            return lambda n: bar.advance(task, n)
        try:
            summary = publish(conn, prepared, source, req, Principal(label=_actor()),
                              _builtin(), progress_factory=factory)
        except PublishFailed as e:
            raise _fail(str(e)) from None
    err.print(summary)


@layer_app.command("list")
def list_layers(as_json: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
    """Every layer: built-in and published (retired ones are hidden)."""
    from gisplatform.registry import published
    from layers import LAYERS

    with connect(database_url(get_settings()), "gisplatform-layer") as conn:
        defs = published.definitions(conn, LAYERS.values())
    for d in defs:
        if as_json:
            print(json.dumps({"name": d.name, "title": d.title, "builtin": d.builtin,
                              "sharing": d.sharing, "department": d.department,
                              "geometry_type": d.geometry_type}, ensure_ascii=False))
        else:
            print(f"{d.name:<24}{'built-in' if d.builtin else 'published':<11}"
                  f"{d.geometry_type:<16}{d.sharing:<15}{d.title}")


@layer_app.command("show")
def show(name: str, history: bool = typer.Option(False, help="Every version of the definition.")
         ) -> None:
    """A layer's definition (TOML), or its history (JSON lines)."""
    from gisplatform.registry import published
    from gisplatform.registry.definition import describe
    from layers import LAYERS

    if name in LAYERS:
        print(describe(LAYERS[name]).to_toml(), end="")
        return
    with connect(database_url(get_settings()), "gisplatform-layer") as conn:
        got = published.current(conn, name)
        if got is None:
            raise _fail(f"no layer {name}", 2)
        if history:
            for h in published.history(conn, name):
                print(json.dumps(h, ensure_ascii=False, default=str))
            return
    definition, action = got
    if action == "retire":
        err.print(f"{name} is retired (kept, read-only, not served)")
    print(definition.to_toml(), end="")


@layer_app.command("alter")
def alter(name: str, spec: Path = typer.Option(..., help="The new definition (TOML): "
                                                         "`layer show NAME` edited.")) -> None:
    """Add attributes, change titles and tile settings; never a destructive change."""
    from gisplatform.registry import published
    from gisplatform.registry.definition import DefinitionError, parse_toml

    try:
        definition = parse_toml(spec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"{spec}: cannot read ({e})") from None
    except DefinitionError as e:
        raise _fail(str(e)) from None
    if definition.name != name:
        raise _fail(f"{spec} defines {definition.name!r}, not {name!r}", 2)
    with connect(database_url(get_settings()), "gisplatform-layer") as conn:
        try:
            with conn.transaction():
                added = published.alter(conn, definition, _actor())
        except published.PublishError as e:
            raise _fail(str(e)) from None
    err.print(f"{name}: altered" + (f", added {', '.join(added)}" if added else ""))


@layer_app.command("retire")
def retire(name: str) -> None:
    """Hide a published layer; its versions are kept."""
    from gisplatform.registry import published

    with connect(database_url(get_settings()), "gisplatform-layer") as conn:
        try:
            with conn.transaction():
                published.retire(conn, name, _actor())
        except published.PublishError as e:
            raise _fail(str(e)) from None
    err.print(f"{name}: retired (its versions are kept)")
