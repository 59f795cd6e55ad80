"""`racepub status`: what spectators see right now, read back from the sink."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import orjson

from .. import objects
from ..config import Config, Race
from ..sink import open_sink

# Older than this many intervals, spectators see the "updates paused" banner.
STALE_INTERVALS = 3


def status(cfg: Config, race: Race, out: Callable[[str], None] = print) -> bool:
    """Print seq, age and racers of the published snapshot; False if it is
    missing, unreadable or stale (for a monitoring check)."""
    sink = open_sink(race.sink, cfg.s3)
    body = sink.get(objects.SNAPSHOT)
    if body is None:
        out(f"{sink.describe()}: nothing published yet (no {objects.SNAPSHOT})")
        return False
    try:
        snap = orjson.loads(body)
        generated = datetime.fromisoformat(snap["generated_at"]).timestamp()
        seq, state = snap["seq"], snap["race"]["state"]
        counts = Counter(r["status"] for r in snap["racers"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        out(f"{sink.describe()}: {objects.SNAPSHOT} is unreadable: {e}")
        return False
    age = time.time() - generated
    stale = state != "finished" and age > STALE_INTERVALS * race.interval_s
    racers = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    out(
        f"{sink.describe()}: seq {seq}, published {age:.0f} s ago "
        f"({'STALE: spectators see updates paused' if stale else 'fresh'}); "
        f"race {state}; racers: {racers}"
    )
    return not stale
