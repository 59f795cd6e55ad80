"""What a real race day sends, caused on real parts: a phone whose clock runs
ahead, a phone offline in a tunnel, rows that do not convert, a long GPS
silence in a real recording, Traccar's own table, and a racer flooding the
publisher. Each is checked in what spectators get: the published snapshot."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gpxpy
import gpxpy.gpx
import psycopg
import pytest
from psycopg import sql

from racepub import config
from racepub.cli import main
from racepub.model.course import Course
from racepub.publisher.cycle import Publisher
from racepub.timefmt import iso
from tests.helpers import (
    COLS,
    RaceSetup,
    create_points_table,
    dir_reader,
    insert_points,
    now_utc,
    record_trail,
    write_race,
)

DATA = Path(__file__).parent / "data"


def when(p: gpxpy.gpx.GPXTrackPoint) -> datetime:
    """A recorded point's time (every point of these recordings has one)."""
    assert p.time is not None
    return p.time


def publisher(setup: RaceSetup, **kw: Any) -> Publisher:
    cfg = config.load(str(setup.path))
    return Publisher(cfg, cfg.race("t"), **kw)


def record(snap: dict[str, Any], racer: str) -> dict[str, Any]:
    return next(r for r in snap["racers"] if r["id"] == racer)


def stamps(rec: dict[str, Any]) -> set[str]:
    return {p[2] for p in rec["tail"]}


def trail(setup: RaceSetup, rec: dict[str, Any]) -> list[list[Any]]:
    """Every published point of a racer: their pieces, then their tail, as
    the tail has them: [lat, lon, "ISO-8601"]."""
    return [[p[0], p[1], iso(p[2])] for p in record_trail(dir_reader(setup.sink_dir), rec)]


INGEST_DDL = (
    "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
    "recorded_at timestamptz, lat float8, lon float8, "
    "received_at timestamptz DEFAULT now())"
)


@pytest.mark.slow
@pytest.mark.parametrize("cursor", ["time", "ingest id", "ingest received_at"])
def test_a_phone_90_s_fast_hides_nobody_and_is_corrected(
    tmp_path: Path, dsn: str, cursor: str
) -> None:
    """Racer 1001's phone keeps time; 1002's runs 90 s ahead. Every fix of
    1001 is in the snapshot of the first cycle after it was written, and
    1002 is shown where they are now, their times corrected and flagged."""
    source = None
    if cursor == "time":
        create_points_table(dsn)
    else:
        create_points_table(dsn, INGEST_DDL)
        column = cursor.split()[1]
        source = (
            'table = "live_points"\nracer = "user_id"\ntime = "recorded_at"\n'
            f'lat = "lat"\nlon = "lon"\ningest = "{column}"'
        )
    setup = write_race(
        tmp_path,
        dsn,
        source=source,
        interval_s=2,
        extra="chunk_points = 200",
        starts_at=now_utc() - timedelta(seconds=30),
    )
    start = setup.starts_at.timestamp()
    pub = publisher(setup)
    delays: list[float] = []
    written: list[tuple[str, float]] = []  # 1001's stamps, and when each went in
    try:
        for step in range(10):  # a fix a second each, a cycle every two seconds
            now = time.time()
            t_fast = now + 90.0
            insert_points(
                dsn,
                "live_points",
                COLS,
                [
                    (
                        "1001",
                        datetime.fromtimestamp(now, UTC),
                        *setup.course.at(3.0 * (now - start)),
                    ),
                    (
                        "1002",
                        datetime.fromtimestamp(t_fast, UTC),
                        *setup.course.at(3.2 * (now - start)),
                    ),
                ],
            )
            written.append((iso(round(now, 3)), time.monotonic()))
            if step % 2 == 1:
                pub.cycle()
                done = time.monotonic()
                snap = setup.snapshot()
                honest = stamps(record(snap, "1001"))
                # Everything 1001 sent before this cycle is published by it.
                assert {s for s, _ in written} <= honest, (cursor, step)
                delays += [done - at for _, at in written]
                written.clear()
            time.sleep(max(0.0, now + 1.0 - time.time()))
        fast = record(setup.snapshot(), "1002")
        assert fast["clock_offset_s"] == pytest.approx(89, abs=3)
        at = datetime.fromisoformat(fast["position"]["at"]).timestamp()
        assert abs(at - time.time()) < 6  # where they are now, not 90 s from now
        assert len(fast["tail"]) >= 7 and fast["dropped"] == {}
        print(
            f"\n{cursor}: worst fix-to-published delay with a phone 90 s fast: "
            f"{max(delays):.1f} s (cycles every 2 s)"
        )
    finally:
        pub.close()


