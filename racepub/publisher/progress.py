"""Long work says how it is getting on, with its rate and the time left: a
progress bar on a terminal (tqdm), a log line every EVERY_S otherwise (under
systemd the journal keeps them; a bar would be one endless line)."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm

log = logging.getLogger(__name__)
EVERY_S = 5.0


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """`what`, from 0 to `total` (in `unit`s), moved on by update(done)."""

    def __init__(
        self,
        what: str,
        total: float,
        unit: str,
        *,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        stream = stream or sys.stderr
        self.what, self.total, self.unit, self.clock = what, max(total, 1e-9), unit, clock
        self.started = clock()
        self.said = -math.inf  # the first update says where it starts
        self.done = 0.0
        self.bar: Any = None
        if stream.isatty():
            self.bar = tqdm(
                total=round(total, 1),
                unit=unit,
                desc=what,
                file=stream,
                dynamic_ncols=True,
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} "
                "{unit} [{elapsed}<{remaining}, {rate_fmt}]",
            )

    def update(self, done: float, note: str = "") -> None:
        done = min(max(done, self.done), self.total)
        if self.bar is not None:
            self.bar.update(round(done - self.done, 1))
            if note:
                self.bar.set_postfix_str(note, refresh=False)
        self.done = done
        now = self.clock()
        if self.bar is None and now - self.said >= EVERY_S:
            self.said = now
            log.info("%s", self.line(note))

    def line(self, note: str = "") -> str:
        """`what`: 42% (12.6 of 30.0 unit) at 3.1 unit/s, about 0:06 left."""
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = f", about {_clock((self.total - self.done) / rate)} left" if rate > 0 else ""
        return (
            f"{self.what}: {100 * self.done / self.total:.0f}% ({self.done:,.1f} of "
            f"{self.total:,.1f} {self.unit}) at {rate:,.1f} {self.unit}/s{left}"
            f"{f'; {note}' if note else ''}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
