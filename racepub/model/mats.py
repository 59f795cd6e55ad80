"""Timing mats: a timing system's chip reads, as facts about racers, and
where a racer without a phone is now (DESIGN.md, "Timing mats"). Pure; no I/O.

A read is a fact. A `finish` read is the racer's finish (a GPS line fit is
not), a checkpoint's read is that split, a `start` read is their own start
(net time). A read of one racer at one mat twice (a runner standing on it,
two antennas) keeps the earlier; a read at a mat before one they were read
at already is dropped (`out_of_order_read`); a mat nobody configured,
`unknown_checkpoint`. A read stamped ahead of the race's now (a timing
box's clock set wrong) is held until its time comes, counted as
`future_read` meanwhile; one more than FUTURE_HORIZON_S ahead is dropped
as that: accepted, it would finish a racer in the future.

A racer with reads and no recent fix (no phone, or it went quiet) is
placed along the course at the moment of the snapshot: from their last
read at their pace between their last two (or the race's default before
their first split), never past the next mat before it reads them, never
past the finish. Their record says `estimated`. A fix, when one comes,
wins over a prediction; a read corrects both (it raises a racer's
progress to the mat's, and times their split and finish).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import numpy as np

from ..rows import ReadRow
from .clock import FUTURE_HORIZON_S, FUTURE_TOLERANCE_S
from .track import Track

START, FINISH = "start", "finish"
# A racer placed by their pace is kept this far short of the next mat, so a
# racer the mat has not read yet is never shown past it.
SHORT_OF_MAT_M = 1.0
# Why a read is not a fact (counted with the racer's drops, published).
READ_REASONS = (
    "null",
    "unknown_checkpoint",
    "before_start",
    "duplicate_read",
    "out_of_order_read",
    "future_read",
)
# Reads held back until their time comes, race-wide, at most; more are dropped.
MAX_HELD_READS = 10_000


def mat_key(name: str) -> str:
    """A checkpoint's name as reads name it: case and surrounding blanks aside."""
    return " ".join(name.split()).casefold()