def test_rows_far_ahead_are_read_once_counted_and_never_block(tmp_path: Path, dsn: str) -> None:
    """60,000 rows stamped 2 to 50 minutes ahead (and some days ahead): read
    once, counted against their racer as `future`, never published early,
    never re-read every cycle, never in the way of anyone else's fixes."""
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn, starts_at=now_utc() - timedelta(minutes=5))
    start = setup.starts_at.timestamp()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO live_points SELECT '1002', now() + make_interval(secs => "
            "120 + i * 0.048), 42.3401, -71.1667 FROM generate_series(1, 60000) i"
        )
        conn.execute(
            "INSERT INTO live_points SELECT '1002', now() + interval '3 days', "
            "42.3401, -71.1667 FROM generate_series(1, 100)"
        )
    pub = publisher(setup)
    try:
        for k in range(3):
            newest = start + 104 + 4 * k  # two fixes a cycle, in the recent past
            insert_points(
                dsn,
                "live_points",
                COLS,
                [
                    ("1001", datetime.fromtimestamp(t, UTC), *setup.course.at(3.0 * (t - start)))
                    for t in (newest - 2, newest)
                ],
            )
            before = pub.source.rows_read
            pub.cycle()
            read = pub.source.rows_read - before
            if k == 0:
                assert read == 60_002  # the rows ahead once; the ones days ahead never
            else:
                assert read <= 6  # the new fixes (and the overlap), not the rows ahead again
            snap = setup.snapshot()
            assert record(snap, "1001")["position"]["at"] == iso(newest)
            ahead = record(snap, "1002")
            assert ahead["position"] is None and ahead["dropped"] == {"future": 60_000}
    finally:
        pub.close()


