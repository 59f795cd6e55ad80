"""Long work says how far it has got, how fast, and how long it has still:
a line every few seconds in a log (systemd), a bar on a terminal."""

from __future__ import annotations

import io
import logging

import pytest

from racepub.publisher.progress import EVERY_S, Progress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_lines_carry_rate_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("catching up", 120.0, "race min", stream=io.StringIO(), clock=clock)
    said = []
    for second in range(1, 31):  # 2 race minutes a second: 60 s in all
        clock.t = second
        progress.update(2.0 * second, f"{1000 * second:,} points")
        said += [r.getMessage() for r in caplog.records]
        caplog.clear()
    assert EVERY_S == 5
    assert len(said) == 6  # one at once (1 s), then every 5 s: 6, 11, 16, 21, 26
    assert said[-1] == (
        "catching up: 43% (52.0 of 120.0 race min) at 2.0 race min/s, "
        "about 0:34 left; 26,000 points"
    )


def test_a_terminal_gets_a_bar() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    progress = Progress("simulating", 10.0, "race min", stream=out)
    progress.update(5.0)
    assert str(progress.bar).startswith("simulating:  50%|")  # as it is drawn
    assert "5.0/10.0 race min" in str(progress.bar)
    progress.close()
    assert out.getvalue()  # drawn on the terminal, not logged
