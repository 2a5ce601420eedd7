"""The one parser for instants and intervals. Zone-less timestamps are refused:
a city platform that guesses the zone silently shifts history by eight hours."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from .errors import NaiveTimestampError, TemporalError

# China's one civil time (UTC+8, no daylight saving since 1991): a bare date in a request
# is midnight in it; the city's code (stats months, display, demo) uses this one definition.
BEIJING_TIME = timezone(timedelta(hours=8))


def parse_instant(value: str | datetime) -> datetime:
    """An aware datetime from an ISO 8601 string or datetime; naive ones are an error."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise TemporalError(
                f"{value!r} is not an ISO 8601 timestamp (e.g. 2024-05-01T08:00:00+08:00)"
            ) from None
        if len(text) == 10 and isinstance(date.fromisoformat(text), date):
            raise NaiveTimestampError(
                f"{value!r} is a date without time zone; give e.g. {text}T00:00:00+08:00"
            )
    else:
        raise TemporalError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        raise NaiveTimestampError(
            f"{value!s} has no time zone; add one, e.g. +08:00 (Beijing time) or Z (UTC)"
        )
    return dt


def parse_interval(value: str) -> tuple[datetime | None, datetime | None]:
    """`start/end` with `..` or empty for an open end (OGC API `datetime` style)."""
    if "/" not in value:
        raise TemporalError(f"{value!r} is not an interval start/end")
    start, _, end = value.partition("/")
    lo = None if start.strip() in ("", "..") else parse_instant(start)
    hi = None if end.strip() in ("", "..") else parse_instant(end)
    if lo is not None and hi is not None and hi < lo:
        raise TemporalError(f"interval {value!r} ends before it starts")
    return lo, hi


def city_midnight(text: str) -> str:
    """A bare date in a request (YYYY-MM-DD) means 00:00 in the city's time (UTC+8);
    anything else is returned as given, for the parsers above to judge."""
    t = text.strip()
    if len(t) == 10 and t[4] == "-" and t[7] == "-":
        try:
            return datetime.fromisoformat(t).replace(tzinfo=BEIJING_TIME).isoformat()
        except ValueError:
            return t
    return t


def parse_request_instant(value: str) -> datetime:
    """`datetime=` / `known_at=` as every HTTP path reads an instant."""
    return parse_instant(city_midnight(value))
