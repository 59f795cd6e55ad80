"""A restart carries on from the race state saved on disk (statefile.py):
it reads only the rows since, and publishes exactly what a publisher that
read the whole race publishes. A state that does not belong to the race,
the source or the sink is never used. Real PostgreSQL, real processes."""

from __future__ import annotations

import json
import logging
import os
import pickle
import pwd
import shutil
import struct
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from racepub import config
from racepub.publisher import statefile
from racepub.publisher.cycle import Publisher
from tests.faults import Publisher as RunningPublisher
from tests.helpers import (
    COLS,
    RaceSetup,
    create_points_table,
    dir_reader,
    fixes,
    insert_points,
    now_utc,
    record_trail,
    run_once,
    wait_for,
    write_race,
)

N = 23
RACERS = "".join(f'\n[[races.t.racers]]\nid = "r{i:02d}"\nname = "R{i}"\n' for i in range(N))
LARGE = "shard_above = 10\nshard_size = 5\nhead_size = 4\nchunk_points = 12"


def rows_between(setup: RaceSetup, t0: float, t1: float) -> list[tuple[Any, ...]]:
    return [
        r for i in range(N) for r in fixes(setup, f"r{i:02d}", 2.0 + 0.05 * i, t1, since_s=t0 + 1)
    ]


def published(root: Path) -> dict[str, Any]:
    """The snapshot and every live shard as spectators read them, less seq
    (which goes on across restarts) and the trail groups (rewritten in turn);
    a small race's trails as the page draws them, every point (where the
    pieces were cut depends on how the rows were read)."""
    docs = {}
    for path in [root / "snapshot.json", *sorted((root / "racers").glob("*.json"))]:
        doc = json.loads(path.read_bytes())
        doc.pop("seq")
        doc.pop("publish_lag_s", None)  # measured: how long this cycle took
        doc.pop("trail", None)
        for rec in doc.get("racers", []) if "field" not in doc else []:
            rec["trail"] = record_trail(dir_reader(root), rec)
            del rec["track"], rec["tail"]
        docs[path.name] = doc
    return docs


INGEST_SOURCE = (
    'table = "live_points"\nracer = "user_id"\ntime = "recorded_at"\nlat = "lat"\n'
    'lon = "lon"\ningest = "id"'
)


