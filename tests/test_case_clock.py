"""The case clock (gisplatform/cases/clock.py): working hours against a minute-by-minute
count, the work calendar's holidays and moved working days, calendar hours."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gisplatform.cases.clock import Clock, parse_periods
from gisplatform.temporal import BEIJING_TIME

DAY = "08:30-12:00,13:30-17:30"
# 2026: 10-01 … 10-08 National Day off, Sunday 09-27 and Saturday 10-10 worked (调休)
HOLIDAYS = {**{date(2026, 10, d): False for d in range(1, 9)},
            date(2026, 9, 27): True, date(2026, 10, 10): True}
CLOCK = Clock(parse_periods(DAY), HOLIDAYS)


def bj(*args) -> datetime:
    return datetime(*args, tzinfo=BEIJING_TIME)


def working_minute(t: datetime) -> bool:
    """The reference, written out: is the minute starting at t (Beijing) working time?"""
    t = t.astimezone(BEIJING_TIME)
    day = HOLIDAYS.get(t.date(), t.weekday() < 5)
    clock = t.time()
    return day and (time(8, 30) <= clock < time(12) or time(13, 30) <= clock < time(17, 30))


def add_by_minutes(start: datetime, minutes: int) -> datetime:
    t = start
    while minutes:
        if working_minute(t):
            minutes -= 1
        t += timedelta(minutes=1)
    return t


def test_examples():
    # Friday 16:00 + 8 working hours: 1.5 h Friday, 3.5 + 3 h Monday → Monday 16:30
    assert CLOCK.add(bj(2026, 11, 27, 16), 8, "working") == bj(2026, 11, 30, 16, 30)
    # at a period's end exactly: the limit ends there, not at the next period's start
    assert CLOCK.add(bj(2026, 11, 30, 8, 30), 3.5, "working") == bj(2026, 11, 30, 12)
    # at lunch or at night the clock waits for the next period
    assert CLOCK.add(bj(2026, 11, 30, 12, 30), 1, "working") == bj(2026, 11, 30, 14, 30)
    assert CLOCK.add(bj(2026, 11, 30, 22), 1, "working") == bj(2026, 12, 1, 9, 30)
    # National Day: from 09-30 17:00, the next working time is 10-09 (10-10 is worked)
    assert CLOCK.add(bj(2026, 9, 30, 17), 1, "working") == bj(2026, 10, 9, 9)
    assert CLOCK.add(bj(2026, 10, 9, 17), 1, "working") == bj(2026, 10, 10, 9)
    assert CLOCK.add(bj(2026, 9, 26, 12), 1, "working") == bj(2026, 9, 27, 9, 30)
    # calendar hours ignore all of it, in any zone
    t = datetime(2026, 9, 30, 9, 0, tzinfo=BEIJING_TIME)
    assert CLOCK.add(t, 48, "calendar") == t + timedelta(hours=48)
    assert CLOCK.between(t, t + timedelta(hours=5), "calendar") == timedelta(hours=5)


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 9, 20), max_value=datetime(2026, 10, 20)),
       st.integers(min_value=1, max_value=16 * 60))
def test_working_time_equals_a_minute_count(start, minutes):
    start = start.replace(second=0, microsecond=0, tzinfo=BEIJING_TIME)
    end = CLOCK.add(start, minutes / 60, "working")
    assert end == add_by_minutes(start, minutes)
    assert CLOCK.between(start, end, "working") == timedelta(minutes=minutes)
    assert CLOCK.between(end, start, "working") == -timedelta(minutes=minutes)


def test_periods_are_checked():
    assert parse_periods("09:00-17:00") == ((time(9), time(17)),)
    assert parse_periods("00:00-24:00")[0][1] == time.max
    for bad in ("", "9-17", "09:00-08:00", "08:00-12:00,11:00-13:00", "25:00-26:00",
                "08:00-24:30", "08:60-09:00"):
        with pytest.raises(ValueError):
            parse_periods(bad)


def test_a_calendar_without_working_days_is_an_error_not_a_hang():
    never = Clock(parse_periods(DAY), {date(2026, 1, 1) + timedelta(days=i): False
                                       for i in range(4 * 366)})
    with pytest.raises(ValueError, match="no working time"):
        never.add(bj(2026, 1, 1), 1, "working")
