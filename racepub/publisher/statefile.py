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
the start as before.

The file is a fixed magic, a JSON header (format and fingerprint, read and
compared before anything else) and a pickle that only racepub's own model
classes, numpy arrays, array.array, Counter and plain builtins may come back
from (_Unpickler.find_class): a new kind of object in the state must be
allowed there. A directory or file another user owns or can write, or a
symbolic link at either, is refused (logged; the race is read from the
start, and nothing is saved there): whoever can write the file chooses what
it holds. The file is made with O_EXCL|O_NOFOLLOW beside the old one,
fsynced, renamed over it, and the directory fsynced.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import pickle
import stat
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Race, Racer
from ..model.course import Course

log = logging.getLogger(__name__)
# 7: chip reads held until their time; 6: the cursor of chip reads beside
# the points'; 5: the trails' pieces; 4: a
# data-only header before an allow-listed pickle
# (3: a track keeps its next cut; 2: pace window and approach as flat arrays)
FORMAT = 7
SAVE_EVERY_S = 60.0  # a kill -9 costs at most this much of the race read again
MAGIC = b"racepub state\n"
HEADER_MAX = 4096  # bytes of JSON header, at most
_LENGTH = struct.Struct(">I")


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
    cursor: dict[str, Any]  # {"points": PointSource.cursor(), "reads": ReadSource.cursor()}
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


# What a race state is made of, besides racepub's own classes (_OWN): the
# globals a pickle of it names. None of them runs code the file names.
_ALLOWED = {
    ("builtins", name)
    for name in (
        "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset",
        "int", "list", "range", "set", "slice", "str", "tuple",
    )
} | {
    ("array", "array"),
    ("array", "_array_reconstructor"),
    ("collections", "Counter"),
    ("collections", "OrderedDict"),
    ("collections", "deque"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    # numpy 2 and numpy 1 spell these two ways.
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
}  # fmt: skip
_OWN = ("racepub.model.", "racepub.shapes.")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, race: Race, course: Course):
        super().__init__(file)
        self.race, self.course = race, course
        self.racers = {r.id: r for r in race.racers}

    def find_class(self, module: str, name: str) -> Any:
        """Only what a race state is made of: any other global (os.system,
        builtins.eval, a racepub function) makes the file unreadable."""
        if (module, name) in _ALLOWED or (module, name) == (__name__, "Saved"):
            return super().find_class(module, name)
        if module.startswith(_OWN) and name.isidentifier():
            found = super().find_class(module, name)
            if (
                isinstance(found, type)
                and found.__module__ == module
                and not issubclass(found, BaseException)
            ):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a race state")

    def persistent_load(self, pid: Any) -> Any:
        if pid == ("course",):
            return self.course
        if pid == ("race",):
            return self.race
        if pid[0] == "racer":
            return self.racers[pid[1]]
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


class Unsafe(Exception):
    """A state directory or file that someone else could have written."""