def test_one_bad_row_costs_one_row(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Coordinates in numeric and text columns, some of which do not convert:
    those rows are dropped (bad_value), every other row is read, and the
    cursor moves past them."""
    create_points_table(
        dsn,
        "CREATE TABLE live_points (user_id text, recorded_at timestamptz, "
        "lat numeric, lon text, acc_m text)",
    )
    source = (
        'table = "live_points"\nracer = "user_id"\ntime = "recorded_at"\n'
        'lat = "lat"\nlon = "lon"\naccuracy = "acc_m"'
    )
    setup = write_race(tmp_path, dsn, source=source, starts_at=now_utc() - timedelta(minutes=3))
    start = setup.starts_at

    def row(
        racer: str, s: float, lat: Any = None, lon: Any = None, acc: Any = "5"
    ) -> tuple[Any, ...]:
        la, lo = setup.course.at(3.0 * s)
        return (
            racer,
            start + timedelta(seconds=s),
            la if lat is None else lat,
            str(lo) if lon is None else lon,
            acc,
        )

    cols = ("user_id", "recorded_at", "lat", "lon", "acc_m")
    good = [row("1001", s) for s in range(2, 60, 2)]
    bad = [
        row("1001", 31, lon="abc"),
        row("1001", 33, lon=""),
        row("1001", 35, acc="n/a"),
        row("1001", 37, lat="1e400"),
        row("1001", 39, lat="NaN"),
        row("1001", 41, lon="1e999"),
    ]
    insert_points(dsn, "live_points", cols, good + bad)
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    r = record(setup.snapshot(), "1001")
    assert len(trail(setup, r)) == len(good)
    assert r["dropped"] == {"bad_value": 3, "not_finite": 3}
    # The read goes on past them: the next fix is published next cycle.
    insert_points(dsn, "live_points", cols, [row("1001", 62)])
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    assert len(trail(setup, record(setup.snapshot(), "1001"))) == len(good) + 1
    # check says how these columns are read, and refuses what cannot be.
    capsys.readouterr()
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    out = capsys.readouterr().out
    assert "warn  database: lon column 'lon' is text: read as text and converted row by row" in out
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE live_points ALTER recorded_at TYPE text")
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 1
    assert (
        "FAIL  database: time column 'recorded_at' is text: expected timestamptz"
        in capsys.readouterr().out
    )


def cerknica() -> tuple[list[gpxpy.gpx.GPXTrackPoint], Course, list[float]]:
    """A real recording (a Garmin log around Lake Cerknica, from gpxpy's test
    files) up to where it ends near itself; a course planned along it (out of
    town, a loop south, back along the same street); and where on the course
    each recorded point truly is."""
    gpx = gpxpy.parse((DATA / "cerknicko-jezero.gpx").read_text())
    pts = [p for t in gpx.tracks for s in t.segments for p in s.points]
    end = next(i for i, p in enumerate(pts) if when(p).strftime("%H:%M:%S") == "15:43:37")
    pts = pts[: end + 1]
    seg = gpxpy.gpx.GPXTrackSegment([gpxpy.gpx.GPXTrackPoint(p.latitude, p.longitude) for p in pts])
    seg.simplify(15)  # a planned course is simpler than a recorded track
    course = Course([(p.latitude, p.longitude) for p in seg.points])
    # The course keeps some of the recorded points: each other point lies
    # between two of them, so its truth is found on that segment alone.
    kept, i = [], 0
    for v in course.points:
        while (pts[i].latitude, pts[i].longitude) != v:
            i += 1
        kept.append(i)
    truth = []
    for j, p in enumerate(pts):
        k = min(max(0, sum(1 for x in kept if x <= j) - 1), len(kept) - 2)
        x, y = course.to_xy(p.latitude, p.longitude)
        (ax, ay), (bx, by) = course.to_xy(*course.points[k]), course.to_xy(*course.points[k + 1])
        seg_len = math.hypot(bx - ax, by - ay)
        u = ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / seg_len**2 if seg_len else 0.0
        truth.append(course.cum[k] + min(max(u, 0.0), 1.0) * seg_len)
    return pts, course, truth


@pytest.mark.slow
def test_after_a_long_silence_no_finish_before_the_line(tmp_path: Path, dsn: str) -> None:
    """The recording has silences of 10 and 14 minutes; here the phone also
    lost the 90 s after the second (16 minutes in all). After it, the first
    fix lies 8 m from the finish line and on the return leg 370 m before it:
    the racer must not be declared finished until they reach the line."""
    pts, course, truth = cerknica()
    racers = '[[races.t.racers]]\nid = "car"\nname = "Car"\nkind = "vehicle"\n'
    first = when(pts[0]).timestamp()
    starts_at = now_utc() - timedelta(hours=2)
    setup = write_race(
        tmp_path, dsn, racers=racers, starts_at=starts_at, points=list(course.points)
    )
    create_points_table(dsn)
    lost = ("15:24:47", "15:40:30")
    replay = [p for p in pts if not lost[0] < when(p).strftime("%H:%M:%S") < lost[1]]
    clock = {"now": 0.0}
    pub = publisher(setup, clock=lambda: clock["now"])

    def at(p: gpxpy.gpx.GPXTrackPoint) -> float:
        return starts_at.timestamp() + when(p).timestamp() - first

    truth_finish = at(pts[-1]) - starts_at.timestamp()
    try:
        # Replayed as the phone sent it: each fix in the cycle after it was taken.
        for p in replay:
            insert_points(
                dsn,
                "live_points",
                COLS,
                [("car", datetime.fromtimestamp(at(p), UTC), p.latitude, p.longitude)],
            )
            clock["now"] = at(p) + 1
            pub.cycle()
            car = record(setup.snapshot(), "car")
            if p is not pts[-1]:
                assert car["finish_s"] is None, p.time
                # Never ahead of where they are (GPS noise and the course's
                # simplification aside), so no finish before the line.
                assert car["distance_m"] <= truth[pts.index(p)] + 30, p.time
        car = record(setup.snapshot(), "car")
        assert car["status"] == "finished"
        assert car["finish_s"] == pytest.approx(truth_finish, abs=2)
    finally:
        pub.close()


TRACCAR_DDL = """
    -- tc_positions as Traccar's schema (changelog-4.0-clean) creates it on PostgreSQL
    CREATE TABLE tc_positions (
        id SERIAL PRIMARY KEY, protocol VARCHAR(128), deviceid INTEGER NOT NULL,
        servertime TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        devicetime TIMESTAMP(6) NOT NULL, fixtime TIMESTAMP(6) NOT NULL,
        valid BOOLEAN NOT NULL, latitude DOUBLE PRECISION NOT NULL,
        longitude DOUBLE PRECISION NOT NULL, altitude FLOAT NOT NULL, speed FLOAT NOT NULL,
        course FLOAT NOT NULL, address VARCHAR(512), attributes VARCHAR(4000),
        accuracy DOUBLE PRECISION NOT NULL DEFAULT 0, network VARCHAR(4000));
    CREATE INDEX position_deviceid_fixtime ON tc_positions (deviceid, fixtime);
"""
TRACCAR_SOURCE = """
    table = "tc_positions"
    racer = "deviceid"
    time = "fixtime"
    lat = "latitude"
    lon = "longitude"
    accuracy = "accuracy"
    valid = "valid"
"""


def test_traccar(tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Traccar's own table: invalid fixes (valid = false) are not fixes,
    accuracy 0 means unknown, fixtime is a timestamp without time zone in UTC."""
    create_points_table(dsn, TRACCAR_DDL)
    racers = '[[races.t.racers]]\nid = 7\nname = "Device seven"\n'
    setup = write_race(
        tmp_path,
        dsn,
        source=TRACCAR_SOURCE,
        racers=racers,
        starts_at=now_utc() - timedelta(minutes=3),
    )
    # Without an ingest column, check names the one this table has.
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    out = capsys.readouterr().out
    assert 'add to [source]:  ingest = "id"' in out
    setup.path.write_text(
        setup.path.read_text().replace('valid = "valid"', 'valid = "valid"\ningest = "id"')
    )
    # With an integer ingest, check names the arrival column as well.
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    assert 'add to [source]:  arrival = "servertime"' in capsys.readouterr().out
    setup.path.write_text(
        setup.path.read_text().replace('ingest = "id"', 'ingest = "id"\narrival = "servertime"')
    )
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    assert "warn  source" not in capsys.readouterr().out
    start = setup.starts_at.astimezone(UTC).replace(tzinfo=None)  # fixtime holds UTC
    rows = []
    for s in range(2, 120, 2):
        lat, lon = setup.course.at(3.0 * s)
        valid, acc = True, 0.0  # Traccar's default: accuracy unknown
        if s % 10 == 0:  # a cell-tower guess, flagged as such
            valid, lat, lon = False, lat + 0.02, lon
        elif s % 14 == 0:
            acc = 400.0
        fix = start + timedelta(seconds=s)
        rows.append(("osmand", 7, fix, fix, valid, lat, lon, 0.0, 0.0, 0.0, acc))
    insert_points(
        dsn,
        "tc_positions",
        (
            "protocol",
            "deviceid",
            "devicetime",
            "fixtime",
            "valid",
            "latitude",
            "longitude",
            "altitude",
            "speed",
            "course",
            "accuracy",
        ),
        rows,
    )
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    r = record(setup.snapshot(), "7")
    invalid = sum(1 for row in rows if not row[4])
    inaccurate = sum(1 for row in rows if row[10] == 400.0)
    assert r["dropped"] == {"invalid": invalid, "inaccurate": inaccurate}
    assert len(trail(setup, r)) == len(rows) - invalid - inaccurate
    published = {(p[0], p[1]) for p in trail(setup, r)}
    assert not any((round(row[5], 6), round(row[6], 6)) in published for row in rows if not row[4])
    assert r["distance_m"] == pytest.approx(3.0 * 118, abs=10)
    # fixtime is UTC: the newest fix is the one 118 s after the start.
    assert r["position"]["at"] == iso(setup.starts_at.timestamp() + 118)


@pytest.mark.parametrize("cursor", ["id, arrival servertime", "servertime", "id alone"])
def test_a_cold_catch_up_finds_a_fast_phone_clock(tmp_path: Path, dsn: str, cursor: str) -> None:
    """A publisher started after the race read Traccar's table in one go.
    Device 2's phone runs 60 s fast: with the table's arrival column beside
    the integer cursor (or the arrival as the cursor), the catch-up corrects
    it as a live run does, and it is timed and placed as it ran; on the
    integer cursor alone nothing tells (README says so)."""
    create_points_table(dsn, TRACCAR_DDL)
    ingest = {"servertime": 'ingest = "servertime"'}.get(cursor, 'ingest = "id"')
    arrival = 'arrival = "servertime"' if "arrival" in cursor else ""
    racers = "".join(f'[[races.t.racers]]\nid = {d}\nname = "Device {d}"\n' for d in (1, 2, 3))
    setup = write_race(
        tmp_path,
        dsn,
        source=f"{TRACCAR_SOURCE}\n{ingest}\n{arrival}",
        racers=racers,
        starts_at=now_utc() - timedelta(minutes=50),
    )
    length = setup.course.length_m
    speeds = {1: length / 1400, 2: length / 1430, 3: length / 1450}  # finishes 1400, 1430, 1450 s
    ahead = {1: 0.0, 2: 60.0, 3: 0.0}
    start = setup.starts_at.astimezone(UTC).replace(tzinfo=None)  # Traccar keeps UTC
    rows = []
    for d, v in speeds.items():
        for s in range(3 + d, 1500, 5):
            lat, lon = setup.course.to_latlon(*setup.course.beyond(v * s))
            fix = start + timedelta(seconds=s + ahead[d])  # as the phone stamps it
            arrived = start + timedelta(seconds=s + 2)  # uploaded 2 s later
            rows.append((arrived, "osmand", d, fix, fix, True, lat, lon, 0.0, 0.0, 0.0, 0.0))
    rows.sort()  # ids in the order the rows arrived
    insert_points(
        dsn,
        "tc_positions",
        (
            "servertime",
            "protocol",
            "deviceid",
            "devicetime",
            "fixtime",
            "valid",
            "latitude",
            "longitude",
            "altitude",
            "speed",
            "course",
            "accuracy",
        ),
        rows,
    )
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    snap = setup.snapshot()
    fast = record(snap, "2")
    if cursor == "id alone":  # the stamps taken as they are: a minute late, placed third
        assert fast["finish_s"] == pytest.approx(1490, abs=3) and fast["rank"] == 3
        return
    assert fast["clock_offset_s"] == pytest.approx(58, abs=1)
    for d, finish in ((1, 1400), (2, 1430), (3, 1450)):
        r = record(snap, str(d))
        assert r["finish_s"] == pytest.approx(finish, abs=3), d
        assert r["rank"] == d


def test_a_late_batch_is_applied_whole_with_ingest(tmp_path: Path, dsn: str) -> None:
    """A phone offline for ten minutes (the finish among them) uploads its
    buffered fixes in one batch, stamped with their real times. With an
    ingest column every one is applied: the trail is complete and the finish
    right. With the time cursor, the fixes older than lookback_s are lost
    (what `check` warns about)."""
    create_points_table(dsn, INGEST_DDL)
    source = (
        'table = "live_points"\nracer = "user_id"\ntime = "recorded_at"\n'
        'lat = "lat"\nlon = "lon"\ningest = "id"'
    )
    setup = write_race(
        tmp_path,
        dsn,
        source=source,
        extra="chunk_points = 50",
        starts_at=now_utc() - timedelta(minutes=20),
    )
    speed = 3.0
    finish = setup.course.length_m / speed
    course = setup.course
    fixes = [
        (
            "1001",
            setup.starts_at + timedelta(seconds=s),
            *course.to_latlon(*course.beyond(speed * s)),
        )
        for s in range(2, int(finish) + 8, 2)
    ]
    live = [f for f in fixes if (f[1] - setup.starts_at).total_seconds() < 300]
    batch = [f for f in fixes if (f[1] - setup.starts_at).total_seconds() >= 300]
    insert_points(dsn, "live_points", COLS, live)
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    assert record(setup.snapshot(), "1001")["status"] == "stale"  # in the tunnel
    insert_points(dsn, "live_points", COLS, batch)  # back from the tunnel
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    r = record(setup.snapshot(), "1001")
    assert r["status"] == "finished"
    assert r["finish_s"] == pytest.approx(finish, abs=2)
    assert [p[2] for p in trail(setup, r)] == [iso(f[1].timestamp()) for f in fixes]
    assert r["dropped"] == {}


def test_a_row_committed_after_a_newer_one_is_applied_once_with_ingest(
    tmp_path: Path, dsn: str
) -> None:
    """An id is taken when a row is inserted, not when it commits: a read
    between a slow transaction's insert and its commit passes over its row
    (a newer id is read). The next read asks for that id again: the row is
    applied, once, and never again."""
    create_points_table(dsn, INGEST_DDL)
    source = (
        'table = "live_points"\nracer = "user_id"\ntime = "recorded_at"\n'
        'lat = "lat"\nlon = "lon"\ningest = "id"'
    )
    setup = write_race(tmp_path, dsn, source=source, starts_at=now_utc() - timedelta(minutes=10))
    course = setup.course

    def fix(racer: str, s: int) -> tuple[Any, ...]:
        return (
            racer,
            setup.starts_at + timedelta(seconds=s),
            *course.to_latlon(*course.beyond(3.0 * s)),
        )

    insert_points(
        dsn, "live_points", COLS, [fix(r, s) for s in range(2, 60, 2) for r in ("1001", "1002")]
    )
    pub = publisher(setup)
    pub.cycle()
    with psycopg.connect(dsn) as slow:  # a transaction: its id taken, its row not yet seen
        slow.execute(
            "INSERT INTO live_points (user_id, recorded_at, lat, lon) VALUES (%s, %s, %s, %s)",
            fix("1002", 60),
        )
        insert_points(dsn, "live_points", COLS, [fix("1001", 60)])  # a newer id, committed
        pub.cycle()
        assert pub.state.tracks["1002"].last == (
            fix("1002", 58)[1].timestamp(),
            *fix("1002", 58)[2:],
        )
    # Committed now (the block's end): the next reads find it, once.
    for s in (62, 64):
        insert_points(dsn, "live_points", COLS, [fix("1001", s)])
        pub.cycle()
    pub.close()
    r = record(setup.snapshot(), "1002")
    assert [p[2] for p in trail(setup, r)] == [
        iso(fix("1002", s)[1].timestamp()) for s in range(2, 62, 2)
    ]
    assert pub.state.tracks["1002"].count == 30
    assert r["dropped"] == {}


def test_a_late_batch_without_ingest_loses_what_lookback_cannot_see(
    tmp_path: Path, dsn: str
) -> None:
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn, starts_at=now_utc() - timedelta(minutes=12))
    start = setup.starts_at
    fixes = [
        ("1001", start + timedelta(seconds=s), *setup.course.at(2.0 * s)) for s in range(2, 700, 2)
    ]
    other = [
        ("1002", start + timedelta(seconds=s), *setup.course.at(2.1 * s)) for s in range(1, 700, 2)
    ]
    cut = start + timedelta(seconds=100)
    pub = publisher(setup)  # one running publisher: a restart would read it all again
    try:
        insert_points(dsn, "live_points", COLS, [f for f in fixes + other if f[1] < cut])
        pub.cycle()
        insert_points(dsn, "live_points", COLS, [f for f in other if f[1] >= cut])
        pub.cycle()  # 1002 carries on while 1001 is in the tunnel
        insert_points(dsn, "live_points", COLS, [f for f in fixes if f[1] >= cut])
        pub.cycle()
    finally:
        pub.close()
    seen = trail(setup, record(setup.snapshot(), "1001"))
    assert datetime.fromisoformat(seen[-1][2]) == fixes[-1][1]
    # Of the batch, only its last lookback_s (30 s: 15 fixes) was read.
    assert len(seen) == 49 + 15


