"""`gisplatform export …` (the composition root registers it).

    export LAYER OUT.(gpkg|geojson|csv|parquet) [--datetime T] [--known-at K] [--crs C]
                                                  [--history] [--token SECRET]

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

from gisplatform.console import database_url, err, fail
from gisplatform.console import principal as principal_of


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

        from .files import (
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
            raise fail(str(e), 2) from None
        url = database_url()
        principal = principal_of(url, token, "gisplatform-export")
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
                raise fail(f"{e}{hint}") from None
            except ExportError as e:
                raise fail(str(e)) from None
            except psycopg.OperationalError as e:
                raise fail(f"database: {str(e).strip().splitlines()[0]}") from None
            except OSError as e:
                raise fail(f"cannot write {out}: {e.strerror or e}") from None
        rate = r.rows / r.seconds if r.seconds else 0
        err.print(f"{r.rows:,} rows of {layer} ({'unmasked, audited' if r.unmasked else 'masked'}"
                  f"{', history' if req.history else ''}, at {r.at.isoformat(timespec='seconds')}"
                  f", {req.crs}) → {out} in {r.seconds:.1f}s ({rate:,.0f} rows/s)",
                  highlight=False)
    return export_
