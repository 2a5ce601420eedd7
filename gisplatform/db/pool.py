"""The app's connection pool (psycopg 3, async)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool


def make_pool(url: str, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    # check_connection: a connection broken by a database restart is replaced on
    # checkout instead of failing a request.
    return AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        check=AsyncConnectionPool.check_connection,
        # parallel plans cost more than small tile/feature queries (14x slower tiles here)
        kwargs={"application_name": "gisplatform",
                "options": "-c max_parallel_workers_per_gather=0 -c timezone=Asia/Shanghai"},
    )
