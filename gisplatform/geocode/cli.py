"""`gisplatform geocode IN.csv OUT.csv --column address [--datetime D]`: a CSV of addresses
geocoded row by row, with a progress bar.

OUT.csv is IN.csv's columns and, per row, the best candidate: `geocode_score` (0–1),
`geocode_level`, `geocode_match` (yes when the score reaches rank.MATCH), the standard
`geocode_address`, `geocode_lon`, `geocode_lat` (EPSG:4490), `geocode_division_code`,
`geocode_grid_code`, `geocode_fid`, and `geocode_error` for a row that is no address query
(empty, too long, control characters). IN.csv may be UTF-8 (with or without a BOM) or
GB18030 (what Excel writes in China); OUT.csv is UTF-8 with a BOM, which Excel opens.
OUT.csv is written to a temporary file and renamed: nothing is left on error. Exit codes:
1 = the operation failed, 2 = bad usage.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from gisplatform.console import connection, err, fail

from .geocoder import Sources, geocode
from .parse import AddressError, check_query
from .rank import MATCH

COLUMNS = ("geocode_score", "geocode_level", "geocode_match", "geocode_address", "geocode_lon",
           "geocode_lat", "geocode_division_code", "geocode_grid_code", "geocode_fid",
           "geocode_error")


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """Header and rows of a CSV in UTF-8 or GB18030."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover -- gb18030 decodes any byte string
        raise ValueError("neither UTF-8 nor GB18030")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def geocode_rows(conn, sources: Sources, rows: list[dict], column: str, at,
                 principal) -> Iterator[dict]:
    """Each row with its best candidate's columns (COLUMNS)."""
    for row in rows:
        out = dict.fromkeys(COLUMNS, "")
        try:
            text = check_query(row.get(column) or "")
        except AddressError as e:
            out["geocode_error"] = str(e).removeprefix("q: ")
            yield {**row, **out}
            continue
        best = geocode(conn, sources, text, at, 1, principal)
        if best:
            c = best[0]
            out.update(geocode_score=c.score, geocode_level=c.level,
                       geocode_match="yes" if c.score >= MATCH else "no",
                       geocode_address=c.address, geocode_lon=round(c.lon, 7),
                       geocode_lat=round(c.lat, 7), geocode_division_code=c.division_code or "",
                       geocode_grid_code=c.grid_code or "", geocode_fid=c.fid)
        else:
            out["geocode_match"] = "no"
        yield {**row, **out}


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
            header, rows = read_csv(source)
        except OSError as e:
            raise fail(f"{source}: cannot read ({e.strerror or e})", 2) from None
        except csv.Error as e:
            raise fail(f"{source}: not a CSV ({e})", 2) from None
        if column not in header:
            raise fail(f"{source}: no column {column!r}; columns: {', '.join(header)}", 2)
        clash = [c for c in COLUMNS if c in header]
        if clash:
            raise fail(f"{source}: already has {', '.join(clash)} (geocoded before?)", 2)
        matched = 0
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
        try:
            with (os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as f,
                  connection("gisplatform-geocode", autocommit=True) as conn,
                  Progress("[progress.description]{task.description}", BarColumn(),
                           MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                           transient=True) as bar):
                writer = csv.DictWriter(f, [*header, *COLUMNS], extrasaction="ignore")
                writer.writeheader()
                task = bar.add_task(f"geocoding {source.name}", total=len(rows))
                for row in geocode_rows(conn, sources(), rows, column, at, ANONYMOUS):
                    writer.writerow(row)
                    matched += row["geocode_match"] == "yes"
                    bar.advance(task)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        err.print(f"{len(rows)} rows geocoded: {matched} matched (score ≥ {MATCH}), "
                  f"{len(rows) - matched} not → {out}")
    return geocode_
