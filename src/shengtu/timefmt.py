"""Times as the spec shows them: local wall time, ``2025-10-26T15:30:45``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from shengtu.errors import BadRequest


@lru_cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local(dt: datetime, tz: str) -> datetime:
    return dt.replace(tzinfo=UTC).astimezone(zone(tz))


def fmt(dt: datetime | None, tz: str) -> str | None:
    if dt is None:
        return None
    return local(dt, tz).strftime("%Y-%m-%dT%H:%M:%S")


def midnight_utc(dt: datetime, tz: str) -> datetime:
    """The start of ``dt``'s local day, as naive UTC (what the database columns store)."""
    start = local(dt, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.astimezone(UTC).replace(tzinfo=None)


def day_in_utc(day: date, tz: str) -> tuple[datetime, datetime]:
    """The local calendar ``day`` as [start, end) in naive UTC (a day of 23 or 25 hours
    where the clocks change)."""
    start = datetime.combine(day, time(), zone(tz))
    end = datetime.combine(day + timedelta(days=1), time(), zone(tz))
    return (
        start.astimezone(UTC).replace(tzinfo=None),
        end.astimezone(UTC).replace(tzinfo=None),
    )


# What a client may send: every database stores these (MariaDB's DATETIME starts at year
# 1000), and a day or an hour either side of them is still a datetime.
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(9999, 12, 1)


def to_utc(dt: datetime, tz: str) -> datetime:
    """A time a client sent, as naive UTC: without an offset it is the site's local time.
    Outside [EARLIEST, LATEST) it is a 400."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    try:
        utc = dt.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise BadRequest(f"参数错误:时间 {dt.replace(tzinfo=None).isoformat()} 超出可用范围")
    return utc
