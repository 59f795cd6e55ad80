"""The field at one moment: every racer's rank, gap and ETA, as arrays. Pure; no I/O.

Racers' fixes arrive at different times: ranking by progress at each
racer's own newest fix would put a racer whose fix is two seconds older
behind one who is really behind them. So the field is compared at one
moment, the snapshot's time: each racer's progress is estimated forward
from their newest fix at their recent speed (for at most EXTRAPOLATE_S,
never past the finish line, which only a fix crosses). `distance_m` and
`position` stay the newest fix as recorded; only ranks, gaps and ETAs use
the estimate.

The one ranking rule, for both forms: finished racers by finish time, then
racers by estimated progress, then those without a fix in config order;
ties by config order. Ranks are unique across the whole field.

Kept as columns indexed by config order, brought up to date only for racers
with news, so a 50,000-racer field is ranked in a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .track import Track

FINISHED, RACING, WAITING = 0, 1, 2
EXTRAPOLATE_S = 30.0  # a silent racer is not carried on for longer than this
STATUS_CODES = {"finished": 0, "racing": 1, "stale": 2, "waiting": 3}
STATUSES = list(STATUS_CODES)


@dataclass(frozen=True)
class Moment:
    """The field at `now`: arrays indexed by config order (nan: unknown)."""

    now: float
    rank: np.ndarray  # 1..n, unique
    order: np.ndarray  # order[k] is the index of the racer ranked k + 1
    estimate_m: np.ndarray  # progress estimated at now
    gap_s: np.ndarray  # behind the leader at now
    eta_s: np.ndarray  # seconds from now to the finish (0 once finished)
    status: np.ndarray  # STATUS_CODES

    def leader(self) -> int | None:
        first = int(self.order[0]) if len(self.order) else None
        return (
            first if first is not None and self.status[first] != STATUS_CODES["waiting"] else None
        )


class Standings:
    """Every racer's scalars as columns, and the field ranked at a moment."""

    def __init__(self, tracks: list[Track], stale_after_s: float):
        self.tracks = tracks
        self.index = {t.racer.id: i for i, t in enumerate(tracks)}
        self.stale_after_s = stale_after_s
        n = len(tracks)
        self.state = np.full(n, WAITING, dtype=np.int8)
        self.finish_t = np.full(n, np.nan)
        self.final_t = np.full(n, np.nan)  # when the finish was timed for good
        self.fix_t = np.full(n, np.nan)  # the newest GPS fix's time (last_t may be a prediction)
        self.estimated = np.zeros(n, dtype=bool)  # placed by timing mats' reads, not a fix
        self.progress = np.zeros(n)  # at the newest fix, capped at the course length
        self.last_t = np.full(n, np.nan)
        self.lat = np.full(n, np.nan)  # the newest fix
        self.lon = np.full(n, np.nan)
        self.pace_mps = np.full(n, np.nan)  # pace as a speed: nan when unknown or stopped
        self.speed_mps = np.full(n, np.nan)  # recent speed (0: stopped), average once finished
        self.speed = np.zeros(n)  # m/s to carry progress on with (0: stopped, unknown)
        self.expect_speed = np.zeros(n)  # m/s a fix is searched for at (Track.search)
        self.eta_speed = np.full(n, np.nan)  # m/s expected for the rest of the race
        self.length = tracks[0].course.length_m if tracks else 0.0
        self.starts = np.array([t.start_t for t in tracks])  # each racer's own start
        # What RaceState's vectorised steps need of each racer (race.py).
        self.usual = np.zeros(n, dtype=bool)  # a fix can take the usual path
        self.max_mps = np.array([t.rules.max_mps for t in tracks])
        self.min_spacing = np.array([t.rules.min_spacing_s for t in tracks])
        self.finish_zone = np.array([t.finish_zone_m for t in tracks])
        self.vehicle = np.array([t.racer.kind == "vehicle" for t in tracks], dtype=bool)
        self._dirty: list[int] = []  # refreshed, speeds not yet worked out

    def refresh(self, i: int) -> None:
        """Bring one racer up to date from their track (after the general path)."""
        t = self.tracks[i]
        self.usual[i] = t.last is not None and t.after_gap is None and t.jumps_in_a_row == 0
        self.estimated[i] = False
        self.starts[i] = t.start_t
        if t.last is None:
            if t.finish_t is not None:  # a finish mat's read, no phone
                self.state[i], self.finish_t[i], self.final_t[i] = FINISHED, t.finish_t, t.finish_t
                self.progress[i], self.last_t[i] = self.length, t.finish_t
                self.lat[i], self.lon[i] = t.course.points[-1]
                self._dirty.append(i)
            return
        last = t.last
        self.last_t[i], self.lat[i], self.lon[i] = last.t, last.lat, last.lon
        self.fix_t[i] = last.t
        self.progress[i] = t.distance_m
        if t.finish_t is not None:
            self.state[i], self.finish_t[i] = FINISHED, t.finish_t
            self.final_t[i] = np.nan if t.finish_final_t is None else t.finish_final_t
        else:
            self.state[i] = RACING
        self._dirty.append(i)  # speeds: all at once, in settle()

    def settle(self) -> None:
        """The speeds of the racers refreshed one at a time, as one step (a
        catch-up refreshes thousands: numpy per racer was most of its cost)."""
        if not self._dirty:
            return
        idx = np.unique(np.array(self._dirty, dtype=np.int64))
        self._dirty.clear()
        recent = [self.tracks[i].recent_speed() for i in idx.tolist()]
        self._speeds(idx, np.array([np.nan if r is None else r for r in recent]))

    def advanced(
        self,
        idx: np.ndarray,
        t: np.ndarray,
        lat: np.ndarray,
        lon: np.ndarray,
        recent: np.ndarray,
        progress: np.ndarray,
    ) -> None:
        """Racers who took the usual path (RaceState._advance_usual)."""
        self.last_t[idx], self.lat[idx], self.lon[idx] = t, lat, lon
        self.fix_t[idx] = t
        self.progress[idx] = progress
        self._speeds(idx, recent)

    def _speeds(self, idx: np.ndarray, recent: np.ndarray) -> None:
        """The speeds of Track.search, Track.projected_speed and pace, as
        columns (recent: nan where unknown, 0 when stopped)."""
        finished = self.state[idx] == FINISHED
        progress = self.progress[idx]
        end = np.where(finished, self.finish_t[idx], self.last_t[idx])
        start = self.starts[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = np.where((end > start) & (progress >= 50.0), progress / (end - start), np.nan)
        known = ~np.isnan(recent)
        moving = known & (recent != 0)
        self.expect_speed[idx] = np.where(moving, recent, np.nan_to_num(avg))
        self.speed[idx] = np.where(finished, 0.0, np.where(known, recent, np.nan_to_num(avg)))
        blend = np.where(np.isnan(avg), np.where(moving, recent, np.nan), 0.5 * recent + 0.5 * avg)
        eta = np.where(self.vehicle[idx] | ~known, avg, blend)
        self.eta_speed[idx] = np.where(eta > 0, eta, np.nan)
        # Pace: recent while racing (nan when stopped), the average once finished.
        self.pace_mps[idx] = np.where(finished, avg, np.where(moving, recent, np.nan))
        self.speed_mps[idx] = np.where(finished, avg, recent)

    def placed(
        self,
        idx: np.ndarray,
        now: float,
        d: np.ndarray,
        lat: np.ndarray,
        lon: np.ndarray,
        speed: np.ndarray,
    ) -> None:
        """Racers placed by timing mats' reads at `now` (model/mats.py): their
        columns say so until a fix or a read brings them up to date again
        (refresh); the vectorised path leaves them to the general one."""
        self.progress[idx], self.last_t[idx] = d, now
        self.lat[idx], self.lon[idx] = lat, lon
        self.state[idx] = RACING
        self.estimated[idx] = True
        self.usual[idx] = False
        self.speed[idx] = 0.0  # placed at now: nothing to carry on
        self.expect_speed[idx] = speed
        self.eta_speed[idx] = speed
        self.pace_mps[idx] = speed
        self.speed_mps[idx] = speed

    def at(self, now: float) -> Moment:
        self.settle()
        n = len(self.tracks)
        racing = self.state == RACING
        since = np.clip(now - self.last_t, 0.0, EXTRAPOLATE_S)
        estimate = np.where(
            racing,
            np.minimum(
                self.progress + self.speed * np.nan_to_num(since),
                np.maximum(self.progress, self.length - 0.01),
            ),
            self.progress,
        )
        estimate = np.where(self.state == FINISHED, self.length, estimate)
        key = np.where(self.state == FINISHED, self.finish_t, np.where(racing, -estimate, 0.0))
        order = np.lexsort((np.arange(n), key, self.state))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(1, n + 1)
        status = np.full(n, STATUS_CODES["waiting"], dtype=np.int8)
        status[racing] = STATUS_CODES["racing"]
        status[racing & (now - self.last_t > self.stale_after_s)] = STATUS_CODES["stale"]
        status[self.state == FINISHED] = STATUS_CODES["finished"]
        with np.errstate(invalid="ignore", divide="ignore"):
            remaining = np.maximum(self.length - self.progress, 0.0)
            eta = np.where(
                self.state == FINISHED, 0.0, self.last_t + remaining / self.eta_speed - now
            )
        eta = np.where(np.isfinite(eta), np.maximum(eta, 0.0), np.nan)
        gap = np.full(n, np.nan)
        if n and self.state[order[0]] != WAITING:
            gap = self._gaps(int(order[0]), estimate, now)
        return Moment(now, rank, order, estimate, gap, eta, status)

    def _gaps(self, leader: int, estimate: np.ndarray, now: float) -> np.ndarray:
        """How long ago the leader was where each racer is estimated to be now
        (finished racers: behind the leader's finish)."""
        lead = self.tracks[leader]
        when = lead.times_at(estimate, self.speed[leader])
        gap = np.where(self.state == RACING, now - when, np.nan)
        if self.state[leader] == FINISHED:
            gap = np.where(self.state == FINISHED, self.finish_t - self.finish_t[leader], gap)
        gap[leader] = 0.0
        return np.where(np.isfinite(gap), np.maximum(gap, 0.0), np.nan)

    def density(self, moment: Moment, bins: int) -> list[int]:
        """How many racers (racing or stale) are on each of `bins` equal
        stretches of the course, by estimated progress."""
        on_course = (moment.status == STATUS_CODES["racing"]) | (
            moment.status == STATUS_CODES["stale"]
        )
        counts, _ = np.histogram(
            moment.estimate_m[on_course], bins=bins, range=(0.0, max(self.length, 1.0))
        )
        return [int(c) for c in counts]