@pytest.mark.slow
@pytest.mark.parametrize("flood", ["standing still", "off course", "at the finish line"])
def test_one_racer_flooding_costs_only_their_rows(tmp_path: Path, dsn: str, flood: str) -> None:
    """10,000 rows in one cycle from one phone, milliseconds apart: a second's
    worth of them is kept, no chunk is cut for them, and everyone else's
    race is published as if nothing happened."""
    create_points_table(dsn)
    setup = write_race(
        tmp_path, dsn, starts_at=now_utc() - timedelta(minutes=30), extra="chunk_points = 30"
    )
    start = setup.starts_at
    honest = [
        ("1002", start + timedelta(seconds=s), *setup.course.at(2.5 * s)) for s in range(2, 120, 2)
    ]
    spot = {
        "standing still": setup.course.at(300.0),
        "off course": (setup.course.at(300.0)[0] + 0.1, setup.course.at(300.0)[1]),
        "at the finish line": setup.course.at(setup.course.length_m),
    }[flood]
    t0 = start + timedelta(seconds=100)
    hostile = [
        ("1001", t0 + timedelta(milliseconds=k), spot[0] + (k % 7) * 1e-6, spot[1])
        for k in range(10_000)
    ]
    insert_points(dsn, "live_points", COLS, honest + hostile)
    pub = publisher(setup)
    try:
        stats = pub.cycle()
        snap = setup.snapshot()
        bad = record(snap, "1001")
        # 10 s of rows, at most one fix a second: nothing more for spectators to fetch
        assert len(trail(setup, bad)) <= 11
        assert sum(bad["dropped"].values()) >= 10_000 - 11
        good = record(snap, "1002")
        assert len(trail(setup, good)) == len(honest)
        assert stats.objects <= 45  # the page, its static files, a pack, the snapshot
    finally:
        pub.close()


