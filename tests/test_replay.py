"""A whole synthetic race with known truth, replayed through `racepub run --once`.

The founding race on the B line: four runners and the trolley, fixes every
~2 s with GPS noise (racepub.commands.simulate). Checked as a commentator would: who
leads, by how much, at what pace, finishing when.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from racepub.cli import main
from racepub.commands.demo import DEMO_DIR, demo_config
from racepub.commands.simulate import create_table, fixes, insert, truths
from racepub.model.course import load_gpx
from racepub.timefmt import ts
from tests.helpers import now_utc

COURSE = load_gpx(DEMO_DIR / "outrunthet.gpx")


def replay(tmp_path: Path, dsn: str, minutes_ago: float) -> tuple[dict[str, Any], Any, float]:
    """The race started `minutes_ago`; every fix up to now is in the table."""
    starts_at = now_utc() - timedelta(minutes=minutes_ago)
    cfg = demo_config(dsn, tmp_path, starts_at)
    race = cfg.race("outrunthet")
    now = ts(now_utc())
    rows = list(fixes(race, COURSE, ts(starts_at), now))
    good = {(round(lat, 6), round(lon, 6)) for _, _, lat, lon in rows}
    # What a phone fleet also sends: garbage that must never be published.
    t_bad = ts(starts_at) + 300
    bad = [
        ("1001", t_bad + 0.5, 42.5, -71.0),  # 20 km away, half a second later
        ("1002", now + 3600, 42.341, -71.146),  # an hour in the future
        ("1003", t_bad + 0.7, math.nan, -71.15),
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_table(conn, cfg)
        insert(conn, cfg, rows + bad + rows[:40])  # + duplicates
    config_path = tmp_path / "racepub.toml"
    config_path.write_text(
        (DEMO_DIR / "racepub.toml")
        .read_text()
        .replace("2014-07-25T11:00:00-04:00", starts_at.isoformat())
        .replace('"outrunthet.gpx"', f'"{DEMO_DIR / "outrunthet.gpx"}"')
        .replace("postgresql://racepub_ro@localhost/app", dsn)
    )
    assert main(["run", "--once", "--race", "outrunthet", "--config", str(config_path)]) == 0
    public = tmp_path / "public" / "outrunthet"
    snap = json.loads((public / "snapshot.json").read_text())
    published = b"".join(p.read_bytes() for p in public.rglob("*.json"))
    # The jump's latitude as a coordinate (a time like "finish_s":1342.5 is not one).
    assert not re.search(rb"(?<![\d.])42\.5,(-7\d|\"lon\")", published)
    assert b"NaN" not in published
    for _, _, lat, lon in bad[:2]:
        assert f"{lat},{lon}".encode() not in published
    for r in snap["racers"]:
        for lat, lon, _ in r["tail"]:
            assert (lat, lon) in good
    return snap, race, now


def test_mid_race(tmp_path: Path, dsn: str) -> None:
    snap, race, now = replay(tmp_path, dsn, minutes_ago=12)
    start = ts(race.starts_at)
    truth = {t.racer.id: t for t in truths(race, COURSE)}
    racers = snap["racers"]
    assert snap["race"]["state"] == "live"
    assert all(r["status"] == "racing" for r in racers)

    def at(r: dict[str, Any]) -> float:
        return datetime.fromisoformat(r["position"]["at"]).timestamp() - start

    # Ranked by progress: nobody ranked behind is truly ahead by more than
    # GPS noise (the leading runners are seconds apart, so some are closer).
    true_d = [truth[r["id"]].distance(at(r)) for r in racers]
    for i, d in enumerate(true_d):
        assert all(later - d < 15 for later in true_d[i + 1 :]), true_d
    for r in racers:
        tr = truth[r["id"]]
        t = at(r)
        assert r["distance_m"] == pytest.approx(tr.distance(t), abs=15)
        remaining_truth = tr.finish_s - (now - start)
        if r["kind"] == "runner":
            speed = (tr.distance(t) - tr.distance(t - 60)) / 60
            assert r["pace_s_per_km"] == pytest.approx(1000 / speed, rel=0.08)
            assert r["eta_s"] == pytest.approx(remaining_truth, rel=0.08)
        else:  # the trolley stops and starts: its average speed is the guide
            assert r["eta_s"] == pytest.approx(remaining_truth, rel=0.15)
    leader = racers[0]
    assert leader["gap_s"] == 0.0
    for r in racers[1:]:
        # How long ago the leader was where this racer is now, from the truth.
        lead = truth[leader["id"]]
        d = truth[r["id"]].distance(at(r))
        t_lead = next(s / 10 for s in range(0, 30_000) if lead.distance(s / 10) >= d)
        assert r["gap_s"] == pytest.approx(at(r) - t_lead, abs=4)


def test_finish(tmp_path: Path, dsn: str) -> None:
    snap, race, _ = replay(tmp_path, dsn, minutes_ago=40)
    truth = {t.racer.id: t.finish_s for t in truths(race, COURSE)}
    racers = snap["racers"]
    assert snap["race"]["state"] == "finished"
    # Ranked by finish time; Michael and Sarah were 2 s apart, within what
    # phone GPS can split, so only the published times must agree with it.
    assert [r["finish_s"] for r in racers] == sorted(r["finish_s"] for r in racers)
    for r in racers:
        assert r["status"] == "finished"
        assert r["finish_s"] == pytest.approx(truth[r["id"]], abs=2.0)
        assert r["distance_m"] == pytest.approx(COURSE.length_m, abs=0.5)
    # Three runners beat the trolley, the fourth did not.
    verdicts = {r["name"]: r["vs_vehicles"][0] for r in racers if r["kind"] == "runner"}
    assert sorted(v["ahead"] for v in verdicts.values()) == [False, True, True, True]
    kim = verdicts["Kim"]
    assert not kim["ahead"] and kim["seconds"] == pytest.approx(
        truth["1004"] - truth["2001"], abs=3
    )
