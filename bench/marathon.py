"""The bench race: a marathon course, its entrants, their fixes generated in
SQL, and the real parts a measurement runs on (a throwaway PostgreSQL and
moto's S3 server, each stopped when done)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg

from racepub.commands.localdb import LocalPostgres, free_port
from racepub.model.course import write_gpx

ROOT = Path(__file__).resolve().parents[1]
FIX_EVERY_S = 5
INTERVAL_S = 2
LAT0, LON0 = 42.30, -71.10
M_PER_DEG = 111_195.0
COURSE_M = 42_195
BUCKET = "bench-live"
PUT_PRICE_PER_1000 = 0.005  # S3 standard, list price, USD
# racepub's round-robin large form, the last commit before the second form:
# the baseline of the cold restart, run from a git worktree.
OLD_FORM_COMMIT = "2a0649a"
# racepub before one model and two shapes (a small race's trail a chunk
# object a minute): the baseline of the cycle and first-load figures.
PREVIOUS_COMMIT = "a52aadc"


def course_gpx(path: Path) -> None:
    """A marathon, north from (LAT0, LON0), a vertex every 10 m as GPS tracks have."""
    pts = [
        (LAT0 + d / M_PER_DEG, LON0 + 0.0005 * math.sin(d / 700))
        for d in range(0, COURSE_M + 1, 10)
    ]
    path.write_text(write_gpx(pts, "bench marathon"))


def write_race(
    work: Path, n: int, dsn: str, endpoint: str, start: datetime, interval_s: int = INTERVAL_S
) -> Path:
    """The bench marathon's config, course and entrants, in `work`."""
    course_gpx(work / "course.gpx")
    (work / "entrants.csv").write_text(
        "id,name,kind\n" + "".join(f"{i},Runner {i},runner\n" for i in range(n))
    )
    path = work / "racepub.toml"
    path.write_text(f"""
[database]
dsn = "{dsn}"
[source]
table = "live_points"
racer = "user_id"
time = "recorded_at"
lat = "lat"
lon = "lon"
ingest = "id"
[s3]
endpoint_url = "{endpoint}"
region = "us-east-1"
[races.b]
title = "Bench marathon"
starts_at = "{start.isoformat()}"
course = "course.gpx"
interval_s = {interval_s}
sink = "s3://{BUCKET}/race"
racers_file = "entrants.csv"
""")
    return path


def create_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
        "recorded_at timestamptz, lat float8, lon float8)"
    )


def count_rows(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM live_points").fetchone()
    return int(row[0]) if row else 0


def generate(
    conn: psycopg.Connection[Any],
    n: int,
    start: datetime,
    t0: float,
    t1: float,
    every: int,
    phone_every: int = 1,
) -> None:
    """Racer r's fixes at every*k + r % 5 seconds after the start, for those
    in [t0, t1): staggered, as phones are; 2.4 .. 4.2 m/s with GPS noise.
    Only every phone_every-th racer carries a phone. Generated in SQL."""
    conn.execute(
        "INSERT INTO live_points (user_id, recorded_at, lat, lon) "
        "SELECT r::text, %(start)s + make_interval(secs => s), "
        "%(lat0)s + least(s * (2.4 + ((r * 7919) %% 1000) / 1000.0 * 1.8), %(len)s) / %(m)s "
        "  + (random() - 0.5) * 6e-5, "
        "%(lon0)s + 0.0005 * sin(least(s * (2.4 + ((r * 7919) %% 1000) / 1000.0 * 1.8), "
        "  %(len)s) / 700) + (random() - 0.5) * 8e-5 "
        "FROM generate_series(0, %(n)s::int - 1) r, "
        "LATERAL (SELECT k * %(every)s::int + r %% 5 AS s FROM generate_series("
        "  %(k0)s::int, %(k1)s::int) k) f "
        "WHERE s >= %(t0)s AND s < %(t1)s AND r %% %(phones)s = 0",
        {
            "start": start,
            "phones": phone_every,
            "lat0": LAT0,
            "lon0": LON0,
            "len": COURSE_M - 50,
            "m": M_PER_DEG,
            "n": n,
            "t0": t0,
            "t1": t1,
            "every": every,
            "k0": int(t0 // every) - 1,
            "k1": int(t1 // every) + 1,
        },
    )


@dataclass
class Parts:
    work: Path
    dsn: str
    endpoint: str
    s3: Any


@contextlib.contextmanager
def real_parts() -> Iterator[Parts]:
    """A throwaway PostgreSQL and moto's S3 server (its own process, on
    loopback) with the bench bucket; both stopped on the way out."""
    work = Path(tempfile.mkdtemp(prefix="racepub-bench-"))
    db = LocalPostgres(work / "pg")
    dsn = db.start()
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for _ in range(100):
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # the server is still starting
                time.sleep(0.1)
        yield Parts(work, dsn, endpoint, s3)
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        db.destroy()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def old_tree(commit: str = OLD_FORM_COMMIT) -> Iterator[Path | None]:
    """A worktree of racepub at an older commit (None without the git
    history), in a temp folder its runs keep their temp files in, removed
    on the way out."""
    tree = Path(tempfile.mkdtemp(prefix="racepub-oldform-")) / "tree"
    tree.parent.chmod(0o711)  # its temp files go in here: PostgreSQL's user must reach them
    made = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
        capture_output=True,
        text=True,
    )
    try:
        if made.returncode != 0:
            print(f"bench: no old form to compare with: {made.stderr.strip()}", file=sys.stderr)
            yield None
        else:
            yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
        )
        shutil.rmtree(tree.parent, ignore_errors=True)


def run_old(
    tree: Path, args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Python in the old form's worktree: its own code, its temp files under ours."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=tree,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(tree), "TMPDIR": str(tree.parent)},
    )


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan
