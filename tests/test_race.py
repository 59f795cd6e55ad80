"""The race model, pure: clean-up, progress, chunks, ranks, the snapshot fields."""

from __future__ import annotations

import math
from array import array
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from racepub.config import Racer
from racepub.model.board import points, snapshot
from racepub.model.course import Course
from racepub.model.race import RaceState
from racepub.model.track import Fix
from racepub.rows import Row
from tests.helpers import STOPS, T0, race_state, take_full

COURSE = Course(STOPS)


def make_state(*racers: Racer, chunk_points: int = 30, **kw: Any) -> RaceState:
    return race_state(COURSE, *racers, chunk_points=chunk_points, **kw)


def run(
    racer: str, start_s: float, end_s: float, speed_mps: float, every: float = 2.0, d0: float = 0.0
) -> list[Row]:
    rows = []
    t = start_s
    while t <= end_s:
        lat, lon = COURSE.at(d0 + speed_mps * (t - start_s))
        rows.append(Row(racer, T0 + t, lat, lon))
        t += every
    return rows


def published_points(snap: dict[str, Any]) -> set[tuple[float, float]]:
    return {(p[0], p[1]) for r in snap["racers"] for p in r["tail"]}


def test_waiting_racers_are_listed_last_in_config_order() -> None:
    state = make_state(Racer("a", "A"), Racer("b", "B"), Racer("c", "C"))
    state.update(run("c", 0, 60, 4.0), now=T0 + 61)
    snap = snapshot(state, now=T0 + 61, seq=1)
    assert [r["id"] for r in snap["racers"]] == ["c", "a", "b"]
    a = snap["racers"][1]
    assert a["status"] == "waiting" and a["position"] is None and a["rank"] == 2
    assert a["distance_m"] == 0.0 and a["track"] == [] and a["tail"] == []


def test_rank_by_progress_and_gap() -> None:
    state = make_state()
    state.update(run("a", 0, 300, 4.0) + run("b", 0, 300, 3.6), now=T0 + 301)
    snap = snapshot(state, now=T0 + 301, seq=7)
    a, b = snap["racers"]
    assert (a["id"], a["rank"], b["id"], b["rank"]) == ("a", 1, "b", 2)
    assert a["distance_m"] == pytest.approx(1200, abs=1)
    assert b["distance_m"] == pytest.approx(1080, abs=1)
    # b is at 1080 m; a was there 30 s into the race, b got there at 300 s.
    assert b["gap_s"] == pytest.approx(300 - 1080 / 4.0, abs=2)
    assert a["gap_s"] == 0.0
    assert a["pace_s_per_km"] == pytest.approx(250, abs=3)
    remaining = COURSE.length_m - 1200
    assert a["eta_s"] == pytest.approx(remaining / 4.0, abs=5)
    assert snap["seq"] == 7 and snap["schema"] == 1 and snap["race"]["state"] == "live"


def test_finish_is_interpolated_and_ranks_first() -> None:
    state = make_state()
    # a runs 5 m/s and finishes at length/5 s; b is faster but started late.
    rows = run("a", 1, 2000, 5.0, every=2.0) + run("b", 100, 700, 6.0)
    state.update(rows, now=T0 + 2000)
    snap = snapshot(state, now=T0 + 2000, seq=1)
    a = snap["racers"][0]
    assert a["id"] == "a" and a["status"] == "finished"
    assert a["finish_s"] == pytest.approx(1 + COURSE.length_m / 5.0, abs=1.0)
    assert a["distance_m"] == pytest.approx(COURSE.length_m, abs=0.1)


def test_race_state_pre_live_finished() -> None:
    state = make_state(Racer("a", "A"))
    assert state.state(T0 - 1) == "pre"
    assert state.state(T0 + 1) == "live"
    state.update(run("a", 0, 1000, 5.0), now=T0 + 1000)
    assert state.state(T0 + 1000) == "finished"
    ends = make_state(Racer("a", "A"), ends_at=datetime(2014, 7, 25, 16, 0, tzinfo=UTC))
    assert ends.state(T0 + 3600) == "finished"


