"""A restart's catch-up and a standby's takeover, measured.

- restart: a publisher has published a race of N racers hours in; a new
  process starts cold (`racepub run` after a crash): how long until its
  first snapshot, reading the whole history again. The chunks the sink
  already holds are not packed again.
- takeover: a standby has read along (Publisher.standby) while the active
  publisher ran; the active one dies; how long the standby's first cycle
  takes (add up to an interval for its next try at the lock).
- restart from the saved state: as `racepub run` restarts after kill -9,
  with the race state it saved (statefile.py) SAVE_EVERY_S before the kill,
  the worst case: how long until its first snapshot. And what saving costs
  the publish loop (the fork) and the disk.

- the old form's cold restart: racepub at OLD_FORM_COMMIT, started the
  same way on the same table (its own code, its own config, its own sink
  prefix), for fields up to OLD_RESTART_MAX: the baseline of the cold
  restart, measured beside it.

    python -m bench.restart 10000 7200 20    # racers, race age s, a fix every s
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.marathon import (
    INTERVAL_S,
    Parts,
    count_rows,
    create_table,
    generate,
    old_tree,
    real_parts,
    run_old,
    write_race,
)
from racepub import config
from racepub.publisher.cycle import Publisher
from racepub.publisher.statefile import SAVE_EVERY_S

OLD_RESTART_MAX = 10_000  # the old form's cold start at 50,000 takes ~10 minutes
# The old form's cold restart, run in its worktree: its bench's config
# writer, its Publisher, one cycle on the same table (a prefix of its own).
OLD_COLD = """
import sys, time
from datetime import datetime
from pathlib import Path
sys.path.insert(0, "bench")  # (its bench/ is not a package: ours would be found)
from run import write_race
from racepub import config
from racepub.publish import Publisher
work, n, dsn, endpoint, start = sys.argv[1:6]
path = write_race(Path(work), int(n), dsn, endpoint, datetime.fromisoformat(start))
path.write_text(path.read_text().replace("/race", "/oldform"))
cfg = config.load(str(path))
pub = Publisher(cfg, cfg.race("b"))
t0 = time.perf_counter()
pub.cycle()
print(time.perf_counter() - t0)
pub.close()
"""


def old_cold_restart(parts: Parts, n: int, start: datetime) -> float | None:
    """Seconds the old form's cold start takes on the same table (None without it)."""
    with old_tree() as tree:
        if tree is None:
            return None
        work = tree.parent / "work"
        work.mkdir()
        args = [str(work), str(n), parts.dsn, parts.endpoint, start.isoformat()]
        done = run_old(tree, ["-c", OLD_COLD, *args])
        if done.returncode != 0:
            print(f"bench: the old form's restart failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return None
        return float(done.stdout.strip().splitlines()[-1])


def measure(n: int, age_s: int, every_s: int) -> dict[str, Any]:
    with real_parts() as parts:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=age_s)
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            create_table(conn)
            # The race to a minute ago: the first publisher's state is saved
            # there, a minute before the kill (the worst case).
            generate(conn, n, start, 0, age_s - int(SAVE_EVERY_S), every_s)
            conn.execute("CREATE INDEX ON live_points (recorded_at)")
            conn.execute("ANALYZE live_points")
            rows = count_rows(conn)
        write_race(parts.work, n, parts.dsn, parts.endpoint, start)
        cfg = config.load(str(parts.work / "racepub.toml"))
        race = cfg.race("b")

        saved_dir = Path(tempfile.mkdtemp(prefix="racepub-state-"))
        first = Publisher(cfg, race, state_dir=saved_dir / "live")
        t0 = time.perf_counter()
        first.cycle()  # the race's first publisher, on an empty bucket; it saves its state
        first_s = time.perf_counter() - t0
        assert first.statefile is not None
        first.statefile.close()  # the first cycle's save, written
        t0 = time.perf_counter()
        first.statefile.save(first._saved())  # what each save costs the loop: the fork
        fork_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        first.statefile.close()  # the child's pickling and writing
        write_s = time.perf_counter() - t0
        state_mb = first.statefile.path.stat().st_size / 1e6
        (saved_dir / "old").mkdir(mode=0o700)  # a state directory only its user can write
        shutil.copy(first.statefile.path, saved_dir / "old" / first.statefile.path.name)
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            generate(conn, n, start, age_s - int(SAVE_EVERY_S), age_s, every_s)
            rows = count_rows(conn)
        first.cycle()
        standby = Publisher(cfg, race)
        t0 = time.perf_counter()
        standby.standby()  # reading along from the start, as `racepub run` does
        standby_read_s = time.perf_counter() - t0

        # One interval of the race goes on, published by the active one and
        # read by the standby; then the active one is gone.
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            generate(conn, n, start, age_s, age_s + INTERVAL_S, every_s)
        first.cycle()
        standby.standby()
        first.close()
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            generate(conn, n, start, age_s + INTERVAL_S, age_s + 2 * INTERVAL_S, every_s)
        standby.forget_sink()  # what taking the lock does
        t0 = time.perf_counter()
        standby.cycle()
        takeover_s = time.perf_counter() - t0
        standby.close()

        restarted = Publisher(cfg, race)  # a cold restart: kill -9, then `racepub run`
        t0 = time.perf_counter()
        stats = restarted.cycle()
        restart_s = time.perf_counter() - t0
        restarted.close()
        old_restart_s = old_cold_restart(parts, n, start) if n <= OLD_RESTART_MAX else None

        t0 = time.perf_counter()
        resumed = Publisher(cfg, race, state_dir=saved_dir / "old")
        resumed_stats = resumed.cycle()
        resumed_s = time.perf_counter() - t0
        assert resumed_stats.new_points < rows / 2, "the saved state was not used"
        resumed.close()
        shutil.rmtree(saved_dir)
        return {
            "resumed_s": resumed_s,
            "resumed_new": resumed_stats.new_points,
            "fork_ms": fork_ms,
            "state_write_s": write_s,
            "state_mb": state_mb,
            "racers": n,
            "age_s": age_s,
            "every_s": every_s,
            "rows": rows,
            "first_s": first_s,
            "standby_read_s": standby_read_s,
            "takeover_s": takeover_s,
            "restart_s": restart_s,
            "old_restart_s": old_restart_s,
            "restart_ms": stats.ms,
        }


def main() -> None:
    n, age, every = (int(a) for a in sys.argv[1:4])
    print(json.dumps(measure(n, age, every)))


if __name__ == "__main__":
    main()
