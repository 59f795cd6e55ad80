"""The publisher's in-memory stages alone, no database or S3: how long
`update` (clean-up, projection) and `snapshot` (the published model) take
for N racers 10 minutes into a marathon, 1 fix per racer every 5 s, 2 s
cycles. Quick to run while optimising.

    python -m bench.pipeline 10000
"""

from __future__ import annotations

import gzip
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from racepub.commands.demo import DEMO_DIR
from racepub.config import Race, Racer
from racepub.model.board import Board
from racepub.model.course import Course, load_gpx
from racepub.model.race import RaceState
from racepub.rows import Row
from racepub.shapes import make_shape
from racepub.shapes.encode import json_bytes

START = datetime(2014, 7, 25, 15, 0, tzinfo=UTC)
T0 = START.timestamp()


def main(n: int) -> None:
    demo = load_gpx(DEMO_DIR / "outrunthet.gpx")
    # A vertex every 10 m, as recorded GPX tracks have.
    course = Course([demo.at(d) for d in range(0, int(demo.length_m), 10)] + [demo.points[-1]])
    racers = tuple(Racer(str(i), f"Runner {i}") for i in range(n))
    race = Race(
        id="b",
        title="B",
        starts_at=START,
        course=Path("x"),
        interval_s=2,
        sink="dir:x",
        racers=racers,
        chunk_points=240 if n > 500 else 30,
    )
    state = RaceState(race, course)
    rnd = random.Random(1)
    speeds = [rnd.uniform(2.0, 4.0) for _ in range(n)]
    offsets = [rnd.uniform(0, 5) for _ in range(n)]

    def rows_between(a: float, b: float) -> list[Row]:
        out = []
        for i in range(n):
            t = a + ((offsets[i] - a) % 5.0)
            while t < b:
                x, y = course.to_xy(*course.at(min(speeds[i] * t, course.length_m - 1)))
                lat, lon = course.to_latlon(x + rnd.gauss(0, 4), y + rnd.gauss(0, 4))
                out.append(Row(str(i), T0 + t, lat, lon))
                t += 5.0
        return out

    state.update(rows_between(0, 600), T0 + 600)
    publish = publisher(state)
    publish(T0 + 600, 0)
    times: dict[str, list[float]] = {"update": [], "render": [], "gzip": []}
    for c in range(5):
        a = 600 + 2 * c
        rows = rows_between(a, a + 2)
        t0 = time.perf_counter()
        state.update(rows, T0 + a + 2)
        t1 = time.perf_counter()
        bodies = publish(T0 + a + 2, c + 1)
        t2 = time.perf_counter()
        gz = [gzip.compress(b, 6) for b in bodies]
        t3 = time.perf_counter()
        for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[k].append(v)
    medians = ", ".join(f"{k} {sorted(v)[2] * 1000:.0f} ms" for k, v in times.items())
    sizes = f"snapshot {len(bodies[0]):,} / {len(gz[0]):,} gz bytes"
    if len(bodies) > 1:
        sizes += f", {len(bodies) - 1} more objects, {sum(map(len, gz[1:])):,} gz bytes"
    print(f"{n} racers, {len(rows)} new fixes a cycle: {medians}; {sizes}")


def publisher(state: RaceState) -> Callable[[float, int], list[bytes]]:
    """What a cycle renders in the race's shape: the snapshot, and for a
    large race every live shard and the pack and trail groups due."""
    shape = make_shape(state.race, state)
    packs: dict[str, bytes] = {}  # what a sink would hold, for merges to read back

    def read(key: str, at: int, length: int) -> bytes:
        return packs[key][at : at + length]

    def now_done(fn: Callable[..., Any], *args: Any) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(fn(*args))
        return done

    def cycle(now: float, seq: int) -> list[bytes]:
        out = shape.publish(Board.of(state, state.moment(now)), seq, read, now_done)
        objs = [*out.first, *out.then, *out.lazy()]
        out.commit()
        sealed = shape.store.seal()
        packs.update({p.key: p.object().body for p in sealed})
        shape.store.written({p.key for p in sealed})
        return [json_bytes(out.snapshot), *(o.body for o in objs)]

    return cycle


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
