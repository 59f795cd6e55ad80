"""The race at one moment as the numbers spectators see, and schema 1's
records made from them: the one place a moment becomes JSON.

Both shapes (a snapshot of every record, or a head and shards of columns),
the results and the page's first paint read a Board, so they publish the
same numbers: each column is worked out once, for the whole field, and a
record is a row of them (rounded for JSON) plus what only a record carries
(splits, margins on the vehicles, drops). Pure; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Racer
from ..timefmt import iso
from .race import RaceState
from .splits import splits
from .standings import STATUS_CODES, STATUSES, Moment
from .track import Track

SCHEMA = 1
MAX_NAME = 80  # characters of a name published; a 10,000-character name is someone's joke
DECIMALS = 6  # of a published latitude or longitude: ~0.1 m, finer than any GPS


@dataclass(frozen=True)
class Board:
    """Every racer's published numbers at `moment.now`, as columns in config
    order; nan where unknown (waiting racers have only their rank)."""

    moment: Moment
    distance_m: np.ndarray  # progress at the newest fix, at most the course length
    fix_t: np.ndarray  # the newest fix's time
    lat: np.ndarray
    lon: np.ndarray
    elapsed_s: np.ndarray  # from their start (net) to the finish, or to the newest fix
    pace_s_per_km: np.ndarray  # nan when standing still
    speed_kmh: np.ndarray  # 0 when standing still
    finish_s: np.ndarray  # from their own start (net time)
    gun_finish_s: np.ndarray  # from the race's start (gun time)
    lap: np.ndarray  # the lap they are on (1-based), the last once finished
    estimated: np.ndarray  # placed by timing mats' reads at the moment, not by a fix

    @property
    def now(self) -> float:
        return self.moment.now

    @classmethod
    def of(cls, state: RaceState, moment: Moment) -> Board:
        st = state.standings
        known = ~np.isnan(st.last_t)
        finished = ~np.isnan(st.finish_t)
        with np.errstate(invalid="ignore", divide="ignore"):
            pace = np.where(st.pace_mps > 0, 1000.0 / st.pace_mps, np.nan)
        end = np.where(finished, st.finish_t, st.last_t)
        course = state.course
        with np.errstate(invalid="ignore"):
            lap = np.minimum(np.floor(st.progress / course.lap_m) + 1, course.laps)
        return cls(
            moment=moment,
            distance_m=np.where(known, st.progress, np.nan),
            fix_t=st.last_t.copy(),
            lat=st.lat.copy(),
            lon=st.lon.copy(),
            elapsed_s=end - st.starts,
            pace_s_per_km=pace,
            speed_kmh=st.speed_mps * 3.6,
            finish_s=st.finish_t - st.starts,
            gun_finish_s=st.finish_t - state.start_t,
            lap=np.where(finished, course.laps, np.where(known, lap, np.nan)),
            estimated=st.estimated.copy(),
        )


def envelope(state: RaceState, now: float, seq: int) -> dict[str, Any]:
    """What every snapshot says of the race itself (schema 1)."""
    race = state.race
    climb = state.climb
    return {
        "schema": SCHEMA,
        "race": {
            "id": race.id,
            "title": race.title,
            "starts_at": iso(state.start_t),
            "ends_at": iso(state.end_t) if state.end_t is not None else None,
            "state": state.state(now),
            "course_length_m": round(state.course.length_m, 1),
            **({} if climb is None else {"course": {"climb_m": climb[0], "descent_m": climb[1]}}),
            "interval_s": race.interval_s,
            "units": race.units,
            **(
                {"laps": state.course.laps, "lap_m": round(state.course.lap_m, 1)}
                if state.course.laps > 1
                else {}
            ),
        },
        "generated_at": iso(now),
        "seq": seq,
    }


def records(state: RaceState, board: Board, indices: list[int]) -> list[dict[str, Any]]:
    """Full records of the racers at these indices, in that order, without
    their trails (`tail` and `track` are the shape's to fill)."""
    return [_record(state, board, i) for i in indices]


def snapshot(state: RaceState, now: float, seq: int) -> dict[str, Any]:
    """Every racer's record by rank, with their tail (the points not cut
    yet) and no `track`: the numbers of a snapshot at `now`, without a
    shape (what tests and the bench look at)."""
    board = Board.of(state, state.moment(now))
    order = [int(i) for i in board.moment.order]
    recs = records(state, board, order)
    for rec, i in zip(recs, order, strict=True):
        rec["tail"] = points(state.order[i].tail_xyt)
    return envelope(state, now, seq) | {"racers": recs}


def _record(state: RaceState, board: Board, i: int) -> dict[str, Any]:
    t = state.order[i]
    r = t.racer
    moment = board.moment
    rank = int(moment.rank[i])
    out: dict[str, Any] = identity(r) | {
        "status": "waiting",
        "position": None,
        "distance_m": 0.0,
        "progress_m": None,
        "rank": rank,
        "elapsed_s": None,
        "pace_s_per_km": None,
        "speed_kmh": None,
        "gap_s": None,
        "gap_ahead_s": None,
        "eta_s": None,
        "finish_s": None,
        "gun_finish_s": None,
        "estimated": False,
        "off_course": False,
        "dropped": dict(sorted(t.dropped.items())),
        "tail": [],
        "track": [],
    }
    if r.kind == "runner" and state.vehicles:
        out["vs_vehicles"] = [_versus(state, board, i, v) for v in state.vehicles]
    if state.checkpoints:
        out["splits"] = splits(t, state.checkpoints, t.start_t)
    if state.course.laps > 1:
        out["lap"] = None if math.isnan(board.lap[i]) else int(board.lap[i])
    if math.isnan(board.fix_t[i]):
        return out
    ahead = int(moment.order[rank - 2]) if rank > 1 else None
    out.update(
        {
            "status": STATUSES[moment.status[i]],
            "position": {
                "lat": float(board.lat[i]),
                "lon": float(board.lon[i]),
                "at": iso(float(board.fix_t[i])),
            },
            "distance_m": round(float(board.distance_m[i]), 1),
            # What the rank is decided by: carried on to the moment (standings.py).
            "progress_m": round(float(moment.estimate_m[i]), 1),
            "elapsed_s": round(float(board.elapsed_s[i])),
            "pace_s_per_km": _number(board.pace_s_per_km[i], 1),
            "speed_kmh": _number(board.speed_kmh[i], 1),
            "gap_s": _number(moment.gap_s[i], 1),
            "gap_ahead_s": _gap(state, board, i, ahead) if ahead is not None else None,
            "eta_s": _number(moment.eta_s[i], 0),
            "finish_s": _number(board.finish_s[i], 1),
            "gun_finish_s": _number(board.gun_finish_s[i], 1),
            # Placed by timing mats' reads: position.at is the moment, not a fix's.
            "estimated": bool(board.estimated[i]),
            "off_course": t.off_course,
        }
    )
    clock = state.clocks.get(r.id)
    if clock is not None and clock.offset_s:
        out["clock_offset_s"] = clock.offset_s  # stamps were this far ahead: corrected
    return out


def identity(racer: Racer) -> dict[str, Any]:
    """Who a racer is, as every object naming them says it: their record,
    a large race's roster and name index, the results. A field added here
    is published by both shapes at once."""
    return {
        "id": racer.id,
        "name": display_name(racer.name),
        "kind": racer.kind,
        "color": racer.color,
        "bib": racer.bib,
        "category": racer.category,
    }


# The fields of identity() a spectator can search for a racer by.
SEARCHED = ("name", "id", "bib")


def display_name(name: str) -> str:
    name = " ".join(name.split())  # no newlines or runs of blanks in a leaderboard
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def points(xyt: Any) -> list[list[Any]]:
    """Flat (lat, lon, t) triples as records' tails publish them: [lat, lon, "ISO-8601"]."""
    return [
        [round(xyt[k], DECIMALS), round(xyt[k + 1], DECIMALS), iso(xyt[k + 2])]
        for k in range(0, len(xyt), 3)
    ]


def status_counts(moment: Moment) -> dict[str, int]:
    found = np.bincount(moment.status, minlength=len(STATUSES))
    return {name: int(found[code]) for name, code in STATUS_CODES.items()}


def _number(value: float, decimals: int) -> float | int | None:
    if math.isnan(value):
        return None
    return round(float(value)) if decimals == 0 else round(float(value), decimals)


def _versus(state: RaceState, board: Board, i: int, vehicle: Track) -> dict[str, Any]:
    """Man against machine: ahead or behind the vehicle, by metres and
    seconds, by the progress ranks use (so the story and the board agree)."""
    runner = state.order[i]
    out: dict[str, Any] = {
        "id": vehicle.racer.id,
        "name": display_name(vehicle.racer.name),
        "ahead": None,
        "metres": None,
        "seconds": None,
    }
    if runner.last is None or vehicle.last is None:
        return out
    v = state.standings.index[vehicle.racer.id]
    progress = board.moment.estimate_m
    if runner.finish_t is not None or vehicle.finish_t is not None:
        ahead = vehicle.finish_t is None or (
            runner.finish_t is not None and runner.finish_t < vehicle.finish_t
        )
    else:
        ahead = bool(progress[i] > progress[v])
    out["ahead"] = ahead
    out["metres"] = round(abs(float(progress[i] - progress[v])), 1)
    out["seconds"] = _gap(state, board, v, i) if ahead else _gap(state, board, i, v)
    return out


def _gap(state: RaceState, board: Board, i: int, j: int) -> float | None:
    """How long ago racer j was where racer i is now, by the progress ranks
    use, as gap_s is measured from the leader (so the racer behind the
    leader has the same number for both); both finished: how long after j
    racer i finished."""
    t, other = state.order[i], state.order[j]
    if t.last is None or other.last is None:
        return None
    if t.finish_t is not None and other.finish_t is not None:
        return round(t.finish_t - other.finish_t, 1)
    at = board.moment.estimate_m[i : i + 1]
    when = float(other.times_at(at, float(state.standings.speed[j]))[0])
    if math.isnan(when):
        return None
    return round(max(0.0, board.now - when), 1)