@pytest.mark.parametrize(
    ("form", "cursor"), [("small", "time"), ("large", "time"), ("small", "id")]
)
def test_a_restart_from_the_saved_state_publishes_what_a_full_read_does(
    tmp_path: Path, dsn: str, form: str, cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its dropped counts too: a restart never counts the rows of its first
    reads again against their racers."""
    caplog.set_level(logging.INFO)
    source = None
    if cursor == "id":
        create_points_table(
            dsn,
            "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
            "recorded_at timestamptz, lat float8, lon float8)",
        )
        source = INGEST_SOURCE
    else:
        create_points_table(dsn)
    starts = now_utc() - timedelta(seconds=400)
    extra = LARGE if form == "large" else "chunk_points = 12"
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    a = write_race(tmp_path / "a", dsn, racers=RACERS, extra=extra, starts_at=starts, source=source)
    c = write_race(tmp_path / "c", dsn, racers=RACERS, extra=extra, starts_at=starts, source=source)
    state_dir = tmp_path / "state"
    first_rows = rows_between(a, 0, 200)
    insert_points(dsn, "live_points", COLS, first_rows)
    cfg_a, cfg_c = config.load(str(a.path)), config.load(str(c.path))

    t1 = starts.timestamp() + 201
    before = Publisher(cfg_a, cfg_a.race("t"), state_dir=state_dir, clock=lambda: t1)
    before.cycle()
    before.close()  # a stop saves the state (SIGTERM; kill -9 keeps the last minute's)
    assert (state_dir / "t.state").exists()

    later = rows_between(a, 200, 390)
    insert_points(dsn, "live_points", COLS, later)
    t2 = starts.timestamp() + 391
    restarted = Publisher(cfg_a, cfg_a.race("t"), state_dir=state_dir, clock=lambda: t2)
    assert "carrying on from the race state saved" in caplog.text
    stats = restarted.cycle()
    again = restarted.cycle()  # (the second read after a restart re-read the first's rows)
    restarted.close()
    full = Publisher(cfg_c, cfg_c.race("t"), clock=lambda: t2)
    full_stats = full.cycle()
    full.cycle()
    full.close()

    assert stats.new_points == len(later)  # only the rows since the save
    assert full_stats.new_points == len(first_rows) + len(later)
    assert stats.seq == 2 and again.new_points == 0 and again.dropped == 0
    got, want = published(a.sink_dir), published(c.sink_dir)
    if form == "large":
        assert len(got) == 1 + 5  # the snapshot and five shards
    assert got == want


def test_a_state_of_another_race_source_or_sink_is_not_used(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    create_points_table(dsn)
    starts = now_utc() - timedelta(seconds=300)
    setup = write_race(tmp_path, dsn, racers=RACERS, starts_at=starts)
    rows = rows_between(setup, 0, 280)
    insert_points(dsn, "live_points", COLS, rows)
    state_dir = tmp_path / "state"

    def run() -> Any:
        cfg = config.load(str(setup.path))
        caplog.clear()
        pub = Publisher(cfg, cfg.race("t"), state_dir=state_dir)
        stats = pub.cycle()
        pub.close()
        return stats

    assert run().new_points == len(rows)
    assert run().new_points == 0  # carried on: nothing new to read
    assert "carrying on" in caplog.text

    # The sink emptied (a bucket cleared for the real race): start over.
    shutil.rmtree(setup.sink_dir)
    stats = run()
    assert "the sink is behind the saved race state" in caplog.text
    assert stats.seq == 1 and stats.new_points == len(rows)
    assert all(r["position"] for r in setup.snapshot()["racers"])

    # The config changed (a racer's name, a new course, another table): the
    # state is of another race.
    setup.path.write_text(setup.path.read_text().replace('name = "R3"', 'name = "R three"'))
    assert run().new_points == len(rows)
    assert "of another race config" in caplog.text

    # A damaged file is read as nothing.
    path = state_dir / "t.state"
    path.write_bytes(path.read_bytes()[:1000])
    assert run().new_points == len(rows)
    assert "is unreadable" in caplog.text
    assert path.stat().st_mode & 0o777 == 0o600  # saved anew, for its user only


@pytest.mark.slow
def test_kill_9_then_restart_reads_only_the_rows_since_the_last_save(
    tmp_path: Path, dsn: str, state_dir: Path
) -> None:
    """`racepub run` saves the state after its first cycle (and every
    minute); after kill -9 a restart carries on from it."""
    create_points_table(dsn)
    starts = now_utc() - timedelta(seconds=300)
    setup = write_race(tmp_path, dsn, racers=RACERS, interval_s=1, starts_at=starts)
    insert_points(dsn, "live_points", COLS, rows_between(setup, 0, 250))
    pub = RunningPublisher(setup.path)
    try:
        wait_for(lambda: (state_dir / "t.state").exists() and " seq=" in pub.log)
        pub.kill()
    finally:
        pub.kill()
    later = rows_between(setup, 250, 290)
    insert_points(dsn, "live_points", COLS, later)
    seq = setup.snapshot()["seq"]
    done = run_once(setup.path)
    assert done.returncode == 0, done.stderr
    assert "carrying on from the race state saved" in done.stderr
    assert f" new={len(later)} " in done.stderr  # read: only the rows since
    snap = setup.snapshot()
    assert snap["seq"] == seq + 1
    newest = {r["id"]: r["position"]["at"] for r in snap["racers"]}
    for i in range(N):
        assert newest[f"r{i:02d}"] == max(r[1] for r in later if r[0] == f"r{i:02d}").isoformat(
            timespec="seconds"
        ).replace("+00:00", "Z")


# -- a state file someone else wrote is never loaded ------------------------------


class Planted:
    """What a planted pickle does when loaded: runs a command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def as_nobody(do: Any) -> None:
    """Run do() in a forked child as the user nobody (the tests run as root)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            do()
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


NOBODY = pwd.getpwnam("nobody")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="planting as another user needs root")


def published_race(tmp_path: Path, dsn: str) -> tuple[RaceSetup, Any]:
    """A race with rows to read, and its config."""
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn, racers=RACERS, starts_at=now_utc() - timedelta(seconds=300))
    insert_points(dsn, "live_points", COLS, rows_between(setup, 0, 280))
    return setup, config.load(str(setup.path))


def header_of(state: Path) -> bytes:
    """A real state file's header: magic, length, JSON (format, fingerprint)."""
    data = state.read_bytes()
    assert data.startswith(statefile.MAGIC)
    size = struct.unpack(">I", data[len(statefile.MAGIC) : len(statefile.MAGIC) + 4])[0]
    head = data[: len(statefile.MAGIC) + 4 + size]
    assert json.loads(head[len(statefile.MAGIC) + 4 :])["format"] == statefile.FORMAT
    return head


@ROOT_ONLY
def test_a_state_planted_by_another_user_never_runs(tmp_path: Path, dsn: str) -> None:
    """The attack as found: `nobody` plants a pickle in a state directory
    anyone can write, and root's `racepub run --once --state-dir` loaded it
    (running its code). Now the directory is refused, said in one line, the
    planted file is neither loaded nor replaced, and the race is published."""
    setup, _ = published_race(tmp_path, dsn)
    # Where nobody can reach it (pytest's own directories are root's, 0700).
    state_dir = Path(tempfile.mkdtemp(prefix="racepub-shared-"))
    try:
        state_dir.chmod(0o777)
        planted_by_nobody(setup, state_dir, tmp_path / "ran")
    finally:
        shutil.rmtree(state_dir)


def planted_by_nobody(setup: RaceSetup, state_dir: Path, marker: Path) -> None:
    planted = pickle.dumps(Planted(marker))
    for body in (planted, b"racepub state\n" + planted):  # the old format, and a bad header
        (state_dir / "t.state").unlink(missing_ok=True)
        as_nobody(lambda body=body: (state_dir / "t.state").write_bytes(body))
        done = subprocess.run(
            [sys.executable, "-m", "racepub", "run", "--once", "--race", "t"]
            + ["--config", str(setup.path), "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert not marker.exists()  # (it ran as root, loaded as the header)
        assert "Traceback" not in done.stderr
        assert (
            f"state directory {state_dir} can be written by other users (mode 0777; chmod go-w "
            "it): no race state is read or saved there; reading the race from the start"
        ) in done.stderr
        assert (state_dir / "t.state").read_bytes() == body  # not replaced either
        assert (state_dir / "t.state").stat().st_uid == NOBODY.pw_uid
        assert all(r["position"] for r in setup.snapshot()["racers"])  # published


def refused_then_published(
    setup: RaceSetup, cfg: Any, state_dir: Path, caplog: pytest.LogCaptureFixture, said: str
) -> None:
    caplog.clear()
    pub = Publisher(cfg, cfg.race("t"), state_dir=state_dir)
    try:
        stats = pub.cycle()
    finally:
        pub.close()
    assert said in caplog.text, caplog.text
    assert "carrying on" not in caplog.text
    assert stats.new_points == N * 140  # the race read from the start
    assert all(r["position"] for r in setup.snapshot()["racers"])


def test_a_state_file_that_is_not_the_users_own_plain_file_is_refused(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With a header that matches (the worst case), each is refused before
    any of it is unpickled: a file another user owns or others can write, a
    symbolic link at the file or the directory; and a file of the user's own
    whose pickle names anything but a race state's classes is unreadable."""
    caplog.set_level(logging.INFO)
    setup, cfg = published_race(tmp_path, dsn)
    state_dir, marker = tmp_path / "state", tmp_path / "ran"
    first = Publisher(cfg, cfg.race("t"), state_dir=state_dir)
    first.cycle()
    first.close()
    state = state_dir / "t.state"
    evil = header_of(state) + pickle.dumps(Planted(marker), protocol=5)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "elsewhere" / "t.state").write_bytes(evil)

    def plant(body: bytes, mode: int = 0o600) -> None:
        state.unlink()
        state.write_bytes(body)
        state.chmod(mode)

    if os.geteuid() == 0:
        plant(evil)
        os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
        refused_then_published(
            setup, cfg, state_dir, caplog,
            f"state file {state} is owned by uid {NOBODY.pw_uid}, not by this user (uid 0): "
            "not used; reading the race from the start",
        )  # fmt: skip
        assert state.stat().st_uid == 0 and header_of(state)  # replaced by the user's own

    plant(evil, 0o666)
    refused_then_published(
        setup, cfg, state_dir, caplog,
        f"state file {state} can be written by other users (mode 0666; chmod go-w it)",
    )  # fmt: skip

    state.unlink()
    state.symlink_to(tmp_path / "elsewhere" / "t.state")
    refused_then_published(
        setup, cfg, state_dir, caplog, f"state file {state} is a symbolic link (not followed)"
    )
    assert not state.is_symlink()  # the user's own file now

    plant(evil)  # the user's own, but not a race state
    refused_then_published(
        setup, cfg, state_dir, caplog,
        f"state file {state} is unreadable (UnpicklingError: posix.system is not part of a "
        "race state): reading the race from the start",
    )  # fmt: skip

    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "elsewhere")
    refused_then_published(
        setup, cfg, linked, caplog,
        f"state directory {linked} is a symbolic link (not followed): no race state is read "
        "or saved there",
    )  # fmt: skip
    assert (tmp_path / "elsewhere" / "t.state").read_bytes() == evil  # nothing saved there
    assert not marker.exists()


def test_a_save_never_writes_through_a_link_at_its_temporary_name(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The temporary file is made with O_CREAT|O_EXCL|O_NOFOLLOW: a link
    planted at its (predictable) name is not followed, the file it points
    at is untouched, and the save says so in one line."""
    setup, cfg = published_race(tmp_path, dsn)
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (state_dir / f".t.state.{os.getpid()}").symlink_to(victim)
    pub = Publisher(cfg, cfg.race("t"), state_dir=state_dir)
    pub.cycle()
    pub.close()  # saves here and now, in this process
    assert victim.read_text() == "keep me\n"
    err = capsys.readouterr().err
    assert (
        f"racepub: cannot save the race state to {state_dir / 't.state'}: "
        f"{state_dir / f'.t.state.{os.getpid()}'} is a symbolic link (not followed)"
    ) in err
    # A leftover of the user's own by that name (a save killed mid-write) is replaced.
    (state_dir / f".t.state.{os.getpid()}").unlink()
    (state_dir / f".t.state.{os.getpid()}").write_bytes(b"half a state")
    pub = Publisher(cfg, cfg.race("t"), state_dir=state_dir)
    pub.cycle()
    pub.close()
    assert header_of(state_dir / "t.state") and os.listdir(state_dir) == ["t.state"]
