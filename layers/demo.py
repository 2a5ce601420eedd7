"""`gisplatform demo`: load the deterministic Fushun demo city, all layers, in one transaction."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg import sql

from gisplatform.security import read_pseudonym_key
from gisplatform.temporal import SCHEMA

from . import LAYERS, basemap
from .base import demo as base
from .cctv import demo as cctv
from .city_management import demo as cm
from .demo_common import SIZES, Ctx, load_rows, today_cst
from .housing import demo as housing
from .legal_person import demo as legal
from .population import demo as population

# Order matters: later generators place things in what earlier ones built.
GENERATORS: tuple[tuple[str, Callable], ...] = (
    ("admin-areas", base.admin_areas),
    ("grid-cells", base.grid_cells),
    ("buildings", housing.buildings),
    ("addresses", base.addresses),
    ("housing-units", housing.housing_units),
    ("persons", population.persons),
    ("legal-persons", legal.legal_persons),
    ("cameras", cctv.cameras),
    ("components", cm.components),
    ("cases", cm.cases),
    ("responsibility-zones", cm.responsibility_zones),
)


class DemoRefused(Exception):
    pass


def is_empty(conn: psycopg.Connection) -> bool:
    return not any(
        conn.execute(sql.SQL("select exists (select 1 from {})").format(
            sql.Identifier(SCHEMA, layer.spec.version_table))).fetchone()[0]
        for layer in LAYERS.values())


def clear(conn: psycopg.Connection) -> None:
    tables = [sql.Identifier(SCHEMA, layer.spec.version_table) for layer in LAYERS.values()]
    tables.append(sql.Identifier(SCHEMA, "case_steps"))
    if conn.execute("select to_regclass('city.case_photos')").fetchone()[0] is not None:
        tables.append(sql.Identifier(SCHEMA, "case_photos"))  # rows of the cases replaced
    conn.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(tables)))


def load_demo(conn: psycopg.Connection, size: str = "small", seed: int = 42,
              until: datetime | None = None, replace: bool = False,
              on_layer: Callable[[str, int, float], None] = lambda name, n, s: None) -> dict[str, int]:
    """Generate and load every layer; returns rows (versions) per layer. All or nothing."""
    if size not in SIZES:
        raise DemoRefused(f"size is one of {', '.join(SIZES)}")
    ctx = Ctx(SIZES[size], seed, until or today_cst(), read_pseudonym_key(conn))
    counts: dict[str, int] = {}
    # Generation (Python) runs one layer ahead of loading (the server building indexes):
    # the two use different cores. The generators only talk to each other via ctx.
    ahead: queue.Queue = queue.Queue(maxsize=1)

    def produce():
        try:
            for name, generate in GENERATORS:
                ahead.put((name, generate(ctx)))
        except BaseException as e:  # handed to the loading thread, which re-raises it
            ahead.put((None, e))

    with conn.transaction():
        if not is_empty(conn):
            if not replace:
                raise DemoRefused("the layers already hold data; use --replace to wipe and reload")
            clear(conn)
        producer = threading.Thread(target=produce, name="demo-generator", daemon=True)
        producer.start()
        for _ in GENERATORS:
            t = time.perf_counter()
            name, rows = ahead.get()
            if name is None:
                raise rows
            counts[name] = load_rows(conn, LAYERS[name].spec, rows)
            on_layer(name, counts[name], time.perf_counter() - t)
        t = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                "copy city.case_steps (case_number, step, at, actor, note) from stdin") as cp:
            for row in ctx.shared["case_steps"]:
                cp.write_row(row)
        counts["case-steps"] = len(ctx.shared["case_steps"])
        on_layer("case-steps", counts["case-steps"], time.perf_counter() - t)
        # the 2D base map: published layers, defined as data (layers/basemap/)
        counts.update(basemap.load(conn, ctx, set(LAYERS), replace, on_layer))
        conn.execute("analyze")
    return counts
