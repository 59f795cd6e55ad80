"""The course: GPX in, progress along the polyline out. Pure; no I/O but reading the file.

Coordinates are projected to metres with a local equirectangular projection
around the course; over a city race (tens of km) its error is far below GPS
noise, and it keeps every projection a few multiplications.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from .errors import UsageError

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
# Past the finish a fix may project beyond the last vertex; keep that overshoot
# (up to this much) so the finish crossing can be interpolated.
OVERSHOOT_M = 300.0
# project_many handles fixes whose search window spans at most this many
# segments; a racer back after a long silence is searched one by one.
BATCH_SEGMENTS = 64


@dataclass(frozen=True)
class Projection:
    distance_m: float  # progress along the course; may exceed length_m past the finish
    offset_m: float  # distance from the course line


class Course:
    def __init__(self, points: list[tuple[float, float]]):
        pts = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
        if len(pts) < 2:
            raise ValueError("a course needs at least two distinct points")
        self.points: tuple[tuple[float, float], ...] = tuple(pts)
        lat0 = sum(p[0] for p in pts) / len(pts)
        self._lat0, self._lon0 = lat0, sum(p[1] for p in pts) / len(pts)
        self._ky = EARTH_RADIUS_M * math.pi / 180
        self._kx = self._ky * math.cos(math.radians(lat0))
        self._xy = [self.to_xy(lat, lon) for lat, lon in pts]
        cum = [0.0]
        for (ax, ay), (bx, by) in zip(self._xy, self._xy[1:], strict=False):
            cum.append(cum[-1] + math.hypot(bx - ax, by - ay))
        self.cum: tuple[float, ...] = tuple(cum)
        self.length_m: float = cum[-1]
        # Per segment: start (x, y), direction, 1/length², length, distance at start.
        self._segs: list[tuple[float, float, float, float, float, float, float]] = []
        for i, ((ax, ay), (bx, by)) in enumerate(zip(self._xy, self._xy[1:], strict=False)):
            dx, dy = bx - ax, by - ay
            seg2 = dx * dx + dy * dy
            self._segs.append((ax, ay, dx, dy, 1.0 / seg2 if seg2 else 0.0, math.sqrt(seg2),
                               cum[i]))
        # The same, as columns, for project_many.
        self._cols = np.array(self._segs).T
        self._cum = np.array(cum)

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self._lat0 + y / self._ky, self._lon0 + x / self._kx

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

    def project(self, lat: float, lon: float, near_m: float | None = None, *,
                ahead_m: float = SEARCH_AHEAD_M, expect_m: float | None = None,
                prefer: float = PREFER_NEAR, off_course_m: float = 150.0) -> Projection:
        """Project a fix onto the course, preferring the stretch near `near_m`.

        With a hint, only the stretch from a little behind the racer's last
        progress to as far ahead as they could have got (`ahead_m`) is tried
        first, and within it the place nearest `expect_m` (where they should
        be by now) wins ties between legs, each metre away from it weighing
        `prefer` metres of distance from the line. The whole course is searched only
        if the fix is far from that stretch (the racer really is elsewhere).
        """
        x, y = self.to_xy(lat, lon)
        last = len(self._xy) - 2
        if near_m is not None:
            lo = max(bisect_left(self.cum, near_m - SEARCH_BEHIND_M) - 1, 0)
            hi = min(bisect_right(self.cum, near_m + ahead_m), last)
            best = self._nearest(x, y, lo, hi, near_m if expect_m is None else expect_m, prefer)
            if best.offset_m <= off_course_m:
                return best
        return self._nearest(x, y, 0, last)

    def project_many(self, lat: list[float], lon: list[float], near_m: list[float],
                     ahead_m: list[float], expect_m: list[float], prefer: list[float],
                     off_course_m: float) -> list[Projection | None]:
        """project() for many fixes at once, as numpy arrays: the same
        arithmetic in the same order, so the same answers. A large race's
        cycle projects thousands of fixes, one per racer; one at a time in
        Python that was most of the cycle. None where the fix needs the
        one-at-a-time path (a window too wide, or off the stretch searched)."""
        n = len(lat)
        if n == 0:
            return []
        ax, ay, dx, dy, inv2, seg, start = self._cols
        last = len(self._segs) - 1
        x = (np.asarray(lon) - self._lon0) * self._kx
        y = (np.asarray(lat) - self._lat0) * self._ky
        near = np.asarray(near_m)
        lo = np.maximum(np.searchsorted(self._cum, near - SEARCH_BEHIND_M, "left") - 1, 0)
        hi = np.minimum(np.searchsorted(self._cum, near + np.asarray(ahead_m), "right"), last)
        width = int(min(BATCH_SEGMENTS, (hi - lo).max() + 1))
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
        score = np.sqrt(off2) + np.asarray(prefer)[:, None] * np.abs(
            d - np.asarray(expect_m)[:, None])
        score = np.where(inside, score, np.inf)
        best = score.argmin(axis=1)
        rows = np.arange(n)
        best_d = d[rows, best].tolist()
        best_off = np.sqrt(off2[rows, best]).tolist()
        fits = ((hi - lo) < width).tolist()
        return [Projection(distance_m=best_d[i], offset_m=best_off[i])
                if fits[i] and best_off[i] <= off_course_m else None for i in range(n)]

    def _nearest(self, x: float, y: float, lo: int, hi: int,
                 near_m: float | None = None, prefer: float = 0.0) -> Projection:
        # The hot loop of every cycle (one pass per fix): squared distances,
        # precomputed segments, no calls, one sqrt at the end.
        best_score, best_off2, best_d = math.inf, math.inf, 0.0
        segs = self._segs
        last = len(segs) - 1
        near = 0.0 if near_m is None else near_m
        for i in range(lo, hi + 1):
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

    def geometry(self, decimals: int = 6) -> list[list[float]]:
        return [[round(lat, decimals), round(lon, decimals)] for lat, lon in self.points]


def load_gpx(path: Path) -> Course:
    """A GPX track (trkpt) or, failing that, a route (rtept)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise UsageError(f"{path}: cannot read GPX course: {e}") from None
    found: dict[str, list[tuple[float, float]]] = {"trkpt": [], "rtept": []}
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in found:
            try:
                lat, lon = float(el.attrib["lat"]), float(el.attrib["lon"])
            except (KeyError, ValueError):
                raise UsageError(f"{path}: {tag} without a numeric lat and lon") from None
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise UsageError(f"{path}: {tag} lat={lat} lon={lon}: out of range")
            found[tag].append((lat, lon))
    pts = found["trkpt"] or found["rtept"]
    try:
        return Course(pts)
    except ValueError:
        raise UsageError(f"{path}: expected a GPX track or route with at least two "
                         "points") from None


def write_gpx(points: list[tuple[float, float]], name: str) -> str:
    """A minimal GPX 1.1 track (for the demo course and tests)."""
    rows = "\n".join(f'      <trkpt lat="{lat:.6f}" lon="{lon:.6f}"/>' for lat, lon in points)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="racepub" xmlns="http://www.topografix.com/GPX/1/1">\n'
        f"  <trk><name>{escape(name)}</name><trkseg>\n{rows}\n  </trkseg></trk>\n</gpx>\n"
    )
