"""The case clock: a time limit in calendar hours or in working hours (应用维护).

Working hours are the periods of a working day (Settings.case_working_hours, Beijing time,
by default 08:30–12:00 and 13:30–17:30), on Monday to Friday, except the days the work
calendar (`city.work_calendar`, migration 0025) says otherwise: public holidays are not
working days, and the weekend days the State Council moves work to (调休) are. A limit of
8 working hours dispatched on Friday at 16:00 ends on Monday at 15:00.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import psycopg

from gisplatform.temporal import BEIJING_TIME

UNITS = ("calendar", "working")
PERIOD = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
MAX_DAYS = 3 * 366 + 60  # a year of working hours fits well inside this span


def parse_periods(text: str) -> tuple[tuple[time, time], ...]:
    """'08:30-12:00,13:30-17:30' → the periods, in order, not overlapping. ValueError."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        m = PERIOD.match(part)
        if not m:
            raise ValueError(f"working hours: HH:MM-HH:MM[,HH:MM-HH:MM…], got {part!r}")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"working hours: {part!r} is not a time of day")
        lo = time(h1, m1)
        hi = time.max if h2 == 24 else time(h2, m2)
        if hi <= lo or (out and lo < out[-1][1]):
            raise ValueError(f"working hours: {part!r} is empty or overlaps the one before")
        out.append((lo, hi))
    if not out:
        raise ValueError("working hours: at least one period")
    return tuple(out)


@dataclass(frozen=True)
class Clock:
    """Working time over `periods` on Monday–Friday, with `days` (date → working?) as the
    exceptions of the work calendar."""
    periods: tuple[tuple[time, time], ...]
    days: dict[date, bool] = field(default_factory=dict)

    def working_day(self, d: date) -> bool:
        return self.days.get(d, d.weekday() < 5)

    def _spans(self, start: datetime):
        """The working spans from `start` on, in order (Beijing time, aware)."""
        local = start.astimezone(BEIJING_TIME)
        day = local.date()
        for _ in range(MAX_DAYS):
            if self.working_day(day):
                for lo, hi in self.periods:
                    a = datetime.combine(day, lo, BEIJING_TIME)
                    b = (datetime.combine(day + timedelta(days=1), time(0), BEIJING_TIME)
                         if hi == time.max else datetime.combine(day, hi, BEIJING_TIME))
                    if b > local:
                        yield max(a, local), b
            day += timedelta(days=1)
        raise ValueError("the work calendar has no working time within three years")

    def add(self, start: datetime, hours: float, unit: str) -> datetime:
        """The instant `hours` of `unit` time after `start`."""
        if unit == "calendar":
            return start + timedelta(hours=hours)
        left = timedelta(hours=hours)
        for a, b in self._spans(start):
            if b - a >= left:
                return a + left
            left -= b - a
        raise AssertionError("unreachable")  # _spans raises first

    def between(self, a: datetime, b: datetime, unit: str) -> timedelta:
        """The `unit` time from `a` to `b` (negative when b is before a)."""
        if unit == "calendar":
            return b - a
        if b < a:
            return -self.between(b, a, unit)
        total = timedelta(0)
        for lo, hi in self._spans(a):
            if lo >= b:
                break
            total += min(hi, b) - lo
        return total


def load_clock(conn: psycopg.Connection, periods: str) -> Clock:
    """The clock of the working hours `periods` and the work calendar as it stands."""
    rows = conn.execute("select day, working from city.work_calendar").fetchall()
    return Clock(parse_periods(periods), dict(rows))
