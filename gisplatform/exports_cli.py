"""`gisplatform export …` and `gisplatform opendata …` (the composition root registers them).

    export LAYER OUT.(gpkg|geojson|csv|parquet) [--datetime T] [--known-at K] [--crs C]
                                                  [--history] [--token SECRET]
    opendata publish [--layer L …] [--keep N]
    opendata list

Who the command acts as: with `--token` (or GISPLATFORM_TOKEN, which keeps the secret out
of the shell history) the token's department and grants, exactly as over HTTP; without one,
the anonymous public: personal fields masked and conditionally shared layers refused. The
operator gets no silent superuser path: unmasking needs a `read_personal` grant, and every
unmasked export is audited with the token's id.

Exit codes: 1 = the export failed or was refused (no grant, unwritable path, database),
2 = bad usage (unknown layer, file suffix, CRS or instant).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)


def _fail(msg: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {msg}", highlight=False)
    return typer.Exit(code)


def _url() -> str:
    from gisplatform.config import get_settings
    from gisplatform.db.embedded import EmbeddedError, database_url

    try:
        return database_url(get_settings())
    except EmbeddedError as e:
        raise _fail(str(e)) from None


def _principal(url: str, secret: str | None):
    import psycopg

    from gisplatform.security import ANONYMOUS, AuthError, principal_for_token

    if not secret:
        return ANONYMOUS
    try:
        with psycopg.connect(url) as conn:
            return principal_for_token(conn, secret.strip())
    except AuthError as e:
        raise _fail(f"--token: {e}") from None
    except psycopg.OperationalError as e:
        raise _fail(f"cannot connect to the database: {str(e).strip().splitlines()[0]}") from None


def export_command(layers: Callable[[], Mapping[str, object]]):
    def export_(
        layer: Annotated[str, typer.Argument(help="Layer id, e.g. buildings, persons.")],
        out: Annotated[Path, typer.Argument(help="Output file: .gpkg, .geojson, .csv or "
                                            ".parquet (GeoParquet); replaced if it exists.")],
        datetime: str = typer.Option(None, "--datetime", help="Snapshot instant (ISO 8601; a "
                                     "bare date is 00:00 +08:00); default now."),
        known_at: str = typer.Option(None, "--known-at", help="As the platform knew it then "
                                     "(transaction time); default current knowledge."),
        crs: str = typer.Option(None, help="Output CRS: EPSG:4490 (default; GeoJSON: CRS84), "
                                "EPSG:4326, CRS84, EPSG:3857, EPSG:4529/4530/4550/4551."),
        history: bool = typer.Option(False, help="Every version, with recorded_from/"
                                     "recorded_to, instead of one snapshot."),
        token: str = typer.Option(None, envvar="GISPLATFORM_TOKEN", show_envvar=True,
                                  help="Act as this token's department (its grants decide "
                                  "masking); default: anonymous, masked."),
    ) -> None:
        """Export a layer's snapshot (or history) to a file, masked unless the token's grant
        unmasks; written atomically (nothing is left on error)."""
        import psycopg
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from gisplatform.exports import (
            ExportError,
            ExportRefused,
            export,
            format_of,
            make_request,
        )

        known = layers()
        try:
            req = make_request(known, layer, format_of(out), datetime, known_at, crs, history)
        except ExportError as e:
            raise _fail(str(e), 2) from None
        url = _url()
        principal = _principal(url, token)
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task(f"{layer} → {out.name}", total=None)
            try:
                r = export(url, known[layer], req, principal, out, client="cli",
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total))
            except ExportRefused as e:
                hint = "" if principal.token_id else " (give --token)"
                raise _fail(f"{e}{hint}") from None
            except ExportError as e:
                raise _fail(str(e)) from None
            except psycopg.OperationalError as e:
                raise _fail(f"database: {str(e).strip().splitlines()[0]}") from None
            except OSError as e:
                raise _fail(f"cannot write {out}: {e.strerror or e}") from None
        rate = r.rows / r.seconds if r.seconds else 0
        err.print(f"{r.rows:,} rows of {layer} ({'unmasked, audited' if r.unmasked else 'masked'}"
                  f"{', history' if req.history else ''}, at {r.at.isoformat(timespec='seconds')}"
                  f", {req.crs}) → {out} in {r.seconds:.1f}s ({rate:,.0f} rows/s)",
                  highlight=False)
    return export_


def opendata_app(layers: Callable[[], Mapping[str, object]]) -> typer.Typer:
    app = typer.Typer(help="Open data: unconditionally shared layers as versioned downloads.",
                      no_args_is_help=True)

    @app.command("publish")
    def publish_(
        layer: Annotated[list[str] | None, typer.Option(
            "--layer", "-l", help="Only this layer (repeatable); default every "
            "unconditional layer.")] = None,
        keep: int = typer.Option(None, help="Versions kept per layer (default "
                                 "GISPLATFORM_OPENDATA_KEEP, 5)."),
    ) -> None:
        """Publish a new version of each layer whose data changed since its last one."""
        import psycopg

        from gisplatform.config import get_settings
        from gisplatform.exports import ExportError
        from gisplatform.opendata import publish
        from gisplatform.security import UNCONDITIONAL

        known, layer = layers(), layer or []
        unknown = [n for n in layer if n not in known]
        if unknown:
            raise _fail(f"unknown layer {unknown[0]!r}; layers: {', '.join(known)}", 2)
        chosen = [known[n] for n in layer] or [
            v for v in known.values() if v.sharing == UNCONDITIONAL]
        s = get_settings()
        url = _url()
        with err.status("publishing open data") as st:
            def report(p):
                st.update(f"publishing open data after {p.layer}")
                err.print(f"  {p.layer:<22}" + ("unchanged" if p.unchanged else
                                                f"{p.version}  {p.rows:,} rows"), highlight=False)
            try:
                publish(url, chosen, s.data_dir, keep=keep or s.opendata_keep,
                        license=s.opendata_license, public_url=s.public_url, on_layer=report)
            except ExportError as e:
                raise _fail(str(e)) from None
            except psycopg.OperationalError as e:
                raise _fail(f"database: {str(e).strip().splitlines()[0]}") from None
            except OSError as e:
                raise _fail(f"cannot write under {s.data_dir}: {e.strerror or e}") from None

    @app.command("list")
    def list_() -> None:
        """Published layers and their versions."""
        from gisplatform.config import get_settings
        from gisplatform.opendata import root, versions

        base = root(get_settings().data_dir)
        names = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
        for name in names:
            vs = versions(get_settings().data_dir, name)
            if vs:
                typer.echo(f"{name}\t{len(vs)}\t{vs[-1]}")

    return app
