"""How close the published finish times come to the truth.

Replays the founding race (racepub.commands.simulate: 4 m GPS noise, a fix every ~2 s)
30 times with different start offsets, so the noise differs each time, and
prints the error of each racer's finish_s against the simulator's truth.

    python -m bench.finish_accuracy
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

from racepub.commands.demo import DEMO_DIR, demo_config
from racepub.commands.simulate import fixes, truths
from racepub.model.course import load_gpx
from racepub.model.race import RaceState
from racepub.rows import Row
from racepub.timefmt import ts

RUNS = 30


def main() -> None:
    course = load_gpx(DEMO_DIR / "outrunthet.gpx")
    errors: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    for k in range(RUNS):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=137.37 * k)
        race = demo_config("postgresql://unused/db", Path("/tmp"), start).race("outrunthet")
        state = RaceState(race, course)
        rows = [Row(*f) for f in fixes(race, course, ts(start), ts(start) + 2400)]
        state.update(rows, ts(start) + 2400)
        for truth in truths(race, course):
            track = state.tracks[truth.racer.id]
            assert track.finish_t is not None, truth.racer.name
            errors.setdefault(truth.racer.id, []).append(
                track.finish_t - ts(start) - truth.finish_s
            )
            names[truth.racer.id] = truth.racer.name
    print(f"finish_s error against the truth, seconds ({RUNS} races):")
    for racer_id, errs in errors.items():
        print(
            f"  {names[racer_id]:20s} mean {statistics.mean(errs):+.2f}  "
            f"sd {statistics.pstdev(errs):.2f}  worst {max(map(abs, errs)):.2f}"
        )


if __name__ == "__main__":
    main()
