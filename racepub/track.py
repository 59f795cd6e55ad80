"""One racer's track: clean-up of raw fixes, progress, chunks, pace. Pure; no I/O.

Only what the snapshot needs stays in memory: the tail (points newer than the
last chunk), a short window for pace, and a coarse time-at-distance timeline
for gaps. Chunked points leave memory once handed to the publisher, so memory
does not grow with the race's history.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, deque
from dataclasses import dataclass, field

from .config import Racer
from .course import Course

# Extra distance a fix may cover beyond max speed: GPS error at both ends.
JUMP_SLACK_M = 20.0
# After this many jumps in a row the last accepted fix was the outlier:
# accept again rather than freeze the racer forever.
MAX_JUMPS_IN_A_ROW = 5
PACE_WINDOW_S = 60.0
TIMELINE_STEP_M = 25.0
FINISH_TOLERANCE_M = 15.0  # GPS noise around the finish line
OFF_COURSE_M = 150.0

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")


def racer_key(racer_id: str) -> str:
    """The racer's path segment in object keys and URLs: the id when it is
    URL-safe, else a stable hash (ids may hold spaces, quotes or slashes)."""
    if _SAFE_ID.match(racer_id):
        return racer_id
    return "~" + hashlib.sha256(racer_id.encode()).hexdigest()[:16]


def chunk_key(racer_id: str, n: int) -> str:
    return f"tracks/{racer_key(racer_id)}/{n}.json"


@dataclass(frozen=True, slots=True)
class Fix:
    t: float  # epoch seconds
    lat: float
    lon: float


@dataclass
class Chunk:
    racer_id: str
    n: int
    points: list[Fix]

    @property
    def key(self) -> str:
        return chunk_key(self.racer_id, self.n)


@dataclass
class Track:
    racer: Racer
    course: Course
    chunk_points: int
    max_mps: float
    last: Fix | None = None
    progress_m: float = 0.0  # best progress so far (extended past the finish)
    offset_m: float = 0.0
    finish_t: float | None = None
    count: int = 0  # accepted fixes
    chunks: int = 0  # chunks cut so far
    tail: list[Fix] = field(default_factory=list)
    window: deque[tuple[float, float]] = field(default_factory=deque)  # (t, progress)
    timeline: list[float] = field(default_factory=list)  # t when progress reached k*STEP
    dropped: Counter[str] = field(default_factory=Counter)
    jumps_in_a_row: int = 0

    def add(self, fixes: list[Fix]) -> list[Chunk]:
        """Accept the valid fixes (any order); return chunks that became full."""
        chunks: list[Chunk] = []
        for fix in sorted(fixes, key=lambda f: f.t):
            reason = self._reject(fix)
            if reason:
                self.dropped[reason] += 1
                continue
            self._accept(fix)
            if len(self.tail) >= self.chunk_points:
                chunks.append(Chunk(self.racer.id, self.chunks, self.tail))
                self.chunks += 1
                self.tail = []
        return chunks

    def _reject(self, fix: Fix) -> str | None:
        last = self.last
        if last is None:
            return None
        if fix.t == last.t:
            return "duplicate"
        if fix.t < last.t:
            return "out_of_order"
        if self.finish_t is not None:
            return None
        dist = _metres(self.course, last, fix)
        if dist > self.max_mps * (fix.t - last.t) + JUMP_SLACK_M:
            self.jumps_in_a_row += 1
            if self.jumps_in_a_row < MAX_JUMPS_IN_A_ROW:
                return "jump"
        self.jumps_in_a_row = 0
        return None

    def _accept(self, fix: Fix) -> None:
        near = self.progress_m if self.last is not None else 0.0
        proj = self.course.project(fix.lat, fix.lon, near_m=near)
        prev_t, prev_d = (self.last.t, self.progress_m) if self.last else (fix.t, 0.0)
        self.last, self.offset_m = fix, proj.offset_m
        self.count += 1
        self.tail.append(fix)
        if proj.distance_m > self.progress_m:
            self._advance_timeline(prev_t, prev_d, fix.t, proj.distance_m)
            self.progress_m = proj.distance_m
        length = self.course.length_m
        if (self.finish_t is None and proj.offset_m <= OFF_COURSE_M
                and self.progress_m >= length - FINISH_TOLERANCE_M):
            self.finish_t = _finish_time(prev_t, prev_d, fix.t, self.progress_m, length)
        self.window.append((fix.t, min(self.progress_m, length)))
        while len(self.window) > 2 and self.window[1][0] <= fix.t - PACE_WINDOW_S:
            self.window.popleft()

    def _advance_timeline(self, t0: float, d0: float, t1: float, d1: float) -> None:
        """Record when each TIMELINE_STEP_M mark was passed (interpolated)."""
        d1 = min(d1, self.course.length_m)
        while len(self.timeline) * TIMELINE_STEP_M <= d1:
            mark = len(self.timeline) * TIMELINE_STEP_M
            self.timeline.append(_interpolate_t(t0, d0, t1, d1, max(mark, d0)))

    # -- derived numbers -------------------------------------------------------

    @property
    def distance_m(self) -> float:
        return min(self.progress_m, self.course.length_m)

    def time_at(self, distance_m: float) -> float | None:
        """When this racer passed a distance (None if not yet)."""
        k = distance_m / TIMELINE_STEP_M
        i = math.floor(k)
        if i + 1 < len(self.timeline):
            a, b = self.timeline[i], self.timeline[i + 1]
            return a + (b - a) * (k - i)
        if self.finish_t is not None and distance_m >= self.course.length_m - 1e-6:
            return self.finish_t
        if i < len(self.timeline) and self.last is not None and self.distance_m >= distance_m:
            a = self.timeline[i]
            span = self.distance_m - i * TIMELINE_STEP_M
            return a + (self.last.t - a) * ((distance_m - i * TIMELINE_STEP_M) / span
                                            if span > 0 else 0.0)
        return None

    def recent_pace(self) -> float | None:
        """Seconds per metre over the last PACE_WINDOW_S of progress."""
        if len(self.window) < 2:
            return None
        (t0, d0), (t1, d1) = self.window[0], self.window[-1]
        return (t1 - t0) / (d1 - d0) if d1 - d0 > 5.0 else None

    def average_pace(self, start_t: float) -> float | None:
        end_t = self.finish_t if self.finish_t is not None else (self.last.t if self.last else None)
        if end_t is None or self.distance_m < 50.0:
            return None
        return (end_t - start_t) / self.distance_m


def _interpolate_t(t0: float, d0: float, t1: float, d1: float, d: float) -> float:
    if d1 <= d0:
        return t1
    return t0 + (t1 - t0) * (min(max(d, d0), d1) - d0) / (d1 - d0)


def _finish_time(t0: float, d0: float, t1: float, d1: float, length: float) -> float:
    """When the line was crossed: interpolated between the fixes either side
    of it, or, for a fix just short of it (GPS noise), extrapolated at the
    speed between the last two fixes."""
    if d1 >= length or d1 <= d0 or t1 <= t0:
        return _interpolate_t(t0, d0, t1, d1, length)
    return t1 + (length - d1) * (t1 - t0) / (d1 - d0)


def _metres(course: Course, a: Fix, b: Fix) -> float:
    ax, ay = course.to_xy(a.lat, a.lon)
    bx, by = course.to_xy(b.lat, b.lon)
    return math.hypot(bx - ax, by - ay)
