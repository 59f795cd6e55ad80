"""The publish loop: APScheduler wiring and signals only."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from .errors import RacepubError
from .publish import Publisher

log = logging.getLogger(__name__)


def run_once(publisher: Publisher) -> bool:
    """One cycle, logged. False (and the old snapshot left in place) on failure."""
    try:
        stats = publisher.cycle()
    except RacepubError as e:
        log.error("cycle failed: %s", e)
        return False
    log.info("%s", stats.line())
    return True


def run_forever(publisher: Publisher, stop: threading.Event | None = None) -> None:
    """Publish every interval_s until SIGTERM/SIGINT (or `stop` is set).

    One instance at a time, coalesced: a slow cycle delays the next instead
    of piling up behind it.
    """
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(1)},
                                  job_defaults={"max_instances": 1, "coalesce": True,
                                                "misfire_grace_time": None})
    scheduler.add_job(run_once, "interval", args=[publisher],
                      seconds=publisher.race.interval_s, id="publish",
                      next_run_time=datetime.now(UTC))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current cycle, then stopping", signum)
        threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}).start()

    if stop is not None:
        threading.Thread(target=lambda: (stop.wait(), scheduler.shutdown(wait=True)),
                         daemon=True).start()
    elif threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    log.info("publishing race %s every %ds to %s", publisher.race.id,
             publisher.race.interval_s, publisher.sink.describe())
    try:
        scheduler.start()
    finally:
        publisher.close()

