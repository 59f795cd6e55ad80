"""The spectator page in a real browser (Debian's Chromium), loaded over HTTP
from moto's S3 server, exactly as spectators load it from the CDN."""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from racepub import config
from racepub.model.board import snapshot
from racepub.publisher.cycle import Publisher
from racepub.shapes.field import shard_of
from tests.conftest import DESKTOP
from tests.helpers import (
    COLS,
    RaceSetup,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    public_bucket,
    write_race,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PHONE = {"width": 390, "height": 844}  # the phones of issue 24
HOSTILE = "<img src=x onerror=alert(1)>Mallory"


@dataclass
class LiveRace:
    url: str
    publisher: Publisher
    setup: RaceSetup


def publish_live(
    tmp_path: Path,
    dsn: str,
    moto_server: str,
    racers: str,
    extra: str,
    speeds: dict[str, float],
    elevations: list[float] | None = None,
    before: Callable[[RaceSetup], object] | None = None,
    every: float = 2.0,
    starts_at: datetime | None = None,
    tiles: str = "http://127.0.0.1:9/{z}/{x}/{y}.png",
) -> Iterator[LiveRace]:
    """A race 3 minutes in (a fix every 2 s at each racer's speed), published
    once to a public bucket on moto's HTTP server, as spectators load it.
    `before` runs once the race's config is written, before it is published."""
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = public_bucket(s3, "page")
    create_points_table(dsn)
    setup = write_race(
        tmp_path,
        dsn,
        racers=racers,
        sink=f"s3://{bucket}/live",
        interval_s=1,
        starts_at=starts_at or now_utc() - timedelta(minutes=3),
        extra=f'tiles = "{tiles}"\n' + extra,
        elevations=elevations,
        s3_endpoint=moto_server,
    )
    rows = [
        row
        for racer, speed in speeds.items()
        for row in fixes(setup, racer, speed, 168, since_s=2, every=every)
    ]
    insert_points(dsn, "live_points", COLS, rows)
    if before is not None:
        before(setup)
    cfg = config.load(str(setup.path))
    publisher = Publisher(cfg, cfg.race("t"))
    publisher.cycle()
    yield LiveRace(f"{moto_server}/{bucket}/live/index.html", publisher, setup)
    publisher.close()


@pytest.fixture
def live_race(tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None) -> Iterator[LiveRace]:
    """The founding race's shape mid-way: three racing, Kim not started."""
    racers = f"""
        [[races.t.racers]]
        id = "1001"
        name = "{HOSTILE}"

        [[races.t.racers]]
        id = "1002"
        name = "Sarah"
        bib = "7"

        [[races.t.racers]]
        id = "2001"
        name = "The T"
        kind = "vehicle"

        [[races.t.racers]]
        id = "1004"
        name = "Kim"
    """
    checkpoint = '\n[[races.t.checkpoints]]\nname = "Packards Corner"\ndistance_m = 300\n'
    yield from publish_live(
        tmp_path,
        dsn,
        moto_server,
        racers,
        'chunk_points = 20\nunits = "mi"' + checkpoint,
        {"1001": 3.4, "1002": 3.1, "2001": 2.0},
    )


def names(page: Any) -> list[str]:
    return page.locator("#rows tr .name").all_inner_texts()


def column(page: Any, title: str, rows: str = "#rows tr") -> list[str]:
    """The board's column whose header starts with `title`, row by row."""
    got: list[str] = page.evaluate(
        """([title, rows]) => {
        const heads = [...document.querySelectorAll('#board thead th')];
        const k = heads.findIndex(h => h.textContent.trim().startsWith(title));
        return [...document.querySelectorAll(rows)]
            .filter(tr => !tr.classList.contains('caption'))
            .map(tr => tr.children[k] ? tr.children[k].firstChild?.textContent ?? '' : '');
    }""",
        [title, rows],
    )
    return got


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def wait_live(page: Any) -> None:
    """Until the script has drawn the snapshot: racers' markers on the map,
    the course, its ends and trails."""
    # Predicates as functions: the page's CSP forbids eval, which string
    # expressions would need.
    page.wait_for_function("() => document.querySelectorAll('.racer').length >= 1")
    page.wait_for_function(
        "() => document.querySelectorAll('.leaflet-overlay-pane path').length >= 5"
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_page_shows_the_race(live_race: LiveRace, open_page: Any, viewport: dict[str, int]) -> None:
    page = open_page(live_race.url, viewport)
    wait_live(page)
    assert names(page) == [HOSTILE, "Sarah", "The T", "Kim"]  # literal text, by progress
    assert page.locator("#board tbody tr .bib").all_inner_texts() == ["7"]  # Sarah wears 7
    assert page.locator("img[src='x']").count() == 0
    rows = page.locator("#rows tr")
    assert "waiting" in rows.nth(3).inner_text()
    assert column(page, "Gap")[1].startswith("+")  # gap to the leader
    # Course, start, finish and three trails; three markers (Kim has no fix),
    # the vehicle a square.
    assert page.locator(".leaflet-overlay-pane path").count() >= 6
    assert page.locator(".racer").count() == 3
    assert page.locator(".racer .dot.vehicle").count() == 1
    key = page.locator(".key").text_content() or ""  # what the shapes and dashes mean
    assert "a runner" in key and "a vehicle" in key and "no fixes for a while" in key
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    polled = [u for u in page.requests if u.endswith("snapshot.json") or "snapshot.json?" in u]
    assert polled and all("?" not in u for u in polled)  # no cache-busting
    assert any("/packs/" in u for u in page.requests)  # the trails' pieces
    page.wait_for_timeout(300)
    shot(page, f"page-{viewport['width']}")


def test_first_paint_needs_no_script(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url, PHONE, java_script_enabled=False)
    assert names(page) == [HOSTILE, "Sarah", "The T", "Kim"]
    first = page.locator("#board tbody tr").first.inner_text()
    assert "mi" in first and "leader" in first  # distance in the race's units, the gap
    assert "The map and live updates need JavaScript" in page.locator("#map").inner_text()
    shot(page, "page-noscript")


@pytest.mark.slow
def test_stale_banner_comes_and_goes(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url)
    wait_live(page)
    banner = page.locator("#stale")
    assert banner.is_hidden()
    badge = page.locator("#replay-time")
    assert badge.inner_text() == "Live"
    # The publisher stops: after about three intervals spectators are told,
    # and the scrubber no longer says Live.
    banner.wait_for(state="visible", timeout=15_000)
    assert "Updates paused" in banner.inner_text()
    page.wait_for_timeout(1500)  # (a poll and a redraw of the scrubber since)
    assert badge.inner_text() == "Paused"
    shot(page, "page-stale")
    live_race.publisher.cycle()  # publishing resumes
    banner.wait_for(state="hidden", timeout=10_000)
    page.wait_for_function("() => document.getElementById('replay-time').textContent === 'Live'")


def test_units_toggle_is_remembered(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url)
    wait_live(page)
    units = page.locator("#units button[aria-pressed='true']")
    assert units.inner_text() == "mi"  # the control shows the unit in use
    assert column(page, "Distance")[0].endswith(" mi")  # the race's default
    page.click("#units button[data-units='km']")
    assert units.inner_text() == "km"
    assert column(page, "Distance")[0].endswith(" km")
    assert column(page, "Pace")[0].endswith("/km")
    page.reload()
    wait_live(page)
    assert column(page, "Distance")[0].endswith(" km")


def centre(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_racer_link_follows_them(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url + "#racer=2001")
    wait_live(page)
    row = page.locator("#rows tr.following")
    assert row.locator(".name").inner_text() == "The T"
    assert page.locator("#unfollow").inner_text() == "Following The T ✕"
    # The map keeps the followed racer in the middle.
    mx, my = centre(page.locator("#map").bounding_box())
    vx, vy = centre(page.locator(".racer.focus .dot").bounding_box())
    assert abs(mx - vx) < 25 and abs(my - vy) < 25
    # Clicking another row follows them too, the map now on them; the
    # address is the link to share (the one the map follows first).
    page.locator("#rows tr", has_text="Sarah").click()
    assert page.evaluate("location.hash") == "#racer=1002,2001"
    assert page.locator("#unfollow").inner_text() == "Following Sarah ✕"
    # Their splits: at 3.1 m/s, 300 m after 97 s; the finish not yet.
    splits = page.locator("#splits")
    assert splits.is_visible() and "Splits — Sarah" in splits.inner_text()
    rows = splits.locator("tbody tr").all_inner_texts()
    assert rows[0].split("\t")[:3] == ["Packards Corner", "0.19 mi", "1:37"]
    assert rows[1].startswith("Finish") and "–" in rows[1]
    # Their track to take home: a GPX made in the browser from what it fetched.
    with page.expect_download() as got:
        page.click("#gpx")
    import gpxpy

    gpx = gpxpy.parse(Path(got.value.path()).read_text())
    assert got.value.suggested_filename == "t-1002.gpx"
    track = gpx.tracks[0]
    assert track.name == "Sarah"
    points = track.segments[0].points
    assert all(p.time is not None for p in points)  # every point with its time
    times = [p.time.timestamp() for p in points if p.time is not None]
    start = live_race.setup.starts_at.timestamp()
    assert len(times) >= 80 and times == sorted(set(times)) and times[0] == start + 2
    page.locator("#unfollow").click()  # Sarah; the map goes back to The T
    assert page.evaluate("location.hash") == "#racer=2001"
    assert page.locator("#unfollow").inner_text() == "Following The T ✕"
    page.locator("#unfollow").click()
    assert page.locator("#board tbody tr.following").count() == 0
    assert page.locator("#splits").is_hidden()
    assert page.evaluate("location.hash") == ""


def test_keyboard_can_follow_a_racer(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url)
    wait_live(page)
    # The row says it can be followed: a button named so.
    row = page.locator("#rows tr").nth(1)
    assert row.get_by_role("button", name="Follow Sarah", exact=True).count() == 1
    follow = row.locator("button.follow")
    follow.focus()
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#racer=1002"
    assert follow.get_attribute("aria-pressed") == "true"
    assert row.get_by_role("button", name="Stop following Sarah", exact=True).count() == 1


@pytest.mark.slow
def test_errors_back_off(live_race: LiveRace, open_page: Any) -> None:
    # The jitter pinned (random() = 0.75): a failing poll waits 1 s + 0.75 of
    # a ceiling that doubles, 2 s, 4 s, 8 s: gaps of 2.5, 4 and 7 s.
    page = open_page(live_race.url, init_script="Math.random = () => 0.75;")
    wait_live(page)
    hits: list[float] = []

    def fail(route: Any) -> None:
        hits.append(time.monotonic())
        route.fulfill(status=503, body="SlowDown")

    page.route("**/snapshot.json", fail)
    page.wait_for_timeout(12_000)
    # Every second while healthy; backing off (with jitter) once it errors.
    assert 3 <= len(hits) <= 4, hits
    gaps = [b - a for a, b in zip(hits, hits[1:], strict=False)]
    assert gaps[0] == pytest.approx(2.5, abs=0.4) and gaps[1] == pytest.approx(4.0, abs=0.4)
    page.unroute("**/snapshot.json")


@pytest.fixture
def large_race(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None
) -> Iterator[LiveRace]:
    """A large race (more racers than shard_above): head + shards on moto's HTTP server."""
    # Ids with non-ASCII bytes: the page's FNV-1a must hash UTF-8 as Python does.
    ids = [f"bib{i}" for i in range(30)] + ["Zoë-7"]
    (tmp_path / "entrants.csv").write_text(
        "id,name,kind,bib\n"
        + "".join(f"{i},Runner {i},runner,{100 + k}\n" for k, i in enumerate(ids))
    )
    yield from publish_live(
        tmp_path,
        dsn,
        moto_server,
        "\n",
        'racers_file = "entrants.csv"\nshard_above = 10\n'
        "shard_size = 4\nhead_size = 5\nchunk_points = 20",
        {racer: 3.6 - 0.05 * k for k, racer in enumerate(ids)},
    )


def trail_ends(page: Any, color: str) -> dict[str, Any]:
    """Where the followed racer's trail (stroke `color`, weight 5) starts and
    ends on the map, where their marker is and where the start is: screen
    coordinates."""
    return page.evaluate(
        """(color) => {
        const trail = document.querySelector(`path[stroke="${color}"][stroke-width="5"]`);
        if (!trail) return null;
        const m = trail.getScreenCTM();
        const screen = (p) => [p.x * m.a + p.y * m.c + m.e, p.x * m.b + p.y * m.d + m.f];
        const mid = (e) => { const r = e.getBoundingClientRect();
                             return [r.x + r.width / 2, r.y + r.height / 2]; };
        return {first: screen(trail.getPointAtLength(0)),
                last: screen(trail.getPointAtLength(trail.getTotalLength())),
                dot: mid(document.querySelector('.racer.focus .dot')),
                start: mid(document.querySelector('path[fill="#00572a"]'))};
    }""",
        color,
    )


def near(a: list[float], b: list[float], px: float = 3.0) -> bool:
    return abs(a[0] - b[0]) <= px and abs(a[1] - b[1]) <= px


@pytest.mark.slow
def test_large_race_head_and_following_one_racer(
    large_race: LiveRace, open_page: Any, dsn: str
) -> None:
    page = open_page(large_race.url, PHONE)
    wait_live(page)
    assert names(page) == [f"Runner bib{i}" for i in range(5)]  # the head only
    assert "31 racers: 31 racing, 0 finished." in page.inner_text("#field")
    assert not any("/racers/" in u for u in page.requests)  # no shard until someone follows
    # The field overview: the course shaded where the 31 are.
    page.wait_for_function(
        "() => [...document.querySelectorAll('path')]"
        ".filter(p => p.getAttribute('stroke')?.startsWith('hsl')).length > 0"
    )

    # Several match "runner bib1": the page lists them to choose from.
    page.fill("#find-id", "runner bib1")
    page.click("#find button[type=submit]")
    page.wait_for_function(
        "() => document.querySelectorAll('#find-results button').length === 11"
    )  # bib1, bib10..bib19
    assert "11 racers match" in page.inner_text("#find-msg")
    # One matches "ZOE" (accents and case do not matter): followed at once.
    page.fill("#find-id", "ZOE")
    page.click("#find button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#board tbody tr .name')]"
        ".some(e => e.textContent === 'Runner Zoë-7')"
    )
    names_fetched = [u for u in page.requests if "/names/" in u]
    assert len(names_fetched) == 2 and names_fetched[-1].endswith("/zo.json")
    row = page.locator("#board tbody tr.following")
    assert row.locator("td").first.inner_text() == "31"  # the last of 31, pinned above the head
    assert page.locator("#mine tr.following").count() == 1
    assert "Following Runner Zoë-7" in page.inner_text("#unfollow")
    assert "#racer=Zo%C3%AB-7" in page.url
    # The matches' shards were read once for their numbers; asked for since:
    # the followed racer's shard alone (again only once there is a newer cycle).
    mine = f"/racers/{shard_of('Zoë-7', 8)}.json"  # 31 racers, 4 a shard
    assert any(u.endswith(mine) for u in page.requests)
    since = len(page.requests)
    page.wait_for_timeout(2500)
    polled = [u for u in page.requests[since:] if "/racers/" in u]
    assert all(u.endswith(mine) for u in polled), polled
    # Their trail, from the start to their dot, read from the packs by range.
    color = "#469990"  # a large race: the racers followed each their own, the first this
    page.wait_for_function(
        """(c) => {
        const t = document.querySelector(`path[stroke="${c}"][stroke-width="5"]`);
        return t && t.getTotalLength() > 30; }""",
        arg=color,
    )
    ends = trail_ends(page, color)
    assert near(ends["first"], ends["start"], 6) and near(ends["last"], ends["dot"])
    assert any("/packs/" in u for u in page.requests)
    shot(page, "large-race-follow-phone")

    # The race goes on: Zoë-7's new fixes reach their row, dot and trail each cycle.
    setup = large_race.setup
    before = column(page, "Distance", "#mine tr")[0]
    polls = len([u for u in page.requests if "/racers/" in u])
    with publishing(large_race):
        t0 = time.time()
        for k in range(6):
            t = setup.starts_at + timedelta(seconds=170 + 2 * k)
            lat, lon = setup.course.at(2.1 * (170 + 2 * k) + 150)  # a burst of speed
            insert_points(dsn, "live_points", COLS, [("Zoë-7", t, lat, lon)])
            page.wait_for_timeout(1000)
        page.wait_for_function(
            "(b) => document.querySelector('#mine tr.following td:nth-child(4)')"
            ".firstChild.textContent !== b",
            arg=before,
        )
        assert time.time() - t0 < 15
    assert len([u for u in page.requests if "/racers/" in u]) >= polls + 4  # every poll
    ends = trail_ends(page, color)
    assert near(ends["last"], ends["dot"])  # the trail reaches the new position

    # A bib finds its racer, whose row shows it, as the head's rows do theirs.
    page.fill("#find-id", "117")
    page.click("#find button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#board tbody tr.focus .name')?.textContent"
        " === 'Runner bib17'"
    )
    assert page.locator("#board tbody tr.focus .bib").inner_text() == "117"
    assert page.locator("#rows tr .bib").all_inner_texts()[:5] == [
        "100", "101", "102", "103", "104"
    ]  # fmt: skip

    # A link to a racer who is not in the race says so.
    page.goto(large_race.url + "#racer=nobody")
    page.wait_for_function(
        "() => document.getElementById('find-msg').textContent === 'No racer nobody in this race.'"
    )
    page.fill("#find-id", "nobody")
    page.click("#find button[type=submit]")
    page.wait_for_function(
        "() => document.getElementById('find-msg').textContent === 'No racer matches nobody.'"
    )


@contextlib.contextmanager
def publishing(race: LiveRace) -> Iterator[None]:
    """The publisher at work, a cycle a second, for as long as the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            race.publisher.cycle()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_snapshot_older_by_seq_never_replaces_a_newer_one(
    live_race: LiveRace, open_page: Any
) -> None:
    """A stalled upload that S3 completes after a newer snapshot (or a CDN
    edge with an older copy) hands the page a lower seq: it keeps what it
    has (tests/test_faults.py causes the upload)."""
    page = open_page(live_race.url)
    wait_live(page)
    shown = names(page)
    served = []

    def older(route: Any) -> None:
        doc = json.loads(route.fetch().body())
        doc["seq"] -= 1
        for rec in doc["racers"]:
            rec["name"] = "An older copy"
        served.append(doc["seq"])
        route.fulfill(body=json.dumps(doc), content_type="application/json")

    page.route("**/snapshot.json*", older)
    for _ in range(150):  # (Playwright answers routes while the test waits on the page)
        if len(served) >= 3:  # three polls answered with the older copy
            break
        page.wait_for_timeout(100)
    assert len(served) >= 3 and names(page) == shown
    page.unroute_all(behavior="wait")


@pytest.mark.slow
def test_an_old_copy_from_the_cdn_shows_updates_paused(live_race: LiveRace, open_page: Any) -> None:
    """A CDN serving a cached copy, or a stale-if-error one while S3 or the
    publisher is down, sends the origin's Date and an Age: the page takes
    the server's time from both, so a copy kept ten and a half minutes is
    ten minutes old. (Not exactly ten: Date is whole seconds, truncated, so
    the page's estimate may be up to a second short, and 599.5 s is "9 min
    ago", rightly. At 600 the test failed now and then.)"""
    with publishing(live_race):
        page = open_page(live_race.url)
        wait_live(page)
        banner = page.locator("#stale")
        page.wait_for_timeout(3000)
        assert banner.is_hidden()

        def kept_ten_and_a_half_minutes(route: Any) -> None:
            res = route.fetch()
            route.fulfill(response=res, headers={**res.headers, "age": "630"})

        page.route("**/snapshot.json", kept_ten_and_a_half_minutes)
        banner.wait_for(state="visible", timeout=10_000)
        assert "Updates paused — last update 10 min ago." in banner.inner_text()
        page.unroute_all(behavior="wait")  # let a handler mid-fetch finish
        banner.wait_for(state="hidden", timeout=10_000)


def test_a_mangled_racer_link_is_ignored(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url + "#racer=%E0")  # not UTF-8: decodeURIComponent throws
    wait_live(page)  # the page polls and draws all the same (and throws nothing)
    assert page.locator("#board tbody tr.following").count() == 0


@pytest.mark.slow
def test_elevation_profile_only_when_the_course_has_it(
    tmp_path: Path,
    dsn: str,
    moto_server: str,
    fake_aws_env: None,
    open_page: Any,
    live_race: LiveRace,
) -> None:
    from tests.helpers import STOPS

    page = open_page(live_race.url)  # the test course has no elevation: no empty box
    wait_live(page)
    assert page.locator("#profile").is_hidden()
    hilly = tmp_path / "hilly"
    hilly.mkdir()
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:  # the flat race's table goes
        conn.execute("DROP TABLE live_points")
    gen = publish_live(
        hilly,
        dsn,
        moto_server,
        "",
        'chunk_points = 20\n[[races.t.checkpoints]]\nname = "Hill top"\ndistance_m = 900\n',
        {"1001": 3.4},
        elevations=[12.0, 30.0, 55.0, 41.0, 20.0, 25.0][: len(STOPS)],
    )
    race = next(gen)
    try:
        page = open_page(race.url)
        wait_live(page)
        profile = page.locator("#profile")
        assert profile.is_visible()
        assert "Elevation 12–55 m" in profile.inner_text()
        assert page.locator("#profile-svg line.tick").count() == 3  # start, hill top, finish
        cx = float(page.locator("#profile-svg circle").get_attribute("cx") or -1)
        # Drawn at the size shown (its marker round): 40 px of height scale,
        # then the course; Michael, 3.4 m/s for 168 s: 571 m of ~2,266 m.
        box = page.locator("#profile-svg").bounding_box()
        width = float(page.locator("#profile-svg").get_attribute("viewBox").split()[2])
        assert width == pytest.approx(box["width"], abs=1)
        assert cx == pytest.approx(40 + (width - 46) * 571 / race.setup.course.length_m, abs=3)
        # A distance axis in the race's units, a height scale.
        labels = page.locator("#profile-svg text").all_text_contents()
        assert "0 km" in labels and "12 m" in labels and "55 m" in labels
        snap = snapshot(race.publisher.state, time.time(), 1)
        assert snap["race"]["course"] == {"climb_m": 48.0, "descent_m": 35.0}
    finally:
        next(gen, None)


@pytest.mark.slow
def test_replay_scrubs_to_a_moment_and_returns_live(live_race: LiveRace, open_page: Any) -> None:
    """Scrubbed to 1:00 the board shows where the trails put each racer at
    that minute; Live returns to now. No piece of a trail is fetched twice."""
    page = open_page(live_race.url)
    wait_live(page)
    page.wait_for_function(
        "() => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/packs/')).length >= 1"
    )
    live = column(page, "Distance")
    # 571, 521, 336 m at 2:48, carried on to the snapshot's moment as ranks are
    assert [d[:2] for d in live[:3]] == ["≈ "] * 3
    page.locator("#replay-at").fill("60")
    assert page.inner_text("#clock") == "Replay 1:00"
    # 1:00 in: 204, 186 and 120 m (3.4, 3.1 and 2 m/s); Kim still waiting.
    assert column(page, "Distance") == ["0.13 mi", "0.12 mi", "0.07 mi", "–"]
    assert names(page) == [HOSTILE, "Sarah", "The T", "Kim"]
    assert column(page, "Gap")[0] == "leader"
    gap = column(page, "Gap")[1]
    assert gap in ("+0:06", "+0:07")  # Sarah reaches 186 m 5.5 s after Michael (rounded up)
    page.locator("#replay-at").fill("0")
    assert page.locator(".racer .dot.vehicle").count() == 0  # before the first fix: no marker
    page.select_option("#replay-speed", "60")
    page.click("#replay-play")  # a minute a second
    page.wait_for_function(
        "() => /^Replay [1-2]:/.test(document.getElementById('clock').textContent)", timeout=5000
    )
    assert page.locator(".racer .dot.vehicle").count() == 1
    page.click("#replay-play")  # pause
    shot(page, "replay-1280")
    page.click("#replay-live")
    assert page.inner_text("#clock").startswith("Race time")
    assert column(page, "Distance")[:3] == live[:3]
    pieces = [r for r in page.ranges if "/packs/" in r[0]]
    assert pieces and len(pieces) == len(set(pieces))  # each range fetched once


@pytest.mark.slow
def test_large_race_replays_the_head_and_the_followed(large_race: LiveRace, open_page: Any) -> None:
    """In a large race the replay shows the leaderboard head and the followed
    racer as they were at the scrubbed moment, from the packs, each piece
    read once."""
    page = open_page(large_race.url)
    wait_live(page)
    pieces: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: pieces.append((r.url, r.headers.get("range"))) if "/packs/" in r.url else None,
    )
    page.goto(large_race.url + "#racer=Zo%C3%AB-7")  # followed through the link
    page.wait_for_function("() => document.querySelector('#board tbody tr.following')")
    page.locator("#replay-at").fill("60")
    assert page.inner_text("#clock") == "Replay 1:00"
    # 1:00 in: bib0..bib4 at 3.6..3.4 m/s (216..204 m), Zoë-7 at 2.1 m/s (126 m).
    page.wait_for_function(
        "() => document.querySelectorAll('.leaflet-overlay-pane path:not([stroke-dasharray])')"
        ".length >= 2 + 6"
    )  # the course, its start, and a trail each, read from the packs
    page.wait_for_function(
        "() => [...document.querySelectorAll('#rows tr td:nth-child(4)')]"
        ".map(e => e.firstChild.textContent).join() === "
        "'0.22 km,0.21 km,0.21 km,0.21 km,0.20 km,0.13 km'"
    )
    assert names(page) == [f"Runner bib{i}" for i in range(5)] + ["Runner Zoë-7"]
    page.select_option("#replay-speed", "60")
    page.click("#replay-play")
    page.wait_for_function(
        "() => /^Replay [2-3]:/.test(document.getElementById('clock').textContent)", timeout=5000
    )
    page.click("#replay-live")
    assert page.inner_text("#clock").startswith("Race time")
    assert pieces and len(pieces) == len(set(pieces))  # each piece of a pack read once


@pytest.mark.slow
def test_a_racer_who_overtakes_keeps_their_colour(
    live_race: LiveRace, open_page: Any, dsn: str
) -> None:
    """Colours are by racer, not by place: The T (no configured colour)
    overtakes everyone, and their swatch and marker keep their colour, as
    everyone else's do."""
    page = open_page(live_race.url)
    wait_live(page)

    def colours() -> dict[str, str]:
        got: dict[str, str] = page.evaluate("""() => Object.fromEntries(
            [...document.querySelectorAll('#rows tr')].map(tr => [
                tr.querySelector('.name').textContent,
                tr.querySelector('.swatch').style.background]))""")
        return got

    before = colours()
    assert names(page)[0] == HOSTILE and len(set(before.values())) == 4
    marker = page.locator(".racer .dot.vehicle").evaluate("e => e.style.background")
    assert marker == before["The T"]
    # The T speeds off, 30 m/s, past Michael (at ~0.57 km) and Sarah.
    setup = live_race.setup
    t0, d0 = 168, 2.0 * 168
    insert_points(
        dsn,
        "live_points",
        COLS,
        [
            ("2001", setup.starts_at + timedelta(seconds=t0 + k), *setup.course.at(d0 + 30.0 * k))
            for k in range(2, 12, 2)
        ],
    )
    with publishing(live_race):
        page.wait_for_function(
            "() => document.querySelector('#rows tr .name').textContent === 'The T'",
            timeout=15_000,
        )
    assert colours() == before  # the same colour each, in a new order
    assert page.locator(".racer .dot.vehicle").evaluate("e => e.style.background") == marker


# -- issue 24: a page people leave open ---------------------------------------


def edit_snapshot(race: LiveRace, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The published snapshot.json, changed by `change` and published again
    (as a publisher with the race's newer fields would write it)."""
    from racepub import objects
    from racepub.shapes.encode import json_bytes

    sink = race.publisher.sink
    snap: dict[str, Any] = json.loads(sink.get(objects.SNAPSHOT) or b"{}")
    change(snap)
    sink.put(objects.make(objects.SNAPSHOT, json_bytes(snap), 1))
    return snap


def clock(seconds: float) -> str:
    """m:ss or h:mm:ss, rounded up to the next whole second (the page's rule)."""
    s = math.ceil(round(seconds, 3))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def feet_or_miles(metres: float) -> str:
    return f"{round(metres * 3.28084)} ft" if metres < 160.9344 else f"{metres / 1609.344:.2f} mi"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_story_is_the_snapshots_margins_on_the_vehicle(
    live_race: LiveRace, open_page: Any, viewport: dict[str, int]
) -> None:
    """Runners against the trolley, in words and numbers, as the snapshot's
    vs_vehicles says: on the board, in the strip at the top, and for the
    followed racer with the racers either side of them."""
    page = open_page(live_race.url, viewport)
    wait_live(page)
    snap = page.evaluate("() => fetch('snapshot.json', {cache: 'no-cache'}).then(r => r.json())")
    runners = [r for r in snap["racers"] if r["kind"] == "runner" and r["position"]]
    assert len(runners) == 2
    strip = page.inner_text("#story")
    for r in runners:
        v = r["vs_vehicles"][0]
        assert v["name"] == "The T" and v["ahead"] is True
        said = f"{clock(v['seconds'])} ahead of The T ({feet_or_miles(v['metres'])})"
        row = page.locator("#rows tr", has=page.locator(f"text={r['name']}")).first
        assert row.locator(".vs").inner_text() == said
        assert f"{r['name']}: {clock(v['seconds'])} ahead" in strip
    assert "Kim: not started" in strip
    # Following Sarah: where she is, the racers either side, her margin.
    page.locator("#rows tr", has_text="Sarah").click()
    card = page.locator("#card")
    card.wait_for()
    sarah = next(r for r in snap["racers"] if r["name"] == "Sarah")
    v = sarah["vs_vehicles"][0]
    text = card.inner_text()
    assert "#2 of 4 · racing" in text
    assert f"behind {HOSTILE} (#1) · " in text and "ahead of The T (#3)" in text
    assert f"vs The T: {clock(v['seconds'])} ahead ({feet_or_miles(v['metres'])})" in text
    # Her expected finish: a time of day and a duration, not an ambiguous "in 14:59".
    assert re.search(r"Finishes ≈ \d\d:\d\d, in \d+ min", text)
    finish = page.locator("#rows tr").nth(1).locator("td").nth(-2)
    assert re.fullmatch(r"in \d+ min\nat ≈ \d\d:\d\d", finish.inner_text())
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    shot(page, f"follow-{viewport['width']}")


def zoom(page: Any) -> float:
    """The map's zoom, from the tiles it asks for ({z}/{x}/{y})."""
    got: float = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('.leaflet-tile')]"
        ".map(t => Number(new URL(t.src).pathname.split('/')[1])))"
    )
    return got


def off_centre(page: Any) -> float:
    """How far the followed racer's marker is from the middle of the map."""
    mx, my = centre(page.locator("#map").bounding_box())
    fx, fy = centre(page.locator(".racer.focus .dot").bounding_box())
    return float(math.hypot(mx - fx, my - fy))


def snapshot_polls(page: Any) -> int:
    return len([u for u in page.requests if u.endswith("snapshot.json")])


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_following_means_seeing_them(
    live_race: LiveRace, open_page: Any, viewport: dict[str, int]
) -> None:
    """Following zooms in around the racer, draws them on top, labelled,
    the others dimmed; a drag is respected poll after poll until
    "re-centre"; a marker is a named button that Enter follows."""
    page = open_page(live_race.url, viewport)
    wait_live(page)
    before = zoom(page)
    # Michael and Sarah, 50 m apart, are one marker with a count (The T too
    # on a phone): a button that shows them (Enter zooms in until apart).
    group = page.locator(".pack")
    assert group.get_attribute("aria-label").startswith(
        f"{group.inner_text()} racers here: {HOSTILE}, Sarah"
    )
    while page.locator(".pack").count():
        page.locator(".pack").first.focus()
        page.keyboard.press("Enter")
        page.wait_for_timeout(300)
    # A marker is a button named by who it is and where: Enter follows them.
    sarah = page.locator(".racer[aria-label^='Sarah (bib 7), rank 2']")
    assert sarah.count() == 1 and sarah.get_attribute("role") == "button"
    sarah.focus()
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#racer=1002"
    focus = page.locator(".racer.focus")
    assert focus.get_attribute("aria-label", timeout=5000).startswith("Sarah (bib 7)")
    assert zoom(page) >= max(16, before + 1)  # zoomed in around her
    assert off_centre(page) < 25
    # Labelled with name and bib, on top of every other marker, the others dimmed.
    assert focus.locator(".label").inner_text() == "Sarah · 7"
    assert focus.locator(".label").is_visible()
    z = page.evaluate(
        "() => [...document.querySelectorAll('.racer')].map(e => "
        "[e.classList.contains('focus'), Number(getComputedStyle(e).zIndex)])"
    )
    top = max(k for is_focus, k in z if is_focus)
    assert all(k < top for is_focus, k in z if not is_focus)
    assert page.locator(".racer.dim").count() == 2  # Michael and The T
    with publishing(live_race):
        # The spectator drags the map: following pauses, for poll after poll.
        box = page.locator("#map").bounding_box()
        x, y = centre(box)
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 120, y - 60, steps=8)
        page.mouse.up()
        moved = off_centre(page)
        assert moved > 100
        recentre = page.locator("#recentre")
        assert recentre.is_visible() and recentre.inner_text() == "Re-centre on Sarah"
        polls = snapshot_polls(page)
        page.wait_for_function(
            "(n) => performance.getEntriesByType('resource')"
            ".filter(e => e.name.endsWith('snapshot.json')).length >= n",
            arg=polls + 3,
            timeout=15_000,
        )
        assert abs(off_centre(page) - moved) < 40  # not pulled back (she ran a few metres)
        recentre.click()
        assert off_centre(page) < 25
        assert recentre.is_hidden()
    shot(page, f"follow-drag-{viewport['width']}")


def test_several_racers_followed_pinned_shared_and_remembered(
    live_race: LiveRace, open_page: Any
) -> None:
    """ "My runners": two followed are pinned above the board, in the link to
    share (the one the map follows first) and still followed after a reload."""
    page = open_page(live_race.url, PHONE)
    wait_live(page)
    page.locator("#rows tr[data-racer='2001']").click()
    page.locator("#rows tr[data-racer='1002']").click()
    assert page.evaluate("location.hash") == "#racer=1002,2001"
    pinned = page.locator("#mine tr.following .name")
    assert pinned.all_inner_texts() == ["Sarah", "The T"]
    assert page.locator("#mine tr.caption").inner_text() == "Racers you follow"
    assert page.locator("#mine tr.focus .name").inner_text() == "Sarah"
    assert page.locator(".racer.mine .label").all_inner_texts() == ["Sarah · 7", "The T"]
    page.reload()
    wait_live(page)
    assert pinned.all_inner_texts() == ["Sarah", "The T"]
    # Across reloads without the link: remembered on this device.
    page.goto(live_race.url.split("#")[0])
    wait_live(page)
    page.wait_for_function("() => document.querySelectorAll('#mine tr.following').length === 2")
    assert page.evaluate("location.hash") == "#racer=1002,2001"
    # The link opened elsewhere follows the same two.
    other = open_page(live_race.url + "#racer=1002,2001", DESKTOP)
    wait_live(other)
    assert other.locator("#mine tr.following .name").all_inner_texts() == ["Sarah", "The T"]
    assert other.locator("#unfollow").inner_text() == "Following Sarah ✕"


SIX = "".join(
    f'\n[[races.t.racers]]\nid = "{k}"\nname = "{name}"\n'
    for k, name in enumerate(["Ann", "Bea", "Cal", "Dot", "Eve", "Fay"], start=501)
)


def demo_racers() -> str:
    """The demo race's racers (racepub demo), as its config has them."""
    import tomllib

    from racepub.commands.demo import DEMO_DIR

    conf = tomllib.loads((DEMO_DIR / "racepub.toml").read_text())
    return "".join(
        "\n[[races.t.racers]]\n" + "".join(f'{k} = "{v}"\n' for k, v in r.items())
        for r in conf["races"]["outrunthet"]["racers"]
    )


ALL_MARKERS = "(n) => document.querySelectorAll('.racer').length === n"


@pytest.mark.slow
@pytest.mark.parametrize("who", ["demo", "six"])
def test_no_two_racers_share_a_colour(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None, open_page: Any, who: str
) -> None:
    """The demo's racers (their configured colours), and six racers with
    none (an organizer's 5 km test): every swatch and marker its own
    colour, the same after a reload."""
    racers = demo_racers() if who == "demo" else SIX
    ids = re.findall(r'^id = "(\w+)"', racers, re.M)
    gen = publish_live(
        tmp_path, dsn, moto_server, racers, "", {i: 2.0 + 0.2 * k for k, i in enumerate(ids)}
    )
    race = next(gen)
    try:
        page = open_page(race.url)
        page.wait_for_function(
            "(n) => document.querySelectorAll('.racer').length === n", arg=len(ids)
        )

        def colours() -> list[str]:
            got: list[str] = page.evaluate(
                "() => [...document.querySelectorAll('#rows tr .swatch')]"
                ".map(e => e.style.borderColor)"
            )
            return got

        swatches = colours()
        markers = page.evaluate(
            "() => [...document.querySelectorAll('.racer .dot')].map(e => e.style.background)"
        )
        assert len(set(swatches)) == len(ids) == len(set(markers))
        page.reload()
        page.wait_for_function(
            "(n) => document.querySelectorAll('.racer').length === n", arg=len(ids)
        )
        assert colours() == swatches
    finally:
        next(gen, None)


CATEGORIES = ["F", "M", "F40", "M40", "Wheelchair"]


@pytest.fixture
def crowd_race(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None
) -> Iterator[LiveRace]:
    """A large race of 2,000 racers in five categories (shards of 1,400)."""
    ids = [f"c{k}" for k in range(2000)]
    (tmp_path / "entrants.csv").write_text(
        "id,name,kind,bib,category\n"
        + "".join(
            f"{i},Runner {k} of Boston University,runner,{1000 + k},{CATEGORIES[k % 5]}\n"
            for k, i in enumerate(ids)
        )
    )
    yield from publish_live(
        tmp_path,
        dsn,
        moto_server,
        "\n",
        'racers_file = "entrants.csv"',
        {racer: 3.6 - 1.2 * k / len(ids) for k, racer in enumerate(ids)},
        every=8.0,
    )


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_board_pages_through_a_2000_racer_field(
    crowd_race: LiveRace, open_page: Any, viewport: dict[str, int]
) -> None:
    """The head (1-25) from snapshot.json, then every page of ranks from the
    shards (26-50...), a category's racers ranked within it, the bib and
    category columns; the followed pinned above whatever page is shown; the
    head on the map as groups with counts, never a pile."""
    page = open_page(crowd_race.url, viewport)
    wait_live(page)
    assert page.inner_text("#pager-at") == "Ranks 1–25 of 2,000"
    assert column(page, "#") == [str(k) for k in range(1, 26)]
    assert not any("/racers/" in u for u in page.requests)  # the head needs no shard
    # The field coloured by category, as the map's key says.
    key = page.locator(".key").text_content() or ""
    assert all(c in key for c in CATEGORIES) and "a racer you follow" in key
    # The head's 25 markers, a few metres apart: groups with a count.
    counts = page.locator(".pack").all_inner_texts()
    assert (
        counts and sum(int(c) for c in counts) + page.locator(".racer:not(.grouped)").count() == 25
    )
    page.click("#pager-next")
    page.wait_for_function(
        "() => document.getElementById('pager-at').textContent.startsWith('Ranks 26')"
    )
    page.wait_for_function("() => document.querySelector('#rows tr td')?.textContent === '26'")
    assert column(page, "#") == [str(k) for k in range(26, 51)]
    assert names(page)[0] == "Runner 25 of Boston University"  # rank 26: the 26th fastest
    assert {u.rsplit("/", 1)[1] for u in page.requests if "/racers/" in u} == {"0.json", "1.json"}
    # Follow one from this page: pinned above it, and above the head.
    page.locator("#rows tr").nth(3).click()
    assert page.locator("#mine tr.following .name").inner_text() == "Runner 28 of Boston University"
    page.click("#pager-top")
    page.wait_for_function("() => document.querySelector('#rows tr td')?.textContent === '1'")
    assert page.locator("#mine tr.following td").first.inner_text() == "29"
    # A category: its racers by rank, each with their place in it.
    page.select_option("#category", "F40")
    page.wait_for_function(
        "() => document.getElementById('pager-at').textContent.endsWith('in F40')"
    )
    assert page.inner_text("#pager-at") == "Ranks 1–25 of 400 in F40"
    ranks = [int(r) for r in column(page, "#")]
    assert ranks == sorted(ranks) and ranks[:2] == [3, 8]  # every fifth racer from the third
    if viewport is DESKTOP:
        assert column(page, "Category")[:2] == ["F40", "F40"]
        assert page.locator("#rows tr td.cat .soon").all_inner_texts()[:2] == [
            "#1 in F40",
            "#2 in F40",
        ]
        assert page.locator("#rows tr .bib").all_inner_texts()[:2] == ["1002", "1007"]
    else:  # on a phone they fold under the name
        assert "bib 1002 · F40 #1" in page.locator("#rows tr .sub").first.inner_text()
    page.click("#pager-next")
    page.wait_for_function(
        "() => document.getElementById('pager-at').textContent.startsWith('Ranks 26')"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    shot(page, f"crowd-{viewport['width']}")


def test_one_rounding_rule_for_times_in_csv_and_html() -> None:
    """Road-race results round up to the next whole second: 1,250.5 s is
    20:51 in results.csv and results.html (and on the page, page.clock_text),
    whose numbers in results.json stay as they are; gaps are the
    differences of the times as written, so they add up."""
    import csv
    import io
    from datetime import timezone

    from racepub.shapes.page import clock_text, environment
    from racepub.shapes.results import Results, csv_bytes, html_bytes

    def racer(rank: int, name: str, finish: float | None, **kw: Any) -> dict[str, Any]:
        return {
            "rank": rank,
            "category_rank": None,
            "id": str(rank),
            "name": name,
            "kind": "runner",
            "color": None,
            "bib": None,
            "category": None,
            "status": "finished" if finish else "racing",
            "finish_s": finish,
            "gun_finish_s": finish,
            "distance_m": 6222.6,
            "pace_s_per_km": 201.05,
            "gap_to_winner_s": None if finish is None else round(finish - 1250.5, 1),
            "splits": [{"name": "Finish", "distance_m": 6222.6, "at_s": finish}],
        } | kw

    body = {
        "schema": 1,
        "race": {
            "id": "t",
            "title": "Five k",
            "starts_at": "2014-07-25T15:00:00Z",
            "state": "finished",
            "course_length_m": 6222.6,
            "units": "mi",
        },
        "generated_at": "2014-07-25T15:25:03Z",
        "final": True,
        "racers": [racer(1, "Ann", 1250.5), racer(2, "Bea", 1251.2), racer(3, "Cal", None)],
    }
    assert [clock_text(s) for s in (1250.5, 1250.0, 1250.0000001, 59.01)] == [
        "20:51", "20:50", "20:50", "1:00"
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(csv_bytes(Results(True, body)).decode("utf-8-sig"))))
    assert [r["finish"] for r in rows] == ["20:51", "20:52", ""]
    assert [r["finish_s"] for r in rows] == ["1250.5", "1251.2", ""]  # results.json's numbers
    assert [r["gap_to_winner"] for r in rows] == ["", "0:01", ""]
    assert rows[0]["pace_per_km"] == "3:22"  # 201.05 s, up
    html = html_bytes(Results(True, body), environment(None), timezone(timedelta(hours=-4)))
    text = html.decode()
    assert "<td>20:51</td>" in text and "<td>20:52</td>" in text and "+0:01" in text
    assert "Pace /mi" in text and "5:24" in text  # 201.05 s/km is 5:23.6 /mi
    assert "3.87 mi" in text and "6222.6" not in text  # the course in the race's units
    assert "Started Fri 25 Jul 2014, 11:00 (UTC−04:00)" in text  # the race's clock
    assert "Generated 11:25:03" in text
    assert ">Finish<" not in text  # the finish is the Time column, not a split again


@pytest.mark.slow
def test_results_fit_a_phone(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None, open_page: Any
) -> None:
    """results.html at 390 px: 17 splits and long names, yet the document is
    no wider than the screen (the table scrolls in its own box, the names
    stay in view); times on the race's own clock, in its units; a category
    filter that works without a script."""
    from datetime import timezone

    racers = "".join(
        f'\n[[races.t.racers]]\nid = "{k}"\nname = "{name}"\nbib = "{k}"\ncategory = "{cat}"\n'
        for k, name, cat in [
            (1, "Boston University Running Club Alexandra Montgomery-Smith", "F"),
            (2, "Boston University Running Club Bartholomew Fitzgerald", "M"),
            (3, "Boston University Running Club Christopher Jones", "M"),
        ]
    )
    checkpoints = "".join(
        f'\n[[races.t.checkpoints]]\nname = "Stop {k}"\ndistance_m = {100 * k}\n'
        for k in range(1, 18)
    )
    boston = timezone(timedelta(hours=-4))
    gen = publish_live(
        tmp_path,
        dsn,
        moto_server,
        racers,
        'units = "mi"' + checkpoints,
        {"1": 3.4, "2": 3.2, "3": 3.0},
        starts_at=(now_utc() - timedelta(minutes=3)).astimezone(boston),
    )
    race = next(gen)
    try:
        page = open_page(
            race.url.replace("index.html", "results.html"), {"width": 390, "height": 844}
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        scroll = page.locator(".scroll")
        assert scroll.evaluate("e => e.scrollWidth > e.clientWidth")  # the table scrolls in it
        name = page.locator("tbody th.who").first
        assert name.evaluate("e => getComputedStyle(e).position") == "sticky"
        scroll.evaluate("e => e.scrollLeft = 400")
        left = scroll.bounding_box()["x"]
        assert name.bounding_box()["x"] == pytest.approx(left + 1, abs=2)  # the names stay
        head = page.locator("thead").inner_text()
        assert "Pace /mi" in head and "Stop 17" in head and "Finish" not in head
        note = page.inner_text("p.note")
        assert "(UTC−04:00)" in note and " mi." in note and " m." not in note
        assert len(page.locator("tbody tr").all()) == 3
        page.get_by_label("M", exact=True).check()
        visible = [n for n in page.locator("tbody th.who").all() if n.is_visible()]
        assert [n.inner_text() for n in visible] == [
            "Boston University Running Club Bartholomew Fitzgerald",
            "Boston University Running Club Christopher Jones",
        ]
        shot(page, "results-390")
        desk = open_page(race.url.replace("index.html", "results.html"), DESKTOP)
        shot(desk, "results-1280")
    finally:
        next(gen, None)


@pytest.mark.slow
def test_search_shows_matches_while_typing(large_race: LiveRace, open_page: Any) -> None:
    """Matches as the spectator types (no Enter), each with rank, distance
    and status, 20 at a time and "more"; the count not in an error's red."""
    page = open_page(large_race.url, PHONE)
    wait_live(page)
    page.locator("#find-id").press_sequentially("runner bib1", delay=40)
    page.wait_for_function("() => document.querySelectorAll('#find-results button').length === 11")
    assert page.inner_text("#find-msg") == "11 racers match."
    first = page.locator("#find-results button").first
    page.wait_for_function(
        "() => /^#\\d+ · [0-9.]+ km · racing$/.test("
        "document.querySelector('#find-results .what').textContent)"
    )
    assert first.locator(".who").inner_text() == "Runner bib1 (101)"
    assert first.locator(".what").inner_text().startswith("#2 · ")
    colour = page.locator("#find-msg").evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(51, 51, 51)"
    names_fetched = [u for u in page.requests if "/names/" in u]
    assert len(names_fetched) == 1  # one object for the prefix, however many letters typed
    page.fill("#find-id", "runner")
    page.wait_for_function(
        "() => document.getElementById('find-msg').textContent === '31 racers match.'"
    )
    assert page.locator("#find-results button").count() == 20
    page.click("#find-more")
    assert page.locator("#find-results button").count() == 31
    assert page.locator("#find-more").is_hidden()
    page.locator("#find-results button", has_text="Runner bib3 (103)").click()
    page.wait_for_function("() => document.querySelector('#board tbody tr.focus .name')")
    assert page.locator("#mine tr.focus .name").inner_text() == "Runner bib3"
    shot(page, "search-phone")


@pytest.mark.slow
def test_replay_reads_like_a_clock(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None, open_page: Any
) -> None:
    """The scrubber says race time (over its handle, at its ends, to a
    screen reader); playing at 60x into now says so and is live again; at
    1280 x 900 with an elevation profile nothing is clipped and the map
    shows the whole course."""
    from tests.helpers import STOPS

    gen = publish_live(
        tmp_path,
        dsn,
        moto_server,
        "",
        'chunk_points = 20\n[[races.t.checkpoints]]\nname = "Hill top"\ndistance_m = 900\n',
        {"1001": 3.4, "1002": 3.1},
        elevations=[12.0, 30.0, 55.0, 41.0, 20.0, 25.0][: len(STOPS)],
    )
    race = next(gen)
    try:
        page = open_page(race.url, {"width": 1280, "height": 900})
        wait_live(page)
        # Nothing clipped: the page is the window's height, the caption in view.
        assert page.evaluate("document.documentElement.scrollHeight") <= 900
        assert page.locator("#profile-cap").bounding_box()["y"] + 10 < 900
        # The whole course in the map, the profile below it.
        inside = page.evaluate("""() => {
            const m = document.getElementById('map').getBoundingClientRect();
            return [...document.querySelectorAll('path[fill="#00572a"], path[fill="#111"]')]
                .map(e => e.getBoundingClientRect())
                .every(r => r.top >= m.top && r.bottom <= m.bottom && r.left >= m.left
                            && r.right <= m.right);
        }""")
        assert inside
        scrub = page.locator("#replay-at")
        assert page.inner_text("#replay-time") == "Live"
        end = page.inner_text("#replay-end")
        assert re.fullmatch(r"[23]:\d\d", end)
        scrub.fill("60")
        assert page.inner_text("#replay-time") == "1:00"
        assert scrub.get_attribute("aria-valuetext") == "race time 1 minute 0 seconds"
        assert page.inner_text("#clock") == "Replay 1:00"
        scrub.fill("150")
        page.select_option("#replay-speed", "60")
        page.click("#replay-play")  # 2:30 at a minute a second: into now within a couple
        msg = page.locator("#replay-msg")
        msg.wait_for(state="visible", timeout=10_000)
        assert msg.inner_text() == "Caught up with live."
        assert page.inner_text("#clock").startswith("Race time")
        assert page.inner_text("#replay-time") == "Live"
        assert scrub.get_attribute("aria-valuetext").startswith("live, race time")
        shot(page, "replay-caught-up-1280")
        phone = open_page(race.url, PHONE)
        wait_live(phone)
        phone.locator("#replay-at").fill("90")
        assert phone.inner_text("#replay-time") == "1:30"
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(phone, "replay-390")
    finally:
        next(gen, None)


@pytest.mark.slow
def test_large_replay_shows_its_own_moment(large_race: LiveRace, open_page: Any) -> None:
    """Replaying a large race: no live density or live counts on screen, the
    counts of the moment replayed."""
    page = open_page(large_race.url)
    wait_live(page)
    page.wait_for_function(
        "() => [...document.querySelectorAll('path')]"
        ".some(p => p.getAttribute('stroke')?.startsWith('hsl'))"
    )
    page.locator("#replay-at").fill("60")
    page.wait_for_function(
        "() => ![...document.querySelectorAll('path')]"
        ".some(p => p.getAttribute('stroke')?.startsWith('hsl'))"
    )
    assert page.inner_text("#field-count").startswith("At 1:00: ")
    assert "31 racing" not in page.inner_text("#field-count")
    page.click("#replay-live")
    assert page.inner_text("#field-count").startswith("31 racers: 31 racing")


def crafted(snap: dict[str, Any]) -> None:
    """The live race as a publisher with laps, own starts and timing mats
    writes it (the names /work/shared/DESIGN.md fixes): two laps; Michael
    and Sarah finished (Sarah started later: faster net, slower gun);
    The T a lap down, its position estimated between mats; Kim stale."""
    length = snap["race"]["course_length_m"]
    snap["race"] |= {"laps": 2, "lap_m": round(length / 2, 1)}
    by = {r["name"]: r for r in snap["racers"]}
    michael, sarah, t, kim = by[HOSTILE], by["Sarah"], by["The T"], by["Kim"]
    for r, net, gun in ((michael, 1255.0, 1256.0), (sarah, 1250.5, 1262.0)):
        r |= {"status": "finished", "finish_s": net, "gun_finish_s": gun, "lap": 2}
        r |= {"distance_m": length, "eta_s": 0, "gap_s": None}
    michael["rank"], sarah["rank"] = 1, 2
    sarah["gap_s"] = 6.0
    t |= {"rank": 3, "lap": 1, "distance_m": 300.0, "estimated": True, "speed_kmh": 0.0}
    kim |= {"rank": 4, "lap": 1, "status": "stale", "distance_m": 200.0, "gap_s": 600.0}
    kim |= {"position": dict(t["position"]), "speed_kmh": 0.0, "pace_s_per_km": None}
    snap["racers"] = [michael, sarah, t, kim]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_laps_net_times_estimates_and_staleness_in_words(
    live_race: LiveRace, open_page: Any, viewport: dict[str, int]
) -> None:
    """Fields other issues add, shown as words: finish times (rounded up,
    1,250.5 s is 20:51) and not "3 min ago", gun and net order, "-1 lap",
    an estimated position drawn hollow and said, "stale" in words."""
    edit_snapshot(live_race, crafted)
    page = open_page(live_race.url, viewport)
    page.wait_for_function("() => document.querySelector('#rows tr.finished')")
    wait_live(page)
    assert names(page) == [HOSTILE, "Sarah", "The T", "Kim"]  # gun order, the publisher's
    # In gun order the gun time first, the net time beside; in net order the reverse.
    assert column(page, "Finish")[:2] == ["20:56", "21:02"]
    assert page.locator("#rows tr").nth(1).locator(".soon").all_inner_texts() == [
        "finished", "net 20:51"
    ]  # fmt: skip
    words = page.locator("#rows tr .words").all_inner_texts()
    assert words == ["position estimated · lap 1 of 2 · −1 lap", "stale · lap 1 of 2 · −1 lap"]
    if viewport is DESKTOP:
        assert column(page, "Last fix")[:2] == ["finished", "finished"]  # not "3 min ago"
    # Net times: the order the results use, a click away.
    assert column(page, "Gap")[:2] == ["leader", "+0:06"]  # 21:02 - 20:56, gun
    page.click("#order button[data-order='net']")
    assert names(page)[:2] == ["Sarah", HOSTILE]
    assert column(page, "#")[:2] == ["1", "2"]
    assert column(page, "Gap")[:2] == ["leader", "+0:04"]  # 20:55 - 20:51, net
    assert column(page, "Finish")[:2] == ["20:51", "20:55"]
    assert page.locator("#rows tr").nth(0).locator(".soon").all_inner_texts() == [
        "finished", "gun 21:02"
    ]  # fmt: skip
    page.click("#order button[data-order='gun']")
    assert names(page)[:2] == [HOSTILE, "Sarah"]
    # The estimated position: hollow, and said so.
    dot = page.locator(".racer .dot.vehicle")
    assert "estimated" in (dot.get_attribute("class") or "")
    assert dot.evaluate("e => e.style.background") == "rgb(255, 255, 255)"
    t = page.locator(".racer", has=page.locator(".dot.vehicle"))
    assert "position estimated" in (t.get_attribute("aria-label") or "")
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    if viewport is DESKTOP:  # every column in view: nothing cut at the board's edge
        wrap = page.locator(".board-wrap").first
        assert wrap.evaluate("e => e.scrollWidth <= e.clientWidth")
    shot(page, f"finished-{viewport['width']}")


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5dd1d9c0000000049454e44ae426082"
)


@pytest.mark.slow
def test_a_silence_is_dashed_and_the_map_credits_what_it_drew(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None, open_page: Any
) -> None:
    """Michael's phone is silent from 1:40 to 2:45, round the course's first
    bend: his trail goes on dashed along the course across it, never a
    straight shortcut. The tiles' credit shows once tiles are drawn, never
    for a map that did not load, and as text: markup in it (an organizer's
    paste, a basemap's metadata) is never made into elements."""
    import psycopg

    def silence(setup: RaceSetup) -> None:
        start = setup.starts_at
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "DELETE FROM live_points WHERE user_id = '1001' AND recorded_at > %s "
                "AND recorded_at < %s",
                (start + timedelta(seconds=100), start + timedelta(seconds=165)),
            )

    gen = publish_live(
        tmp_path,
        dsn,
        moto_server,
        '\n[[races.t.racers]]\nid = "1001"\nname = "Michael"\ncolor = "#e6194b"\n',
        "tile_attribution = \"<img src=x onerror=alert(1)>© <a href='javascript:alert(2)'>"
        'OpenStreetMap</a> <b>contributors</b>"\n',
        {"1001": 6.0},  # at 6 m/s: 600 to 990 m, the bend at 770 m
        before=silence,
        tiles=f"{moto_server}/tiles/{{z}}/{{x}}/{{y}}.png",
    )
    race = next(gen)
    try:
        page = open_page(race.url)
        page.wait_for_function(
            "() => document.querySelector('path[stroke=\"#e6194b\"][stroke-dasharray]')"
            "?.getTotalLength() > 20"
        )
        solid = page.locator('path[stroke="#e6194b"]:not([stroke-dasharray])')
        assert (solid.get_attribute("d") or "").count("M") == 2  # before and after, apart
        quiet = page.locator('path[stroke="#e6194b"][stroke-dasharray]')
        assert (quiet.get_attribute("d") or "").count("L") >= 2  # along the course's bends
        credit = page.locator(".leaflet-control-attribution")
        assert "OpenStreetMap" not in credit.inner_text()  # no tile was drawn
        drawn = open_page(race.url, init_script=None)
        drawn.route("**/tiles/**", lambda route: route.fulfill(body=PNG, content_type="image/png"))
        drawn.reload()
        drawn.wait_for_function(
            "() => document.querySelector('.leaflet-control-attribution')"
            "?.textContent.includes('OpenStreetMap')"
        )
        credit = drawn.locator(".leaflet-control-attribution")
        assert "© OpenStreetMap contributors" in credit.inner_text()
        assert credit.locator("img, b, a[href^='javascript']").count() == 0
        shot(page, "silence")
    finally:
        next(gen, None)
