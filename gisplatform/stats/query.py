"""The parameters of a statistics request: months, `Query`, `make_query`, `StatsError`.

A month is `YYYY-MM` and starts at 00:00 of its first day in the city's time (UTC+8,
`gisplatform.temporal.BEIJING_TIME`). The city itself (`StatsCity`: its code, the whole
city's series, and the default first month) is passed in by the composition root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from gisplatform.temporal import BEIJING_TIME, TemporalError, parse_request_instant

MAX_MONTHS = 600
EVALUATION_GROUPS = ("area", "department", "grid")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_AREA = re.compile(r"^\d{6}$")


class StatsError(ValueError):
    """A bad request parameter: HTTP 400 with this message."""


@dataclass(frozen=True)
class StatsCity:
    """The city the statistics are of (layers/fushun.py, passed by the composition root)."""
    code: str  # its 6-digit GB/T 2260 code: the whole city's series
    name: str  # the whole city's name where city.admin_areas has no row for it
    first_month: str  # YYYY-MM: the default first month


def parse_month(text: str, what: str) -> tuple[int, int]:
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or not 1900 <= int(m.group(1)) <= 2200:
        raise StatsError(f"{what}: expected a month YYYY-MM (e.g. 2018-01), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def month_starts(first: tuple[int, int], last: tuple[int, int]) -> list[datetime]:
    """Month starts (00:00 UTC+8) from `first` to `last`, both included."""
    (y, m), out = first, []
    while (y, m) <= last:
        out.append(datetime(y, m, 1, tzinfo=BEIJING_TIME))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def current_month() -> str:
    return datetime.now(BEIJING_TIME).strftime("%Y-%m")


@dataclass(frozen=True)
class Query:
    topic: str
    months: tuple[datetime, ...]
    city: StatsCity
    area: str | None = None
    by: str = "area"
    known_at: datetime | None = None

    @property
    def labels(self) -> list[str]:
        return [m.strftime("%Y-%m") for m in self.months]


def make_query(topic: str, start: str | None = None, end: str | None = None,
               area: str | None = None, by: str | None = None,
               known_at: str | None = None, *, city: StatsCity) -> Query:
    """Validated parameters (StatsError says what is wrong)."""
    from .topics import TOPICS  # topics.py imports this module

    if topic not in TOPICS:
        raise StatsError(f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
    first = parse_month(start or city.first_month, "from")
    last = parse_month(end or current_month(), "to")
    if last < first:
        raise StatsError(f"to ({end}) is before from ({start or city.first_month})")
    months = month_starts(first, last)
    if len(months) > MAX_MONTHS:
        raise StatsError(f"at most {MAX_MONTHS} months per request")
    if area is not None and not _AREA.match(area.strip()):
        raise StatsError(f"area: a 6-digit GB/T 2260 code (e.g. 210402), got {area!r}")
    if by is not None and topic != "evaluation":
        raise StatsError("by= applies to the evaluation topic only")
    by = by or "area"
    if by not in EVALUATION_GROUPS:
        raise StatsError(f"by: one of {', '.join(EVALUATION_GROUPS)}, got {by!r}")
    at = None
    if known_at:
        try:
            at = parse_request_instant(known_at)
        except TemporalError as e:
            raise StatsError(f"known_at: {e}") from None
    return Query(topic, tuple(months), city, area.strip() if area else None, by, at)
