"""The app's connection pools (psycopg 3): async for the app, sync for pygeoapi's threads.

Both ride out a database restart by themselves:
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

from psycopg_pool import AsyncConnectionPool, ConnectionPool

RECONNECT_TIMEOUT = 5.0
# parallel plans cost more than small tile/feature queries (14x slower tiles here)
OPTIONS = "-c max_parallel_workers_per_gather=0 -c timezone=Asia/Shanghai"


def make_pool(url: str, min_size: int = 1, max_size: int = 10,
              timeout: float = 10.0) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
        reconnect_timeout=RECONNECT_TIMEOUT, check=AsyncConnectionPool.check_connection,
        kwargs={"application_name": "gisplatform", "options": OPTIONS},
    )


def make_sync_pool(url: str, min_size: int = 1, max_size: int = 8,
                   timeout: float = 10.0) -> ConnectionPool:
    return ConnectionPool(
        url, min_size=min_size, max_size=max_size, open=True, timeout=timeout,
        reconnect_timeout=RECONNECT_TIMEOUT, check=ConnectionPool.check_connection,
        kwargs={"application_name": "gisplatform-ogc", "options": OPTIONS},
    )