HOSTILE_DDL = (
    "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
    "recorded_at timestamptz, lat float8, lon real, acc_m float8, ok boolean)"
)


def read_both_ways(
    setup: RaceSetup,
    reads: list[list[tuple[Any, ...]]],
    table: str = "live_points",
    cols: tuple[str, ...] = ("user_id", "recorded_at", "lat", "lon", "acc_m", "ok"),
) -> list[Any]:
    """The race as two publishers read it, the first read as rows and as
    columns: each list of rows inserted, then read by both and applied.
    Returns all each holds, to compare."""
    from racepub import source as source_mod
    from racepub.model.course import load_gpx
    from racepub.model.race import RaceState
    from racepub.rows import Columns

    cfg = config.load(str(setup.path))
    race = cfg.race("t")
    both: list[tuple[RaceState, Any, set[type], list[Any]]] = []
    for columnar in (False, True):
        src = source_mod.PointSource(
            cfg.dsn, cfg.source, [r.id for r in race.racers], setup.starts_at.timestamp()
        )
        src._prepare()
        if not columnar:
            src._columnar = None  # as when a column is read as text
        both.append((RaceState(race, load_gpx(race.course)), src, set(), []))
    for rows in reads:
        insert_points(cfg.dsn, table, cols, rows)
        with psycopg.connect(cfg.dsn, autocommit=True) as conn:
            # Rows rewritten move to the table's end: read in its order,
            # they would come after newer ones.
            conn.execute(
                sql.SQL("UPDATE {t} SET {c} = {c} WHERE id % 3 = 0").format(
                    t=sql.Identifier(table), c=sql.Identifier(cols[-1])
                )
            )
        now = time.time()
        for state, src, kinds, cursors in both:
            for batch in src.read(now):
                kinds.add(type(batch))
                state.update(batch, now)
            cursors.append(src.cursor())  # where each read leaves the next
    out = []
    for (state, src, kinds, cursors), columnar in zip(both, (False, True), strict=True):
        src.close()
        assert (Columns in kinds) == columnar  # (the way asked for was taken)
        out.append((held(state), cursors))
    return out


