"""The one place connections to the platform's database are made (psycopg 3).

Every connection gets the same session: no parallel gather (parallel plans cost more than
the small tile and feature queries: tiles were 14x slower here), no JIT (compiling took
0.5-0.6 s of a 0.8-1.4 s city-size tile, whose estimate the planner overrates; the
statistics turned it off per statement for the same reason) and the city's civil time
zone (timestamps read back as text, e.g. in CSV exports and the CLI, are in Beijing time).

- `make_pool` / `make_sync_pool`: the app's pools, built once by `create_app` from the
  settings it is given (async for FastAPI routes, sync for pygeoapi's threads), opened
  and closed by its lifespan;
- `connect` / `aconnect`: one connection, for CLIs, jobs and LISTEN loops.

Both pools ride out a database restart by themselves:
- `check`: a connection broken by the restart is replaced on checkout instead of failing
  a request;
- `timeout`: a request waits at most this long for a connection, then gets PoolTimeout
  (the app answers 503), so nothing hangs while the database is down;
- `reconnect_timeout`: psycopg_pool retries a failed connect with a backoff that doubles
  without bound (1, 2, 4 … 64 s) until this many seconds have passed; 5 s keeps the gap
  between attempts at a few seconds, and the next request after a given-up attempt starts
  a fresh one at once — so the app is back within seconds of the database, however long
  the outage was.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

RECONNECT_TIMEOUT = 5.0
OPTIONS = "-c max_parallel_workers_per_gather=0 -c jit=off -c timezone=Asia/Shanghai"


def _session(url: str, application_name: str) -> dict:
    """The session parameters for a connection to `url`. What the URL itself sets wins: an
    operator's (or a test's) `application_name`, and `options` given there come first."""
    given = conninfo_to_dict(url)
    out = {"options": f"{given['options']} {OPTIONS}" if given.get("options") else OPTIONS}
    if "application_name" not in given:
        out["application_name"] = application_name
    return out


def connect(url: str, application_name: str = "gisplatform-cli", **kwargs) -> psycopg.Connection:
    """One connection with the platform's session options (kwargs: autocommit, …)."""
    return psycopg.connect(url, **_session(url, application_name), **kwargs)


async def aconnect(url: str, application_name: str = "gisplatform",
                   **kwargs) -> psycopg.AsyncConnection:
    """One async connection with the platform's session options (LISTEN loops)."""
    return await psycopg.AsyncConnection.connect(url, **_session(url, application_name),
                                                 **kwargs)


def make_pool(url: str, min_size: int = 1, max_size: int = 10,
              timeout: float = 10.0) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
        reconnect_timeout=RECONNECT_TIMEOUT, check=AsyncConnectionPool.check_connection,
        kwargs=_session(url, "gisplatform"))


def make_sync_pool(url: str, min_size: int = 1, max_size: int = 8,
                   timeout: float = 10.0) -> ConnectionPool:
    return ConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
        reconnect_timeout=RECONNECT_TIMEOUT, check=ConnectionPool.check_connection,
        kwargs=_session(url, "gisplatform-ogc"))
