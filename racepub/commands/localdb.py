"""A throwaway PostgreSQL server for `racepub demo` and the tests.

Uses the system's PostgreSQL binaries when there are any, else the ones the
`pgserver` wheel bundles, so a fresh machine needs nothing but pip.
"""

from __future__ import annotations

import atexit
import functools
import glob
import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..errors import RacepubError

# When running as root, PostgreSQL refuses to start; run it as this user.
UNPRIVILEGED_USER = "nobody"


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    # The pgserver wheel's bundled PostgreSQL; found without importing it
    # (its import creates lock files and runtime directories).
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.origin:
        candidates.append(str(Path(spec.origin).parent / "pginstall" / "bin"))
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise RacepubError(
        "no PostgreSQL found: install the demo extra "
        "(pip install 'racepub[demo]') or Debian's postgresql package"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """initdb into a temp directory, start on 127.0.0.1:PORT with trust auth.

    As root, the server runs as an unprivileged user (PostgreSQL refuses
    root), which must reach its binaries and its data. Nothing outside the
    server's own temp folders is changed for that: the data directory is a
    new folder in the system temp directory (world-traversable), and when
    the binaries sit under a private folder (a virtualenv in /root) they are
    copied into a temp folder of their own.
    """

    def __init__(self, root: Path | None = None, settings: dict[str, str] | None = None):
        self.settings = settings or {}  # extra server settings (-c name=value), e.g. logging
        self.user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        self.bindir = find_bindir()
        if self.user:
            entry = pwd.getpwnam(self.user)
            if not _reachable(self.bindir, entry.pw_uid, entry.pw_gid):
                self.bindir = _public_copy(self.bindir)
            if root is not None and not _reachable(root.parent, entry.pw_uid, entry.pw_gid):
                root = None  # a caller's folder under a private one: a temp folder of our own
        self.root = root or Path(tempfile.mkdtemp(prefix="racepub-pg-"))
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_user(self) -> dict[str, Any]:
        # Drop root's groups too: a group match would trump the o+x bits.
        return (
            {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}
            if self.user
            else {}
        )

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            cwd=self.root,
            **self._as_user(),
        )
        if result.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RacepubError(f"{args[0]} failed: {result.stderr.strip()}\n{tail}")

    def start(self) -> str:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            if not _reachable(self.root, entry.pw_uid, entry.pw_gid):
                raise RacepubError(
                    f"{self.root} is not reachable by the user {self.user} "
                    "that runs PostgreSQL (set TMPDIR to a world-traversable "
                    "folder such as /tmp)"
                )
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            )
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        opts += "".join(f" -c {k}={shlex.quote(v)}" for k, v in self.settings.items())
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "postgres.log"),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )
        self._reap_with(os.getpid())
        return self.dsn

    def _reap_with(self, owner: int) -> None:
        """Stop the server when its owner is gone, even by kill -9, and remove
        its data (tens of MB a throwaway server): a watcher in a session of
        its own (so signals to the owner's group miss it)."""
        pg_ctl = shlex.quote(str(self.bindir / "pg_ctl"))
        data = shlex.quote(str(self.data))
        script = (
            f"while [ -d /proc/{owner} ]; do sleep 1; done; "
            f"{pg_ctl} -D {data} -m immediate -w stop >/dev/null 2>&1; rm -rf {data}"
        )
        subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as_user(),
        )

    def stop(self, mode: str = "fast") -> None:
        """mode: fast (clean) or immediate (as if the server crashed)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self, mode: str = "fast") -> None:
        try:
            self.stop(mode)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether a user could traverse every folder down to `path` (and read it)."""
    for d in [*reversed(path.parents), path]:
        st = d.stat()
        bits = (
            stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        )
        if not st.st_mode & bits:
            return False
    return True


@functools.cache
def _public_copy(bindir: Path) -> Path:
    """The PostgreSQL install (bin/, lib/, share/) copied into a temp folder
    anyone may read, removed at exit: the alternative, opening up every
    folder above a virtualenv, would change the machine."""
    root = Path(tempfile.mkdtemp(prefix="racepub-pgbin-"))
    root.chmod(0o755)
    atexit.register(shutil.rmtree, root, True)
    for part in ("bin", "lib", "share"):
        if (bindir.parent / part).is_dir():
            shutil.copytree(bindir.parent / part, root / part, symlinks=True)
    return root / "bin"
