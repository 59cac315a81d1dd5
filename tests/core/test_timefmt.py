"""A site's calendar day in the UTC the database keeps, east and west of Greenwich."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from shengtu.timefmt import day_in_utc


@pytest.mark.parametrize(
    ("tz", "start", "end"),
    [
        ("Asia/Shanghai", datetime(2024, 5, 9, 16), datetime(2024, 5, 10, 16)),
        ("UTC", datetime(2024, 5, 10), datetime(2024, 5, 11)),
        # West of UTC: the day starts after UTC's midnight, not the day before.
        ("America/New_York", datetime(2024, 5, 10, 4), datetime(2024, 5, 11, 4)),
    ],
)
def test_a_local_day_is_its_own_24_hours_in_utc(tz: str, start: datetime, end: datetime) -> None:
    assert day_in_utc(date(2024, 5, 10), tz) == (start, end)


def test_a_day_the_clocks_change_is_23_or_25_hours() -> None:
    spring = day_in_utc(date(2024, 3, 10), "America/New_York")
    autumn = day_in_utc(date(2024, 11, 3), "America/New_York")
    assert (spring[1] - spring[0]).total_seconds() == 23 * 3600
    assert (autumn[1] - autumn[0]).total_seconds() == 25 * 3600
