"""An event of several races (issue 25): one page leads to each race, its
state and leader, every race published by a process of its own. Real
PostgreSQL, `racepub run --once` per race, Chromium on the event's page."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from racepub import config
from racepub.commands.serve import make_server, serve_in_thread
from racepub.errors import ConfigError
from tests.helpers import COLS, create_points_table, fixes, insert_points, now_utc, write_race

RACES = {
    "marathon": ("The Marathon", {"m1": ("Ann", 3.2), "m2": ("Bo", 3.0)}),
    "half": ("The Half", {"h1": ("Cy", 3.6), "h2": ("Di", 3.9)}),
    "ten": ("The 10 km", {"t1": ("Ed", 4.1), "t2": ("Flo", 2.5)}),
}
EVENT = """
[events.weekend]
title = "City Running Weekend"
races = ["marathon", "half", "ten"]
sink = "dir:public"
"""


def event_config(tmp_path: Path, dsn: str) -> Path:
    setup = write_race(tmp_path, dsn, starts_at=now_utc() - timedelta(minutes=5))
    text = setup.path.read_text()
    base = text[: text.index("[races.t]")]
    race_t = text[text.index("[races.t]") :].split("\n[[races.t.racers]]")[0]
    parts = [base]
    for rid, (title, racers) in RACES.items():
        block = race_t.replace("[races.t]", f"[races.{rid}]")
        block = block.replace('title = "Test race"', f'title = "{title}"')
        block = block.replace('sink = "dir:public"', f'sink = "dir:public/{rid}"')
        parts.append(block)
        for pid, (name, _) in racers.items():
            parts.append(f'\n[[races.{rid}.racers]]\nid = "{pid}"\nname = "{name}"\n')
    parts.append(EVENT)
    setup.path.write_text("\n".join(parts))
    rows = [
        r
        for _, racers in RACES.values()
        for pid, (_, speed) in racers.items()
        for r in fixes(setup, pid, speed, 295)  # to a few seconds ago: all racing
    ]
    insert_points(dsn, "live_points", COLS, rows)
    return setup.path


def test_an_event_page_leads_to_each_race(tmp_path: Path, dsn: str, open_page: Any) -> None:
    create_points_table(dsn)
    path = event_config(tmp_path, dsn)
    cfg = config.load(str(path))
    event = cfg.event_of("half")
    assert event is not None
    assert event.races == tuple(RACES)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "racepub",
                "run",
                "--once",
                "--race",
                rid,
                "--config",
                str(path),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for rid in RACES
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    public = tmp_path / "public"
    for rid, (title, racers) in RACES.items():
        summary = json.loads((public / rid / "summary.json").read_text())
        leader = max(racers, key=lambda k: racers[k][1])
        assert summary["race"]["title"] == title and summary["leader"]["id"] == leader
        assert summary["by_status"]["racing"] == 2 and summary["count"] == 2
    server = make_server(public, interval_s=2, port=0)
    serve_in_thread(server)
    try:
        page = open_page(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.race .leader')].every(e => e.textContent)"
        )
        cards = page.locator(".race")
        assert cards.count() == 3
        for k, (rid, (title, racers)) in enumerate(RACES.items()):
            card = cards.nth(k)
            assert card.locator("h2 a").inner_text() == title
            assert card.locator("h2 a").get_attribute("href") == f"./{rid}/index.html"
            leader = max(racers.values(), key=lambda r: r[1])[0]
            assert card.locator(".leader").inner_text().startswith(f"Leader: {leader}, ")
            assert card.locator(".state").inner_text() == "Live"
            assert "2 racers: 2 racing" in card.locator(".counts").inner_text()
        page.click("a[href='./ten/index.html']")  # each race keeps its own page
        page.wait_for_selector("#board tbody tr")
        assert page.locator("h1").inner_text() == "The 10 km"
    finally:
        server.shutdown()


def test_an_event_names_only_its_races_and_places_under_it(tmp_path: Path, dsn: str) -> None:
    create_points_table(dsn)
    path = event_config(tmp_path, dsn)
    text = path.read_text()
    bad = text.replace('races = ["marathon", "half", "ten"]', 'races = ["marathon", "nope"]')
    path.write_text(bad.replace('sink = "dir:public/half"', 'sink = "dir:elsewhere/half"'))
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert "events.weekend.races: 'nope': no such race" in str(e.value)
    good = text.replace('sink = "dir:public/half"', 'sink = "dir:elsewhere/half"')
    path.write_text(good)
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert "races.half.sink" in str(e.value) and "expected a place under events.weekend.sink" in (
        str(e.value)
    )


def test_event_links_are_paths_whatever_a_sink_spells(tmp_path: Path, dsn: str) -> None:
    """A race's sink under the event's is a place, not markup: a scheme, a
    query or a fragment in its name stays part of the path it links to."""
    from racepub.shapes.event import page_objects
    from racepub.shapes.page import environment

    create_points_table(dsn)
    path = event_config(tmp_path, dsn)
    text = path.read_text()
    text = text.replace('sink = "dir:public/half"', 'sink = "dir:public/javascript:alert(1)"')
    path.write_text(text.replace('sink = "dir:public/ten"', 'sink = "dir:public/a b#c?d"'))
    cfg = config.load(str(path))
    (index, *_) = page_objects(cfg, cfg.events["weekend"], environment(None), "h", [])
    html = index.body.decode()
    hrefs = [h.split('"')[0] for h in html.split('<a href="')[1:] if "index.html" in h]
    assert hrefs == [
        "./marathon/index.html",
        "./javascript%3Aalert%281%29/index.html",
        "./a%20b%23c%3Fd/index.html",
    ]
