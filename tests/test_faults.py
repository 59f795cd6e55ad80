"""Race day faults, caused for real: the database stops, S3 errors, the
publisher is killed mid-cycle, two publishers race, signals arrive. At every
step the published race stays whole, and the publisher recovers by itself."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from racepub import config
from racepub.commands.localdb import LocalPostgres, free_port
from racepub.errors import SinkError
from racepub.publisher.cycle import Publisher as InProcessPublisher
from tests.faults import FaultProxy, Publisher, Watcher, dir_getter, spectator_view
from tests.helpers import (
    COLS,
    POINTS_DDL,
    RaceSetup,
    assert_nothing_secret,
    copy_points,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    record_trail,
    run_once,
    s3_reader,
    sink_bodies,
    versions,
    wait_for,
    write_race,
)


def snapshot(setup: RaceSetup) -> dict[str, Any] | None:
    return spectator_view(dir_getter(setup.sink_dir))


@pytest.mark.slow
def test_database_outage(tmp_path: Path) -> None:
    db = LocalPostgres(tmp_path / "pg")
    dsn = db.start()
    try:
        create_points_table(dsn)
        setup = write_race(tmp_path, dsn, interval_s=1, starts_at=now_utc() - timedelta(minutes=2))
        insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 100, since_s=2))
        pub = Publisher(setup.path)
        watcher = Watcher(dir_getter(setup.sink_dir))
        try:
            wait_for(lambda: (snapshot(setup) or {}).get("seq", 0) >= 2)
            db.stop("immediate")  # as if the server crashed
            time.sleep(1.5)
            frozen = snapshot(setup)
            assert frozen is not None
            time.sleep(4)
            # Spectators keep the last good race: same snapshot, still whole.
            assert snapshot(setup) == frozen
            assert pub.proc.poll() is None
            assert "cycle failed (read)" in pub.log
            db.start()
            insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 110, since_s=102))
            started = time.monotonic()
            back = wait_for(
                lambda: (
                    (s := snapshot(setup))
                    and s["seq"] > frozen["seq"]
                    and s["racers"][0]["distance_m"] > 320
                    and s
                ),
                timeout=15,
            )
            # Within a couple of intervals (plus the backoff ceiling of two).
            assert time.monotonic() - started < 5
            assert back["racers"][0]["id"] == "1001"
        finally:
            pub.kill()
            watcher.stop()
    finally:
        db.destroy()


@pytest.fixture
def s3_race(tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None) -> Any:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"faults-{len(s3.list_buckets()['Buckets'])}"
    s3.create_bucket(Bucket=bucket)
    proxy = FaultProxy(moto_server)
    create_points_table(dsn)
    setup = write_race(
        tmp_path, dsn, sink=f"s3://{bucket}/live", extra="chunk_points = 10", s3_endpoint=proxy.url
    )

    def get(key: str) -> bytes | None:
        import gzip

        try:
            got = s3.get_object(Bucket=bucket, Key=f"live/{key}")
        except s3.exceptions.NoSuchKey:
            return None
        data: bytes = got["Body"].read()
        return gzip.decompress(data) if got.get("ContentEncoding") == "gzip" else data

    yield setup, proxy, get
    proxy.close()


@pytest.mark.slow
def test_s3_errors_leave_the_last_snapshot_and_heal(s3_race: Any, dsn: str) -> None:
    setup, proxy, get = s3_race
    cfg = config.load(str(setup.path))

    def listed() -> set[str]:
        s3 = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1")
        bucket = cfg.race("t").sink[5:].split("/")[0]
        return set(versions(s3, bucket))

    pub = InProcessPublisher(cfg, cfg.race("t"))
    try:
        insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 40, since_s=2))
        pub.cycle()
        before = spectator_view(get)
        assert before is not None and len(before["racers"][0]["track"]) == 1
        packs_before = {k for k in listed() if k.startswith("live/packs/")}

        # S3 throttles everything for a while: the cycle fails after retries,
        # and spectators keep the last snapshot.
        insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 80, since_s=42))
        proxy.fail = lambda method, path: 503 if method == "PUT" else None
        with pytest.raises(SinkError, match="SlowDown"):
            pub.cycle()
        assert proxy.failed >= 4  # botocore retried before giving up
        assert spectator_view(get) == before
        # Throttled slowly (each answer after 1.5 s, inside botocore's 2 s
        # read timeout): its three attempts and their backoff mostly outlast
        # the 5 s a cycle waits for a silent sink, but S3 is answering: the
        # cycle says what S3 said, not that it was silent.
        proxy.delay = lambda method, path: 1.5 if method == "PUT" else 0.0
        with pytest.raises(SinkError, match="SlowDown"):
            pub.cycle()
        proxy.delay = lambda method, path: 0.0
        assert spectator_view(get) == before

        # Then only the snapshot's upload fails (500): the new pack is in,
        # but the published snapshot is still the old, whole one.
        proxy.fail = lambda method, path: 500 if path.endswith("snapshot.json") else None
        with pytest.raises(SinkError, match="InternalError"):
            pub.cycle()
        assert {k for k in listed() if k.startswith("live/packs/")} > packs_before
        assert spectator_view(get) == before

        # S3 recovers: the next cycle completes what was missing.
        proxy.fail = lambda method, path: None
        pub.cycle()
        after = spectator_view(get)
        assert after is not None and after["seq"] > before["seq"]
        s3 = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1")
        bucket = cfg.race("t").sink[5:].split("/")[0]
        trail = record_trail(s3_reader(s3, bucket, "live"), after["racers"][0])
        assert [round(p[2] - setup.starts_at.timestamp()) for p in trail] == list(range(2, 81, 2))
        # Nothing secret in any object: not the endpoint, the DSN, nor a key.
        assert_nothing_secret(sink_bodies(s3, bucket), dsn, proxy.url.split("//")[1])
    finally:
        pub.close()


@pytest.mark.slow
def test_a_stalled_snapshot_upload_that_lands_late_is_older_by_seq(s3_race: Any, dsn: str) -> None:
    """A cycle gives up on a snapshot upload S3 holds; botocore gives up on
    it too, but S3 completes it later, after the next cycle's snapshot (as
    a real store may: the body was sent). Nothing the client does can stop
    that, so every attempt raises seq: the copy that lands late says it is
    older, a page that has the newer keeps it (static/js/poll.js, asserted
    in tests/test_page.py), and the cycle after rewrites the newest."""
    setup, proxy, get = s3_race  # interval_s = 2: a cycle waits about 5 s for S3
    cfg = config.load(str(setup.path))
    pub = InProcessPublisher(cfg, cfg.race("t"))
    try:
        insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 40, since_s=2))
        first = pub.cycle().seq
        insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 80, since_s=42))
        proxy.hang = lambda method, path: method == "PUT" and path.endswith("snapshot.json")
        with pytest.raises(SinkError, match="did not answer"):
            pub.cycle()
        assert proxy.hung >= 1 and (spectator_view(get) or {})["seq"] == first
        time.sleep(2.5)  # botocore's attempts have all timed out: nothing waits on S3

        proxy.hang = lambda method, path: False
        newer = pub.cycle().seq
        assert (spectator_view(get) or {})["seq"] == newer
        proxy.release.set()  # S3 completes the held upload now, over the newer snapshot
        late = wait_for(lambda: (s := spectator_view(get)) and s["seq"] != newer and s)
        assert first < late["seq"] < newer  # older by seq: a page holding `newer` keeps it
        assert late["racers"][0]["distance_m"] < 3.0 * 80 + 30

        newest = pub.cycle().seq
        shown = spectator_view(get)
        assert shown is not None and shown["seq"] == newest > newer
    finally:
        pub.close()


@pytest.mark.slow
def test_a_hung_put_holds_the_loop_two_intervals_at_most(s3_race: Any, dsn: str) -> None:
    """S3 accepts PUTs and never answers (a stalled connection): each cycle
    gives up after about two intervals, spectators keep the last whole
    snapshot, and once S3 answers again the loop publishes within two
    intervals."""
    setup, proxy, get = s3_race  # interval_s = 2
    insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 40, since_s=2))
    pub = Publisher(setup.path)
    try:
        wait_for(lambda: (spectator_view(get) or {}).get("seq", 0) >= 2)
        insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 300, since_s=42))
        proxy.hang = lambda method, path: method == "PUT"
        wait_for(lambda: "did not answer for 5 s" in pub.log, timeout=20)
        frozen = spectator_view(get)
        assert frozen is not None
        # Each failed cycle ends at its deadline, not at botocore's timeouts.
        wait_for(lambda: pub.log.count("cycle failed") >= 2, timeout=20)
        assert spectator_view(get) == frozen
        # The held upload is answered with an error (its process is gone).
        proxy.fail = lambda method, path: 500 if path.endswith("snapshot.json") else None
        proxy.hang = lambda method, path: False
        proxy.release.set()
        wait_for(lambda: proxy.failed >= 1)
        proxy.fail = lambda method, path: None
        cleared = time.monotonic()
        wait_for(
            lambda: (s := spectator_view(get)) and s["seq"] > frozen["seq"] and s,
            timeout=20,
            every=0.05,
        )
        assert time.monotonic() - cleared <= 2 * 2 + 1  # two intervals (and the cycle)
        assert proxy.hung >= 2
    finally:
        pub.kill()


@pytest.mark.slow
def test_kill_9_mid_cycle_then_restart(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None
) -> None:
    """Killed after writing its first cycle's pack, before its snapshot (S3
    holds the snapshot's upload): a restart rebuilds the race from the
    database and publishes it whole; nothing written before is rewritten."""
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"kill-{len(s3.list_buckets()['Buckets'])}"
    s3.create_bucket(Bucket=bucket)
    proxy = FaultProxy(moto_server)
    racers = "".join(f'\n[[races.t.racers]]\nid = "{i}"\nname = "R{i}"\n' for i in range(40))
    setup = write_race(
        tmp_path,
        dsn,
        racers=racers,
        interval_s=1,
        extra="chunk_points = 10",
        starts_at=now_utc() - timedelta(minutes=60),
        sink=f"s3://{bucket}/live",
        s3_endpoint=proxy.url,
    )
    create_points_table(dsn)
    # A long first cycle: an hour of fixes for 40 racers, ~70,000 points.
    rows = [r for i in range(40) for r in fixes(setup, str(i), 0.5 + i * 0.01, 3590)]
    insert_points(dsn, "live_points", COLS, rows)

    def packs() -> dict[str, bytes]:
        got = s3.list_objects_v2(Bucket=bucket, Prefix="live/packs/").get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in got}

    def snap() -> dict[str, Any] | None:
        try:
            body = s3.get_object(Bucket=bucket, Key="live/snapshot.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        doc: dict[str, Any] = json.loads(gzip.decompress(body))
        return doc

    proxy.hang = lambda method, path: method == "PUT" and path.endswith("snapshot.json")
    pub = Publisher(setup.path)
    try:
        wait_for(lambda: proxy.hung >= 1, timeout=120)  # its pack is in, its snapshot is not
        pub.kill()
        written = packs()
        assert written and snap() is None
        # The held upload is answered with an error (its process is gone).
        proxy.fail = lambda method, path: 500 if path.endswith("snapshot.json") else None
        proxy.hang = lambda method, path: False
        proxy.release.set()
        wait_for(lambda: proxy.failed >= 1)
        proxy.fail = lambda method, path: None
        # Restarted, it rebuilds its state from the database and carries on.
        assert run_once(setup.path).returncode == 0
        first = snap()
        assert first is not None and first["seq"] == 1
        per_racer = len(rows) // 40
        read = s3_reader(s3, bucket, "live")
        assert all(len(record_trail(read, r)) == per_racer for r in first["racers"])
        # Packs never change: nothing written before the kill was rewritten.
        assert {k: v for k, v in packs().items() if k in written} == written
        # And a second restart carries seq on, rewriting no pack.
        before = versions(s3, bucket)
        assert run_once(setup.path).returncode == 0
        assert (snap() or {})["seq"] == 2
        after = versions(s3, bucket)
        assert all(after[k] == n for k, n in before.items() if k.startswith("live/packs/"))
    finally:
        pub.kill()
        proxy.close()


@pytest.mark.slow
def test_standby_takes_over_when_the_active_publisher_dies(tmp_path: Path, dsn: str) -> None:
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn, interval_s=1)
    insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 500, since_s=2))
    a, b = Publisher(setup.path), Publisher(setup.path)
    watcher = Watcher(dir_getter(setup.sink_dir))
    try:
        wait_for(lambda: (snapshot(setup) or {}).get("seq", 0) >= 3)
        wait_for(lambda: "standing by" in a.log + b.log)
        active, standby = (a, b) if " seq=" in a.log else (b, a)
        assert " seq=" not in standby.log  # only one publishes
        assert "standing by" in standby.log
        last = snapshot(setup)["seq"]  # type: ignore[index]
        active.kill()
        died = time.monotonic()
        wait_for(lambda: " seq=" in standby.log, timeout=10)
        assert time.monotonic() - died < 3  # within about two intervals
        wait_for(lambda: snapshot(setup)["seq"] > last)  # type: ignore[index]
        assert "holding race t" in standby.log
    finally:
        a.kill()
        b.kill()
        watcher.stop()


@pytest.mark.slow
def test_standby_of_a_large_race_is_warm(tmp_path: Path, dsn: str) -> None:
    """3,000 racers ten minutes in (360,000 rows), a fix each every 5 s
    coming in all the while: the standby reads along while it waits, so
    after kill -9 of the active publisher it publishes the race as it is
    within a few intervals, not after a catch-up."""
    import threading

    racers = 3000
    create_points_table(dsn)
    (tmp_path / "entrants.csv").write_text(
        "id,name,kind\n" + "".join(f"b{k},Runner {k},runner\n" for k in range(racers))
    )
    setup = write_race(
        tmp_path,
        dsn,
        racers="\n",
        extra='racers_file = "entrants.csv"\n',
        starts_at=now_utc() - timedelta(minutes=10),
    )
    start = setup.starts_at.timestamp()

    def fix(k: int, t: float) -> tuple[Any, ...]:
        when = setup.starts_at + timedelta(seconds=t - start)
        return (f"b{k}", when, *setup.course.at((1.5 + 0.0002 * k) * (t - start)))

    history = [fix(k, start + t) for k in range(racers) for t in range(k % 5 + 1, 600, 5)]
    copy_points(dsn, "live_points", COLS, history)
    stop = threading.Event()

    def feed() -> None:  # each racer's phone, every 5 s
        tick = 0
        while not stop.wait(1.0):
            now = time.time()
            insert_points(
                dsn, "live_points", COLS, [fix(k, now) for k in range(tick % 5, racers, 5)]
            )
            tick += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    a = Publisher(setup.path)
    b = None
    watcher = Watcher(dir_getter(setup.sink_dir))
    try:
        wait_for(lambda: (snapshot(setup) or {}).get("seq", 0) >= 2, timeout=120)
        b = Publisher(setup.path)
        wait_for(lambda: "standby is current" in b.log, timeout=120)
        assert " seq=" not in b.log  # reading, not publishing
        last = snapshot(setup)["seq"]  # type: ignore[index]
        a.kill()
        died = time.monotonic()
        wait_for(lambda: (snapshot(setup) or {}).get("seq", 0) > last, timeout=60, every=0.05)
        took = time.monotonic() - died
        snap = snapshot(setup)
        assert snap is not None and "holding race t" in b.log
        assert took < 4 * 2, f"the standby took {took:.1f} s"  # a few intervals
        # What it published is the race as it is: everyone racing, fresh.
        assert snap["field"]["by_status"]["racing"] == racers
        shard = json.loads((setup.sink_dir / "racers" / "0.json").read_text())
        assert shard["seq"] == snap["seq"] and max(shard["age_ms"]) < 15_000
    finally:
        stop.set()
        a.kill()
        if b is not None:
            b.kill()
        feeder.join(timeout=10)
        watcher.stop()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signals_stop_cleanly(tmp_path: Path, dsn: str, signum: int) -> None:
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn, interval_s=1)
    pub = Publisher(setup.path)
    try:
        wait_for(lambda: (snapshot(setup) or {}).get("seq", 0) >= 2)
        pub.proc.send_signal(signum)
        assert pub.proc.wait(timeout=8) == 0
        assert "Traceback" not in pub.log
    finally:
        pub.kill()


@pytest.mark.slow
def test_metrics_and_status(tmp_path: Path, dsn: str) -> None:
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn, interval_s=1, starts_at=now_utc() - timedelta(seconds=65))
    insert_points(
        dsn,
        "live_points",
        COLS,
        fixes(setup, "1001", 3.0, 60, since_s=2)
        + [("1001", setup.starts_at + timedelta(seconds=61), 95.0, 0.0)],
    )
    port = free_port()
    pub = Publisher(setup.path, "--metrics-port", str(port))
    try:

        def metrics() -> dict[str, float]:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            return {
                line.split()[0]: float(line.split()[1])
                for line in text.splitlines()
                if line and not line.startswith("#")
            }

        # (Counted once the cycle is logged, just after its snapshot is in place.)
        wait_for(lambda: (snapshot(setup) or {}).get("seq", 0) >= 3)
        values = wait_for(lambda: (m := metrics())["racepub_cycles_total"] >= 3 and m)
        assert values["racepub_cycles_total"] >= 3
        assert values["racepub_points_accepted_total"] == 30
        assert values['racepub_points_dropped_total{reason="out_of_range"}'] == 1
        assert values["racepub_seconds_since_last_publish"] < 3
        assert values["racepub_standby"] == 0
        assert values["racepub_seq"] >= 3
        status = subprocess.run(
            [sys.executable, "-m", "racepub", "status", "--race", "t", "--config", str(setup.path)],
            capture_output=True,
            text=True,
        )
        assert status.returncode == 0 and "(fresh)" in status.stdout
        assert "racers: 1 racing, 2 waiting" in status.stdout
        pub.kill()
        time.sleep(4)  # more than three intervals without a publish
        status = subprocess.run(
            [sys.executable, "-m", "racepub", "status", "--race", "t", "--config", str(setup.path)],
            capture_output=True,
            text=True,
        )
        assert status.returncode == 1 and "STALE" in status.stdout
    finally:
        pub.kill()


def test_select_only_role_runs_the_loop(tmp_path: Path, dsn: str) -> None:
    create_points_table(
        dsn,
        POINTS_DDL + "; CREATE ROLE racepub_loop LOGIN; "
        "GRANT SELECT ON live_points TO racepub_loop",
    )
    setup = write_race(
        tmp_path,
        dsn.replace("postgres@", "racepub_loop@"),
        interval_s=1,
        starts_at=now_utc() - timedelta(seconds=45),
    )
    insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 40, since_s=2))
    pub = Publisher(setup.path)
    try:
        wait_for(lambda: (snapshot(setup) or {}).get("seq", 0) >= 2)
        assert snapshot(setup)["racers"][0]["status"] == "racing"  # type: ignore[index]
        with psycopg.connect(dsn) as conn:  # the role could not write if it tried
            assert conn.execute(
                "SELECT has_table_privilege('racepub_loop', 'live_points', 'INSERT')"
            ).fetchone() == (False,)
    finally:
        pub.kill()
    assert json.loads((setup.sink_dir / "snapshot.json").read_text())["schema"] == 1


def test_a_lagging_replica_never_moves_the_race_backwards(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    from racepub.cli import main

    create_points_table(dsn)
    setup = write_race(tmp_path, dsn, starts_at=now_utc() - timedelta(minutes=2))
    rows = fixes(setup, "1001", 3.0, 100, since_s=2)
    insert_points(dsn, "live_points", COLS, rows)
    argv = ["run", "--once", "--race", "t", "--config", str(setup.path)]
    assert main([*argv, "--state-dir", str(tmp_path / "first-machine")]) == 0
    published = (setup.sink_dir / "snapshot.json").read_bytes()
    # After a failover the publisher restarts, on another machine (no saved
    # race state), against a replica that is behind: the newest fixes are
    # not there yet.
    argv += ["--state-dir", str(tmp_path / "second-machine")]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE held AS SELECT * FROM live_points "
            "WHERE recorded_at > now() - interval '70 seconds'"
        )
        conn.execute("DELETE FROM live_points WHERE recorded_at > now() - interval '70 seconds'")
    assert main(argv) == 1
    assert "behind the published race" in caplog.text
    assert (setup.sink_dir / "snapshot.json").read_bytes() == published
    # The replica catches up: publishing carries on, seq growing.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO live_points SELECT * FROM held")
    assert main(argv) == 0
    snap = json.loads((setup.sink_dir / "snapshot.json").read_text())
    assert snap["seq"] == 2 and snap["racers"][0]["distance_m"] >= 290
