"""Helpers shared by the tests: a race config on disk, a points table."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from racepub.course import Course, write_gpx

STOPS = [
    (42.340081, -71.166769), (42.339596, -71.157661), (42.338169, -71.153014),
    (42.340805, -71.150711), (42.341614, -71.146202), (42.343864, -71.142853),
]


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


def write_race(tmp_path: Path, dsn: str, *, racers: str | None = None,
               source: str | None = None, starts_at: datetime | None = None,
               sink: str | None = None, extra: str = "", interval_s: int = 2,
               points: list[tuple[float, float]] | None = None,
               elevations: list[float] | None = None) -> RaceSetup:
    points = points or STOPS
    (tmp_path / "course.gpx").write_text(write_gpx(points, "test course", elevations))
    starts_at = starts_at or now_utc() - timedelta(minutes=10)
    source = source or """
        table = "live_points"
        racer = "user_id"
        time = "recorded_at"
        lat = "lat"
        lon = "lon"
    """
    racers = racers or """
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
    sink = sink or "dir:public"
    text = "\n".join([
        "[database]", f'dsn = "{dsn}"', "",
        "[source]", textwrap.dedent(source).strip(), "",
        "[races.t]", 'title = "Test race"', f'starts_at = "{starts_at.isoformat()}"',
        'course = "course.gpx"', f"interval_s = {interval_s}", f'sink = "{sink}"',
        textwrap.dedent(extra).strip(), "",
    ]) + textwrap.dedent(racers)
    path = tmp_path / "racepub.toml"
    path.write_text(text)
    return RaceSetup(path=path, course=Course(points), starts_at=starts_at,
                     sink_dir=tmp_path / "public")


def create_points_table(dsn: str, ddl: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl)


def insert_points(dsn: str, table: str, columns: tuple[str, ...],
                  rows: list[tuple[Any, ...]]) -> None:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)))
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(query, rows)


def copy_points(dsn: str, table: str, columns: tuple[str, ...],
                rows: list[tuple[Any, ...]]) -> None:
    """insert_points for hundreds of thousands of rows: COPY."""
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur, \
            cur.copy(query) as copy:
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
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    return bucket


POINTS_DDL = ("CREATE TABLE live_points (user_id text, recorded_at timestamptz, "
              "lat float8, lon float8)")