BAD_ROWS = [
    (Row("a", None, 42.34, -71.16), "null"),
    (Row("a", T0 + 20, None, -71.16), "null"),
    (Row("a", T0 + 20, math.nan, -71.16), "not_finite"),
    (Row("a", T0 + 20, 42.34, math.inf), "not_finite"),
    (Row("a", T0 + 20, 91.0, -71.16), "out_of_range"),
    (Row("a", T0 + 20, 0.0, 0.0), "out_of_range"),
    (Row("a", T0 - 60, 42.3401, -71.1667), "before_start"),
    (Row("a", T0 + 5000, 42.3401, -71.1667), "future"),
    (Row("zz", T0 + 20, 42.3401, -71.1667), "not_a_racer"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_bad_rows_are_dropped_counted_never_published(row: Row, reason: str) -> None:
    state = make_state()
    good = run("a", 0, 40, 4.0)
    state.update(good + [row], now=T0 + 60)
    assert state.dropped_total()[reason] == 1
    snap = snapshot(state, now=T0 + 60, seq=1)
    assert len(snap["racers"][0]["tail"]) == len(good)
    if row.lat is not None and row.lon is not None:
        assert (round(row.lat, 6), round(row.lon, 6)) not in published_points(snap)


def test_duplicates_out_of_order_and_jumps() -> None:
    state = make_state()
    rows = run("a", 0, 60, 4.0)
    state.update(rows, now=T0 + 61)
    # The same fix again, an older one, and one 3 km away 2 s later.
    far = COURSE.at(2000)
    state.update([rows[-1], rows[3], Row("a", T0 + 62, far[0], far[1])], now=T0 + 63)
    assert state.tracks["a"].dropped == {"duplicate": 1, "out_of_order": 1, "jump": 1}
    snap = snapshot(state, now=T0 + 63, seq=2)
    assert snap["racers"][0]["distance_m"] == pytest.approx(240, abs=1)
    assert snap["racers"][0]["dropped"] == {"duplicate": 1, "jump": 1, "out_of_order": 1}
    assert (round(far[0], 6), round(far[1], 6)) not in published_points(snap)


def test_trolley_may_go_fast_a_runner_may_not() -> None:
    state = make_state(Racer("run", "R"), Racer("bus", "B", kind="vehicle"))
    # 20 m/s = 72 km/h: a vehicle can, a runner cannot.
    state.update(run("run", 0, 60, 20.0) + run("bus", 0, 60, 20.0), now=T0 + 61)
    assert state.tracks["bus"].dropped.total() == 0
    assert state.tracks["run"].dropped["jump"] > 0


def test_tail_fills_up_and_is_taken() -> None:
    """A tail is full at chunk_points points since the last cut; what the
    trails take of it is every point, once, in order."""
    state = make_state(chunk_points=10)
    state.update(run("a", 0, 17, 3.0), now=T0 + 18)  # 9 fixes
    assert state.full == set()
    state.update(run("a", 18, 49, 3.0, d0=54), now=T0 + 50)  # 25 in all
    assert state.full == {0}
    taken = take_full(state)
    assert len(taken) == 25 and taken[-1][2] == "2014-07-25T15:00:48Z"
    assert state.tracks["a"].tail_xyt == array("d") and not state.tracks["a"].full
    state.update(run("a", 50, 59, 3.0, d0=150), now=T0 + 60)
    assert len(points(state.tracks["a"].tail_xyt)) == 5


def test_stale_status() -> None:
    state = make_state(stale_after_s=60)
    state.update(run("a", 0, 100, 3.0), now=T0 + 101)
    assert snapshot(state, now=T0 + 150, seq=1)["racers"][0]["status"] == "racing"
    assert snapshot(state, now=T0 + 200, seq=2)["racers"][0]["status"] == "stale"


def test_hostile_names_are_kept_whole_but_shortened_for_display() -> None:
    long = "x" * 10_000
    emoji = 'Zoë 🏃‍♀️ "quoted" <b>&amp;</b>\n\tnewline'
    state = make_state(Racer("a", long), Racer("b c'\"", emoji))
    names = {r["id"]: r["name"] for r in snapshot(state, T0, 1)["racers"]}
    assert names["a"] == "x" * 79 + "…"
    assert names["b c'\""] == 'Zoë 🏃‍♀️ "quoted" <b>&amp;</b> newline'


def fix_of(row: Row) -> Fix:
    assert row.t is not None and row.lat is not None and row.lon is not None
    return Fix(row.t, row.lat, row.lon)


def noisy_rows(seed: int, racers: int) -> list[Row]:
    """Fixes as phones send them: GPS noise, duplicates, fixes out of order,
    jumps, silences of minutes, bursts, and racers who finish."""
    import random

    rnd = random.Random(seed)
    rows = []
    for k in range(racers):
        speed = 2.5 + 0.5 * (k % 4)
        t, d = rnd.uniform(0, 5), 0.0
        while t < 1100 and d < COURSE.length_m + 50:
            lat, lon = COURSE.at(d)
            noise = 8e-5 * rnd.random()
            rows.append(Row(f"r{k}", T0 + t, lat + noise, lon - noise))
            roll = rnd.random()
            if roll < 0.05:
                rows.append(rows[-1])  # the same fix twice
            elif roll < 0.08:
                far = COURSE.at(min(COURSE.length_m, d + 1500))
                rows.append(Row(f"r{k}", T0 + t + 1, far[0], far[1]))  # a jump
            elif roll < 0.1 and len(rows) > 3:
                rows.append(rows[-3])  # an old fix again: out of order
            gap = 150.0 if roll > 0.985 else rnd.choice((0.5, 2.0, 3.0, 5.0))
            t += gap
            d += speed * gap
    return rows


def test_vectorised_rounds_give_the_general_result() -> None:
    """Rows in one big batch (a catch-up: the vectorised rounds), one
    interval's worth at a time (a live race), and each racer's fixes
    through Track.add (the general way) leave every track the same."""
    racers = tuple(Racer(f"r{k}", f"R{k}", "vehicle" if k == 5 else "runner") for k in range(12))
    rows = noisy_rows(7, len(racers))
    rows.sort(key=lambda r: r.t or 0.0)  # as they arrive

    batch = make_state(*racers, chunk_points=10)
    batch.update(rows, now=T0 + 1200)
    live = make_state(*racers, chunk_points=10)
    for at in range(0, 1200, 2):
        live.update([r for r in rows if at <= (r.t or 0.0) - T0 < at + 2], now=T0 + at + 2)
    general = make_state(*racers, chunk_points=10)
    for racer in racers:
        general.tracks[racer.id].add([fix_of(r) for r in rows if r.racer_id == racer.id])

    def seen(state: RaceState) -> list[tuple[object, ...]]:
        return [
            (
                t.racer.id,
                t.last,
                round(t.distance_m, 6),
                t.finish_t,
                list(t.tail_xyt),
                list(t.recent_xyt),
                list(t.window),
                list(t.approach),
                list(t.timeline),
                t.offset_m,
                t.count,
                t.recent_mps,
                dict(t.dropped),
            )
            for t in state.tracks.values()
        ]

    assert seen(batch) == seen(general)
    # Live, a fix whose next came in a later cycle is settled by then; the
    # same fixes are accepted and the same distance covered.
    assert seen(live) == seen(general)
    # And the field's columns (what ranks, gaps and shards read), kept up to
    # date from the vectorised rounds, are what each track says of itself.
    for i in range(len(racers)):
        general.standings.refresh(i)
    general.standings.settle()
    batch.standings.settle()
    columns = (
        "state", "finish_t", "final_t", "progress", "last_t", "lat", "lon", "pace_mps", "speed_mps",
        "speed", "expect_speed", "eta_speed", "usual",
    )  # fmt: skip
    for name in columns:
        want, got = getattr(general.standings, name), getattr(batch.standings, name)
        assert np.array_equal(want, got, equal_nan=True), name
    assert sum(t.finish_t is not None for t in general.tracks.values()) >= 6
    assert sum(t.dropped["jump"] for t in general.tracks.values()) > 10
