"""Checkpoints and splits: from config and from the course GPX's named
waypoints, a split per racer at each, interpolated like the finish."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from racepub import config
from racepub.config import Checkpoint, Racer
from racepub.errors import ConfigError
from racepub.model.board import snapshot
from racepub.model.course import Course, Waypoint
from racepub.model.race import RaceState
from racepub.model.splits import split_paces
from racepub.rows import Row
from tests.helpers import STOPS, T0, write_race
from tests.test_race import COURSE, make_state, run


def test_splits_of_a_steady_runner_and_the_finish() -> None:
    state = make_state(
        Racer("a", "A"), checkpoints=(Checkpoint("Half", 1000.0), Checkpoint("Quarter", 500.0))
    )
    # 3.1 m/s, a fix every 2 s: 1000 m at 322.6 s, the finish at 731.1 s.
    state.update(run("a", 0, 760, 3.1), now=T0 + 761)
    rec = snapshot(state, T0 + 761, 1)["racers"][0]
    names = [s["name"] for s in rec["splits"]]
    assert names == ["Quarter", "Half", "Finish"]  # course order, the finish last
    at = {s["name"]: s["at_s"] for s in rec["splits"]}
    assert at["Quarter"] == pytest.approx(500 / 3.1, abs=1.0)
    assert at["Half"] == pytest.approx(1000 / 3.1, abs=1.0)
    assert at["Finish"] == rec["finish_s"] == pytest.approx(COURSE.length_m / 3.1, abs=1.0)
    assert split_paces(rec["splits"]) == pytest.approx([1000 / 3.1] * 3, abs=3)


def test_split_not_reached_yet_is_null() -> None:
    state = make_state(Racer("a", "A"), Racer("b", "B"), checkpoints=(Checkpoint("Half", 1000.0),))
    state.update(run("a", 0, 200, 3.0), now=T0 + 201)  # 600 m; b has no fix
    recs = {r["id"]: r for r in snapshot(state, T0 + 201, 1)["racers"]}
    assert [s["at_s"] for s in recs["a"]["splits"]] == [None, None]
    assert [s["at_s"] for s in recs["b"]["splits"]] == [None, None]


def test_a_vehicles_split_is_when_it_arrived_not_when_it_left() -> None:
    """The trolley reaches a stop at 1000 m after 125 s at 8 m/s, waits 40 s
    there, and goes on: its split is 125 s (what the founding race argued about)."""
    state = make_state(Racer("t", "T", kind="vehicle"), checkpoints=(Checkpoint("Stop", 1000.0),))
    rows = run("t", 0, 124, 8.0) + [
        Row("t", T0 + 125 + k, *COURSE.at(1000.0 + (k % 2) * 0.5)) for k in range(0, 40, 2)
    ]
    rows += run("t", 166, 200, 8.0, d0=1000.0)
    state.update(rows, now=T0 + 201)
    split = snapshot(state, T0 + 201, 1)["racers"][0]["splits"][0]
    assert split["at_s"] == pytest.approx(125, abs=1.5)


def test_checkpoints_from_named_gpx_waypoints() -> None:
    near = COURSE.at(800.0)
    far = (near[0] + 0.01, near[1])  # ~1.1 km away: a car park, not a checkpoint
    course = Course(
        STOPS,
        waypoints=[
            Waypoint("Packards Corner", near[0] + 0.0002, near[1]),
            Waypoint("Car park", *far),
        ],
    )
    state = RaceState(make_state(Racer("a", "A")).race, course)
    # 22 m off the line, projected onto it; the car park is left out.
    assert [c.name for c in state.checkpoints] == ["Packards Corner", "Finish"]
    assert state.checkpoints[0].distance_m == pytest.approx(800, abs=15)
    assert state.checkpoints[1].distance_m == pytest.approx(course.length_m, abs=0.1)
    # Without any, records carry no splits at all.
    assert "splits" not in snapshot(make_state(Racer("a", "A")), T0, 1)["racers"][0]


def test_checkpoint_config_errors(tmp_path: Path) -> None:
    setup = write_race(
        tmp_path,
        "postgresql://x@127.0.0.1:1/x",
        extra="""
        [[races.t.checkpoints]]
        name = "Nowhere"

        [[races.t.checkpoints]]
        name = "Beyond"
        distance_m = -5
    """,
    )
    with pytest.raises(ConfigError) as e:
        config.load(str(setup.path))
    said = str(e.value)
    assert "races.t.checkpoints[0].distance_m: missing" in said
    assert "races.t.checkpoints[1].distance_m = -5" in said
    race = replace(make_state(Racer("a", "A")).race, checkpoints=(Checkpoint("Moon", 1e6),))
    with pytest.raises(ConfigError, match=r"'Moon' at 1e\+06 m is not before the finish"):
        RaceState(race, COURSE)


def test_founding_race_splits_at_the_b_line_stops() -> None:
    """The founding race, simulated to its end (noisy fixes every ~3 s): every
    racer's split at each of the 16 stops within a couple of seconds of when
    they truly got there; the trolley's is when it arrived, not when it left."""
    from datetime import UTC, datetime

    from racepub.commands.demo import demo_config
    from racepub.commands.simulate import fixes, truths
    from racepub.model.course import load_gpx

    start = datetime(2014, 7, 25, 15, 0, tzinfo=UTC)
    cfg = demo_config("postgresql://x@127.0.0.1:1/x", Path("/nonexistent"), start)
    race = cfg.race("outrunthet")
    course = load_gpx(race.course)
    state = RaceState(race, course)
    t0 = start.timestamp()
    rows = [Row(r, t, lat, lon) for r, t, lat, lon in fixes(race, course, t0, t0 + 2000)]
    state.update(rows, t0 + 2000)
    stops = state.checkpoints[:-1]
    assert len(stops) == 16 and stops[0].name == "South Street"
    records = {r["id"]: r for r in snapshot(state, t0 + 2000, 1)["racers"]}
    errors: list[float] = []
    for truth in truths(race, course):
        got = {s["name"]: s["at_s"] for s in records[truth.racer.id]["splits"]}
        for cp in stops:
            lo, hi = 0.0, truth.finish_s  # when the truth first reached the stop
            for _ in range(60):
                mid = (lo + hi) / 2
                # (less half a metre: checkpoints are placed to 0.1 m, and the
                # trolley waits at the stop's exact distance)
                lo, hi = (mid, hi) if truth.distance(mid) < cp.distance_m - 0.5 else (lo, mid)
            errors.append(got[cp.name] - hi)
    # GPS noise of 4 m at 3-5 m/s is a second or so a fix: typically within
    # a second, nine in ten within two, none off by more than four.
    rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert len(errors) == 5 * 16 and rms < 1.3
    assert sum(abs(e) <= 2.0 for e in errors) >= 0.9 * len(errors)
    assert max(abs(e) for e in errors) < 4.0
    assert max(abs(e) for e in errors) > 0  # noisy fixes: nothing exact by construction
