"""Helpers shared by the tests: a race config on disk, a points table."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from racepub.config import Race, Racer
from racepub.model.board import points
from racepub.model.course import Course, write_gpx
from racepub.model.race import RaceState

STOPS = [
    (42.340081, -71.166769),
    (42.339596, -71.157661),
    (42.338169, -71.153014),
    (42.340805, -71.150711),
    (42.341614, -71.146202),
    (42.343864, -71.142853),
]


# A race in memory (no config file) starts here; its fixes are seconds after T0.
START = datetime(2014, 7, 25, 15, 0, tzinfo=UTC)
T0 = START.timestamp()


def take_full(state: RaceState) -> list[list[Any]]:
    """What the trails would cut now (shapes/trails.py): the tails of the
    racers whose tails are full, as published points."""
    out: list[list[Any]] = []
    for i in sorted(state.full):
        out += points(state.order[i].take_tail())
    state.full.clear()
    return out


def race_state(course: Course, *racers: Racer, **kw: Any) -> RaceState:
    """A RaceState of race "t" on `course` (two racers a and b unless given)."""
    race = Race(
        id="t",
        title="T",
        starts_at=START,
        course=Path("c.gpx"),
        interval_s=2,
        sink="dir:x",
        racers=racers or (Racer("a", "A"), Racer("b", "B")),
        **kw,
    )
    return RaceState(race, course)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class RaceSetup:
    """A config on disk for one race, plus what a test needs to check it."""

    path: Path
    course: Course
    starts_at: datetime
    sink_dir: Path

    def snapshot(self) -> dict[str, Any]:
        return json.loads((self.sink_dir / "snapshot.json").read_text())


def write_race(
    tmp_path: Path,
    dsn: str,
    *,
    racers: str | None = None,
    source: str | None = None,
    starts_at: datetime | None = None,
    sink: str | None = None,
    extra: str = "",
    interval_s: int = 2,
    points: list[tuple[float, float]] | None = None,
    elevations: list[float] | None = None,
    s3_endpoint: str | None = None,
) -> RaceSetup:
    """A race "t" on disk; s3_endpoint: an [s3] table pointing there (moto's server)."""
    points = points or STOPS
    (tmp_path / "course.gpx").write_text(write_gpx(points, "test course", elevations))
    starts_at = starts_at or now_utc() - timedelta(minutes=10)
    source = (
        source
        or """
        table = "live_points"
        racer = "user_id"
        time = "recorded_at"
        lat = "lat"
        lon = "lon"
    """
    )
    racers = (
        racers
        or """
        [[races.t.racers]]
        id = "1001"
        name = "Michael"

        [[races.t.racers]]
        id = "1002"
        name = "Sarah"
        color = "#17bebb"

        [[races.t.racers]]
        id = "2001"
        name = "The T"
        kind = "vehicle"
    """
    )
    sink = sink or "dir:public"
    s3 = (
        ["[s3]", f'endpoint_url = "{s3_endpoint}"', 'region = "us-east-1"', ""]
        if s3_endpoint
        else []
    )
    text = "\n".join(
        [
            "[database]",
            f'dsn = "{dsn}"',
            "",
            *s3,
            "[source]",
            textwrap.dedent(source).strip(),
            "",
            "[races.t]",
            'title = "Test race"',
            f'starts_at = "{starts_at.isoformat()}"',
            'course = "course.gpx"',
            f"interval_s = {interval_s}",
            f'sink = "{sink}"',
            textwrap.dedent(extra).strip(),
            "",
        ]
    ) + textwrap.dedent(racers)
    path = tmp_path / "racepub.toml"
    path.write_text(text)
    return RaceSetup(
        path=path, course=Course(points), starts_at=starts_at, sink_dir=tmp_path / "public"
    )


def fixes(
    setup: RaceSetup,
    racer: Any,
    speed: float,
    until_s: float,
    *,
    since_s: float = 1.0,
    every: float = 2.0,
) -> list[tuple[Any, ...]]:
    """Noise-free fixes (racer, time, lat, lon) of a racer running the course
    at `speed` m/s from the start: one every `every` s from since_s to until_s."""
    rows, t = [], since_s
    while t <= until_s:
        rows.append((racer, setup.starts_at + timedelta(seconds=t), *setup.course.at(speed * t)))
        t += every
    return rows


def run_once(config: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`racepub run --once` for race "t", in a process of its own (as after a kill)."""
    return subprocess.run(
        [sys.executable, "-m", "racepub", "run", "--once", "--race", "t", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Ran:
    """A command run in a process of its own, and what it cost."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float  # its own peak resident memory


# Forks and execs the command, and reports its peak RSS: a process forked
# from pytest itself would count pytest's memory as its own (Linux carries
# the peak over exec), so the command is forked from this small one.
_MEASURE = """
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_measured(argv: list[str], timeout: float = 120.0) -> Ran:
    """Run argv; killed after timeout (then returncode is -9)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as report,
    ):
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, report.name, *argv],
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        seconds = time.monotonic() - start
        code, rss_kb = report.read().split() or ["-9", "0"]
        out.seek(0)
        err.seek(0)
        return Ran(
            int(code),
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            seconds,
            int(rss_kb) / 1024,  # KB on Linux
        )


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.1) -> Any:
    """check() until it returns something true (returned), or fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s")


def sink_bodies(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under prefix as a spectator gets it (gzip undone)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=item["Key"])
            data = got["Body"].read()
            out[item["Key"]] = (
                gzip.decompress(data) if got.get("ContentEncoding") == "gzip" else data
            )
    return out


def assert_nothing_secret(bodies: dict[str, bytes], dsn: str, *also: str) -> None:
    """No published object holds the DSN, the database's host and port or
    user, an AWS key (the tests' is "testing"), or what else is named."""
    for key, data in bodies.items():
        for secret in (dsn, dsn.split("@")[1], "testing", "postgres", *also):
            assert secret.encode() not in data, (key, secret)


def create_points_table(dsn: str, ddl: str | None = None) -> None:
    """The points table: POINTS_DDL unless a test needs another."""
    ddl = ddl or POINTS_DDL
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl)


