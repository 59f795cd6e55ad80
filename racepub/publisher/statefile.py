"""The publisher's race state on local disk, so a restart carries on from it.

Without it a restart (kill -9, a deploy, a reboot) reads and applies the whole
race again: minutes for a mass race hours in, while spectators see it frozen.
With it, a restart loads the state as it was at most SAVE_EVERY_S ago and
reads only the rows since: the source cursor is part of the state, and
applying the same rows to the same state gives the same race.

The file is written by a forked child (copy-on-write: a consistent state,
and the publish loop does not wait for pickling hundreds of MB), to a
temporary name and renamed into place, so a kill at any moment leaves the
previous file whole. It is used only when it was made by this version of
racepub from the same race config, course and source, and only when the sink
has published at least as far as it had (a bucket emptied since: start over).
Anything else, or anything unreadable, is logged and the race is read from
the start as before. The file is pickled Python: it lives in a directory
only its user can write (0700), like any program's state.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Race, Racer
from ..model.course import Course

log = logging.getLogger(__name__)
FORMAT = 4  # 4: the trails' pieces (3: a track keeps its next cut)
SAVE_EVERY_S = 60.0  # a kill -9 costs at most this much of the race read again


def default_dir() -> Path:
    """$RACEPUB_STATE_DIR; systemd's StateDirectory= when run as a service;
    else XDG's state home."""
    if os.environ.get("RACEPUB_STATE_DIR"):
        return Path(os.environ["RACEPUB_STATE_DIR"])
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "racepub"


def fingerprint(race: Race, course_bytes: bytes, source: Any, dsn: str) -> str:
    """What the state was made from: a different race, course, table or
    database makes a different state, never one to carry on from."""
    h = hashlib.sha256()
    for part in (__version__, str(FORMAT), repr(race), repr(source), dsn):
        h.update(part.encode())
        h.update(b"\0")
    h.update(course_bytes)
    return h.hexdigest()


@dataclass
class Saved:
    seq: int | None  # the seq the saver had published (None: a standby)
    state: Any  # RaceState
    cursor: dict[str, Any]  # PointSource.cursor()
    trails: Any  # TrailStore: the trails' pieces, and packs made but not yet written
    saved_at: float


class _Pickler(pickle.Pickler):
    """The race config and course are not saved: they are what the state is
    checked against, and loading takes the current ones."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Course):
            return ("course",)
        if isinstance(obj, Race):
            return ("race",)
        if isinstance(obj, Racer):
            return ("racer", obj.id)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, race: Race, course: Course):
        super().__init__(file)
        self.race, self.course = race, course
        self.racers = {r.id: r for r in race.racers}

    def persistent_load(self, pid: Any) -> Any:
        if pid == ("course",):
            return self.course
        if pid == ("race",):
            return self.race
        if pid[0] == "racer":
            return self.racers[pid[1]]
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


class StateFile:
    def __init__(self, directory: Path, race: Race, key: str):
        self.path = directory / f"{race.id}.state"
        self.race, self.key = race, key
        # The first cycle saves at once: it may have been a long catch-up.
        self.saved_at = -math.inf
        self._child: int | None = None

    def load(self, course: Course) -> Saved | None:
        try:
            with open(self.path, "rb") as f:
                header = pickle.load(f)
                if header != {"format": FORMAT, "key": self.key}:
                    log.info(
                        "state file %s is of another race config, course or source "
                        "version: reading the race from the start",
                        self.path,
                    )
                    return None
                saved = _Unpickler(f, self.race, course).load()
        except FileNotFoundError:
            return None
        except Exception as e:  # whatever is wrong with it: start over
            log.warning(
                "state file %s is unreadable (%s): reading the race from the start",
                self.path,
                type(e).__name__,
            )
            return None
        if not isinstance(saved, Saved):
            return None
        return saved

    def due(self) -> bool:
        return time.monotonic() - self.saved_at >= SAVE_EVERY_S and self._reap()

    def save(self, saved: Saved, *, wait: bool = False) -> None:
        """Write the state from a forked child; the caller goes on at once.
        With wait (shutting down), write it here and now."""
        self.saved_at = time.monotonic()
        if not self._reap():
            return  # the last save is still being written
        if wait or not hasattr(os, "fork"):
            self._write(saved)
            return
        try:
            pid = os.fork()
        except OSError as e:
            log.warning("cannot save the race state (%s)", e)
            return
        if pid == 0:  # the child: write, then leave without running any cleanup
            code = 1
            try:
                self._write(saved)
                code = 0
            finally:
                os._exit(code)
        self._child = pid

    def _write(self, saved: Saved) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                pickle.dump({"format": FORMAT, "key": self.key}, f)
                _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(saved)
            os.replace(tmp, self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            print(f"racepub: cannot save the race state to {self.path}: {e}", file=sys.stderr)

    def _reap(self) -> bool:
        """True when no save is being written."""
        if self._child is None:
            return True
        try:
            pid, status = os.waitpid(self._child, os.WNOHANG)
        except ChildProcessError:
            pid, status = self._child, 0
        if pid == 0:
            return False
        self._child = None
        if status != 0:
            log.warning("saving the race state to %s failed (status %d)", self.path, status)
        return True

    def close(self) -> None:
        """Wait for a save being written (a stopped publisher leaves no child)."""
        if self._child is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._child, 0)
            self._child = None