def held(state: Any) -> Any:
    """Everything a race state holds, to compare."""
    tracks = [
        (
            t.racer.id, t.last, t.progress_m, t.offset_m, t.count,
            sorted(t.dropped.items()), list(t.tail_xyt), list(t.recent_xyt),
            list(t.timeline), list(t.window), t.finish_t, t.after_gap, t.unconfirmed,
        )
        for t in state.order
    ]  # fmt: skip
    return tracks, sorted(state.dropped.items()), state._held


@pytest.mark.parametrize("page_ids", [250_000, 7])
def test_a_first_read_as_columns_makes_the_same_race_as_rows(
    tmp_path: Path, dsn: str, page_ids: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart's first read comes as columns (binary COPY taken apart by
    numpy): what it makes of a real recording and of every kind of hostile
    row is what reading them as rows makes, to the last bit, and so is every
    read after it. In pages of 7 ids, too."""
    from racepub import source as source_mod

    monkeypatch.setattr(source_mod, "COLUMNS_PAGE_IDS", page_ids)
    create_points_table(dsn, HOSTILE_DDL)
    pts, course, _ = cerknica()
    source = (
        'table = "live_points"\nracer = "user_id"\ntime = "recorded_at"\n'
        'lat = "lat"\nlon = "lon"\naccuracy = "acc_m"\nvalid = "ok"\ningest = "id"'
    )
    racers = "".join(
        f'[[races.t.racers]]\nid = "{i}"\nname = "R {i}"\n' for i in ("a", "b", "c d", "007")
    )
    span = when(pts[-1]) - when(pts[0])
    start = now_utc() - span - timedelta(minutes=2)
    setup = write_race(
        tmp_path,
        dsn,
        source=source,
        racers=racers,
        starts_at=start,
        points=list(course.points),
        extra="chunk_points = 40",
    )
    shift = start - when(pts[0])
    # Two phones along the recording (one a little behind), a third with
    # every kind of trouble, a racer whose id is not quite the config's,
    # and someone not in the race.
    real: list[tuple[Any, ...]] = [
        (r, when(p) + shift + timedelta(seconds=lag), p.latitude, p.longitude, 5.0, True)
        for r, lag in (("a", 0), ("b", 7))
        for p in pts
    ]
    t0 = start + timedelta(seconds=30)
    la, lo = pts[3].latitude, pts[3].longitude
    hostile: list[tuple[Any, ...]] = [
        ("c d", t0, la, lo, None, None),
        ("c d", t0, la, lo, None, None),  # the same again
        ("c d", t0 - timedelta(seconds=5), la, lo, 0.0, True),  # earlier, late
        ("c d", t0 + timedelta(seconds=3), None, lo, 3.0, True),  # NULL
        ("c d", t0 + timedelta(seconds=4), float("nan"), lo, 3.0, True),
        ("c d", t0 + timedelta(seconds=5), float("inf"), lo, 3.0, True),
        ("c d", t0 + timedelta(seconds=6), 0.0, 0.0, 3.0, True),
        ("c d", t0 + timedelta(seconds=7), la, lo, 900.0, True),  # inaccurate
        ("c d", t0 + timedelta(seconds=8), la, lo, float("nan"), True),  # unknown
        ("c d", t0 + timedelta(seconds=9), la + 0.05, lo, 3.0, False),  # invalid
        ("c d", t0 + timedelta(seconds=10), la + 0.05, lo, 3.0, True),  # a jump
        ("c d", t0 + timedelta(seconds=11), la, lo, 3.0, True),
        ("c d", t0 + timedelta(seconds=14), la, lo, 3.0, True),  # the first of two
        ("c d", t0 + timedelta(seconds=14), la + 1e-4, lo, 3.0, True),  # at one time
        ("c d", start - timedelta(minutes=5), la, lo, 3.0, True),  # before: never read
        ("c d", now_utc() + timedelta(minutes=3), la, lo, 3.0, True),  # ahead of now
        ("7", t0, la, lo, 3.0, True),
        ("someone", t0, la, lo, 3.0, True),
        ("c d", None, la, lo, 3.0, True),  # no time: not since the start
    ]
    late: list[tuple[Any, ...]] = [("a", now_utc(), pts[-1].latitude, pts[-1].longitude, 4.0, True)]
    reads: list[list[tuple[Any, ...]]] = [real + hostile, late]
    as_rows, as_columns = read_both_ways(setup, reads)
    assert as_columns == as_rows
    tracks = {t[0]: t for t in as_rows[0][0]}
    assert tracks["a"][4] > 0.9 * len(pts) and tracks["b"][4] > 0.9 * len(pts)
    assert dict(tracks["c d"][5]).keys() >= {
        "duplicate", "null", "not_finite", "out_of_range", "inaccurate", "invalid", "future",
    }  # fmt: skip
    assert as_rows[0][1] == []  # "7" and "someone" are no racer's: not read at all


@pytest.mark.parametrize("columnar", [True, False])
def test_a_first_read_cut_short_goes_on_where_it_stopped(
    tmp_path: Path, dsn: str, columnar: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away in the middle of a restart's first read: the
    read fails, and the next one goes on from the rows already applied, not
    from the start (which applied them again, counted as dropped)."""
    from racepub import source as source_mod
    from racepub.errors import SourceError
    from racepub.model.course import load_gpx
    from racepub.model.race import RaceState

    monkeypatch.setattr(source_mod, "COLUMNS_PAGE_IDS", 40)
    monkeypatch.setattr(source_mod, "BATCH_ROWS", 40)
    create_points_table(dsn, INGEST_DDL)
    pts, course, _ = cerknica()
    source = (
        'table = "live_points"\nracer = "user_id"\ntime = "recorded_at"\n'
        'lat = "lat"\nlon = "lon"\ningest = "id"'
    )
    start = now_utc() - (when(pts[-1]) - when(pts[0])) - timedelta(minutes=1)
    racers = '[[races.t.racers]]\nid = "a"\nname = "A"\n'
    setup = write_race(
        tmp_path, dsn, source=source, racers=racers, starts_at=start, points=list(course.points)
    )
    rows = [("a", when(p) - when(pts[0]) + start, p.latitude, p.longitude) for p in pts]
    insert_points(dsn, "live_points", COLS, rows)
    cfg = config.load(str(setup.path))
    race = cfg.race("t")

    def reader() -> tuple[RaceState, source_mod.PointSource]:
        src = source_mod.PointSource(cfg.dsn, cfg.source, ["a"], start.timestamp())
        src._prepare()
        if not columnar:
            src._columnar = None
        return RaceState(race, load_gpx(race.course)), src

    now = time.time()
    clean, src = reader()
    for batch in src.read(now):
        clean.update(batch, now)
    src.close()
    state, src = reader()
    batches = src.read(now)
    state.update(next(batches), now)
    with psycopg.connect(dsn, autocommit=True) as conn:  # the database goes away
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'racepub' AND datname = current_database()"
        )
    with pytest.raises(SourceError):
        for batch in batches:
            state.update(batch, now)
    assert 0 < state.tracks["a"].count < clean.tracks["a"].count
    for batch in src.read(now):  # back: the next read
        state.update(batch, now)
    src.close()
    assert held(state) == held(clean)
    assert state.tracks["a"].dropped == clean.tracks["a"].dropped


