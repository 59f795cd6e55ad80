"""One racer's track: clean-up of raw fixes, progress, pace, finish. Pure; no I/O.

Only what the race needs stays in memory: the tail (points accepted since the
racer's trail was last cut into a piece, 24 bytes a point), a short window
for pace, and a coarse time-at-distance timeline for gaps (4 bytes per 25 m).
Points leave memory once cut (shapes/trails.py), so memory does not grow with
the number of fixes in the race's history; in a mass race every byte per
point counts.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from ..config import Racer
from .course import OFF_COURSE_M, PREFER_NEAR, Course, Fit, Projection

# Extra distance a fix may cover beyond max speed: GPS error at both ends.
JUMP_SLACK_M = 20.0
# After this many jumps in a row the last accepted fix was the outlier:
# accept again rather than freeze the racer forever.
MAX_JUMPS_IN_A_ROW = 5
# A mark a this many metres: gaps and splits are interpolated between marks at
# the pace the racer came in with, so a coarse step costs little precision.
TIMELINE_STEP_M = 50.0
FINISH_TOLERANCE_M = 15.0  # GPS noise around the finish line
MOVING_MPS = 0.3  # slower than this over the pace window is standing still
# The finish is timed from the fixes this long before and after it: the run-in,
# and the first fixes past the line (a racer may stop soon after it).
FINISH_FIT_S = 10.0
FINISH_FIT_AFTER_S = 4.0
SEARCH_MARGIN_M = 50.0  # searched beyond the furthest a racer could have got
RECENT_EVERY_S = 30.0  # recent trails keep a fix every this much race time
# After a silence this long, where the racer "should be by now" means little
# (they may have stopped, or sped up): a fix that fits several passes of the
# course is put on the first of them, in course order.
LONG_GAP_S = 120.0
# A fix back after a silence that fits several passes is held until the next
# fix shows which way the racer is going (at least this far from it), or for
# at most this long.
HEADING_M = 10.0
GAP_HOLD_S = 60.0


def reach_m(max_mps: Any, dt: Any) -> Any:
    """How far a racer can have gone in dt seconds: at most max speed, and
    GPS error at both ends (floats or numpy arrays alike)."""
    return max_mps * dt + JUMP_SLACK_M


def search_window(near_m: Any, dt: Any, max_mps: Any, speed: Any) -> tuple[Any, Any, Any]:
    """Where on the course to look for a fix dt after the last (floats or
    numpy arrays alike: the general path and the vectorised one): how far
    ahead of near_m, where the racer should be by now at `speed`, and how
    much being near that counts, less the longer since the last fix."""
    return (
        reach_m(max_mps, dt) + SEARCH_MARGIN_M,
        near_m + dt * speed,
        PREFER_NEAR / (1.0 + dt / 60.0),
    )


class Fix(NamedTuple):  # a tuple: cheap to build, one per accepted row
    t: float  # epoch seconds
    lat: float
    lon: float


# Fix(t, lat, lon) without the Python-level __new__ a NamedTuple calls (a
# quarter of the cost of building one): _new_fix(Fix, (t, lat, lon)).
_new_fix = tuple.__new__


class Search(NamedTuple):
    """Where on the course to look for a fix, as Course.project takes it."""

    near_m: float  # the racer's progress so far
    ahead_m: float  # how far past it they could have got
    expect_m: float  # where they should be by now
    prefer: float  # how much being near expect_m counts
    in_order: bool  # after a long silence: the first pass that fits


@dataclass(frozen=True)
class Rules:
    """The per-race (and per-kind) thresholds a track is judged by."""

    start_t: float = 0.0  # the race's start (epoch seconds)
    max_mps: float = 30 / 3.6
    # Points accepted since the last cut that make the tail `full` (the
    # trails cut it then at the latest: shapes/trails.py).
    chunk_points: int = 30
    pace_window_s: float = 60.0
    off_course_m: float = OFF_COURSE_M
    # Fixes closer together than this are not accepted (too_frequent): a phone
    # sending many a second would otherwise cost every spectator chunks.
    min_spacing_s: float = 1.0
    timeline_step_m: float = TIMELINE_STEP_M

    @cached_property
    def pace_baseline_s(self) -> float:
        """The shortest span the pace window gives a steady figure over."""
        return min(10.0, self.pace_window_s / 2)

    @cached_property
    def finish_zone_m(self) -> float:
        """Fixes that time the finish are at most FINISH_FIT_S before it: that
        far at top speed, with room to spare, is where approach is kept."""
        return self.max_mps * 3 * FINISH_FIT_S + 100.0


@dataclass(slots=True)
class Track:
    racer: Racer
    course: Course
    rules: Rules
    last: Fix | None = None
    unconfirmed: Fix | None = None  # a first fix waiting for the next to confirm it
    # A fix after a long silence that fits several passes of the course,
    # waiting for the next fix to tell which (with the passes that fit).
    after_gap: tuple[Fix, list[Fit]] | None = None
    progress_m: float = 0.0  # best progress so far (extended past the finish)
    offset_m: float = 0.0
    finish_t: float | None = None
    # When the first fix past the line came: the finish is timed for good.
    finish_final_t: float | None = None
    count: int = 0  # accepted fixes
    # Points accepted since the trail was last cut, as flat (lat, lon, t)
    # triples: a list per point would cost ~200 bytes, and big fields keep
    # hundreds a racer.
    tail_xyt: array[float] = field(default_factory=lambda: array("d"))
    # The tail thinned as it grows: the first fix of each RECENT_EVERY_S of
    # race time, and the last before a silence (the large form's recent
    # trails; see recent()).
    recent_xyt: array[float] = field(default_factory=lambda: array("d"))
    _recent_slot: float = -1.0
    # Flat (t, progress) pairs over the pace window, and (t, raw projection)
    # pairs near the finish: an empty deque costs far more than the pairs,
    # and a deque of tuples made and freed with every fix scattered the heap
    # (DESIGN.md, Memory).
    window: array[float] = field(default_factory=lambda: array("d"))
    approach: array[float] = field(default_factory=lambda: array("d"))
    # When progress first reached each multiple of rules.timeline_step_m, in seconds
    # after the start as float32 (1 ms steps over a day; 4 bytes a mark).
    timeline: array[float] = field(default_factory=lambda: array("f"))
    dropped: Counter[str] = field(default_factory=Counter)
    # Timing mats' reads of the racer (model/mats.py): when each read them,
    # by mats.mat_key of its name. Facts: their splits and finish.
    mat_t: dict[str, float] = field(default_factory=dict)
    # The race's running total of drops by reason, shared by its tracks: the
    # publisher logs it every cycle, and summing every racer's would cost a
    # mass race's cycle dearly.
    race_drops: Counter[str] = field(default_factory=Counter)
    jumps_in_a_row: int = 0
    # Metres per second of progress over the pace window (0 when stopped,
    # None over too short a baseline), worked out once per accepted fix.
    recent_mps: float | None = None
    # The tail is full at this many floats (3 a point): chunk_points, or
    # what the trails set for a first cut (they stagger them).
    cut_len: int = field(init=False)
    # The racer's own start (a wave, a chip read), else the race's: their
    # times are net of it, and nothing of them before it is published.
    start_t: float = field(init=False)

    def __post_init__(self) -> None:
        self.cut_len = 3 * self.rules.chunk_points
        self.start_t = self.scheduled_t

    @property
    def scheduled_t(self) -> float:
        """Their start as scheduled: their wave's (entrants file), else the gun."""
        own = self.racer.start.timestamp() if self.racer.start is not None else -math.inf
        return max(self.rules.start_t, own)

    @property
    def full(self) -> bool:
        """Whether the points since the last cut make a chunk."""
        return len(self.tail_xyt) >= self.cut_len

    def add(self, fixes: list[Fix]) -> bool:
        """Accept the valid fixes (any order); return whether the tail is full."""
        for fix in sorted(fixes, key=lambda f: f.t):
            if self.last is None and not self._confirm_first(fix):
                continue
            if self.admit(fix):
                self._take(fix)
        return self.full

    def take_tail(self) -> array[float]:
        """The points since the last cut, handed over to be published as a
        piece of the trail; the tail (and its thinned copy) start again."""
        tail = self.tail_xyt
        self.tail_xyt = array("d")
        self.recent_xyt = array("d")
        self._recent_slot = -1.0
        return tail

    def trim(self, before_t: float) -> None:
        """Let go of tail points older than `before_t` (a standby's: the
        publisher it stands by for has published them)."""
        tail = self.tail_xyt
        k = 0
        while k < len(tail) and tail[k + 2] < before_t:
            k += 3
        if k:
            del tail[:k]
            recent = self.recent_xyt
            j = 0
            while j < len(recent) and recent[j + 2] < before_t:
                j += 3
            del recent[:j]

    def _take(self, fix: Fix) -> None:
        """Accept an admitted fix, unless it comes back after a long silence
        fitting several passes of the course: then it waits for the next."""
        if self.after_gap is not None:
            held, passes = self.after_gap
            self.after_gap = None
            self._accept(held, self._choose(passes, held, fix))
        s = self.search(fix)
        if s.in_order:
            passes = self.course.fits(
                fix.lat, fix.lon, s.near_m, s.ahead_m, self.rules.off_course_m
            )
            if len(passes) > 1:
                self.after_gap = (fix, passes)
                return
            if passes:
                self._accept(fix, Projection(passes[0].distance_m, passes[0].offset_m))
                return
        self._accept(fix)

    def _choose(self, passes: list[Fit], held: Fix, then: Fix | None) -> Projection:
        """Which pass a fix after a silence was on: the one whose direction
        the racer's next move follows; without a move to go by, the first
        along the course (never one they cannot have reached yet). Laps look
        alike, every one the same way: of the passes the move fits, the one
        nearest where the racer should be by now."""
        best, fitting = passes[0], passes
        if then is not None:
            (ax, ay), (bx, by) = (
                self.course.to_xy(held.lat, held.lon),
                self.course.to_xy(then.lat, then.lon),
            )
            moved = math.hypot(bx - ax, by - ay)
            if moved >= HEADING_M:
                along = [(bx - ax) * p.east + (by - ay) * p.north for p in passes]
                best = passes[along.index(max(along))]
                fitting = [p for p, a in zip(passes, along, strict=True) if a >= max(along) - 1.0]
        if self.course.laps > 1:
            expect = self.search(held).expect_m
            best = min(fitting, key=lambda p: abs(p.distance_m - expect))
        return Projection(best.distance_m, best.offset_m)

    def settle(self, now: float) -> bool:
        """Place a fix held after a silence once no next fix came in time;
        return whether the tail is full."""
        if self.after_gap is not None and now - self.after_gap[0].t > GAP_HOLD_S:
            held, passes = self.after_gap
            self.after_gap = None
            self._accept(held, self._choose(passes, held, None))
        return self.full

    def admit(self, fix: Fix) -> bool:
        """Whether a fix after the last one passes the checks (counted if not)."""
        reason = self._reject(fix)
        if reason:
            self.drop(reason)
            return False
        return True

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        self.race_drops[reason] += 1

    def undrop(self, reason: str) -> None:
        """A row counted as dropped (held back) is judged again after all."""
        for counter in (self.dropped, self.race_drops):
            counter[reason] -= 1
            if counter[reason] <= 0:
                del counter[reason]

    def search(self, fix: Fix) -> Search:
        """Where to look for a fix on the course. After the last fix, where
        the racer should be by now; a first fix, anywhere reachable since the
        start; after a long silence, the first pass of the course that fits."""
        rules = self.rules
        if self.last is None:
            dt = max(fix.t - self.start_t, 0.0)
            prev_d = speed = 0.0
        else:
            dt = max(fix.t - self.last.t, 0.0)
            prev_d = self.progress_m
            speed = self.recent_speed() or self.average_speed() or 0.0
        ahead, expect, prefer = search_window(prev_d, dt, rules.max_mps, speed)
        return Search(prev_d, ahead, expect, prefer, self.last is not None and dt > LONG_GAP_S)

    def recent(self) -> array[float]:
        """The tail thinned to the first fix of each RECENT_EVERY_S of race
        time, the last before each silence of RECENT_EVERY_S or more, and
        the newest, as flat (lat, lon, t): what bridges the last chunk to
        the racer's position with no straight line longer than twice
        RECENT_EVERY_S but where the racer's phone was silent."""
        out = array("d", self.recent_xyt)
        if len(self.tail_xyt) and (not out or out[-1] != self.tail_xyt[-1]):
            out.extend(self.tail_xyt[-3:])
        return out

    def _thin(self, t: float, lat: float, lon: float, prev: Fix | None) -> None:
        recent = self.recent_xyt
        if prev is not None and t - prev.t >= RECENT_EVERY_S and recent and recent[-1] != prev.t:
            # Kept only after the fact: the fix before a silence (else the
            # line drawn across the silence starts up to a slot earlier).
            recent.extend((prev.lat, prev.lon, prev.t))
        slot = (t - self.rules.start_t) // RECENT_EVERY_S
        if slot != self._recent_slot:
            self._recent_slot = slot
            recent.extend((lat, lon, t))

    def _reject(self, fix: Fix) -> str | None:
        last = self.after_gap[0] if self.after_gap is not None else self.last
        if last is None:
            return None
        if fix.t == last.t:
            return "duplicate"
        if fix.t < last.t:
            return "out_of_order"
        if fix.t - last.t < self.rules.min_spacing_s:
            return "too_frequent"
        dist = _metres(self.course, last, fix)
        if dist > reach_m(self.rules.max_mps, fix.t - last.t):
            self.jumps_in_a_row += 1
            if self.jumps_in_a_row < MAX_JUMPS_IN_A_ROW:
                return "jump"
        self.jumps_in_a_row = 0
        return None

    def _confirm_first(self, fix: Fix) -> bool:
        """A racer's first fix is held until the next one agrees with it.

        A phone's first fix is often a coarse cell-tower guess; with no fix
        before it, only the one after can tell. Returns True when `fix` may
        go on to the usual checks (the held fix having been accepted)."""
        held = self.unconfirmed
        if held is None or fix.t <= held.t:
            if held is not None and fix.t == held.t:
                self.drop("duplicate")
            elif held is not None and held.t - fix.t < self.rules.min_spacing_s:
                self.drop("too_frequent")
            elif self._plausible_first(fix):
                if held is not None:
                    self.drop("jump")  # an earlier fix came late: keep it instead
                self.unconfirmed = fix
            else:
                self.drop("jump")
            return False
        if fix.t - held.t < self.rules.min_spacing_s:
            self.drop("too_frequent")
            return False
        if _metres(self.course, held, fix) <= reach_m(self.rules.max_mps, fix.t - held.t):
            self.unconfirmed = None
            self._accept(held)
            return True
        self.drop("jump")  # the two disagree: the held one goes, this one waits
        self.unconfirmed = fix if self._plausible_first(fix) else None
        return False

    def _plausible_first(self, fix: Fix) -> bool:
        """Near the course, and no further along it than the racer could
        have gone since the start."""
        rules = self.rules
        reach = reach_m(rules.max_mps, max(0.0, fix.t - self.start_t))
        proj = self.course.project(
            fix.lat, fix.lon, near_m=0.0, ahead_m=reach, off_course_m=rules.off_course_m
        )
        return proj.offset_m <= rules.off_course_m and proj.distance_m <= reach

    def _accept(self, fix: Fix, proj: Projection | None = None) -> None:
        rules, length = self.rules, self.course.length_m
        first = self.last is None
        prev_t, prev_d = (fix.t, 0.0) if self.last is None else (self.last.t, self.progress_m)
        if proj is None:
            s = self.search(fix)
            proj = self.course.project(
                fix.lat,
                fix.lon,
                near_m=s.near_m,
                ahead_m=s.ahead_m,
                expect_m=s.expect_m,
                prefer=s.prefer,
                off_course_m=rules.off_course_m,
            )
        prev = self.last
        self.last, self.offset_m = fix, proj.offset_m
        self.count += 1
        self.race_drops["accepted"] += 1
        self.tail_xyt.extend((fix.lat, fix.lon, fix.t))
        self._thin(fix.t, fix.lat, fix.lon, prev)
        # Progress never goes back (GPS noise would make it shiver), and never
        # leaps further than the racer could have gone: a fix projected onto
        # another leg of a crossing course must not skip the racer ahead.
        reach = (
            proj.distance_m
            if first
            else min(proj.distance_m, prev_d + reach_m(rules.max_mps, fix.t - prev_t))
        )
        if reach > self.progress_m:
            self._advance_timeline(prev_t, prev_d, fix.t, reach)
            self.progress_m = reach
        self._time_finish(fix, proj.distance_m, proj.offset_m, prev_t, prev_d)
        self._pace(fix.t, min(self.progress_m, length))

    def _pace(self, t: float, progress: float) -> None:
        """Add to the pace window (keeping one point at or before its start),
        and work out the recent speed: progress over the window, in m/s
        (0 when standing still; None over too short a baseline)."""
        window, rules = self.window, self.rules
        window.extend((t, progress))
        start = t - rules.pace_window_s
        while len(window) > 4 and window[2] <= start:
            del window[:2]
        if len(window) < 4 or t - window[0] < rules.pace_baseline_s:
            self.recent_mps = None
            return
        speed = (progress - window[1]) / (t - window[0])
        self.recent_mps = speed if speed >= MOVING_MPS else 0.0

    def _near_line(self, t: float, raw_m: float) -> None:
        """Keep the fixes of the last 2 * FINISH_FIT_S that time the finish."""
        approach = self.approach
        approach.extend((t, raw_m))
        cut = 0
        while approach[cut] < t - 2 * FINISH_FIT_S:
            cut += 2
        if cut:
            del approach[:cut]

    def step(self, t: float, lat: float, lon: float, d: float, off: float) -> bool:
        """_accept for the usual fix, in one call (RaceState._advance_usual
        checked it is one: after the last fix, not after a long silence, not
        reaching the finish line nor timing it; projected already at d, off). The same arithmetic
        as _accept, in the same order, so the same result; the caller counts
        it. Returns whether the tail is full.

        It runs for every fix of a catch-up (millions of them hours into a
        mass race), so _thin is written out here: a Python call costs about
        as much as what it does (tests/test_race.py holds the two ways equal
        fix by fix)."""
        rules = self.rules
        last = self.last
        assert last is not None
        prev_t = last.t
        progress = prev_d = self.progress_m
        self.last, self.offset_m = _new_fix(Fix, (t, lat, lon)), off
        self.count += 1
        tail = self.tail_xyt
        tail.extend((lat, lon, t))
        recent = self.recent_xyt  # _thin
        if t - prev_t >= RECENT_EVERY_S and recent and recent[-1] != prev_t:
            recent.extend((last.lat, last.lon, prev_t))
        slot = (t - rules.start_t) // RECENT_EVERY_S
        if slot != self._recent_slot:
            self._recent_slot = slot
            recent.extend((lat, lon, t))
        reach = min(d, prev_d + reach_m(rules.max_mps, t - prev_t))
        if reach > prev_d:
            if len(self.timeline) * rules.timeline_step_m <= reach:  # a mark passed
                self._advance_timeline(prev_t, prev_d, t, reach)
            self.progress_m = progress = reach
        length = self.course.length_m
        self._pace(t, progress if progress < length else length)
        if self.finish_t is not None or progress >= length - rules.finish_zone_m:
            # _time_finish's bookkeeping near the line (the caller checked
            # this fix does not reach it) and past a finish timed for good.
            self._near_line(t, d)
        return len(tail) >= self.cut_len

    @property
    def finish_zone_m(self) -> float:
        return self.rules.finish_zone_m

    def _time_finish(
        self, fix: Fix, raw_m: float, offset_m: float, prev_t: float, prev_d: float
    ) -> None:
        """Detect the finish, and time it from the fixes either side of the line.

        The finish is declared with the first fix near the line; its time is
        refined as the fixes just past it arrive (a line fitted through a
        handful of fixes averages out the noise any single one carries)."""
        length = self.course.length_m
        if self.finish_t is None and self.progress_m < length - self.rules.finish_zone_m:
            return  # far from the line: no fix here can be among those that time it
        self._near_line(fix.t, raw_m)
        if self.finish_final_t is not None:
            return  # timed for good
        if self.finish_t is None:
            if offset_m > self.rules.off_course_m or self.progress_m < length - FINISH_TOLERANCE_M:
                return
            self.finish_t = _interpolate_t(prev_t, prev_d, fix.t, self.progress_m, length)
        if raw_m < length:
            return  # declared within FINISH_TOLERANCE_M of the line: timed once past it
        # The first fix past the line: the finish is where a line through it
        # and the fixes of the run-in before it reaches the line (a handful
        # of fixes average out the noise any one carries; the fixes after
        # it are left out: a racer may stop soon after).
        self.finish_final_t = fix.t
        approach = self.approach
        near = [
            (t, d)
            for t, d in zip(approach[::2], approach[1::2], strict=True)
            if fix.t - FINISH_FIT_S <= t <= fix.t
        ]
        # (A vehicle, which brakes for the stop at the line, by its fixes alone.)
        steady = self.recent_mps if self.racer.kind == "runner" else None
        self.finish_t = _fit_crossing(near, length, steady) or self.finish_t

    def _advance_timeline(self, t0: float, d0: float, t1: float, d1: float) -> None:
        """Record when each timeline mark was passed (interpolated as
        _interpolate_t does, written out: a mark is passed at most fixes)."""
        d1 = min(d1, self.course.length_m)
        step, start = self.rules.timeline_step_m, self.rules.start_t
        timeline = self.timeline
        n = len(timeline)
        mark = n * step
        while mark <= d1:
            if d1 <= d0:
                t = t1
            else:
                d = mark if mark > d0 else d0
                t = t0 + (t1 - t0) * ((d if d < d1 else d1) - d0) / (d1 - d0)
            timeline.append(t - start)
            n += 1
            mark = n * step

    # -- derived numbers -------------------------------------------------------

    @property
    def distance_m(self) -> float:
        return self.progress_m if self.progress_m < self.course.length_m else self.course.length_m

    def times_at(self, distances: np.ndarray, speed: float = 0.0) -> np.ndarray:
        """When this racer first reached each distance (nan: not yet); beyond
        their newest fix, carried on at `speed` if it is given.

        Between two marks, the time is taken at the speed the racer came in
        with, not spread evenly: a trolley that reached a stop and waited
        there reached it when it arrived, not halfway through its wait.
        """
        d = np.asarray(distances, dtype=np.float64)
        out = np.full(len(d), np.nan)
        if self.last is None:
            return out
        marks = np.frombuffer(self.timeline, dtype=np.float32).astype(np.float64)
        step, t0 = self.rules.timeline_step_m, self.rules.start_t
        reached = self.distance_m
        i = np.floor(d / step).astype(np.int64)
        inside = (i >= 0) & (i < len(marks)) & (d <= reached)
        if len(marks):
            ic = np.clip(i, 0, len(marks) - 1)
            at = t0 + marks[ic]
            end = self.finish_t if self.finish_t is not None else self.last.t
            upper = np.where(
                ic + 1 < len(marks), t0 + marks[np.minimum(ic + 1, len(marks) - 1)], end
            )
            beyond = d - ic * step
            pace = (marks[ic] - marks[np.maximum(ic - 1, 0)]) / step  # seconds a metre coming in
            first = at + (upper - at) * beyond / step
            later = np.minimum(at + beyond * pace, upper)
            out = np.where(inside, np.where(ic == 0, first, later), out)
        if self.finish_t is not None:
            out = np.where(d >= self.course.length_m - 1e-6, self.finish_t, out)
        elif speed > 0:
            out = np.where(d > reached, self.last.t + (d - reached) / speed, out)
        return out

    def at_mat(self, d: float, t: float) -> None:
        """A timing mat at `d` read the racer at `t`: they have come that far
        (a fix since may say more; GPS that lost its way says less)."""
        if d <= self.progress_m:
            return
        t0 = self.last.t if self.last is not None else self.start_t
        d0 = self.progress_m
        if t < t0:  # a read older than their newest fix: only the progress stands
            t0, d0 = t, d
        self._advance_timeline(t0, d0, t, d)
        self.progress_m = d

    def finish_by_mat(self, t: float) -> None:
        """The finish mat read the racer at `t`: their finish, for good."""
        self.finish_t = self.finish_final_t = t
        self.at_mat(self.course.length_m, t)

    @property
    def off_course(self) -> bool:
        return self.last is not None and self.offset_m > self.rules.off_course_m

    def recent_speed(self) -> float | None:
        """Metres per second of progress over the pace window (0 when stopped)."""
        return self.recent_mps

    def average_speed(self) -> float | None:
        """Progress over the time since the racer's start (None too early to say)."""
        end_t = self.finish_t if self.finish_t is not None else (self.last.t if self.last else None)
        if end_t is None or end_t <= self.start_t or self.distance_m < 50.0:
            return None
        return self.distance_m / (end_t - self.start_t)


