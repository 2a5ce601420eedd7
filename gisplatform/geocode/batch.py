"""Geocoding a CSV of addresses (the CLI's `gisplatform geocode` and the HTTP batch job):
per row the best candidate's columns (`COLUMNS`), written atomically.

The output is the input's columns and, per row: `geocode_score` (0–1), `geocode_level`,
`geocode_match` (yes when the score reaches rank.MATCH), the standard `geocode_address`,
`geocode_lon`, `geocode_lat` (EPSG:4490), `geocode_division_code`, `geocode_grid_code`,
`geocode_fid`, and `geocode_error` for a row that is no address query (empty, too long,
control characters). Input in UTF-8 (with or without a BOM) or GB18030 (what Excel writes in
China); output in UTF-8 with a BOM, which Excel opens.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .geocoder import Sources, geocode
from .parse import AddressError, check_query
from .rank import MATCH

COLUMNS = ("geocode_score", "geocode_level", "geocode_match", "geocode_address", "geocode_lon",
           "geocode_lat", "geocode_division_code", "geocode_grid_code", "geocode_fid",
           "geocode_error")


def decode_csv(data: bytes) -> tuple[list[str], list[dict]]:
    """Header and rows of a CSV in UTF-8 (with or without a BOM) or GB18030; csv.Error
    when it is not one."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise csv.Error("neither UTF-8 nor GB18030 text")
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


def check_header(header: list[str], column: str) -> str | None:
    """Why the CSV cannot be geocoded on `column`, or None."""
    if column not in header:
        return f"no column {column!r}; columns: {', '.join(header)}"
    clash = [c for c in COLUMNS if c in header]
    if clash:
        return f"it already has {', '.join(clash)} (geocoded before?)"
    return None


def write_csv(out: Path, header: list[str], rows: Iterator[dict], progress=None) -> int:
    """`rows` (geocode_rows) written to `out` through a temporary file renamed at the end
    (nothing is left on error); how many matched. `progress(n)` after each row."""
    matched = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as f:
            writer = csv.DictWriter(f, [*header, *COLUMNS], extrasaction="ignore")
            writer.writeheader()
            for n, row in enumerate(rows, 1):
                writer.writerow(row)
                matched += row["geocode_match"] == "yes"
                if progress is not None:
                    progress(n)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return matched
