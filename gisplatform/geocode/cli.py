"""`gisplatform geocode IN.csv OUT.csv --column address [--datetime D]`: a CSV of addresses
geocoded row by row, with a progress bar (batch.py: the columns added, the encodings read).
OUT.csv is written to a temporary file and renamed: nothing is left on error. Exit codes:
1 = the operation failed, 2 = bad usage.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from gisplatform.console import connection, err, fail

from .batch import check_header, decode_csv, geocode_rows, write_csv
from .geocoder import Sources
from .parse import AddressError
from .rank import MATCH


def geocode_command(sources: Callable[[], Sources]):
    def geocode_(
        source: Annotated[Path, typer.Argument(help="CSV with an address column (UTF-8 or GB18030).")],
        out: Annotated[Path, typer.Argument(help="CSV written: the input and the geocode_* columns.")],
        column: str = typer.Option("address", "--column", "-c", help="The address column."),
        datetime: str = typer.Option(None, "--datetime", help="Geocode against the city at this "
                                     "instant (ISO 8601; a bare date is 00:00 +08:00); default now."),
    ) -> None:
        """Geocode every row of a CSV (best candidate, score and level per row)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        from gisplatform.security import ANONYMOUS

        from .routes import instant

        try:
            at = instant(datetime)
        except AddressError as e:
            raise fail(str(e).removeprefix("datetime: "), 2) from None
        try:
            header, rows = decode_csv(source.read_bytes())
        except OSError as e:
            raise fail(f"{source}: cannot read ({e.strerror or e})", 2) from None
        except csv.Error as e:
            raise fail(f"{source}: not a CSV ({e})", 2) from None
        why = check_header(header, column)
        if why:
            raise fail(f"{source}: {why}", 2)
        with (connection("gisplatform-geocode", autocommit=True) as conn,
              Progress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                       transient=True) as bar):
            task = bar.add_task(f"geocoding {source.name}", total=len(rows))
            matched = write_csv(out, header, geocode_rows(conn, sources(), rows, column, at,
                                                          ANONYMOUS),
                                lambda n: bar.update(task, completed=n))
        err.print(f"{len(rows)} rows geocoded: {matched} matched (score ≥ {MATCH}), "
                  f"{len(rows) - matched} not → {out}")
    return geocode_