def _interpolate_t(t0: float, d0: float, t1: float, d1: float, d: float) -> float:
    if d1 <= d0:
        return t1
    return t0 + (t1 - t0) * (min(max(d, d0), d1) - d0) / (d1 - d0)


def _fit_crossing(
    points: list[tuple[float, float]], line_m: float, speed: float | None = None
) -> float | None:
    """When a line through recent (time, progress) reaches the line: a
    handful of fixes average out the GPS noise that any single one carries
    (±1 s at running speed). Its slope is the racer's speed over the pace
    window when known (a minute of progress says it better than the few
    seconds of fixes here, each metres off); else fitted to them."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    md = sum(d for _, d in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    slope = (
        speed
        if speed is not None and speed >= MOVING_MPS
        else sum((t - mt) * (d - md) for t, d in points) / var
    )
    if slope < MOVING_MPS:
        return None
    crossing = mt + (line_m - md) / slope
    # A line through noise that crawls (a slow racer, fixes metres apart
    # with metres of noise) can cross the line far beyond its fixes: that
    # is no measurement; the finish stays as it was timed.
    if not points[0][0] - FINISH_FIT_AFTER_S <= crossing <= points[-1][0] + FINISH_FIT_AFTER_S:
        return None
    return crossing


def _metres(course: Course, a: Fix, b: Fix) -> float:
    ax, ay = course.to_xy(a.lat, a.lon)
    bx, by = course.to_xy(b.lat, b.lon)
    return math.hypot(bx - ax, by - ay)