def insert_points(
    dsn: str, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(*table.split(".")),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(query, rows)


def copy_points(
    dsn: str, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """insert_points for hundreds of thousands of rows: COPY."""
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(query) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def versions(s3: Any, bucket: str) -> dict[str, int]:
    """How often each key was written (the bucket is versioned)."""
    counts: dict[str, int] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    return counts


def public_bucket(s3: Any, prefix: str) -> str:
    """A new bucket spectators read anonymously, as through CloudFront."""
    bucket = f"{prefix}-{os.getpid()}-{len(s3.list_buckets()['Buckets'])}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    }
                ],
            }
        ),
    )
    return bucket


# The points table most tests use, and the one with an insert-order key.
POINTS_DDL = (
    "CREATE TABLE live_points (user_id text, recorded_at timestamptz, lat float8, lon float8)"
)
IDS_DDL = (
    "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
    "recorded_at timestamptz, lat float8, lon float8)"
)
COLS = ("user_id", "recorded_at", "lat", "lon")


ReadRange = Callable[[str, int, int], bytes]  # (key, offset, length) -> bytes of an object


def dir_reader(sink_dir: Path) -> ReadRange:
    def read(key: str, at: int, length: int) -> bytes:
        with (sink_dir / key).open("rb") as f:
            f.seek(at)
            return f.read(length)

    return read


def s3_reader(s3: Any, bucket: str, prefix: str = "race") -> ReadRange:
    def read(key: str, at: int, length: int) -> bytes:
        got = s3.get_object(
            Bucket=bucket, Key=f"{prefix}/{key}", Range=f"bytes={at}-{at + length - 1}"
        )
        return bytes(got["Body"].read())

    return read


def piece_points(read: ReadRange, key: str, at: int, length: int, racer: str) -> list[float]:
    """One piece of a racer's trail: a gzip member of a pack. Points as flat
    (lat, lon, epoch seconds)."""
    piece = json.loads(gzip.decompress(read(key, at, length)))
    assert piece["racer"] == racer
    return [x for p in piece["points"] for x in (p[0], p[1], piece["t0"] + p[2])]


def record_trail(read: ReadRange, record: dict[str, Any]) -> list[tuple[float, float, float]]:
    """A small race's racer's whole trail as the page draws it: the pieces
    their record's `track` lists (ranges of packs), then their `tail`; each
    point once, in time order. As (lat, lon, epoch seconds)."""
    flat: list[float] = []
    for url in record["track"]:
        key, _, span = url.partition("#bytes=")
        first, last = (int(x) for x in span.split("-"))
        flat += piece_points(read, key, first, last - first + 1, record["id"])
    out = [(flat[k], flat[k + 1], flat[k + 2]) for k in range(0, len(flat), 3)]
    out += [(p[0], p[1], datetime.fromisoformat(p[2]).timestamp()) for p in record["tail"]]
    times = [p[2] for p in out]
    assert times == sorted(times) and len(set(times)) == len(times), "a point drawn twice"
    return out
