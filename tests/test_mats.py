"""Timing mats (issue 27): chip reads as facts, and every runner on the board,
phone or not. Real PostgreSQL (a reads table as a timing system keeps it),
the publisher cycle by cycle on a clock of its own."""

from __future__ import annotations

import gzip
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from racepub import config
from racepub.commands.demo import DEMO_DIR
from racepub.model.course import Course, load_gpx
from racepub.publisher.cycle import Publisher
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

N = 40
PHONES = 10  # r00..r09 carry a phone; the other 30 only a chip
MATS = {"Mat A": 1500.0, "Mat B": 3000.0, "Mat C": 4500.0}
READS_DDL = (
    "CREATE TABLE chip_reads (id bigserial PRIMARY KEY, bib text, mat text, read_at timestamptz)"
)
DETECTIONS = """
[detections]
table = "chip_reads"
racer = "bib"
checkpoint = "mat"
time = "read_at"
ingest = "id"
"""


def speed(k: int) -> float:
    return 2.6 + 1.2 * k / N  # 2.6 .. 3.8 m/s, constant


def insert_reads(dsn: str, reads: list[tuple[str, str, datetime, float]]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO chip_reads (bib, mat, read_at) VALUES (%s, %s, %s)",
            [r[:3] for r in reads],
        )


