"""End to end on real parts: PostgreSQL -> racepub run --once -> directory or (moto) S3."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from racepub import config
from racepub.cli import main
from racepub.publisher.cycle import Publisher
from tests.helpers import (
    COLS,
    IDS_DDL,
    assert_nothing_secret,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    record_trail,
    s3_reader,
    sink_bodies,
    versions,
    write_race,
)

CUSTOM_SOURCE = """
    table = "tracking.gps_fix"
    racer = "rider"
    time = "fix time"
    lat = "Latitude"
    lon = "Longitude"
    ingest = "seq"
"""
CUSTOM_DDL = """
    CREATE SCHEMA tracking;
    CREATE TABLE tracking.gps_fix (
        seq bigserial PRIMARY KEY, rider bigint NOT NULL, "fix time" timestamptz,
        "Latitude" numeric, "Longitude" double precision, accuracy real);
"""
CUSTOM_COLS = ("rider", "fix time", "Latitude", "Longitude")


def all_published_bytes(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_mid_race_once_custom_table(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    create_points_table(dsn, CUSTOM_DDL)
    racers = """
        [[races.t.racers]]
        id = 1001
        name = "Michael"

        [[races.t.racers]]
        id = "1002"
        name = "Sarah"

        [[races.t.racers]]
        id = 2001
        name = "The T"
        kind = "vehicle"

        [[races.t.racers]]
        id = 1004
        name = "Kim (not started)"
    """
    setup = write_race(
        tmp_path,
        dsn,
        source=CUSTOM_SOURCE,
        racers=racers,
        starts_at=now_utc() - timedelta(minutes=5),
    )
    # A registered user, not in this race: never published (an id no
    # coordinate, time or library code could contain by chance).
    outsider = 7070707
    # ... running a parallel street ~1 km north, so no coordinate coincides.
    outsider_rows = [
        (outsider, t, lat + 0.01, lon) for _, t, lat, lon in fixes(setup, outsider, 3.1, 290)
    ]
    rows = (
        fixes(setup, 1001, 3.2, 290)
        + fixes(setup, 1002, 3.0, 290)
        + fixes(setup, 2001, 2.9, 290)
        + outsider_rows
    )
    home = (42.3333, -71.2222)  # where Michael was before the start: private
    rows.append((1001, setup.starts_at - timedelta(minutes=20), *home))
    insert_points(dsn, "tracking.gps_fix", CUSTOM_COLS, rows)

    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    assert "seq=1 racers=4 new=" in caplog.text

    snap = setup.snapshot()
    assert snap["schema"] == 1 and snap["seq"] == 1 and snap["race"]["state"] == "live"
    by_id = {r["id"]: r for r in snap["racers"]}
    assert list(by_id) == ["1001", "1002", "2001", "1004"]  # by progress, waiting last
    for racer_id, speed, last_t in (("1001", 3.2, 289), ("1002", 3.0, 289), ("2001", 2.9, 289)):
        r = by_id[racer_id]
        assert r["status"] == "racing"
        assert r["distance_m"] == pytest.approx(speed * last_t, abs=3)
        lat, lon = setup.course.at(speed * last_t)
        assert r["position"]["lat"] == pytest.approx(lat, abs=1e-9)
        assert r["position"]["lon"] == pytest.approx(lon, abs=1e-9)
        assert r["position"]["at"] == (setup.starts_at + timedelta(seconds=last_t)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    kim = by_id["1004"]
    assert (kim["status"], kim["position"], kim["rank"]) == ("waiting", None, 4)

    published = all_published_bytes(setup.sink_dir)
    assert b"7070707" not in published
    for _, _, lat, _ in outsider_rows:
        assert f"{lat:.5f}".encode() not in published
    assert b"42.3333" not in published and b"-71.2222" not in published
    assert by_id["1001"]["dropped"] == {}  # before the start is filtered in SQL


def test_text_ids_and_odd_identifiers(tmp_path: Path, dsn: str) -> None:
    create_points_table(
        dsn,
        'CREATE TABLE "Live Points" ("who?" text, "when" timestamptz, "la\'t" real, "lon" real)',
    )
    source = """
        table = "Live Points"
        racer = "who?"
        time = "when"
        lat = "la't"
        lon = "lon"
    """
    racers = """
        [[races.t.racers]]
        id = "runner one"
        name = "<b>Bold</b> & \\"quoted\\""

        [[races.t.racers]]
        id = "it's"
        name = "Apostrophe"
    """
    setup = write_race(tmp_path, dsn, source=source, racers=racers)
    insert_points(
        dsn,
        "Live Points",
        ("who?", "when", "la't", "lon"),
        fixes(setup, "runner one", 3.0, 100) + fixes(setup, "it's", 2.5, 100),
    )
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    snap = setup.snapshot()
    assert [r["id"] for r in snap["racers"]] == ["runner one", "it's"]
    assert snap["racers"][0]["name"] == '<b>Bold</b> & "quoted"'
    page = (setup.sink_dir / "index.html").read_text()
    assert "<b>Bold</b>" not in page and "&lt;b&gt;Bold&lt;/b&gt;" in page


def test_s3_objects_headers_and_no_reupload(tmp_path: Path, dsn: str, bucket: str) -> None:
    create_points_table(dsn)
    # A password in the DSN (trust auth ignores it): it must appear nowhere.
    secret_dsn = dsn.replace("postgres@", "postgres:s3cr3t-pw@")
    setup = write_race(
        tmp_path, secret_dsn, sink=f"s3://{bucket}/race", interval_s=3, extra="chunk_points = 10"
    )
    insert_points(
        dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 60) + fixes(setup, "2001", 5.0, 60)
    )
    argv = ["run", "--once", "--race", "t", "--config", str(setup.path)]
    assert main(argv) == 0
    s3 = boto3.client("s3", region_name="us-east-1")
    keys = set(versions(s3, bucket))
    assert {"race/index.html", "race/snapshot.json"} <= keys
    assert any(k.endswith("/vendor/leaflet/leaflet.js") for k in keys)

    def head(key: str) -> dict[str, Any]:
        return dict(s3.head_object(Bucket=bucket, Key=key))

    snap_head = head("race/snapshot.json")
    assert snap_head["ContentType"] == "application/json"
    assert snap_head["CacheControl"].startswith("public, max-age=3,")
    assert snap_head["ContentEncoding"] == "gzip"
    assert head("race/index.html")["ContentType"] == "text/html; charset=utf-8"
    assert head("race/index.html")["CacheControl"] == "public, max-age=60"
    packs = [k for k in keys if k.startswith("race/packs/")]
    assert packs
    for pack in packs:  # stored as they are: gzip members read by range
        assert head(pack)["CacheControl"] == "public, max-age=31536000, immutable"
        assert "ContentEncoding" not in head(pack)
    png = next(k for k in keys if k.endswith("marker-icon.png"))
    assert head(png)["ContentType"] == "image/png" and "ContentEncoding" not in head(png)
    assert head(png)["CacheControl"] == "public, max-age=31536000, immutable"
    css = next(k for k in keys if k.endswith("leaflet.css"))
    assert head(css)["ContentType"] == "text/css; charset=utf-8"

    body = s3.get_object(Bucket=bucket, Key="race/snapshot.json")["Body"].read()
    snap = json.loads(gzip.decompress(body))
    # Every piece the snapshot lists is in the bucket (written first), and
    # with the tail it is every fix, once.
    read = s3_reader(s3, bucket)
    for racer in snap["racers"]:
        if racer["id"] != "1002":
            assert racer["track"]
            assert len(record_trail(read, racer)) == 30

    # Nothing secret in any object: no DSN, database host or port, no AWS key.
    assert_nothing_secret(sink_bodies(s3, bucket), secret_dsn, "s3cr3t-pw")

    # A second run with no new points re-uploads the snapshot and nothing else
    # (but the page, whose first-paint leaderboard ranks the field at the
    # moment it is made: racers' progress is carried on since their fixes).
    assert main(argv) == 0
    written = versions(s3, bucket)
    assert written.pop("race/snapshot.json") == 2
    assert written.pop("race/index.html") <= 2
    assert set(written.values()) == {1}, {k: v for k, v in written.items() if v > 1}
    body = s3.get_object(Bucket=bucket, Key="race/snapshot.json")["Body"].read()
    assert json.loads(gzip.decompress(body))["seq"] == 2  # seq carries on across runs


def test_late_commit_is_not_missed(tmp_path: Path, dsn: str) -> None:
    """A row whose id was taken before a newer row was read, but committed after."""
    create_points_table(dsn, IDS_DDL)
    setup = write_race(
        tmp_path,
        dsn,
        source="""
        table = "live_points"
        racer = "user_id"
        time = "recorded_at"
        lat = "lat"
        lon = "lon"
        ingest = "id"
    """,
    )
    rows = fixes(setup, "1001", 3.0, 60)
    pub = Publisher(config.load(str(setup.path)), config.load(str(setup.path)).race("t"))
    try:
        insert_points(dsn, "live_points", COLS, rows[:10])
        assert pub.cycle().new_points == 10
        with psycopg.connect(dsn) as slow:  # a transaction that commits late
            slow.execute(
                "INSERT INTO live_points (user_id, recorded_at, lat, lon) VALUES (%s, %s, %s, %s)",
                rows[10],
            )
            insert_points(dsn, "live_points", COLS, rows[11:13])
            assert pub.cycle().new_points == 2  # rows[10] not committed yet
            slow.commit()
        insert_points(dsn, "live_points", COLS, rows[13:15])
        stats = pub.cycle()
        # The late row is read; it is older than the racer's newest fix, so
        # it is dropped (and counted) as out of order rather than missed.
        assert (stats.new_points, stats.dropped) == (2, 1)
        assert pub.state.tracks["1001"].dropped == {"out_of_order": 1}
        assert pub.cycle().new_points == 0  # the overlap is not counted twice
    finally:
        pub.close()


def test_database_down_fails_the_cycle_and_keeps_the_snapshot(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn)
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    before = (setup.sink_dir / "snapshot.json").read_bytes()
    text = setup.path.read_text().replace(dsn, "postgresql://postgres@127.0.0.1:1/nope")
    setup.path.write_text(text)
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 1
    assert "cannot connect to the database" in caplog.text
    assert (setup.sink_dir / "snapshot.json").read_bytes() == before


def test_missing_table_or_column_is_a_clear_failure(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    setup = write_race(tmp_path, dsn)
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 1
    assert "source table 'live_points' not found" in caplog.text
    create_points_table(
        dsn, "CREATE TABLE live_points (user_id text, recorded_at timestamptz, lat float8)"
    )
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 1
    assert "has no column 'lon'" in caplog.text
    assert not (setup.sink_dir / "snapshot.json").exists()
