"""A restart carries on from the race state saved on disk (statefile.py):
it reads only the rows since, and publishes exactly what a publisher that
read the whole race publishes. A state that does not belong to the race,
the source or the sink is never used. Real PostgreSQL, real processes."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from racepub import config
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
        doc.pop("trail", None)
        for rec in doc.get("racers", []) if "field" not in doc else []:
            rec["trail"] = record_trail(dir_reader(root), rec)
            del rec["track"], rec["tail"]
        docs[path.name] = doc
    return docs


@pytest.mark.parametrize("form", ["small", "large"])
def test_a_restart_from_the_saved_state_publishes_what_a_full_read_does(
    tmp_path: Path, dsn: str, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    create_points_table(dsn)
    starts = now_utc() - timedelta(seconds=400)
    extra = LARGE if form == "large" else "chunk_points = 12"
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    a = write_race(tmp_path / "a", dsn, racers=RACERS, extra=extra, starts_at=starts)
    c = write_race(tmp_path / "c", dsn, racers=RACERS, extra=extra, starts_at=starts)
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
    restarted.close()
    full = Publisher(cfg_c, cfg_c.race("t"), clock=lambda: t2)
    full_stats = full.cycle()
    full.close()

    assert stats.new_points == len(later)  # only the rows since the save
    assert full_stats.new_points == len(first_rows) + len(later)
    assert stats.seq == 2
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
