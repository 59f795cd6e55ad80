"""Times as racepub stores (epoch seconds) and publishes them (ISO-8601 UTC)."""

from datetime import UTC, datetime


def ts(dt: datetime) -> float:
    return dt.timestamp()


def iso(t: float) -> str:
    """ISO-8601 UTC with a Z; milliseconds only when the time has them."""
    dt = datetime.fromtimestamp(round(t, 3), UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
