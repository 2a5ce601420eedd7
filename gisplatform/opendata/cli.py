"""`gisplatform opendata …` (the composition root registers it).

    opendata publish [--layer L …] [--keep N]
    opendata list

Exit codes: 1 = the publication failed (database, unwritable data directory),
2 = bad usage (unknown layer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

import typer

from gisplatform.console import database_url, err, fail


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
        from gisplatform.security import UNCONDITIONAL

        from .publication import publish

        known, layer = layers(), layer or []
        unknown = [n for n in layer if n not in known]
        if unknown:
            raise fail(f"unknown layer {unknown[0]!r}; layers: {', '.join(known)}", 2)
        chosen = [known[n] for n in layer] or [
            v for v in known.values() if v.sharing == UNCONDITIONAL]
        s = get_settings()
        url = database_url()
        with err.status("publishing open data") as st:
            def report(p):
                st.update(f"publishing open data after {p.layer}")
                err.print(f"  {p.layer:<22}" + ("unchanged" if p.unchanged else
                                                f"{p.version}  {p.rows:,} rows"), highlight=False)
            try:
                publish(url, chosen, s.data_dir, keep=keep or s.opendata_keep,
                        license=s.opendata_license, public_url=s.public_url, on_layer=report)
            except ExportError as e:
                raise fail(str(e)) from None
            except psycopg.OperationalError as e:
                raise fail(f"database: {str(e).strip().splitlines()[0]}") from None
            except OSError as e:
                raise fail(f"cannot write under {s.data_dir}: {e.strerror or e}") from None

    @app.command("list")
    def list_() -> None:
        """Published layers and their versions."""
        from gisplatform.config import get_settings

        from .publication import root, versions

        base = root(get_settings().data_dir)
        names = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
        for name in names:
            vs = versions(get_settings().data_dir, name)
            if vs:
                typer.echo(f"{name}\t{len(vs)}\t{vs[-1]}")

    return app
