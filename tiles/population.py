"""Population counts (migration 0017) behind the population-grid tiles and collections.

city.population_by_grid / population_by_area count the persons inside each grid cell or
district at an instant. Joined directly, a low-zoom tile tests every person of the city
against the district polygons (9–16 s cold at city size for a z8–11 tile). Once built,
the counts are kept per area version and month as changes (the tile pyramid's scheme,
tiles/pyramid.py), and the functions read the months before T from them plus the persons
starting or ending in T's month up to T: the same numbers at every instant
(tests/test_population_counts.py compares them with the join at many instants, before and
after writes of every kind).

`build` counts everything and attaches the statement triggers that keep the counts exact
in every writing transaction (persons, grid cells, admin areas), under a lock that holds
writers back; `ensure` builds them when missing (`gisplatform up` and every app start,
wiring.build_derived). Not on Citus, where the triggers would run per shard: there the
functions keep joining.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from gisplatform.db.distribution import NO_CITUS, population_trigger_names

from .pyramid import TRIGGER_EVENTS, lock_and_attach

# table -> its trigger function (migration 0017)
TRIGGERS = {"persons_version": "population_counts_persons_log",
            "grid_cells_version": "population_counts_areas_log",
            "admin_areas_version": "population_counts_areas_log"}


def usable(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "select to_regclass('city.population_counts') is not null and " + NO_CITUS
        + "".join(f" and to_regclass('city.{t}') is not null" for t in TRIGGERS)).fetchone()[0]


def built(conn: psycopg.Connection) -> bool:
    """Counted, and every trigger keeping the counts in place."""
    return conn.execute(
        "select exists (select 1 from city.population_counts_state) and (select count(*)"
        " from pg_trigger where tgname = any(%s)) = %s",
        ([n for t in TRIGGERS for n in population_trigger_names(t)],
         len(TRIGGERS) * len(TRIGGER_EVENTS))).fetchone()[0]


def build(conn: psycopg.Connection) -> float:
    """Count anew and attach the triggers; seconds taken. Writers of persons and areas
    wait meanwhile (SHARE locks), so nothing is missed or counted twice."""
    t0 = time.perf_counter()
    with conn.transaction():
        for table, fn in TRIGGERS.items():
            lock_and_attach(conn, table, population_trigger_names(table),
                            sql.SQL("{}()").format(sql.Identifier("city", fn)))
        conn.execute("select city.population_counts_build()")
    return time.perf_counter() - t0


def ensure(conn: psycopg.Connection) -> float | None:
    """Build the counts when they are missing; seconds taken, or None."""
    if not usable(conn) or built(conn):
        return None
    return build(conn)
