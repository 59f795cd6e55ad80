"""Race analytics from noisy phone GPS: properties, awkward courses, a whole replayed race."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from racepub.config import Racer
from racepub.model.board import points, snapshot
from racepub.model.course import Course
from racepub.model.race import RaceState
from racepub.rows import Row
from racepub.timefmt import iso
from tests.helpers import START, T0, race_state, take_full


def make_state(course: Course, *racers: Racer, **kw: Any) -> RaceState:
    return race_state(course, *(racers or (Racer("a", "A"),)), **kw)


def offset(course: Course, lat: float, lon: float, dx: float, dy: float) -> tuple[float, float]:
    x, y = course.to_xy(lat, lon)
    return course.to_latlon(x + dx, y + dy)


def published_points(state: RaceState, cut: list[Any], now: float) -> set[tuple[Any, ...]]:
    """Every (lat, lon, time) in the tails and what was cut of them."""
    snap = snapshot(state, now, 1)
    pts = [p for t in state.order for p in points(t.tail_xyt)] + cut
    pts += [
        (round(r["position"]["lat"], 6), round(r["position"]["lon"], 6), r["position"]["at"])
        for r in snap["racers"]
        if r["position"]
    ]
    return {tuple(p) for p in pts}


def as_published(row: Row) -> tuple[Any, ...]:
    assert row.lat is not None and row.lon is not None and row.t is not None
    return (round(row.lat, 6), round(row.lon, 6), iso(row.t))


@st.composite
def courses(draw: st.DrawFn) -> Course:
    """A random-walk course: 3-25 legs of 80-600 m, turns of at most 120°."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    heading, x, y = rnd.uniform(0, math.tau), 0.0, 0.0
    xy = [(x, y)]
    for _ in range(rnd.randint(3, 25)):
        heading += rnd.uniform(-2.1, 2.1)
        leg = rnd.uniform(80, 600)
        x, y = x + leg * math.cos(heading), y + leg * math.sin(heading)
        xy.append((x, y))
    lat0, lon0 = rnd.uniform(-60, 60), rnd.uniform(-170, 170)
    ky = 6_371_008.8 * math.pi / 180
    kx = ky * math.cos(math.radians(lat0))
    return Course([(lat0 + y / ky, lon0 + x / kx) for x, y in xy])


GARBAGE = ["nan", "inf", "range", "null", "future", "before", "jump"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    course=courses(),
    seed=st.integers(0, 2**32),
    noise=st.floats(0, 6),
    speed=st.floats(1.5, 6.0),
    batches=st.integers(1, 6),
)
@pytest.mark.slow
def test_progress_tracks_truth_and_no_dropped_fix_is_published(
    course: Course, seed: int, noise: float, speed: float, batches: int
) -> None:
    rnd = random.Random(seed)
    state = make_state(course, chunk_points=7)
    truth: dict[float, float] = {}
    good: list[Row] = []
    t = 1.0
    while speed * t < course.length_m * 0.98:
        lat, lon = course.at(speed * t)
        lat, lon = offset(course, lat, lon, rnd.gauss(0, noise), rnd.gauss(0, noise))
        good.append(Row("a", T0 + t, lat, lon))
        truth[T0 + t] = speed * t
        t += rnd.uniform(1, 5)
    bad = []
    for kind in rnd.sample(GARBAGE, k=4):
        at = T0 + rnd.uniform(1, t)
        lat, lon = course.at(speed * (at - T0))
        bad.append(
            {
                "nan": Row("a", at, math.nan, lon),
                "inf": Row("a", at, lat, math.inf),
                "range": Row("a", at, 123.0, lon),
                "null": Row("a", at, None, lon),
                "future": Row("a", T0 + t + 3600, lat, lon),
                "before": Row("a", T0 - 600, lat + 0.01, lon),
                "jump": Row("a", at + 0.01, lat + 0.05, lon),  # 5.5 km off in 10 ms
            }[kind]
        )
    rows = good + bad + rnd.sample(good, k=min(len(good), 5))  # duplicates too
    rnd.shuffle(rows)
    # Delivered in a few batches, in arbitrary order within each.
    cut = sorted(rnd.sample(range(1, len(rows)), k=min(batches - 1, len(rows) - 1)))
    taken: list[Any] = []
    progress = []
    for part in (rows[i:j] for i, j in zip([0, *cut], [*cut, len(rows)], strict=True)):
        state.update(part, now=T0 + t)
        taken += take_full(state)
        progress.append(state.tracks["a"].distance_m)

    assert progress == sorted(progress)  # never backwards
    track = state.tracks["a"]
    assert track.last is not None
    # Within GPS noise (plus a fix possibly dropped near the end) of the truth.
    latest = max(truth)
    assert abs(track.distance_m - truth[track.last.t]) < 5 * noise + 25 or track.last.t < latest
    published = published_points(state, taken, now=T0 + t)
    assert published <= {as_published(r) for r in good}
    for row in bad:
        if row.lat is not None and row.lon is not None and math.isfinite(row.lat + row.lon):
            assert as_published(row) not in published


