"""A burst of a million new points in one cycle: read in batches, memory bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.helpers import create_points_table, dir_reader, now_utc, record_trail, write_race

RACERS = 100
POINTS = 1_000_000


@pytest.mark.slow
def test_million_points_in_one_cycle(tmp_path: Path, dsn: str) -> None:
    racers = "".join(
        f'\n[[races.t.racers]]\nid = "{i}"\nname = "Runner {i}"\n' for i in range(RACERS)
    )
    per = POINTS // RACERS  # fixes a racer, a second apart, up to now
    setup = write_race(
        tmp_path,
        dsn,
        racers=racers,
        starts_at=now_utc() - timedelta(seconds=per + 5),
        extra="chunk_points = 500",
    )
    (lat0, lon0), (lat1, lon1) = setup.course.points[0], setup.course.points[1]
    create_points_table(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Each racer walks the first leg of the course, a fix a second.
        conn.execute(
            "INSERT INTO live_points SELECT r::text, %(start)s + s * interval '1 second', "
            "%(lat0)s + (%(lat1)s - %(lat0)s) * s / %(per)s, "
            "%(lon0)s + (%(lon1)s - %(lon0)s) * s / %(per)s "
            "FROM generate_series(0, %(racers)s - 1) r, generate_series(1, %(per)s) s",
            {
                "start": setup.starts_at,
                "lat0": lat0,
                "lat1": lat1,
                "lon0": lon0,
                "lon1": lon1,
                "per": per,
                "racers": RACERS,
            },
        )
    probe = (
        "import resource, sys\n"
        "from racepub.cli import main\n"
        f"rc = main(['run', '--once', '--race', 't', '--config', {str(setup.path)!r}])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb = int(done.stdout.split()[-1])
    assert f"new={POINTS} " in done.stderr
    # A million rows held at once would be several hundred MB by themselves.
    assert peak_mb < 300, peak_mb
    snap = json.loads((setup.sink_dir / "snapshot.json").read_text())
    assert all(r["status"] == "racing" for r in snap["racers"])
    read = dir_reader(setup.sink_dir)
    assert sum(len(record_trail(read, r)) for r in snap["racers"]) == POINTS  # each once
    print(f"peak RSS {peak_mb} MB for {POINTS} points")
