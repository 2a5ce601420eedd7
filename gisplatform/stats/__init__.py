"""Command-centre statistics: monthly time series by admin area (`/api/stats/...`, and the
OGC process `stats-timeseries`).

Each topic is a series per area (the 6-digit GB/T 2260 code of a district or county, from
the record's `division_code`; the city's own code, `StatsCity.code`, is the whole city, the
sum of all records whatever their area) and month (`YYYY-MM`; a month starts at 00:00 of
its first day in the city's time, UTC+8). The city is a parameter: the composition root
passes a `StatsCity` built from layers/fushun.py.

- query.py: the request parameters (`make_query` -> `Query`, `StatsError`), months;
- rollup.py: what is valid at each month start, from the persisted rollup (`Rollup`,
  migration 0012) plus the change feed's delta, or one pass over a version table;
- topics.py: the topics (`TOPICS`: built in, and of published layers) and their
  figures, `compute`, who may see them (`check_access`), CSV;
- routes.py: `GET /api/stats` and `GET /api/stats/{topic}`;
- cli.py: `gisplatform stats rebuild|status`.
"""

from .cli import stats_app
from .query import EVALUATION_GROUPS, StatsCity, StatsError, make_query
from .routes import stats_router
from .topics import TOPICS, check_access, compute, publish_layer_topics, sharing_of

__all__ = ["EVALUATION_GROUPS", "TOPICS", "StatsCity", "StatsError", "check_access", "compute",
           "make_query", "publish_layer_topics", "sharing_of", "stats_app", "stats_router"]
