"""Checkpoints and split times. Pure; no I/O.

Checkpoints come from the config (`[[races.NAME.checkpoints]]`, name and
distance) and from the course GPX's named waypoints, placed on the course
by projection; the finish is always the last. A racer's split at a
checkpoint is when they reached it: interpolated on their time-at-distance
timeline (Track.times_at) between the fixes either side, as the finish is."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..config import Checkpoint, Race
from ..errors import ConfigError
from .course import Course
from .mats import mat_key
from .track import Track

log = logging.getLogger(__name__)
WAYPOINT_NEAR_M = 100.0  # a named waypoint further than this from the course is no checkpoint
FINISH = "Finish"


def checkpoints(race: Race, course: Course) -> list[Checkpoint]:
    """In course order, the finish last; [] when there are none but the finish."""
    found: list[Checkpoint] = []
    length = course.length_m
    for cp in race.checkpoints:
        if cp.distance_m >= length:
            raise ConfigError(
                f"races.{race.id}.checkpoints: {cp.name!r} at {cp.distance_m:g} m "
                f"is not before the finish ({length:.0f} m)"
            )
        found.append(cp)
    for wpt in course.waypoints:
        p = course.project(wpt.lat, wpt.lon, off_course_m=WAYPOINT_NEAR_M)
        if p.offset_m > WAYPOINT_NEAR_M:
            log.info(
                "GPX waypoint %r is %.0f m from the course: not a checkpoint", wpt.name, p.offset_m
            )
            continue
        if 0.0 < p.distance_m < length - 1.0 and all(c.name != wpt.name for c in found):
            found.append(Checkpoint(wpt.name, round(p.distance_m, 1)))
    # A race of laps: a split at the end of every lap but the last (the finish).
    found += [Checkpoint(f"Lap {k}", round(k * course.lap_m, 1)) for k in range(1, course.laps)]
    if not found:
        return []
    return sorted(found, key=lambda c: c.distance_m) + [Checkpoint(FINISH, round(length, 1))]


def splits(track: Track, cps: list[Checkpoint], start_t: float) -> list[dict[str, Any]]:
    """`[{name, distance_m, at_s}]`: at_s from the start, null until reached.
    (The pace between two splits follows from them: not sent, every poll
    carries these.)"""
    # checkpoints() ends with the finish: timed as the finish is. A timing
    # mat's read of a checkpoint is its split.
    reached = track.times_at(np.array([cp.distance_m for cp in cps[:-1]]))
    times = [
        track.mat_t.get(mat_key(cp.name), None if math.isnan(t) else float(t))
        for cp, t in zip(cps, reached.tolist(), strict=False)
    ] + [track.finish_t]
    return [
        {
            "name": cp.name,
            "distance_m": cp.distance_m,
            "at_s": None if t is None else round(t - start_t, 1),
        }
        for cp, t in zip(cps, times, strict=True)
    ]


def split_paces(splits: list[dict[str, Any]]) -> list[float | None]:
    """Seconds per km over the stretch up to each split (None if unknown)."""
    out: list[float | None] = []
    prev_at: float | None = 0.0
    prev_d = 0.0
    for s in splits:
        at, d = s["at_s"], s["distance_m"]
        out.append(
            round((at - prev_at) / (d - prev_d) * 1000, 1)
            if at is not None and prev_at is not None and d > prev_d
            else None
        )
        prev_at, prev_d = at, d
    return out
