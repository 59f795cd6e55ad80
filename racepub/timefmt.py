"""Times as racepub stores (epoch seconds) and publishes them (ISO-8601 UTC)."""

import functools
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts(dt: datetime) -> float:
    return dt.timestamp()


def iso(t: float) -> str:
    """ISO-8601 UTC with a Z; milliseconds only when the time has them.

    Formatted by arithmetic, the date cached: a large race formats ~100,000
    times a cycle, and strftime was most of the cycle."""
    ms = round(t * 1000)
    s, frac = divmod(ms, 1000)
    day, sec = divmod(s, 86400)
    h, rem = divmod(sec, 3600)
    m, sec = divmod(rem, 60)
    if frac:
        return f"{_date(day)}T{h:02d}:{m:02d}:{sec:02d}.{frac:03d}Z"
    return f"{_date(day)}T{h:02d}:{m:02d}:{sec:02d}Z"


@functools.lru_cache(maxsize=64)
def _date(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