class Mats:
    def __init__(self, tracks: list[Track], index: dict[str, int], where: dict[str, float]):
        """where: each mat's distance along the course, by mat_key of its name
        (start and finish among them)."""
        self.tracks, self.index, self.where = tracks, index, where
        n = len(tracks)
        # Each racer's last read and the one before it, as (distance, time);
        # their own start counts as the first (distance 0).
        self.last_d = np.full(n, np.nan)
        self.last_t = np.full(n, np.nan)
        self.prev_d = np.zeros(n)
        self.prev_t = np.array([t.start_t for t in tracks])
        # The mats the timing system has read anyone at, by distance: a racer
        # placed by their pace stops short of the next one until it reads them.
        self.seen: list[float] = []
        # Reads stamped ahead of now: (racer index, checkpoint, time).
        self.held: list[tuple[int, str, float]] = []

    def apply(
        self,
        rows: Iterable[ReadRow],
        now: float,
        on_read: Callable[[int, bool, float], None] | None = None,
    ) -> tuple[int, int, list[int]]:
        """Apply reads (racer, checkpoint, time, arrival) at the race's `now`,
        and the held reads whose time has come; `on_read(i, at_start, t)` is
        called as a read of racer i is applied (after a start read sets
        their start, before any other moves them). Returns (reads applied,
        reads of no racer, the racers whose state they changed)."""
        applied = strangers = 0
        changed: list[int] = []
        due = [h for h in self.held if h[2] <= now + FUTURE_TOLERANCE_S]
        self.held = [h for h in self.held if h[2] > now + FUTURE_TOLERANCE_S]
        for held, _, _ in due:
            self.tracks[held].undrop("future_read")  # judged now, as any read
        fresh: Iterable[tuple[int | None, str | None, float | None]] = (
            (self.index.get(racer) if racer is not None else None, checkpoint, t)
            for racer, checkpoint, t, _ in rows
        )
        for i, checkpoint, t in itertools.chain(due, fresh):
            if i is None:
                strangers += 1
                continue
            if checkpoint is not None and t is not None and now + FUTURE_TOLERANCE_S < t < math.inf:
                self.tracks[i].drop("future_read")
                if t <= now + FUTURE_HORIZON_S and len(self.held) < MAX_HELD_READS:
                    self.held.append((i, checkpoint, t))
                continue
            reason = self._read(i, checkpoint, t, on_read)
            if reason is not None:
                self.tracks[i].drop(reason)
            else:
                applied += 1
                changed.append(i)
        return applied, strangers, changed

    def _read(
        self,
        i: int,
        checkpoint: str | None,
        t: float | None,
        on_read: Callable[[int, bool, float], None] | None,
    ) -> str | None:
        if checkpoint is None or t is None or not math.isfinite(t):
            return "null"
        key = mat_key(checkpoint)
        d = self.where.get(key)
        if d is None:
            return "unknown_checkpoint"
        track = self.tracks[i]
        if t < track.scheduled_t:  # before the gun, or their wave's start (a pass in the pen)
            return "before_start"
        if key in track.mat_t:
            if t < track.mat_t[key]:  # an earlier read of the same pass, come late
                track.mat_t[key] = t
                if key == START:
                    self._start(i, t)
                elif key == FINISH:
                    track.finish_by_mat(t)
            return "duplicate_read"  # (the later of the two)
        if key != START and not math.isnan(self.last_d[i]) and d < self.last_d[i]:
            return "out_of_order_read"
        track.mat_t[key] = t
        if key == START:
            self._start(i, t)
        if on_read is not None:
            on_read(i, key == START, t)
        if key == START:
            return None
        if not math.isnan(self.last_d[i]):
            self.prev_d[i], self.prev_t[i] = self.last_d[i], self.last_t[i]
        else:  # from their start
            self.prev_d[i], self.prev_t[i] = 0.0, track.start_t
        self.last_d[i], self.last_t[i] = d, t
        if d not in self.seen:
            self.seen = sorted({*self.seen, d})
        if key == FINISH:
            track.finish_by_mat(t)
        else:
            track.at_mat(d, t)
        return None

    def _start(self, i: int, t: float) -> None:
        """A start read: the racer's own start (from it their net times), and
        where they were then: on the line."""
        self.tracks[i].start_t = t
        if math.isnan(self.last_d[i]) or self.last_d[i] == 0.0:
            self.prev_d[i], self.prev_t[i] = 0.0, t
            self.last_d[i], self.last_t[i] = 0.0, t

    def predict(
        self, now: float, fresh: np.ndarray, finished: np.ndarray, default_pace_s_per_m: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the racers with reads and no fresh fix are at `now`:
        (their indices, their distances, their speeds m/s)."""
        idx = np.flatnonzero(~np.isnan(self.last_d) & ~fresh & ~finished)
        if not len(idx):
            return idx, np.zeros(0), np.zeros(0)
        last_d, last_t = self.last_d[idx], self.last_t[idx]
        span_d, span_t = last_d - self.prev_d[idx], last_t - self.prev_t[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            pace = np.where((span_d > 0) & (span_t > 0), span_t / span_d, default_pace_s_per_m)
        d = last_d + np.maximum(now - last_t, 0.0) / pace
        if self.seen:
            mats = np.array(self.seen)
            nxt = np.searchsorted(mats, last_d, side="right")
            cap = np.where(nxt < len(mats), mats[np.minimum(nxt, len(mats) - 1)], np.inf)
            d = np.minimum(d, cap - SHORT_OF_MAT_M)
        length = self.tracks[0].course.length_m if self.tracks else 0.0
        d = np.maximum(np.minimum(d, length - SHORT_OF_MAT_M), last_d)
        return idx, d, 1.0 / pace