class StateFile:
    def __init__(self, directory: Path, race: Race, key: str):
        self.path = directory / f"{race.id}.state"
        self.race, self.key = race, key
        # The first cycle saves at once: it may have been a long catch-up.
        self.saved_at = -math.inf
        self._child: int | None = None
        self._refused: str | None = None  # why the directory is not used (said once)

    def load(self, course: Course) -> Saved | None:
        try:
            directory = _open_dir(self.path.parent)
        except FileNotFoundError:
            return None
        except (Unsafe, OSError) as e:
            self._refuse(e)
            return None
        try:
            with _open_file(directory, self.path) as f:
                if _read_header(f) != {"format": FORMAT, "key": self.key}:
                    log.info(
                        "state file %s is of another race config, course or source "
                        "version: reading the race from the start",
                        self.path,
                    )
                    return None
                saved = _Unpickler(f, self.race, course).load()
        except FileNotFoundError:
            return None
        except Unsafe as e:
            log.warning("%s: not used; reading the race from the start", e)
            return None
        except Exception as e:  # whatever is wrong with it: start over
            log.warning(
                "state file %s is unreadable (%s): reading the race from the start",
                self.path,
                f"{type(e).__name__}: {e}"
                if isinstance(e, pickle.UnpicklingError)
                else type(e).__name__,
            )
            return None
        finally:
            os.close(directory)
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
        try:
            _check_dir(self.path.parent)
        except (Unsafe, OSError) as e:
            self._refuse(e)
            return
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

    def _refuse(self, why: Exception) -> None:
        if self._refused is None:
            self._refused = str(why)
            log.warning(
                "%s: no race state is read or saved there; reading the race from the start",
                why,
            )

    def _write(self, saved: Saved) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory = _open_dir(self.path.parent)
            try:
                self._write_in(directory, saved)
            finally:
                os.close(directory)
        except (OSError, Unsafe) as e:
            print(f"racepub: cannot save the race state to {self.path}: {e}", file=sys.stderr)

    def _write_in(self, directory: int, saved: Saved) -> None:
        tmp = f".{self.path.name}.{os.getpid()}"
        fd = _create(directory, tmp, self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                header = json.dumps({"format": FORMAT, "key": self.key}).encode()
                f.write(MAGIC + _LENGTH.pack(len(header)) + header)
                _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(saved)
                f.flush()
                os.fsync(f.fileno())  # the bytes on disk before the name points at them
            os.replace(tmp, self.path.name, src_dir_fd=directory, dst_dir_fd=directory)
            os.fsync(directory)  # and the new name too
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=directory)
            raise

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


# -- the file and its directory, checked without following links ----------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _check_owned(st: os.stat_result, what: str, path: Path) -> None:
    """Refuse what this user does not own, or others can write."""
    uid = os.geteuid()
    if st.st_uid != uid:
        raise Unsafe(f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {uid})")
    if st.st_mode & 0o022:
        raise Unsafe(
            f"{what} {path} can be written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}; chmod go-w it)"
        )


def _check_dir(path: Path) -> None:
    """The state directory as it is now: a real directory of this user's,
    or not there yet (a save makes it, 0700)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise Unsafe(f"state directory {path} is a symbolic link (not followed)")
    if not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"state directory {path} is not a directory")
    _check_owned(st, "state directory", path)


def _open_dir(path: Path) -> int:
    """The state directory, opened without following a link, and checked as
    opened (nothing swapped between the check and the use)."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            _check_dir(path)  # says what it is
        raise
    try:
        _check_owned(os.fstat(fd), "state directory", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(directory: int, path: Path) -> Any:
    """The state file in the directory opened, not following a link (nor
    waiting on a FIFO), and checked as opened."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path.name, flags, dir_fd=directory)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Unsafe(f"state file {path} is a symbolic link (not followed)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unsafe(f"state file {path} is not a regular file")
        _check_owned(st, "state file", path)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _read_header(f: Any) -> Any:
    """The header, read as data (JSON) before anything is unpickled; None
    if the file does not start as this racepub writes it."""
    if f.read(len(MAGIC)) != MAGIC:
        return None
    size = f.read(_LENGTH.size)
    if len(size) != _LENGTH.size or _LENGTH.unpack(size)[0] > HEADER_MAX:
        return None
    raw = f.read(_LENGTH.unpack(size)[0])
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _create(directory: int, name: str, where: Path) -> int:
    """A new file for this save, never an existing one nor through a link.
    A file of this user's by that name is a save killed mid-write by a
    process of the same pid: removed first."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, 0o600, dir_fd=directory)
    except FileExistsError:
        st = os.lstat(name, dir_fd=directory)
        if stat.S_ISLNK(st.st_mode):
            raise Unsafe(f"{where / name} is a symbolic link (not followed)") from None
        if not stat.S_ISREG(st.st_mode):
            raise Unsafe(f"{where / name} is in the way (not a regular file)") from None
        _check_owned(st, "a temporary file", where / name)
        os.unlink(name, dir_fd=directory)
        return os.open(name, flags, 0o600, dir_fd=directory)