def test_course_crossing_itself_does_not_skip_a_lap() -> None:
    # A figure of eight: the path crosses itself at the middle; the second
    # pass through the crossing is ~1.6 km of course later.
    lat0, lon0 = 42.35, -71.10
    ky = 111_195.0
    kx = ky * math.cos(math.radians(lat0))
    pts = []
    for i in range(0, 361, 10):
        a = math.radians(i)
        x, y = 400 * math.sin(a), 400 * math.sin(a) * math.cos(a)
        pts.append((lat0 + y / ky, lon0 + x / kx))
    course = Course(pts)
    state = make_state(course)
    rnd = random.Random(1)
    rows = []
    for i in range(1, 200):
        lat, lon = course.at(3.0 * 2 * i)
        lat, lon = offset(course, lat, lon, rnd.gauss(0, 4), rnd.gauss(0, 4))
        rows.append(Row("a", T0 + 2 * i, lat, lon))
        state.update([rows[-1]], now=T0 + 2 * i)
        truth = min(3.0 * 2 * i, course.length_m)
        assert abs(state.tracks["a"].distance_m - truth) < 25, (i, truth)


def test_out_and_back_on_two_sides_of_a_street() -> None:
    out = [(42.0 + k * 0.0009, -71.0) for k in range(12)]  # ~1.1 km north
    back = [(lat, -71.0 + 0.00008) for lat, _ in reversed(out)]  # 6.6 m east
    course = Course(out + back)
    state = make_state(course)
    rnd = random.Random(7)
    for i in range(1, 300):
        lat, lon = course.at(4.0 * i)
        lat, lon = offset(course, lat, lon, rnd.gauss(0, 5), rnd.gauss(0, 5))
        state.update([Row("a", T0 + i, lat, lon)], now=T0 + i)
        truth = min(4.0 * i, course.length_m)
        # Within 30 m of the turnaround both legs are within noise of a fix,
        # and in course distance the two readings differ by twice that.
        near_turn = abs(truth - course.length_m / 2) < 30
        assert abs(state.tracks["a"].distance_m - truth) < (60 if near_turn else 30), i


def test_off_course_is_flagged_but_shown_where_they_are() -> None:
    course = Course([(42.0, -71.0), (42.02, -71.0)])
    state = make_state(course, off_course_m=100)
    rows = [Row("a", T0 + 2 * i, *course.at(6.0 * i)) for i in range(1, 30)]
    detour = offset(course, *course.at(180), 300, 0)  # a wrong turn, 300 m east
    rows.append(Row("a", T0 + 100, *detour))
    state.update(rows, now=T0 + 101)
    racer = snapshot(state, T0 + 101, 1)["racers"][0]
    assert racer["off_course"] is True
    assert (racer["position"]["lat"], racer["position"]["lon"]) == pytest.approx(detour)
    assert racer["distance_m"] == pytest.approx(174, abs=10)  # progress kept


