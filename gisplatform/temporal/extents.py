"""A version table's extent in time and space, read from its data.

What OGC collection documents, the Records catalogue and clients such as QGIS's temporal
controller show as a layer's extent. Read in a few index lookups, never a scan of the
table at city size: the earliest `valid_from` through the `<table>_valid_lo` btree index
(spec.index_sql), "open" when some current version is still valid (the first such row
ends the search), the bbox from the planner's statistics (ST_EstimatedExtent, as tipg
does) with an exact ST_Extent only for a table not analysed yet (new, hence small).
The latest `valid_to` is looked up only when no current version is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from .spec import SCHEMA


@dataclass(frozen=True)
class Extent:
    begin: datetime | None  # the earliest valid_from of current knowledge; None: no data
    end: datetime | None  # the latest valid_to; None: open-ended (or no data)
    bbox: tuple[float, float, float, float] | None  # lon/lat (CGCS2000), None: no geometry


EMPTY = Extent(None, None, None)


def read_extent(conn, version_table: str) -> Extent:
    t = sql.Identifier(SCHEMA, version_table)
    row = conn.execute(sql.SQL("""
        with o as (select exists (select 1 from {t} where upper_inf(recorded)
                                  and upper_inf(valid)) as open),
             b as (select coalesce(
                     st_estimatedextent({schema}, {name}, 'geom')::box2d,
                     (select st_extent(geom) from {t} where upper_inf(recorded))) as e)
        select (select lower(valid) from {t} where upper_inf(recorded)
                order by lower(valid) limit 1),
               case when o.open then null
                    else (select max(upper(valid)) from {t} where upper_inf(recorded)) end,
               st_xmin(b.e), st_ymin(b.e), st_xmax(b.e), st_ymax(b.e)
        from o, b""").format(t=t, schema=sql.Literal(SCHEMA),
                             name=sql.Literal(version_table))).fetchone()
    begin, end, *box = row
    return Extent(begin, end if begin is not None else None,
                  tuple(box) if box[0] is not None else None)
