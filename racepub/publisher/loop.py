"""The publish loop: APScheduler wiring, the race lock, backoff and signals."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from ..errors import RacepubError, SinkError, SourceError
from .cycle import CycleStats, Publisher
from .lock import RaceLock
from .metrics import Metrics

log = logging.getLogger(__name__)
STOP_GRACE_S = 5.0  # on SIGTERM, how long the cycle under way may take to finish


def run_once(
    publisher: Publisher,
    metrics: Metrics | None = None,
    after: Callable[[CycleStats], None] | None = None,
) -> bool:
    """One cycle, logged. False (and the old snapshot left in place) on failure."""
    try:
        stats = publisher.cycle()
    except RacepubError as e:
        stage = (
            "read"
            if isinstance(e, SourceError)
            else "write"
            if isinstance(e, SinkError)
            else "other"
        )
        log.error("cycle failed (%s): %s", stage, e)
        if metrics:
            metrics.failures.labels(stage).inc()
        return False
    except Exception:
        # A fault of ours the input found: said in full, and the loop goes on
        # (backing off), with the last snapshot left in place.
        log.exception("cycle failed (other): unexpected error")
        if metrics:
            metrics.failures.labels("other").inc()
        return False
    log.info("%s", stats.line(), extra={"fields": stats.fields()})
    if metrics:
        metrics.published(
            stats.seq, stats.ms["total"] / 1000, stats.new_points, stats.reasons, stats.bytes
        )
    if after is not None:
        after(stats)
    return True


class Runner:
    """What each tick of the scheduler does: hold the race, publish, back off.

    Only the holder of the race lock publishes; a standby tries for it every
    tick, so it takes over within about an interval of the holder's death,
    and meanwhile reads and applies the source as the holder does, so its
    first cycle publishes the race as it is, at any field size.
    After a failure the next tries come later and later (with jitter, so
    publishers and retries do not fall into step), but never more than two
    intervals apart: once the database or S3 is back, publishing resumes
    within a couple of intervals.
    """

    def __init__(
        self,
        publisher: Publisher,
        lock: RaceLock | None,
        metrics: Metrics | None = None,
        retry_in: Callable[[float], None] | None = None,
        race_over: Callable[[], None] | None = None,
    ):
        self.publisher, self.lock, self.metrics = publisher, lock, metrics
        # Called once the race has been finished for its grace period.
        self.race_over = race_over
        self.finished_at: float | None = None
        # Brings the next tick forward to the retry: waiting for the next
        # tick of the interval would add up to an interval to every recovery.
        self.retry_in = retry_in
        self.failures = 0
        self.next_try = 0.0
        self.holding: bool | None = None  # None: not known yet
        self.busy = threading.Event()

    def backoff_s(self) -> float:
        interval = self.publisher.race.interval_s
        ceiling = min(2.0 * interval, interval * 2.0 ** (self.failures - 1))
        return float(ceiling * random.uniform(0.5, 1.0))

    def tick(self) -> None:
        if time.monotonic() < self.next_try - 0.05:  # (a retry brought forward may wake early)
            return
        self.busy.set()
        try:
            if self._hold():
                ok = run_once(self.publisher, self.metrics, self._note_state)
            else:
                ok = self.holding is False and self._keep_up()
            if ok:
                self.failures = 0
            else:
                self.failures += 1
                wait = self.backoff_s()
                self.next_try = time.monotonic() + wait
                if self.retry_in is not None:
                    self.retry_in(wait)
        finally:
            self.busy.clear()

    def _note_state(self, stats: CycleStats) -> None:
        """After the race is finished, publish on for finished_grace_s (late
        fixes still count), then say so and stop."""
        if stats.state != "finished":
            self.finished_at = None  # (ends_at moved, say): not over after all
            return
        now = time.monotonic()
        if self.finished_at is None:
            self.finished_at = now
            log.info(
                "race %s is finished: publishing for %ds more, then exiting",
                self.publisher.race.id,
                self.publisher.race.finished_grace_s,
            )
        if now - self.finished_at >= self.publisher.race.finished_grace_s and self.race_over:
            log.info(
                "race %s is over: the final results and snapshot stay published",
                self.publisher.race.id,
            )
            self.race_over()
            self.race_over = None

    def _keep_up(self) -> bool:
        """A standby reads as the active publisher does (Publisher.standby)."""
        try:
            stats = self.publisher.standby()
        except RacepubError as e:
            log.error("standby read failed: %s", e)
            return False
        except Exception:  # a fault of ours: said in full, and the loop goes on
            log.exception("standby read failed: unexpected error")
            return False
        if stats.new_points or stats.ms["total"] > 1000 * self.publisher.race.interval_s:
            log.debug("standby: %d new points in %.0f ms", stats.new_points, stats.ms["total"])
        return True

    def _hold(self) -> bool:
        if self.lock is None:
            return True
        try:
            held: bool | None = self.lock.hold()
        except SourceError as e:
            log.error("cycle failed (read): %s", e)
            if self.metrics:
                self.metrics.failures.labels("read").inc()
            self.holding = None  # unknown until the database answers again
            return False
        if held != self.holding:
            if held:
                log.info("holding race %s: publishing", self.publisher.race.id)
                # Another process may have published meanwhile: carry on
                # from the sink, not from what this process last knew.
                self.publisher.forget_sink()
            else:
                log.info(
                    "race %s is held by another publisher: standing by", self.publisher.race.id
                )
        self.holding = held
        if self.metrics:
            self.metrics.standby.set(0 if held else 1)
        return bool(held)


def run_forever(
    publisher: Publisher,
    stop: threading.Event | None = None,
    lock: RaceLock | None = None,
    metrics: Metrics | None = None,
    keep_running: bool = False,
) -> None:
    """Publish every interval_s until SIGTERM/SIGINT (or `stop` is set).

    One instance at a time, coalesced: a slow cycle delays the next instead
    of piling up behind it.
    """
    scheduler = BlockingScheduler(
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
    )

    def retry_in(seconds: float) -> None:
        scheduler.modify_job(
            "publish", next_run_time=datetime.now(UTC) + timedelta(seconds=seconds)
        )

    def stop_scheduler() -> None:
        scheduler.shutdown(wait=False)

    def race_over() -> None:  # from the job's thread: shut down from another
        threading.Thread(target=stop_scheduler, daemon=True).start()

    runner = Runner(publisher, lock, metrics, retry_in, None if keep_running else race_over)
    scheduler.add_job(
        runner.tick,
        "interval",
        seconds=publisher.race.interval_s,
        id="publish",
        next_run_time=datetime.now(UTC),
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current cycle", signum)
        threading.Thread(target=stop_scheduler, daemon=True).start()

    if stop is not None:

        def stop_when_told() -> None:
            stop.wait()
            stop_scheduler()

        threading.Thread(target=stop_when_told, daemon=True).start()
    elif threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    log.info(
        "publishing race %s every %ds to %s",
        publisher.race.id,
        publisher.race.interval_s,
        publisher.sink.describe(),
    )
    scheduler.start()
    # The scheduler is stopped; let a cycle under way finish, but not for long:
    # an abandoned cycle leaves the last snapshot (written last) in place.
    deadline = time.monotonic() + STOP_GRACE_S
    while runner.busy.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    if runner.busy.is_set():
        log.warning("abandoning the cycle under way; the published race stays as it was")
        logging.shutdown()
        os._exit(0)
    publisher.close()
    if lock is not None:
        lock.release()