def mats_race(
    tmp_path: Path,
    dsn: str,
    racers: str,
    start: datetime,
    detections: str = DETECTIONS,
    extra: str = "",
) -> tuple[RaceSetup, Course]:
    """Race "t" on the founding course, its chip reads in a table of their
    own beside the points' ([detections] as given)."""
    create_points_table(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(READS_DDL)
    course = load_gpx(DEMO_DIR / "outrunthet.gpx")
    setup = write_race(
        tmp_path,
        dsn,
        racers=racers,
        points=list(course.points),
        starts_at=start,
        source=None,
        extra=extra,
    )
    setup.path.write_text(setup.path.read_text().replace("[races.t]", detections + "\n[races.t]"))
    return setup, course


def deliver(
    dsn: str,
    reads: list[tuple[str, str, datetime, float]],
    fixes: list[tuple[Any, ...]],
    start: datetime,
    after: float,
    upto: float,
) -> None:
    """What the timing system and the phones deliver in (after, upto] s of the race."""
    insert_reads(dsn, [r for r in reads if after < r[3] <= upto])
    insert_points(
        dsn,
        "live_points",
        COLS,
        [f for f in fixes if after < (f[1] - start).total_seconds() <= upto],
    )


@pytest.mark.slow
def test_every_runner_on_the_board_phone_or_not(tmp_path: Path, dsn: str) -> None:
    start = now_utc() - timedelta(hours=2)
    checkpoints = "".join(
        f'\n[[races.t.checkpoints]]\nname = "{name}"\ndistance_m = {d}\n'
        for name, d in MATS.items()
    )
    racers = "".join(f'\n[[races.t.racers]]\nid = "r{k:02d}"\nname = "R{k}"\n' for k in range(N))
    setup, course = mats_race(
        tmp_path, dsn, racers + checkpoints, start, extra="stale_after_s = 60"
    )
    rnd = random.Random(27)
    own = {f"r{k:02d}": 5.0 + 3 * (k % 10) for k in range(N)}  # chip starts after the gun
    truth: dict[str, dict[str, float]] = {}
    # (bib, mat, read time, when the timing system delivers it, s after the start)
    reads: list[tuple[str, str, datetime, float]] = []
    fixes: list[tuple[Any, ...]] = []
    for k in range(N):
        rid, v = f"r{k:02d}", speed(k)
        when = {"start": own[rid], "finish": own[rid] + course.length_m / v}
        when |= {name: own[rid] + d / v for name, d in MATS.items()}
        truth[rid] = when
        for mat, s in when.items():
            if not (rid == "r16" and mat == "Mat A"):  # delivered late: below
                reads.append((rid, mat, start + timedelta(seconds=s), s))
            if k % 7 == 3:  # two antennas: the same pass read again, 0.8 s on
                reads.append((rid, mat, start + timedelta(seconds=s + 0.8), s + 0.8))
        if k < PHONES:
            s = own[rid] + 2
            while v * (s - own[rid]) < course.length_m + 20:
                x, y = course.beyond(v * (s - own[rid]))
                lat, lon = course.to_latlon(x + rnd.gauss(0, 4), y + rnd.gauss(0, 4))
                fixes.append((rid, start + timedelta(seconds=s), lat, lon))
                s += 2.0
    # r16's Mat A read, delivered after their Mat B read: out of course order.
    late_s = truth["r16"]["Mat B"] + 30
    reads.append(("r16", "Mat A", start + timedelta(seconds=truth["r16"]["Mat A"]), late_s))
    # r15 read at Mat A again after Mat B: a second read of one mat.
    again = truth["r15"]["Mat B"] + 30
    reads.append(("r15", "Mat A", start + timedelta(seconds=again), again))
    reads.append(("nobody", "Mat A", start + timedelta(seconds=700), 700.0))  # not a racer
    reads.append(("r20", "Mat Z", start + timedelta(seconds=700), 700.0))  # no such mat

    cfg = config.load(str(setup.path))
    clock = {"now": start.timestamp()}
    pub = Publisher(cfg, cfg.race("t"), clock=lambda: clock["now"])
    at_15: dict[str, Any] = {}
    done = 0.0
    last = max(max(w.values()) for w in truth.values()) + 30
    try:
        t = 20.0
        while t <= last + 20:
            deliver(dsn, reads, fixes, start, done, t)
            done = t
            clock["now"] = start.timestamp() + t + 0.5
            pub.cycle()
            if t == 900.0:
                at_15 = json.loads((setup.sink_dir / "snapshot.json").read_text())
            t += 20.0
    finally:
        pub.close()

    # 15 minutes in: every runner on the board, those without a phone placed
    # at their pace, within 150 m of the truth, flagged; never past a mat
    # that has not read them.
    assert at_15
    moment = 900.5
    for rec in at_15["racers"]:
        rid, k = rec["id"], int(rec["id"][1:])
        assert rec["status"] == "racing" and rec["position"] is not None, rid
        true_d = speed(k) * (moment - own[rid])
        if rid == "r16":  # its Mat A read not delivered yet: held short of Mat A
            assert rec["estimated"] is True and rec["distance_m"] == MATS["Mat A"] - 1
        elif k >= PHONES:
            assert rec["estimated"] is True, rid
            assert abs(rec["distance_m"] - true_d) <= 150, (rid, rec["distance_m"], true_d)
            assert rec["position"]["at"] == at_15["generated_at"]
            ahead = [
                d for d in [*MATS.values(), course.length_m] if own[rid] + d / speed(k) > moment
            ]
            assert rec["distance_m"] < min(ahead)  # not past a mat yet to read them
        else:  # a phone: its fixes, as recorded
            assert rec["estimated"] is False and abs(rec["distance_m"] - true_d) <= 60, rid

    # At the end: every finish and split is its mat's read, net of the
    # racer's own start (their start read); the phone's too.
    snap = json.loads((setup.sink_dir / "snapshot.json").read_text())
    assert snap["race"]["state"] == "finished"
    for rec in snap["racers"]:
        rid, when = rec["id"], truth[rec["id"]]
        assert rec["finish_s"] == pytest.approx(when["finish"] - own[rid], abs=0.5), rid
        assert rec["gun_finish_s"] == pytest.approx(when["finish"], abs=0.5), rid
        splits = {s["name"]: s["at_s"] for s in rec["splits"]}
        for mat in MATS:
            if (rid, mat) == ("r16", "Mat A"):
                continue  # its read came out of order: no split from a mat
            assert splits[mat] == pytest.approx(when[mat] - own[rid], abs=0.5), (rid, mat)
        dropped = rec["dropped"]
        if int(rid[1:]) % 7 == 3:
            assert dropped.get("duplicate_read") == len(when), rid  # counted, not applied
    by_id = {r["id"]: r for r in snap["racers"]}
    assert by_id["r16"]["dropped"].get("out_of_order_read") == 1
    assert by_id["r15"]["dropped"].get("duplicate_read") == 1
    assert by_id["r20"]["dropped"].get("unknown_checkpoint") == 1
    # Ranked by when they crossed the line (the road): the quickest chip first.
    order = sorted(truth, key=lambda rid: truth[rid]["finish"])
    assert [r["id"] for r in snap["racers"]] == order


def test_a_read_stamped_ahead_is_held_or_dropped_and_publishing_goes_on(
    tmp_path: Path, dsn: str
) -> None:
    """A timing box's clock set wrong: a finish read in the year 20000 (past
    what a date can say) once stopped every cycle; a read a minute ahead
    made a split before it happened."""
    start = now_utc() - timedelta(hours=1)
    setup, _ = mats_race(
        tmp_path,
        dsn,
        '\n[[races.t.racers]]\nid = "r00"\nname = "A"\n'
        '\n[[races.t.racers]]\nid = "r01"\nname = "B"\n'
        '\n[[races.t.checkpoints]]\nname = "Mat A"\ndistance_m = 1500\n',
        start,
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO chip_reads (bib, mat, read_at) VALUES "
            "('r00', 'start', %s), ('r01', 'start', %s), "
            "('r00', 'finish', '20000-01-01 00:00:00+00'), ('r01', 'Mat A', %s)",
            (start, start + timedelta(seconds=5), start + timedelta(seconds=660)),
        )
    cfg = config.load(str(setup.path))
    clock = {"now": start.timestamp() + 600}
    pub = Publisher(cfg, cfg.race("t"), clock=lambda: clock["now"])
    try:
        pub.cycle()
        first = json.loads((setup.sink_dir / "snapshot.json").read_text())
        clock["now"] = start.timestamp() + 680
        pub.cycle()
        second = json.loads((setup.sink_dir / "snapshot.json").read_text())
    finally:
        pub.close()
    a, b = ({r["id"]: r for r in first["racers"]}[k] for k in ("r00", "r01"))
    assert a["status"] != "finished" and a["finish_s"] is None
    assert a["dropped"] == {"future_read": 1}
    assert b["splits"] == [] or all(s["at_s"] is None for s in b["splits"])
    assert b["dropped"] == {"future_read": 1}  # held, not yet a fact
    a, b = ({r["id"]: r for r in second["racers"]}[k] for k in ("r00", "r01"))
    assert a["dropped"] == {"future_read": 1} and a["finish_s"] is None  # never a fact
    assert {s["name"]: s["at_s"] for s in b["splits"]}["Mat A"] == pytest.approx(655, abs=0.5)
    assert "future_read" not in b["dropped"]


def every_published_time(sink_dir: Path, racer: str) -> list[float]:
    """Every time of racer's points in any object of the sink: each pack's
    pieces (gzip members, one JSON each) and the snapshot's tail."""
    times: list[float] = []
    decoder = json.JSONDecoder()
    for pack in (sink_dir / "packs").glob("*.bin"):
        text, at = gzip.decompress(pack.read_bytes()).decode(), 0
        while at < len(text):
            piece, at = decoder.raw_decode(text, at)
            if piece["racer"] == racer:
                times += [piece["t0"] + p[2] for p in piece["points"]]
    snap = json.loads((sink_dir / "snapshot.json").read_text())
    rec = next(r for r in snap["racers"] if r["id"] == racer)
    times += [datetime.fromisoformat(p[2]).timestamp() for p in rec["tail"]]
    return times


@pytest.mark.slow
def test_with_a_start_mat_nothing_before_a_racers_start_read_is_published(
    tmp_path: Path, dsn: str
) -> None:
    """[detections] start_mat: a runner late for their wave, their phone on
    from home, is not shown until the start mat reads them, and then only
    from there; nor one whose start box uploads after a later mat's, nor a
    pass over the start mat in the pen before their wave goes. One the
    start mat missed is shown a grace after their first read (their start
    the gun); one no mat reads, never. A publisher started cold at the end
    publishes each trail whole, as the one that ran along."""
    start = now_utc() - timedelta(hours=1)
    wave = 120.0  # r04's wave goes 2 minutes after the gun
    racers = "".join(f'\n[[races.t.racers]]\nid = "r{k:02d}"\nname = "R{k}"\n' for k in range(5))
    racers += f'start = "{(start + timedelta(seconds=wave)).isoformat()}"\n'  # r04's
    setup, course = mats_race(
        tmp_path,
        dsn,
        racers + '\n[[races.t.checkpoints]]\nname = "Mat A"\ndistance_m = 1500\n',
        start,
        detections=DETECTIONS + "start_mat = true\n",
    )
    late = 300.0  # r00 crosses the start mat 5 minutes after the gun
    home_lat, home_lon = course.points[0][0] + 0.01, course.points[0][1]  # 1.1 km north
    fixes: list[tuple[Any, ...]] = []
    for s in range(5, int(late), 5):  # r00 on the way from home
        f = s / late
        lat, lon = home_lat + (course.points[0][0] - home_lat) * f, home_lon
        fixes.append(("r00", start + timedelta(seconds=s), lat, lon))
    for s in range(2, 20, 2):  # r03 and r04 in the pen, before they go
        lat, lon = course.at(0.0)
        fixes += [(rid, start + timedelta(seconds=s), lat + 1e-4, lon) for rid in ("r03", "r04")]
        fixes.append(("r04", start + timedelta(seconds=s + 100), lat + 1e-4, lon))
    # (racer, own start s, a fix every s): r00 one a second, 700 of them
    for rid, off, every in (
        ("r00", late, 1),
        ("r01", 10.0, 2),
        ("r02", 10.0, 2),
        ("r03", 20.0, 2),
        ("r04", wave + 5, 2),
    ):
        for s in range(every, 700, every):
            lat, lon = course.at(3.0 * s)
            fixes.append((rid, start + timedelta(seconds=off + s), lat, lon))
    # (racer, mat, read at s, delivered at s)
    reads = [
        ("r00", "start", late, late),
        ("r00", "Mat A", late + 500, late + 500),
        ("r01", "Mat A", 510.0, 510.0),  # the start mat missed them
        ("r03", "Mat A", 520.0, 520.0),
        ("r03", "start", 20.0, 650.0),  # its box uploaded after Mat A's
        ("r04", "start", 30.0, 30.0),  # a pass over the mat before their wave
        ("r04", "start", wave + 5, wave + 5),
    ]
    rows = [(r, m, start + timedelta(seconds=at), sent) for r, m, at, sent in reads]
    cfg = config.load(str(setup.path))
    clock = {"now": start.timestamp()}
    pub = Publisher(cfg, cfg.race("t"), clock=lambda: clock["now"])
    before: dict[str, Any] = {}
    done = 0.0
    try:
        for t in range(60, 1081, 60):
            deliver(dsn, rows, fixes, start, done, t)
            done = t
            clock["now"] = start.timestamp() + t + 0.5
            pub.cycle()
            if t == 240:
                before = json.loads((setup.sink_dir / "snapshot.json").read_text())
    finally:
        pub.close()

    # Before any read: nobody shown, nothing of anyone's trail.
    for rec in before["racers"]:
        if rec["id"] != "r04":  # read at the start at 125 s
            assert rec["position"] is None and not rec["tail"] and not rec.get("track"), rec
    snap = json.loads((setup.sink_dir / "snapshot.json").read_text())
    by_id = {r["id"]: r for r in snap["racers"]}
    read = dir_reader(setup.sink_dir)
    gun = start.timestamp()
    # r00: from their start read on, and nothing of the way from home anywhere.
    trail = record_trail(read, by_id["r00"])
    assert len(trail) > 600 and min(p[2] for p in trail) >= gun + late
    assert min(every_published_time(setup.sink_dir, "r00")) >= gun + late
    assert by_id["r00"]["dropped"] == {"before_start": len(range(5, int(late), 5))}
    # r03, r04: from their start read, the pen nowhere.
    for rid, went in (("r03", 20.0), ("r04", wave + 5)):
        assert min(every_published_time(setup.sink_dir, rid)) >= gun + went, rid
        assert by_id[rid]["finish_s"] is None and by_id[rid]["position"] is not None
    assert by_id["r04"]["dropped"]["before_start"] == 9 + 9 + 1  # the pen's fixes, the pass
    # r01: the start mat missed them: shown after the grace, from the gun.
    trail = record_trail(read, by_id["r01"])
    assert min(p[2] for p in trail) <= gun + 14 and by_id["r01"]["position"] is not None
    # r02: no mat read them: never shown.
    assert by_id["r02"]["position"] is None and every_published_time(setup.sink_dir, "r02") == []

    # Started cold at the end (no state): every trail and count as above.
    cold_path = setup.path.with_name("cold.toml")
    cold_path.write_text(setup.path.read_text().replace('"dir:public"', '"dir:public-cold"'))
    cold_cfg = config.load(str(cold_path))
    cold = Publisher(cold_cfg, cold_cfg.race("t"), clock=lambda: clock["now"])
    try:
        cold.cycle()
    finally:
        cold.close()
    cold_dir = setup.sink_dir.with_name("public-cold")
    again = {r["id"]: r for r in json.loads((cold_dir / "snapshot.json").read_text())["racers"]}
    for rid in by_id:
        # (as sets: merged packs hold pieces the older packs hold too)
        assert set(every_published_time(cold_dir, rid)) == set(
            every_published_time(setup.sink_dir, rid)
        ), rid
        assert again[rid]["dropped"] == by_id[rid]["dropped"], rid
