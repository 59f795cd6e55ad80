"""`racepub demo`: the founding race on an embedded default, end to end.

A throwaway PostgreSQL, the simulated race (started a few minutes ago, so
there is something to see at once), the publisher writing to a directory
sink, and `racepub serve` on 127.0.0.1.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from .. import config as config_mod
from ..publisher.cycle import Publisher
from ..publisher.loop import run_forever
from ..source import connect
from .localdb import LocalPostgres, free_port
from .serve import make_server, serve_in_thread
from .simulate import create_table, simulate

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent / "demo_race"
STARTED_AGO = timedelta(minutes=6)


def demo_config(dsn: str, workdir: Path, starts_at: datetime) -> config_mod.Config:
    raw = tomllib.loads((DEMO_DIR / "racepub.toml").read_text())
    raw["database"]["dsn"] = dsn
    race = raw["races"]["outrunthet"]
    race["starts_at"] = starts_at
    race["course"] = str(DEMO_DIR / race["course"])
    race["sink"] = f"dir:{workdir / 'public'}"
    return config_mod.parse(raw, workdir / "racepub.toml")


def demo(port: int | None = None, speed: float = 1.0) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="racepub-demo-"))
    # Traversable, so the server (run as another user when we are root)
    # keeps its data in here and goes with the rest.
    workdir.chmod(0o711)
    db = LocalPostgres(workdir / "pg")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        dsn = db.start()
        starts_at = datetime.now(UTC).replace(microsecond=0) - STARTED_AGO
        cfg = demo_config(dsn, workdir, starts_at)
        race = cfg.race("outrunthet")
        with connect(dsn) as conn:
            create_table(conn, cfg)
        threading.Thread(target=simulate, args=(cfg, race, speed, stop), daemon=True).start()
        publisher = Publisher(cfg, race)
        publisher_thread = threading.Thread(target=run_forever, args=(publisher, stop))
        publisher_thread.start()
        server = make_server(workdir / "public", race.interval_s, port or free_port())
        serve_in_thread(server)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        print(
            f"racepub demo: {race.title}, started {STARTED_AGO.seconds // 60} min ago, "
            f"{len(race.racers)} racers",
            flush=True,
        )
        print(f"Open {url}  (Ctrl-C to stop; working files in {workdir})", flush=True)
        # Waking now and then: a signal the kernel hands to another thread
        # only runs its handler when this one runs Python again (a wait
        # with no timeout left the demo deaf to SIGTERM).
        while not stop.wait(0.5):
            pass
        db.stop("immediate")  # first: whatever happens next, no server is left behind
        server.shutdown()
        publisher_thread.join(timeout=10)
    finally:
        stop.set()
        db.destroy("immediate")  # (its folder is in workdir unless it could not be)
        shutil.rmtree(workdir, ignore_errors=True)