def test_toilet_break_slows_pace_grows_eta_then_goes_stale() -> None:
    course = Course([(42.0, -71.0), (42.09, -71.0)])  # 10 km
    state = make_state(course, stale_after_s=90)
    rnd = random.Random(3)

    def fix(t: float, d: float) -> Row:
        lat, lon = offset(course, *course.at(d), rnd.gauss(0, 3), rnd.gauss(0, 3))
        return Row("a", T0 + t, lat, lon)

    state.update([fix(t, 3.5 * t) for t in range(2, 1200, 2)], now=T0 + 1200)
    before = snapshot(state, T0 + 1200, 1)["racers"][0]
    assert before["pace_s_per_km"] == pytest.approx(1000 / 3.5, rel=0.05)
    assert before["eta_s"] == pytest.approx((10_000 - 4200) / 3.5, rel=0.05)
    # Three minutes standing still, the phone still sending fixes.
    state.update([fix(t, 3.5 * 1198) for t in range(1200, 1380, 2)], now=T0 + 1380)
    during = snapshot(state, T0 + 1380, 2)["racers"][0]
    assert during["speed_kmh"] == 0.0 and during["pace_s_per_km"] is None
    assert during["status"] == "racing"
    assert during["eta_s"] > before["eta_s"] + 180
    assert during["distance_m"] == pytest.approx(before["distance_m"], abs=10)
    # Then the phone goes quiet: stale after the threshold, not before.
    assert snapshot(state, T0 + 1378 + 80, 3)["racers"][0]["status"] == "racing"
    assert snapshot(state, T0 + 1378 + 100, 4)["racers"][0]["status"] == "stale"


def test_vehicle_allowed_speeds_and_man_against_machine() -> None:
    course = Course([(42.0, -71.0), (42.03, -71.0)])  # 3.3 km
    state = make_state(course, Racer("run", "Runner"), Racer("t", "Trolley", kind="vehicle"))
    rows = [Row("run", T0 + t, *course.at(4.0 * t)) for t in range(2, 400, 2)]
    # The trolley waits 200 s at the start, then does 36 km/h (a runner can't).
    rows += [Row("t", T0 + t, *course.at(max(0.0, 10.0 * (t - 200)))) for t in range(2, 400, 2)]
    state.update(rows, now=T0 + 400)
    assert state.tracks["t"].dropped.total() == 0
    snap = snapshot(state, T0 + 400, 1)
    runner = next(r for r in snap["racers"] if r["id"] == "run")
    trolley = next(r for r in snap["racers"] if r["id"] == "t")
    assert trolley["speed_kmh"] == pytest.approx(36, abs=1)
    vs = runner["vs_vehicles"][0]
    # By the progress ranks use, at 400 s (both carried on 2 s from their
    # fixes at 398 s): the runner at 1600 m, the trolley at 2000 m, which
    # passed 1600 m at 360 s. As the board measures gaps: the same numbers.
    assert (vs["id"], vs["ahead"]) == ("t", False)
    assert vs["metres"] == pytest.approx(2000 - 1600, abs=2)
    assert vs["seconds"] == pytest.approx(400 - 360, abs=2)
    assert vs["seconds"] == pytest.approx(runner["gap_s"], abs=0.1)  # the trolley leads
    assert runner["gap_ahead_s"] == pytest.approx(runner["gap_s"], abs=0.1)
    assert "vs_vehicles" not in trolley
    # ETA for the vehicle comes from its average speed (it stops and starts).
    avg = trolley["distance_m"] / 398
    assert trolley["eta_s"] == pytest.approx((course.length_m - 1980) / avg - 2, abs=3)


def test_inaccurate_fixes_are_dropped_when_the_source_says_so() -> None:
    course = Course([(42.0, -71.0), (42.01, -71.0)])
    state = make_state(course, max_accuracy_m=30.0)
    state.update(
        [
            Row("a", T0 + 2, *course.at(8), accuracy=5.0),
            Row("a", T0 + 4, *course.at(16), accuracy=120.0),
            Row("a", T0 + 6, *course.at(24), accuracy=None),
        ],
        now=T0 + 7,
    )
    assert state.dropped_total() == {"inaccurate": 1}
    assert state.tracks["a"].count == 2


def test_finished_when_cut_off_passes() -> None:
    course = Course([(42.0, -71.0), (42.01, -71.0)])
    state = make_state(course, ends_at=START + timedelta(minutes=30))
    state.update([Row("a", T0 + 10, *course.at(20))], now=T0 + 11)
    assert snapshot(state, T0 + 1799, 1)["race"]["state"] == "live"
    assert snapshot(state, T0 + 1800, 2)["race"]["state"] == "finished"
    state.update([Row("a", T0 + 1801, *course.at(40))], now=T0 + 1802)
    assert state.dropped_total() == {"after_end": 1}
