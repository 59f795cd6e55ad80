"""Timing mats (issue 27): chip reads as facts, and every runner on the board,
phone or not. Real PostgreSQL (a reads table as a timing system keeps it),
the publisher cycle by cycle on a clock of its own."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from racepub import config
from racepub.commands.demo import DEMO_DIR
from racepub.model.course import load_gpx
from racepub.publisher.cycle import Publisher
from tests.helpers import COLS, create_points_table, insert_points, now_utc, write_race

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


@pytest.mark.slow
def test_every_runner_on_the_board_phone_or_not(tmp_path: Path, dsn: str) -> None:
    create_points_table(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(READS_DDL)
    course = load_gpx(DEMO_DIR / "outrunthet.gpx")
    start = now_utc() - timedelta(hours=2)
    checkpoints = "".join(
        f'\n[[races.t.checkpoints]]\nname = "{name}"\ndistance_m = {d}\n'
        for name, d in MATS.items()
    )
    racers = "".join(f'\n[[races.t.racers]]\nid = "r{k:02d}"\nname = "R{k}"\n' for k in range(N))
    setup = write_race(
        tmp_path,
        dsn,
        racers=racers + checkpoints,
        points=list(course.points),
        starts_at=start,
        source=None,
        extra="stale_after_s = 60",
    )
    setup.path.write_text(setup.path.read_text().replace("[races.t]", DETECTIONS + "\n[races.t]"))
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
            insert_reads(dsn, [r for r in reads if done < r[3] <= t])
            insert_points(
                dsn,
                "live_points",
                COLS,
                [f for f in fixes if done < (f[1] - start).total_seconds() <= t],
            )
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
