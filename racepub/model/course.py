"""The course: GPX in, progress along the polyline out. Pure; no I/O but reading the file.

Coordinates are projected to metres with a local equirectangular projection
around the course; over a city race (tens of km) its error is far below GPS
noise, and it keeps every projection a few multiplications.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple
from xml.sax.saxutils import escape

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import Race

EARTH_RADIUS_M = 6_371_008.8
# How far around a racer's last progress to look first: far enough for any
# gap between fixes, near enough that a course crossing itself or running
# out-and-back does not send a racer to the other leg.
SEARCH_BEHIND_M = 60.0
SEARCH_AHEAD_M = 1500.0
# Among stretches of the course near a fix, prefer the one nearest where the
# racer should be: each metre of course distance away from it weighs as much
# as this many metres of distance from the line. Out-and-back legs a few
# metres apart (two sides of a street) then stay apart under GPS noise.
PREFER_NEAR = 0.1
# Further from the course than this, a fix is off course (Race.off_course_m).
OFF_COURSE_M = 150.0
# Past the finish a fix may project beyond the last vertex; keep that overshoot
# (up to this much) so the finish crossing can be interpolated.
OVERSHOOT_M = 300.0
# project_columns handles fixes whose search window spans at most this many
# segments (a fix a minute at 30 km/h on a course with a vertex every 10 m
# spans ~65); a racer back after a long silence is searched one by one.
BATCH_SEGMENTS = 256
# Candidates projected in one block: each temporary array stays in the CPU's
# cache and under the C heap's mapping threshold (DESIGN.md, Memory).
BLOCK_CANDIDATES = 1 << 14
# The widths fixes are grouped by, each a quarter more than the one before:
# a window is padded to its group's width, so coarser steps (doubling)
# computed up to twice the candidates needed (a third more, on average).
WIDTHS = [8]
while WIDTHS[-1] < BATCH_SEGMENTS:
    WIDTHS.append(min(BATCH_SEGMENTS, math.ceil(WIDTHS[-1] * 1.25)))
# After a long silence the stretch searched may pass the same place twice (a
# course that comes back near itself). Stretches this close to the fix as the
# nearest one are equally likely by position alone; course order decides.
AMBIGUOUS_M = 30.0


class Fit(NamedTuple):
    """One pass of the course near a fix (Course.fits)."""

    distance_m: float
    offset_m: float
    east: float  # the course's direction there, a unit vector
    north: float


@dataclass(frozen=True)
class Waypoint:
    """A named point of the GPX (<wpt>): a checkpoint, a stop, an aid station."""

    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Projection:
    distance_m: float  # progress along the course; may exceed length_m past the finish
    offset_m: float  # distance from the course line


# A lap's finish this near its start makes it a loop: it can be run laps times.
LOOP_CLOSE_M = 100.0


class Course:
    def __init__(
        self,
        points: Sequence[tuple[float, float]],
        elevations: Sequence[float | None] | None = None,
        waypoints: Sequence[Waypoint] = (),
        source: str = "track",
    ):
        keep = [i for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
        pts = [points[i] for i in keep]
        if len(pts) < 2:
            raise ValueError("a course needs at least two distinct points")
        self.points: tuple[tuple[float, float], ...] = tuple(pts)
        # Metres above sea level per point, when the GPX has them (else None).
        self.elevations: tuple[float | None, ...] = (
            tuple(elevations[i] for i in keep) if elevations else (None,) * len(pts)
        )
        self.waypoints = tuple(waypoints)
        self.source = source  # "track" or "route": which part of the GPX it came from
        # A race of several laps runs a lap laps times (with_laps): the lap,
        # and how far one is along the course.
        self.laps = 1
        self.lap: Course = self
        # The local projection to metres: x = (lon - lon0) * kx, y = (lat - lat0) * ky.
        lat0 = sum(p[0] for p in pts) / len(pts)
        self.lat0, self.lon0 = lat0, sum(p[1] for p in pts) / len(pts)
        self.ky = EARTH_RADIUS_M * math.pi / 180
        self.kx = self.ky * math.cos(math.radians(lat0))
        self._xy = [self.to_xy(lat, lon) for lat, lon in pts]
        cum = [0.0]
        for (ax, ay), (bx, by) in zip(self._xy, self._xy[1:], strict=False):
            cum.append(cum[-1] + math.hypot(bx - ax, by - ay))
        self.cum: tuple[float, ...] = tuple(cum)
        self.length_m: float = cum[-1]
        self.lap_m: float = self.length_m
        # Per segment: start (x, y), direction, 1/length², length, distance at start.
        self._segs: list[tuple[float, float, float, float, float, float, float]] = []
        for i, ((ax, ay), (bx, by)) in enumerate(zip(self._xy, self._xy[1:], strict=False)):
            dx, dy = bx - ax, by - ay
            seg2 = dx * dx + dy * dy
            self._segs.append(
                (ax, ay, dx, dy, 1.0 / seg2 if seg2 else 0.0, math.sqrt(seg2), cum[i])
            )
        # The same, as columns, for project_columns.
        self._cols = np.array(self._segs).T
        self._cum = np.array(cum)
        self._grids: dict[float, _Grid] = {}

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def xy_columns(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """to_xy for many points at once: the same arithmetic."""
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.lat0 + y / self.ky, self.lon0 + x / self.kx

    def at_columns(self, distance_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """at() for many distances at once: (lat, lon) arrays."""
        d = np.clip(distance_m, 0.0, self.length_m)
        xy = np.array(self._xy)
        x, y = np.interp(d, self._cum, xy[:, 0]), np.interp(d, self._cum, xy[:, 1])
        return self.lat0 + y / self.ky, self.lon0 + x / self.kx

    def at(self, distance_m: float) -> tuple[float, float]:
        """The (lat, lon) at a distance along the course (clamped to the course)."""
        d = min(max(distance_m, 0.0), self.length_m)
        i = min(max(bisect_right(self.cum, d) - 1, 0), len(self.cum) - 2)
        seg = self.cum[i + 1] - self.cum[i]
        t = (d - self.cum[i]) / seg if seg else 0.0
        (ax, ay), (bx, by) = self._xy[i], self._xy[i + 1]
        return self.to_latlon(ax + t * (bx - ax), ay + t * (by - ay))

    def beyond(self, distance_m: float) -> tuple[float, float]:
        """(x, y) at a distance along the course, carrying on straight past
        the finish (where racers run through the line)."""
        if distance_m <= self.length_m:
            return self.to_xy(*self.at(distance_m))
        (ax, ay), (bx, by) = self._xy[-2], self._xy[-1]
        seg = self.cum[-1] - self.cum[-2]
        k = (distance_m - self.length_m) / seg if seg else 0.0
        return bx + (bx - ax) * k, by + (by - ay) * k

    def project(
        self,
        lat: float,
        lon: float,
        near_m: float | None = None,
        *,
        ahead_m: float = SEARCH_AHEAD_M,
        expect_m: float | None = None,
        prefer: float = PREFER_NEAR,
        off_course_m: float = OFF_COURSE_M,
    ) -> Projection:
        """Project a fix onto the course, preferring the stretch near `near_m`.

        With a hint, only the stretch from a little behind the racer's last
        progress to as far ahead as they could have got (`ahead_m`) is tried,
        and within it the place nearest `expect_m` (where they should be by
        now) wins ties between legs, each metre away from it weighing
        `prefer` metres of distance from the line.

        Only segments within `off_course_m` of the fix are ever looked at (a
        spatial grid finds them), so a fix costs the same on a 10,000-point
        course as on a 20-point one, and a fix far from the course costs
        nothing: it is off course (offset infinite) and gains no progress.
        A fix on the course but outside the stretch searched projects onto
        the nearest place there (the caller bounds how far that may take the
        racer).
        """
        x, y = self.to_xy(lat, lon)
        near = self._grid(off_course_m).near(x, y)
        if not near:
            return Projection(distance_m=near_m or 0.0, offset_m=math.inf)
        if near_m is not None:
            lo = max(bisect_left(self.cum, near_m - SEARCH_BEHIND_M) - 1, 0)
            hi = min(bisect_right(self.cum, near_m + ahead_m), len(self._segs) - 1)
            inside = near[bisect_left(near, lo) : bisect_right(near, hi)]
            if inside:
                best = self._nearest(x, y, inside, near_m if expect_m is None else expect_m, prefer)
                if best.offset_m <= off_course_m:
                    return best
        return self._nearest(x, y, near)

    def project_columns(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        near_m: np.ndarray,
        ahead_m: np.ndarray,
        expect_m: np.ndarray,
        prefer: np.ndarray,
        off_course_m: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """project() for many fixes at once, the same arithmetic in the same
        order: (distance, offset, fits), fits false where the fix needs the
        one-at-a-time path (a window too wide, or off the stretch searched;
        tests/test_course.py holds the two equal). A large race's
        cycle projects thousands of fixes, one per racer; one at a time in
        Python that was most of the cycle. Fixes are projected in groups by
        how many segments their stretch spans, each group as wide as it
        needs (a few racers back after a pause would widen every row)."""
        n = len(lat)
        d_out, off_out = np.zeros(n), np.full(n, np.inf)
        fits = np.zeros(n, dtype=bool)
        if n == 0:
            return d_out, off_out, fits
        last = len(self._segs) - 1
        lo = np.maximum(np.searchsorted(self._cum, near_m - SEARCH_BEHIND_M, "left") - 1, 0)
        hi = np.minimum(np.searchsorted(self._cum, near_m + ahead_m, "right"), last)
        span = hi - lo + 1
        narrower = -math.inf  # the first group takes empty windows too (past the end)
        for width in WIDTHS:
            group = np.flatnonzero((span <= width) & (span > narrower))
            narrower = width
            # In blocks of BLOCK_CANDIDATES: each of the ~20 temporary arrays
            # of a block stays in the CPU's cache (a catch-up round of 50,000
            # racers at 256 segments each would take gigabytes at once).
            step = max(1, BLOCK_CANDIDATES // width)
            for b in range(0, len(group), step):
                rows = group[b : b + step]
                d, off = self._nearest_columns(
                    lat[rows], lon[rows], lo[rows], hi[rows], width, expect_m[rows], prefer[rows]
                )
                d_out[rows], off_out[rows] = d, off
                fits[rows] = off <= off_course_m
        return d_out, off_out, fits

    def _nearest_columns(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        width: int,
        expect_m: np.ndarray,
        prefer: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        ax, ay, dx, dy, inv2, seg, start = self._cols
        last = len(self._segs) - 1
        x = (lon - self.lon0) * self.kx
        y = (lat - self.lat0) * self.ky
        idx = lo[:, None] + np.arange(width)[None, :]
        inside = idx <= hi[:, None]
        idx = np.minimum(idx, last)
        xs, ys = x[:, None], y[:, None]
        sax, say, sdx, sdy, sseg = ax[idx], ay[idx], dx[idx], dy[idx], seg[idx]
        t = ((xs - sax) * sdx + (ys - say) * sdy) * inv2[idx]
        is_last = idx == last
        t = np.where(t < 0.0, 0.0, t)
        t = np.where((t > 1.0) & (~is_last | (sseg == 0.0)), 1.0, t)
        with np.errstate(divide="ignore"):
            over = 1.0 + OVERSHOOT_M / sseg
        t = np.where(is_last & (sseg != 0.0) & (t > over), over, t)
        ex, ey = (xs - sax) - t * sdx, (ys - say) - t * sdy
        off2 = ex * ex + ey * ey
        d = start[idx] + t * sseg
        score = np.sqrt(off2) + prefer[:, None] * np.abs(d - expect_m[:, None])
        score = np.where(inside, score, np.inf)
        best = score.argmin(axis=1)
        rows = np.arange(len(lat))
        return d[rows, best], np.sqrt(off2[rows, best])

    def _project_on(self, i: int, x: float, y: float) -> tuple[float, float]:
        """(squared offset, distance along the course) of (x, y) on segment i."""
        ax, ay, dx, dy, inv2, seg, start = self._segs[i]
        t = ((x - ax) * dx + (y - ay) * dy) * inv2
        if t < 0.0:
            t = 0.0
        elif t > 1.0 and (i != len(self._segs) - 1 or seg == 0.0):
            t = 1.0
        elif i == len(self._segs) - 1 and t > 1.0 + OVERSHOOT_M / seg:
            t = 1.0 + OVERSHOOT_M / seg  # past the finish: kept, to time the crossing
        ex, ey = x - ax - t * dx, y - ay - t * dy
        return ex * ex + ey * ey, start + t * seg

    def _nearest(
        self,
        x: float,
        y: float,
        segments: Sequence[int],
        near_m: float | None = None,
        prefer: float = 0.0,
    ) -> Projection:
        # The hot loop of every cycle (one pass per fix): squared distances,
        # precomputed segments, no calls, one sqrt at the end.
        best_score, best_off2, best_d = math.inf, math.inf, 0.0
        segs = self._segs
        last = len(segs) - 1
        near = 0.0 if near_m is None else near_m
        for i in segments:
            ax, ay, dx, dy, inv2, seg, start = segs[i]
            t = ((x - ax) * dx + (y - ay) * dy) * inv2
            if t < 0.0:
                t = 0.0
            elif t > 1.0 and (i != last or seg == 0.0):
                t = 1.0
            elif i == last and t > 1.0 + OVERSHOOT_M / seg:
                t = 1.0 + OVERSHOOT_M / seg  # past the finish: kept, to time the crossing
            ex, ey = x - ax - t * dx, y - ay - t * dy
            off2 = ex * ex + ey * ey
            d = start + t * seg
            if prefer:
                score = math.sqrt(off2) + prefer * (d - near if d > near else near - d)
            else:
                score = off2
            if score < best_score:
                best_score, best_off2, best_d = score, off2, d
        return Projection(distance_m=best_d, offset_m=math.sqrt(best_off2))

    def fits(
        self, lat: float, lon: float, near_m: float, ahead_m: float, off_course_m: float
    ) -> list[Fit]:
        """Every pass of the course that fits a fix about as well as the
        best one, in course order: a racer back after a long silence may be
        on any of them (a course that comes back near itself, an out-and-back).
        Each run of consecutive segments near the fix counts once, at its
        nearest point. [] if no pass in the stretch searched is within
        `off_course_m`."""
        x, y = self.to_xy(lat, lon)
        near = self._grid(off_course_m).near(x, y)
        lo = max(bisect_left(self.cum, near_m - SEARCH_BEHIND_M) - 1, 0)
        hi = min(bisect_right(self.cum, near_m + ahead_m), len(self._segs) - 1)
        found = [
            (i, off2, d)
            for i in near[bisect_left(near, lo) : bisect_right(near, hi)]
            for off2, d in [self._project_on(i, x, y)]
            if d >= near_m - SEARCH_BEHIND_M and off2 <= off_course_m**2
        ]
        if not found:
            return []
        limit = (min(off2 for _, off2, _ in found) ** 0.5 + AMBIGUOUS_M) ** 2
        passes: list[tuple[int, float, float]] = []
        prev = -2
        for i, off2, d in found:
            if off2 > limit:
                continue
            if passes and i == prev + 1:
                if off2 < passes[-1][1]:
                    passes[-1] = (i, off2, d)
            else:
                passes.append((i, off2, d))
            prev = i
        return [Fit(d, math.sqrt(off2), *self.heading(i)) for i, off2, d in passes]

    def heading(self, segment: int) -> tuple[float, float]:
        """The unit vector (east, north) along a segment, in course direction."""
        _, _, dx, dy, _, seg, _ = self._segs[segment]
        return (dx / seg, dy / seg) if seg else (0.0, 0.0)

    def _grid(self, radius_m: float) -> _Grid:
        grid = self._grids.get(radius_m)
        if grid is None:
            grid = self._grids[radius_m] = _Grid(self._xy, radius_m)
        return grid

    def profile(self, samples: int = 200) -> list[list[float]] | None:
        """[[distance m, elevation m], ...] at `samples` even steps along the
        course (elevation interpolated between the GPX's points); None when
        the GPX has no elevation."""
        known = [(d, e) for d, e in zip(self.cum, self.elevations, strict=True) if e is not None]
        if len(known) < 2:
            return None
        ds = np.array([d for d, _ in known])
        es = np.array([e for _, e in known])
        at = np.linspace(0.0, self.length_m, samples)
        return [
            [round(float(d), 1), round(float(e), 1)]
            for d, e in zip(at, np.interp(at, ds, es), strict=True)
        ]

    def climb(self, threshold_m: float = 3.0) -> tuple[float, float] | None:
        """(total climb, total descent) in metres; changes smaller than
        `threshold_m` are GPS noise, not hills (hysteresis). None without
        elevation."""
        heights = [e for e in self.elevations if e is not None]
        if len(heights) < 2:
            return None
        up = down = 0.0
        ref = heights[0]
        for e in heights[1:]:
            if e - ref >= threshold_m:
                up, ref = up + e - ref, e
            elif ref - e >= threshold_m:
                down, ref = down + ref - e, e
        return round(up, 1), round(down, 1)

    def with_laps(self, laps: int) -> Course:
        """This course (a lap of a loop) run `laps` times, one after the
        other, as one course: progress is along all of it, so a racer on lap
        2 is a lap's distance further than on lap 1 (what organizers draw by
        hand as a "shadow track"), and a fix is searched for near where the
        racer is, on their lap. ValueError when the lap is not a loop."""
        if laps <= 1:
            return self
        (sx, sy), (fx, fy) = self._xy[0], self._xy[-1]
        gap = math.hypot(fx - sx, fy - sy)
        if gap > LOOP_CLOSE_M:
            raise ValueError(
                f"its finish is {gap:.0f} m from its start: a course run in laps must be "
                f"a loop (its finish within {LOOP_CLOSE_M:.0f} m of its start)"
            )
        run = Course(
            list(self.points) * laps, list(self.elevations) * laps, self.waypoints, self.source
        )
        run.laps, run.lap, run.lap_m = laps, self, self.length_m + gap
        return run

    def geometry(self, decimals: int = 6) -> list[list[float]]:
        return [[round(lat, decimals), round(lon, decimals)] for lat, lon in self.points]

    def simplified(self, max_points: int = 5_000) -> Course:
        """The course in at most max_points points, for drawing (the page
        embeds it): the points that keep it nearest its shape (_simplify),
        the start and the finish exactly; itself when it has no more."""
        if len(self.points) <= max_points:
            return self
        keep = _simplify(np.array(self._xy), max_points)
        return Course(
            [self.points[i] for i in keep],
            [self.elevations[i] for i in keep],
            self.waypoints,
            self.source,
        )


class _Grid:
    """Which segments pass within `radius` of a point: a hash grid of cells
    twice the radius, each segment registered in the 3 x 3 cells around
    points sampled along it every half radius. A query reads one cell: a
    superset of the segments within the radius, in course order."""

    def __init__(self, xy: list[tuple[float, float]], radius: float):
        self.cell = 2.0 * max(radius, 1.0)
        cells: dict[tuple[int, int], set[int]] = {}
        step = self.cell / 4
        for i, ((ax, ay), (bx, by)) in enumerate(zip(xy, xy[1:], strict=False)):
            n = max(1, math.ceil(math.hypot(bx - ax, by - ay) / step))
            for k in range(n + 1):
                cx, cy = self._key(ax + (bx - ax) * k / n, ay + (by - ay) * k / n)
                for ox in (-1, 0, 1):
                    for oy in (-1, 0, 1):
                        cells.setdefault((cx + ox, cy + oy), set()).add(i)
        self.cells = {key: tuple(sorted(v)) for key, v in cells.items()}

    def _key(self, x: float, y: float) -> tuple[int, int]:
        return math.floor(x / self.cell), math.floor(y / self.cell)

    def near(self, x: float, y: float) -> tuple[int, ...]:
        if not (math.isfinite(x) and math.isfinite(y)):
            return ()
        return self.cells.get(self._key(x, y), ())


def load_gpx(path: Path) -> Course:
    """A GPX course: its track (every segment in order) or, when the track is
    missing or degenerate (fewer than two distinct points), its route; with
    elevations and named waypoints.

    Read as it streams through defusedxml's parser (entity tricks, billion
    laughs and external entities are refused), keeping only what a course
    needs: positions, elevations and waypoint names. Everything else a
    device or app writes (<fix>, <time>, extensions, values outside the GPX
    schema) is left unread, so one odd optional element does not refuse a
    whole course. At most MAX_COURSE_POINTS points and MAX_COURSE_M long."""
    reader = _GpxReader(path)
    try:
        f = path.open("rb")
    except OSError as e:
        raise UsageError(f"{path}: cannot read GPX course: {e.strerror}") from None
    with f:
        try:
            reader.read(f)
        except UsageError:
            raise
        except OSError as e:
            raise UsageError(f"{path}: cannot read GPX course: {e.strerror}") from None
        except Exception as e:  # defusedxml and expat each raise their own kinds
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"{path}: cannot read GPX course: {reason}") from None
    for source, pts, elevations in (
        ("track", reader.track, reader.track_ele),
        ("route", reader.route, reader.route_ele),
    ):
        if len(set(pts)) >= 2:
            course = Course(pts, elevations, reader.waypoints, source)
            if course.length_m > MAX_COURSE_M:
                raise UsageError(
                    f"{path}: its {source} is {course.length_m / 1000:,.0f} km long: expected a "
                    f"course of at most {MAX_COURSE_M / 1000:,.0f} km (racepub measures along "
                    "a flat projection around the course, right over hundreds of km, not more)"
                )
            return course
    raise UsageError(f"{path}: expected a GPX track or route with at least two distinct points")


def race_course(race: Race) -> Course:
    """The course a race is run on: its GPX, run `laps` times (a loop),
    within the same bounds as one lap."""
    lap = load_gpx(race.course)
    if race.laps > 1 and len(lap.points) * race.laps > MAX_COURSE_POINTS:
        raise UsageError(
            f"{race.course}: {race.laps} laps of {len(lap.points):,} points: expected at "
            f"most {MAX_COURSE_POINTS:,} points in all (simplify the lap)"
        )
    try:
        course = lap.with_laps(race.laps)
    except ValueError as e:
        raise UsageError(f"{race.course}: races.{race.id}.laps = {race.laps}: {e}") from None
    if course.length_m > MAX_COURSE_M:
        raise UsageError(
            f"{race.course}: {race.laps} laps are {course.length_m / 1000:,.0f} km: expected "
            f"at most {MAX_COURSE_M / 1000:,.0f} km"
        )
    return course


def write_gpx(
    points: list[tuple[float, float]], name: str, elevations: list[float] | None = None
) -> str:
    """A minimal GPX 1.1 track (for the demo course and tests)."""
    ele = [f"<ele>{e:.1f}</ele>" for e in elevations] if elevations else [""] * len(points)
    rows = "\n".join(
        f'      <trkpt lat="{lat:.6f}" lon="{lon:.6f}">{e}</trkpt>'
        if e
        else f'      <trkpt lat="{lat:.6f}" lon="{lon:.6f}"/>'
        for (lat, lon), e in zip(points, ele, strict=True)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="racepub" xmlns="http://www.topografix.com/GPX/1/1">\n'
        f"  <trk><name>{escape(name)}</name><trkseg>\n{rows}\n  </trkseg></trk>\n</gpx>\n"
    )


# -- reading GPX -----------------------------------------------------------------

# A course of more points is refused (a marathon traced by a phone every
# second is about 15,000; a 24-hour race every second 86,400): the page, the
# projection grid and every restart's check of the course grow with it.
MAX_COURSE_POINTS = 200_000
# A longer course is refused: the local projection to metres is right over
# hundreds of km; further, its error grows (and so do the grid and a cycle).
MAX_COURSE_M = 1_000_000.0
_READ_BYTES = 1 << 20
# Where each kind of point sits in a GPX document (local names).
_POINTS = {("gpx", "trk", "trkseg", "trkpt"), ("gpx", "rte", "rtept"), ("gpx", "wpt")}


class _GpxReader:
    """defusedxml's parser calls start, data and end as elements stream by;
    this keeps the points of the track, the route and the named waypoints,
    and nothing else (no tree is built). Elements count in the namespace of
    the <gpx> element, whichever it is (GPX 1.0, 1.1, none): all say the
    same."""

    def __init__(self, path: Path):
        self.path = path
        self.track: list[tuple[float, float]] = []
        self.track_ele: list[float | None] = []
        self.route: list[tuple[float, float]] = []
        self.route_ele: list[float | None] = []
        self.waypoints: list[Waypoint] = []
        self.open: list[str] = []  # local names of the elements open, outermost first
        self.namespace = ""  # <gpx>'s: GPX 1.0, 1.1 or none; others' elements are not read
        self.count = 0  # points read
        self.point: tuple[str, float, float] | None = None  # (kind, lat, lon) being read
        self.depth = 0  # how many elements are open while it is (itself included)
        self.ele: float | None = None
        self.name = ""
        self.text: list[str] | None = None  # an <ele> or <name> of the point, as it comes

    def read(self, f: BinaryIO) -> None:
        from defusedxml.ElementTree import DefusedXMLParser

        parser = DefusedXMLParser(target=self)
        while chunk := f.read(_READ_BYTES):
            parser.feed(chunk)
        parser.close()

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        namespace, _, name = tag.rpartition("}")
        if not self.open:
            if name != "gpx":
                raise UsageError(f"{self.path}: expected a GPX document (<gpx>), not <{name}>")
            self.namespace = namespace
        elif namespace != self.namespace:
            name = ""  # an extension's (<gpxtpx:...>, <x:name>): not read
        self.open.append(name)
        if self.point is not None:
            if len(self.open) == self.depth + 1 and name in ("ele", "name"):
                self.text = []
        elif name in ("trkpt", "rtept", "wpt") and tuple(self.open) in _POINTS:
            self.count += 1
            if self.count > MAX_COURSE_POINTS:
                raise UsageError(
                    f"{self.path}: more than {MAX_COURSE_POINTS:,} points (trkpt, rtept and "
                    f"wpt): expected a course of at most {MAX_COURSE_POINTS:,} (thin it, e.g. "
                    "gpsbabel -i gpx -f IN -x simplify,count=20000 -o gpx -F OUT)"
                )
            lat, lon = attrib.get("lat"), attrib.get("lon")
            try:
                point = float(lat or ""), float(lon or "")
            except ValueError:
                raise UsageError(
                    f"{self.path}: {name} lat={lat!r} lon={lon!r}: expected decimal degrees"
                ) from None
            if not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180):
                raise UsageError(f"{self.path}: {name} lat={point[0]} lon={point[1]}: out of range")
            self.point, self.depth = (name, *point), len(self.open)
            self.ele, self.name = None, ""

    def data(self, text: str) -> None:
        if self.text is not None:
            self.text.append(text)

    def end(self, tag: str) -> None:
        name = self.open.pop()
        if self.point is None:
            return
        if self.text is not None and len(self.open) == self.depth:
            text = "".join(self.text).strip()
            self.text = None
            if name == "ele":
                self.ele = _metres(text)
            else:
                self.name = text
        elif len(self.open) == self.depth - 1:
            kind, lat, lon = self.point
            self.point = None
            if kind == "trkpt":
                self.track.append((lat, lon))
                self.track_ele.append(self.ele)
            elif kind == "rtept":
                self.route.append((lat, lon))
                self.route_ele.append(self.ele)
            elif self.name:
                self.waypoints.append(Waypoint(self.name, lat, lon))

    def close(self) -> None:
        return None


def _metres(text: str) -> float | None:
    """An elevation; one that is not a finite number is unknown, not an error."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _simplify(xy: np.ndarray, max_points: int) -> list[int]:
    """Douglas-Peucker, the farthest point first: which points (indices, in
    order) of a polyline to keep, at most max_points, the first and the last
    always. Each step splits the stretch whose farthest point from its chord
    is farthest of all there, so stopping at any count leaves the best shape
    the method gives for it (and its cost grows with max_points, not with
    the tolerance a whole run down to it would need)."""
    last = len(xy) - 1
    keep = [0, last]
    stretches: list[tuple[float, int, int, int]] = []

    def push(a: int, b: int) -> None:
        if b - a < 2:
            return
        inner = xy[a + 1 : b]
        (ax, ay), (bx, by) = xy[a], xy[b]
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        # Distance to the chord as a segment (a loop's chord may be a point).
        t = (
            np.zeros(len(inner))
            if seg2 == 0.0
            else ((inner[:, 0] - ax) * dx + (inner[:, 1] - ay) * dy) / seg2
        )
        t = np.clip(t, 0.0, 1.0)
        far = np.hypot(inner[:, 0] - ax - t * dx, inner[:, 1] - ay - t * dy)
        i = int(far.argmax())
        if far[i] > 0.0:
            heapq.heappush(stretches, (-float(far[i]), a, b, a + 1 + i))

    push(0, last)
    while stretches and len(keep) < max_points:
        _, a, b, i = heapq.heappop(stretches)
        keep.append(i)
        push(a, i)
        push(i, b)
    return sorted(keep)