def test_traccar_read_both_ways_with_an_id_spelt_otherwise(tmp_path: Path, dsn: str) -> None:
    """Traccar's integer deviceid, read as columns and as rows: a device
    whose config id is spelt otherwise ("007" for 7) matches the query but
    is no racer's, and is counted so both ways; the other device's real
    recording makes the same race."""
    create_points_table(dsn, TRACCAR_DDL)
    pts, course, _ = cerknica()
    racers = "".join(f'[[races.t.racers]]\nid = "{i}"\nname = "D {i}"\n' for i in ("007", "8"))
    start = now_utc() - (when(pts[-1]) - when(pts[0])) - timedelta(minutes=1)
    setup = write_race(
        tmp_path,
        dsn,
        source=TRACCAR_SOURCE + '\ningest = "id"',
        racers=racers,
        starts_at=start,
        points=list(course.points),
    )
    utc = start.astimezone(UTC).replace(tzinfo=None) - when(pts[0]).replace(tzinfo=None)
    rows: list[tuple[Any, ...]] = []
    for device in (7, 8):
        for p in pts:
            fix = when(p).replace(tzinfo=None) + utc  # fixtime holds UTC
            rows.append((device, fix, p.latitude, p.longitude, 0.0, True, fix, 0.0, 0.0, 0.0))
    cols = (
        "deviceid", "fixtime", "latitude", "longitude", "accuracy", "valid",
        "devicetime", "altitude", "speed", "course",
    )  # fmt: skip
    half = len(rows) // 2 + 17
    as_rows, as_columns = read_both_ways(setup, [rows[:half], rows[half:]], "tc_positions", cols)
    assert as_columns == as_rows
    assert as_rows[0][1] == [("not_a_racer", len(pts))]
    assert {t[0]: t[4] for t in as_rows[0][0]}["8"] > 0.9 * len(pts)
