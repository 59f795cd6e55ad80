"""The race: every racer's track, and the snapshot model (schema 1). Pure; no I/O."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..config import Race
from ..rows import PROBLEMS, Columns, RawRow, ReadRow, Row
from ..timefmt import ts
from .clock import CLOCK_SLACK_S, FUTURE_HORIZON_S, FUTURE_TOLERANCE_S, MAX_HELD, PhoneClock
from .course import Course
from .mats import FINISH, START, Mats, mat_key
from .splits import checkpoints
from .standings import FINISHED, Moment, Standings
from .track import (
    FINISH_TOLERANCE_M,
    LONG_GAP_S,
    TIMELINE_STEP_M,
    Fix,
    Rules,
    Track,
    reach_m,
    search_window,
)

# A racer's fixes waiting for a mat's first read of them, at most (20 min
# at a fix every 2 s): a phone whose racer no mat reads costs no more.
MAX_WAITING = 600
# A racer read at a later mat and not (yet) at the start is shown this long
# after that read: a start box uploading late still says where they began.
START_READ_GRACE_S = 300.0
# Why a row is not a fix, as RaceState._check finds them ("problem": the
# source's own reason, bad_value or invalid).
ROW_REASONS = ("not_a_racer", "problem", "null", "not_finite", "out_of_range", "inaccurate")


@dataclass
class RaceState:
    race: Race
    course: Course
    tracks: dict[str, Track] = field(init=False)
    dropped: Counter[str] = field(default_factory=Counter)  # rows dropped before a track
    # Every racer crosses a start mat ([detections] start_mat): their fixes
    # wait for their first read, and those before their start are dropped.
    hold_for_start: bool = False

    def __post_init__(self) -> None:
        self.clocks: dict[str, PhoneClock] = {}  # racers whose phones stamp ahead
        # Fixes stamped ahead of their arrival, per racer: (stamp, lat, lon),
        # judged again once their (corrected) time has come.
        self._held: dict[str, list[tuple[float, float, float]]] = {}
        self._after_gap: set[str] = set()  # racers with a fix held after a silence
        self.start_t = ts(self.race.starts_at)
        self.end_t = ts(self.race.ends_at) if self.race.ends_at else None
        race = self.race
        rules = {
            kind: Rules(
                start_t=self.start_t,
                max_mps=speed / 3.6,
                chunk_points=race.chunk_points,
                pace_window_s=race.pace_window_s,
                off_course_m=race.off_course_m,
                min_spacing_s=race.min_fix_spacing_s,
                timeline_step_m=TIMELINE_STEP_M,
            )
            for kind, speed in race.max_kmh.items()
        }
        # Shared by the tracks: drops by reason, and "accepted" (fixes accepted).
        self._track_drops: Counter[str] = Counter()
        self.tracks = {
            r.id: Track(
                racer=r, course=self.course, rules=rules[r.kind], race_drops=self._track_drops
            )
            for r in race.racers
        }
        self.vehicles = [t for t in self.tracks.values() if t.racer.kind == "vehicle"]
        self.order = list(self.tracks.values())  # config order: the index of every column
        self.standings = Standings(self.order, race.stale_after_s)
        self.checkpoints = checkpoints(race, self.course)  # [] : no splits published
        # Timing mats (model/mats.py): start, finish and every checkpoint.
        where = {mat_key(START): 0.0, mat_key(FINISH): self.course.length_m}
        where |= {mat_key(c.name): c.distance_m for c in self.checkpoints[:-1]}
        self.mats = Mats(self.order, self.standings.index, where)
        # Racers not yet read at any mat, whose fixes wait (hold_for_start).
        self.awaiting = np.full(len(self.order), self.hold_for_start)
        self._waiting: dict[int, list[Fix]] = {}
        self._release_at: dict[int, float] = {}  # read at a later mat: shown from then
        self.climb = self.course.climb()  # (climb, descent) m, or None: said in every snapshot
        # Racers whose points since their trail was last cut reached its
        # chunk (Track.full): the trails' to cut (shapes/trails.py).
        self.full: set[int] = set()

    def update(self, rows: Iterable[RawRow] | Columns, now: float) -> int:
        """Check and apply new rows; return how many were accepted. Racers
        whose trail points since their last cut make a chunk are added to
        `full`.

        Rows are checked as columns. Clean, on-time rows go the vectorised
        way (_advance_usual) in rounds: each racer's first fix of the batch,
        then each one's second, and so on (a catch-up after a restart reads
        hundreds a racer). Rows needing a phone's clock or a hold, and
        whatever _advance_usual finds unusual, go the general way, one at a
        time, with the same result."""
        if not isinstance(rows, Columns):
            rows = Columns.of(rows if isinstance(rows, list) else list(rows), self.standings.index)
        counted = self._track_drops["accepted"]
        per_racer: dict[int, list[Fix]] = {}
        usual = self._check(rows, now, per_racer)
        for i, fixes in self._due(now).items():
            per_racer.setdefault(i, []).extend(fixes)
        if per_racer:  # a racer with a held fix this cycle: all theirs the general way
            in_general = np.fromiter(per_racer, dtype=np.int64, count=len(per_racer))
            moved = np.isin(usual[0], in_general)
            for k in np.flatnonzero(moved).tolist():
                per_racer[int(usual[0][k])].append(
                    Fix(float(usual[1][k]), float(usual[2][k]), float(usual[3][k]))
                )
            usual = tuple(a[~moved] for a in usual)  # type: ignore[assignment]
        for i, fixes in per_racer.items():
            self._add(i, fixes)
        idx, t, lat, lon = usual
        if len(idx):
            # In time order per racer (stable: equal times keep their order,
            # as Track.add's sort does); round k holds each racer's k-th fix.
            order = np.lexsort((t, idx))
            idx, t, lat, lon = idx[order], t[order], lat[order], lon[order]
            starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
            nth = np.arange(len(idx)) - np.repeat(starts, np.diff(np.r_[starts, len(idx)]))
            for k in range(int(nth.max()) + 1):
                sel = np.flatnonzero(nth == k)
                self._advance_usual(idx[sel], t[sel], lat[sel], lon[sel])
        for racer_id in list(self._after_gap):  # held fixes whose next fix never came
            track = self.tracks[racer_id]
            if track.settle(now):
                self.full.add(self.standings.index[racer_id])
            if track.after_gap is None:
                self._after_gap.discard(racer_id)
                self.standings.refresh(self.standings.index[racer_id])
        return self._track_drops["accepted"] - counted

    def _check(
        self, rows: Columns, now: float, slow: dict[int, list[Fix]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rows' checks as columns. Drops are counted; fixes needing a
        phone's clock or a hold go to `slow` (by racer index). Returns the
        rest: (racer index, t, lat, lon)."""
        idx, t, lat, lon, acc = rows.racer, rows.t, rows.lat, rows.lon, rows.accuracy
        problem = rows.problem
        reason = np.zeros(len(rows), dtype=np.int8)  # 0: fine; else ROW_REASONS[code - 1]
        with np.errstate(invalid="ignore"):
            checks = [
                (idx < 0, "not_a_racer"),
                (problem != 0, "problem"),
                (rows.null, "null"),
                (~(np.isfinite(t) & np.isfinite(lat) & np.isfinite(lon)), "not_finite"),
                (
                    (np.abs(lat) > 90.0) | (np.abs(lon) > 180.0) | ((lat == 0.0) & (lon == 0.0)),
                    "out_of_range",
                ),
                # 0, NULL (and nonsense) accuracy means unknown: Traccar stores 0.
                ((acc > 0) & ~(acc <= self.race.max_accuracy_m), "inaccurate"),
            ]
        for mask, name in checks:
            reason[(reason == 0) & mask] = ROW_REASONS.index(name) + 1
        # Phones whose clocks run ahead, and rows stamped ahead of now, one at
        # a time (clock.py); the rest by time as columns.
        arrival = rows.arrival
        ref = np.where(np.isnan(arrival), now, arrival)
        clocked = (
            np.isin(idx, [self.standings.index[r] for r in self.clocks])
            if self.clocks
            else np.zeros(len(rows), dtype=bool)
        )
        special = (reason == 0) & (clocked | (t - ref > min(CLOCK_SLACK_S, FUTURE_TOLERANCE_S)))
        timely = (reason == 0) & ~special
        too_early = timely & (t < self.standings.starts[idx])
        too_late = (
            timely & (t > self.end_t) if self.end_t is not None else np.zeros(len(rows), dtype=bool)
        )
        waiting = timely & ~too_early & ~too_late & self.awaiting[idx]
        for k in np.flatnonzero(waiting).tolist():
            self._wait(int(idx[k]), Fix(float(t[k]), float(lat[k]), float(lon[k])))
        for k in np.flatnonzero(special).tolist():
            at = float(arrival[k])
            row = Row(
                self.order[int(idx[k])].racer.id,
                float(t[k]),
                float(lat[k]),
                float(lon[k]),
                arrival=None if math.isnan(at) else at,
            )
            self._one_row(row, now, slow)
        for k in np.flatnonzero((reason > 0) | too_early | too_late).tolist():
            code = int(reason[k])
            name = (
                ROW_REASONS[code - 1] if code else "before_start" if too_early[k] else "after_end"
            )
            if name == "problem":
                name = str(PROBLEMS[problem[k]])
            if name == "not_a_racer":
                self.dropped[name] += 1
            else:  # counted against the racer, and published with their record
                self.order[int(idx[k])].drop(name)
        good = np.flatnonzero(timely & ~too_early & ~too_late & ~waiting)
        return idx[good], t[good], lat[good], lon[good]

    def _one_row(self, row: Row, now: float, slow: dict[int, list[Fix]]) -> None:
        """A row whose phone's clock is corrected, or which is held until its
        time comes (clock.py)."""
        assert row.t is not None and row.lat is not None and row.lon is not None
        t = self._on_phone_clock(row.racer_id, row.t, row.arrival)
        reason = self._time_problem(t, self.standings.index[row.racer_id])
        if (
            reason is None
            and t > (now if row.arrival is None else row.arrival) + FUTURE_TOLERANCE_S
        ):
            reason = self._hold(row.racer_id, row.t, row.lat, row.lon, now)
        if reason is None:
            self._take(self.standings.index[row.racer_id], Fix(t, row.lat, row.lon), slow)
        else:
            self.tracks[row.racer_id].drop(reason)

    def _take(self, i: int, fix: Fix, into: dict[int, list[Fix]]) -> None:
        """A fix judged sound, one at a time: into `into` to be applied, or
        to wait for a mat's first read of the racer (hold_for_start)."""
        if self.awaiting[i]:
            self._wait(i, fix)
        else:
            into.setdefault(i, []).append(fix)

    def _wait(self, i: int, fix: Fix) -> None:
        """A fix of a racer no mat has read yet (hold_for_start): kept until
        one does. Past MAX_WAITING the oldest go (`no_mat_read`)."""
        waiting = self._waiting.setdefault(i, [])
        waiting.append(fix)
        if len(waiting) > MAX_WAITING:
            del waiting[0]
            self.order[i].drop("no_mat_read")

    def _first_read(self, i: int, start: bool, t: float) -> None:
        """A mat read racer i (hold_for_start): at the start, they are shown
        from it; at a later mat, START_READ_GRACE_S after it unless the
        start read comes meanwhile."""
        if start:
            self._release(i)
        elif self.awaiting[i]:
            self._release_at.setdefault(i, t + START_READ_GRACE_S)

    def _release(self, i: int) -> None:
        """A mat has read racer i (their start set, if it was the start
        mat): their waiting fixes are judged now, those before their start
        dropped."""
        self._release_at.pop(i, None)
        if not self.awaiting[i]:
            return
        self.awaiting[i] = False
        self.standings.refresh(i)  # their own start, as the read says
        keep = []
        for fix in self._waiting.pop(i, []):
            reason = self._time_problem(fix.t, i)
            if reason is None:
                keep.append(fix)
            else:
                self.order[i].drop(reason)
        if keep:
            self._add(i, keep)

    def _add(self, i: int, fixes: list[Fix]) -> None:
        """Fixes for one racer the general way (Track.add), then their columns."""
        track = self.order[i]
        if track.add(fixes):
            self.full.add(i)
        if track.after_gap is not None:
            self._after_gap.add(track.racer.id)
        self.standings.refresh(i)

    def _advance_usual(
        self, idx: np.ndarray, t: np.ndarray, lat: np.ndarray, lon: np.ndarray
    ) -> None:
        """One fix each for many racers: checked and searched for as columns,
        projected together, each applied by one call (Track.step). A fix
        that is not the usual case goes the general way: a duplicate, out
        of order or too soon, a jump, after a long silence, near the finish
        (until it is timed for good), a racer whose first fix is still held
        or just after a jump. The result is the same as Track.add's, fix for
        fix (tests/test_race.py)."""
        st = self.standings
        st.settle()
        c = self.course
        dt = t - st.last_t[idx]
        max_mps = st.max_mps[idx]
        reach = reach_m(max_mps, dt)
        (x0, y0), (x1, y1) = c.xy_columns(st.lat[idx], st.lon[idx]), c.xy_columns(lat, lon)
        moved = np.hypot(x1 - x0, y1 - y0)
        with np.errstate(invalid="ignore"):
            ok = (
                st.usual[idx]
                & (dt >= np.maximum(st.min_spacing[idx], 1e-9))
                & (dt <= LONG_GAP_S)
                & (moved <= reach)
                # The fix that reaches the line, and those around the finish
                # that time it, go the general way; before, near the line,
                # and after a finish timed for good (a mass race's
                # finished thousands walking about) they are usual.
                & ((st.progress[idx] < c.length_m - FINISH_TOLERANCE_M) | (t > st.final_t[idx]))
            )
        go = np.flatnonzero(ok)
        progress = st.progress[idx[go]]
        ahead, expect, prefer = search_window(
            progress, dt[go], max_mps[go], st.expect_speed[idx[go]]
        )
        d, off, fits = c.project_columns(
            lat[go], lon[go], progress, ahead, expect, prefer, self.race.off_course_m
        )
        # Not finished: this fix must not bring them to the line (that
        # declares the finish, the general way).
        before_line = (
            np.minimum(d, progress + reach[go]) < c.length_m - FINISH_TOLERANCE_M
        ) | ~np.isnan(st.finish_t[idx[go]])
        fits &= before_line
        go = go[fits]
        order = self.order
        recent: list[float | None] = []
        reached: list[float] = []
        for i, ft, fa, fo, pd, po in zip(
            idx[go].tolist(),
            t[go].tolist(),
            lat[go].tolist(),
            lon[go].tolist(),
            d[fits].tolist(),
            off[fits].tolist(),
            strict=True,
        ):
            track = order[i]
            if track.step(ft, fa, fo, pd, po):
                self.full.add(i)
            recent.append(track.recent_mps)
            reached.append(track.progress_m)
        self._track_drops["accepted"] += len(go)
        if len(go):
            st.advanced(
                idx[go],
                t[go],
                lat[go],
                lon[go],
                np.array(recent, dtype=np.float64),  # None (unknown) as nan
                np.minimum(reached, c.length_m),  # distance_m
            )
        rest = np.ones(len(idx), dtype=bool)
        rest[go] = False
        for k in np.flatnonzero(rest).tolist():
            self._add(int(idx[k]), [Fix(float(t[k]), float(lat[k]), float(lon[k]))])

    def _time_problem(self, t: float, i: int) -> str | None:
        if t < self.standings.starts[i]:
            return "before_start"  # privacy: where a racer was before the start
        if self.end_t is not None and t > self.end_t:
            return "after_end"
        return None

    def _on_phone_clock(self, racer_id: str, t: float, arrival: float | None) -> float:
        """The fix's time corrected for its phone's clock (clock.py)."""
        clock = self.clocks.get(racer_id)
        if arrival is not None and (clock is not None or t - arrival > CLOCK_SLACK_S):
            if clock is None:
                clock = self.clocks[racer_id] = PhoneClock()
            clock.observe(t, arrival)
        return t - clock.offset_s if clock is not None else t

    def _hold(self, racer_id: str, t: float, lat: float, lon: float, now: float) -> str:
        """A fix stamped ahead of now: held until its time comes. Counted as
        `future` while it is not published: held, or (too far ahead, too
        many) not kept."""
        held = self._held.setdefault(racer_id, [])
        if t - now <= FUTURE_HORIZON_S and len(held) < MAX_HELD:
            held.append((t, lat, lon))
        return "future"

    def _due(self, now: float) -> dict[int, list[Fix]]:
        """Held fixes whose corrected time has come, to be judged as new."""
        due: dict[int, list[Fix]] = {}
        for racer_id, held in list(self._held.items()):
            index = self.standings.index[racer_id]
            clock = self.clocks.get(racer_id)
            offset = clock.offset_s if clock is not None else 0.0
            keep = []
            track = self.tracks[racer_id]
            for t, lat, lon in held:
                if t - offset <= now:
                    track.undrop("future")  # judged again, as a fix like any other
                    reason = self._time_problem(t - offset, index)
                    if reason is None:
                        self._take(index, Fix(t - offset, lat, lon), due)
                    else:
                        track.drop(reason)
                else:
                    keep.append((t, lat, lon))
            if keep:
                self._held[racer_id] = keep
            else:
                del self._held[racer_id]
        return due

    def seed_clock(self, racer_id: str, offset_s: float) -> None:
        """A phone's offset as last published: a restarted publisher corrects
        the fixes it reads again before it has seen new ones arrive."""
        if racer_id in self.tracks and offset_s:
            clock = self.clocks.setdefault(racer_id, PhoneClock())
            clock.offset_s = offset_s

    def dropped_total(self) -> Counter[str]:
        return self.dropped + Counter(
            {k: v for k, v in self._track_drops.items() if k != "accepted"}
        )

    def state(self, now: float) -> str:
        if now < self.start_t:
            return "pre"
        if self.end_t is not None and now >= self.end_t:
            return "finished"
        if self.tracks and all(t.finish_t is not None for t in self.tracks.values()):
            return "finished"
        return "live"

    def read_mats(self, rows: Iterable[ReadRow], now: float) -> int:
        """Apply timing mats' reads (model/mats.py); returns how many were facts."""
        applied, strangers, changed = self.mats.apply(
            rows, now, self._first_read if self.awaiting.any() else None
        )
        for i, at in list(self._release_at.items()):
            if now >= at:  # no start read came: their start is as scheduled
                self._release(i)
        if strangers:
            self.dropped["not_a_racer"] += strangers
        for i in changed:
            self.standings.refresh(i)
        return applied

    def moment(self, now: float) -> Moment:
        """The whole field ranked at `now` (standings.py): the one ranking;
        racers with mats' reads and no fresh fix placed at `now` first."""
        self._place(now)
        return self.standings.at(now)

    def _place(self, now: float) -> None:
        st = self.standings
        with np.errstate(invalid="ignore"):
            fresh = now - st.fix_t <= self.race.stale_after_s
        was = np.flatnonzero(st.estimated)
        idx, d, speed = self.mats.predict(
            now, fresh, st.state == FINISHED, self.race.default_pace_s_per_km / 1000.0
        )
        for i in np.setdiff1d(was, idx).tolist():  # a fix or a finish says more now
            st.refresh(i)
        if len(idx):
            lat, lon = self.course.at_columns(d)
            st.placed(idx, now, d, lat, lon, speed)
