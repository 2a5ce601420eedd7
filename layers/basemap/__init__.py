"""The 2D base map of the demo city (二维地图入库): roads, water, place names, points of
interest — published layers, defined as data (the *.toml here, as `gisplatform layer
create --spec` reads them), not Python layers. `load` registers them and loads the
demo's rows (demo.py); a city brings its own with `gisplatform layer create`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from gisplatform.db.distribution import NO_CITUS
from gisplatform.registry import published
from gisplatform.registry.definition import LayerDefinition, parse_toml
from gisplatform.temporal import SCHEMA

from ..demo_common import load_rows

HERE = Path(__file__).parent
ORDER = ("water", "roads", "place-names", "pois")


def definitions() -> list[LayerDefinition]:
    return [parse_toml((HERE / f"{name}.toml").read_text(encoding="utf-8")) for name in ORDER]


def load(conn: psycopg.Connection, ctx, builtin: set[str], replace: bool,
         on_layer: Callable[[str, int, float], None]) -> dict[str, int]:
    """Register the base map layers (once) and load the demo's rows, in the caller's
    transaction; rows per layer. Skipped where layers cannot be published (Citus, no
    registry) and for a layer retired by an operator."""
    from .demo import GENERATORS

    if not published.usable(conn) or not conn.execute("select " + NO_CITUS).fetchone()[0]:
        return {}
    counts = {}
    for d in definitions():
        t = time.perf_counter()
        got = published.current(conn, d.name)
        if got is None:
            published.create(conn, d, "demo", builtin)
        elif got[1] == "retire":
            continue
        else:
            d = got[0]
            table = sql.Identifier(SCHEMA, d.spec().version_table)
            if conn.execute(sql.SQL("select exists (select 1 from {})").format(table)
                            ).fetchone()[0]:
                if not replace:
                    continue  # loaded before: kept as it is
                conn.execute(sql.SQL("truncate {}").format(table))
        counts[d.name] = load_rows(conn, d.spec(), GENERATORS[d.name](ctx))
        on_layer(d.name, counts[d.name], time.perf_counter() - t)
    return counts
