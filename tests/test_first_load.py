"""A spectator's first load costs a bounded number of requests however long
the race has run (DESIGN.md, "Trails"): counted in Chromium, on races
published live cycle by cycle (bench/first_load.py, the same machinery the
bench reports), with every trail complete as the page has it (its GPX)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench.first_load import first_load, publish, served

pytestmark = pytest.mark.slow


def fix_times(racer: int, age_s: float, every_s: float) -> list[float]:
    """The seconds after the start of a racer's fixes (PUBLISH's rows: every
    k * every_s + racer % 5 in the race's time, k any whole number)."""
    out, k = [], -math.floor((racer % 5) / every_s)
    while (s := k * every_s + racer % 5) <= age_s:
        if s > 0:
            out.append(s)
        k += 1
    return out


@pytest.mark.parametrize("age_s", [100 * 60, 4 * 3600], ids=["100 min", "4 h"])
def test_a_small_race_loads_in_a_few_requests_whole(
    tmp_path: Path, dsn: str, browser: Any, age_s: int
) -> None:
    """Five racers, a fix every 2 s: the page, its static files, the snapshot
    and every racer's whole trail in at most 30 requests; each trail every
    fix, once, in order."""
    root = publish(dsn, tmp_path, 5, age_s, 2.0, 30.0)
    with served(root) as base:
        got = first_load(browser, base)
    assert got["requests"] <= 30, got["requests"]
    assert got["trail_requests"] <= 20
    start = _start(root)
    for rid, times in got["trails"].items():
        want = [start + s for s in fix_times(int(rid), age_s, 2.0)]
        assert times == pytest.approx(want, abs=0.002), rid


def test_following_one_racer_of_a_large_race_4_hours_in(
    tmp_path: Path, dsn: str, browser: Any
) -> None:
    """A large race (the field shape) 4 hours in, a fix every 5 s: one
    racer's whole trail in at most 10 requests (their trail group, the
    pieces it lists, their recent trail). The pieces hold every fix up to
    the last cut; the recent trail since, a point every 30 s, and the
    newest fix."""
    age_s = 4 * 3600
    root = publish(dsn, tmp_path, 40, age_s, 5.0, 60.0, shard_above=10)
    with served(root) as base:
        got = first_load(browser, base, follow="7")
    assert got["trail_requests"] <= 10, got["trail_requests"]
    start = _start(root)
    times = got["trails"]["7"]
    want = [start + s for s in fix_times(7, age_s, 5.0)]
    assert times == sorted(set(times)) and set(times) <= {round(t, 3) for t in want}
    assert times[-1] == pytest.approx(want[-1], abs=0.002)  # the newest fix
    cut = [t for t in want if t <= want[-1] - 21 * 60]  # before the recent trail's span
    assert set(cut) <= set(times)


def _start(root: Path) -> float:
    import json
    from datetime import datetime

    snap = json.loads((root / "snapshot.json").read_text())
    return datetime.fromisoformat(snap["race"]["starts_at"]).timestamp()
