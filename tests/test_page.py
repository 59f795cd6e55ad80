"""The spectator page in a real browser (Debian's Chromium), loaded over HTTP
from moto's S3 server, exactly as spectators load it from the CDN."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
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
PHONE = {"width": 360, "height": 740}
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
        starts_at=now_utc() - timedelta(minutes=3),
        extra='tiles = "http://127.0.0.1:9/{z}/{x}/{y}.png"\n' + extra,
        elevations=elevations,
        s3_endpoint=moto_server,
    )
    rows = [
        row for racer, speed in speeds.items() for row in fixes(setup, racer, speed, 168, since_s=2)
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
    return page.locator("#board tbody tr .name").all_inner_texts()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def wait_live(page: Any) -> None:
    """Until the script has drawn the snapshot: paces filled in, markers on the map."""
    # Predicates as functions: the page's CSP forbids eval, which string
    # expressions would need.
    page.wait_for_function(
        "() => document.querySelector('#board tbody tr td:nth-child(5)')?.textContent === 'leader'"
    )
    page.wait_for_function(
        "() => document.querySelectorAll('path.leaflet-interactive').length >= 5"
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_page_shows_the_race(live_race: LiveRace, open_page: Any, viewport: dict[str, int]) -> None:
    page = open_page(live_race.url, viewport)
    wait_live(page)
    assert names(page) == [HOSTILE, "Sarah", "The T", "Kim"]  # literal text, by progress
    assert page.locator("#board tbody tr .bib").all_inner_texts() == ["7"]  # Sarah wears 7
    assert page.locator("img[src='x']").count() == 0
    rows = page.locator("#board tbody tr")
    assert "waiting" in rows.nth(3).inner_text()
    assert rows.nth(1).locator("td").nth(3).inner_text().startswith("+")  # gap to the leader
    # Course + start + finish + three trails + two runners' dots; the vehicle is a square.
    assert page.locator("path.leaflet-interactive").count() >= 7
    assert page.locator(".vehicle-marker").count() == 1
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
    shot(page, "page-noscript")


@pytest.mark.slow
def test_stale_banner_comes_and_goes(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url)
    wait_live(page)
    banner = page.locator("#stale")
    assert banner.is_hidden()
    # The publisher stops: after about three intervals spectators are told.
    banner.wait_for(state="visible", timeout=15_000)
    assert "Updates paused" in banner.inner_text()
    shot(page, "page-stale")
    live_race.publisher.cycle()  # publishing resumes
    banner.wait_for(state="hidden", timeout=10_000)


def test_units_toggle_is_remembered(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url)
    wait_live(page)
    distance = page.locator("#board tbody tr td:nth-child(3)").first
    assert distance.inner_text().endswith(" mi")  # the race's default
    page.click("#units")
    assert distance.inner_text().endswith(" km")
    assert page.locator("#board tbody tr td:nth-child(4)").first.inner_text().endswith("/km")
    page.reload()
    wait_live(page)
    assert page.locator("#board tbody tr td:nth-child(3)").first.inner_text().endswith(" km")


def centre(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_racer_link_follows_them(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url + "#racer=2001")
    wait_live(page)
    row = page.locator("#board tbody tr.following")
    assert row.locator(".name").inner_text() == "The T"
    assert page.locator("#unfollow").inner_text() == "Following The T ✕"
    # The map keeps the followed racer in the middle.
    mx, my = centre(page.locator("#map").bounding_box())
    vx, vy = centre(page.locator(".vehicle-marker").bounding_box())
    assert abs(mx - vx) < 25 and abs(my - vy) < 25
    # Clicking another row follows them, and the address is the link to share.
    page.locator("#board tbody tr", has_text="Sarah").click()
    assert page.evaluate("location.hash") == "#racer=1002"
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
    page.locator("#unfollow").click()
    assert page.locator("#board tbody tr.following").count() == 0
    assert page.locator("#splits").is_hidden()
    assert page.evaluate("location.hash") == ""


def test_keyboard_can_follow_a_racer(live_race: LiveRace, open_page: Any) -> None:
    page = open_page(live_race.url)
    wait_live(page)
    page.locator("#board tbody tr").nth(1).focus()
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#racer=1002"


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
    """Where a racer's trail (stroke `color`, weight 3) starts and ends on
    the map, and where their dot is: SVG user coordinates."""
    return page.evaluate(
        """(color) => {
        const trail = document.querySelector(`path[stroke="${color}"][stroke-width="3"]`);
        if (!trail) return null;
        const a = trail.getPointAtLength(0), b = trail.getPointAtLength(trail.getTotalLength());
        // Their dot: of the dots of their colour (ids may share one), the nearest.
        const dots = [...document.querySelectorAll(`path[fill="${color}"][stroke-width="2"]`)]
            .map(d => { const x = d.getBBox(); return [x.x + x.width / 2, x.y + x.height / 2]; });
        const dot = dots.sort((p, q) => Math.hypot(p[0] - b.x, p[1] - b.y)
                                        - Math.hypot(q[0] - b.x, q[1] - b.y))[0];
        return {first: [a.x, a.y], last: [b.x, b.y], dot,
                start: (() => { const s = document.querySelector('path[fill="#00572a"]').getBBox();
                                return [s.x + s.width / 2, s.y + s.height / 2]; })()};
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
    assert "The leaders of 31 racers (31 racing, 0 finished)" in page.inner_text("#field")
    assert not any("/racers/" in u for u in page.requests)  # no shard until someone follows
    # The field overview: the course shaded where the 31 are.
    page.wait_for_function(
        "() => [...document.querySelectorAll('path')]"
        ".filter(p => p.getAttribute('stroke')?.startsWith('hsl')).length > 0"
    )

    # Several match "runner bib1": the page lists them to choose from.
    page.fill("#find-id", "runner bib1")
    page.click("#find button")
    page.wait_for_function(
        "() => document.querySelectorAll('#find-results button').length === 11"
    )  # bib1, bib10..bib19
    assert "11 racers match" in page.inner_text("#find-msg")
    # One matches "ZOE" (accents and case do not matter): followed at once.
    page.fill("#find-id", "ZOE")
    page.click("#find button")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#board tbody tr .name')]"
        ".some(e => e.textContent === 'Runner Zoë-7')"
    )
    names_fetched = [u for u in page.requests if "/names/" in u]
    assert len(names_fetched) == 2 and names_fetched[-1].endswith("/zo.json")
    row = page.locator("#board tbody tr.following")
    assert row.locator("td").first.inner_text() == "31"  # the last of 31, below the head
    assert page.locator("#board tbody tr.more").count() == 1
    assert "Following Runner Zoë-7" in page.inner_text("#unfollow")
    assert "#racer=Zo%C3%AB-7" in page.url
    assert len({u for u in page.requests if "/racers/" in u}) == 1  # one shard, polled
    # Their trail, from the start to their dot, read from the packs by range.
    palette = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#2e282a", "#8e6c8a", "#3a86ff"]
    color = palette[shard_of("Zoë-7", 2**32) % len(palette)]  # by id, as the page colours
    page.wait_for_function(
        """(c) => {
        const t = document.querySelector(`path[stroke="${c}"][stroke-width="3"]`);
        return t && t.getTotalLength() > 30; }""",
        arg=color,
    )
    ends = trail_ends(page, color)
    assert near(ends["first"], ends["start"], 6) and near(ends["last"], ends["dot"])
    assert any("/packs/" in u for u in page.requests)
    shot(page, "large-race-follow-phone")

    # The race goes on: Zoë-7's new fixes reach their row, dot and trail each cycle.
    setup = large_race.setup
    before = row.locator("td").nth(1).inner_text()
    polls = len([u for u in page.requests if "/racers/" in u])
    with publishing(large_race):
        t0 = time.time()
        for k in range(6):
            t = setup.starts_at + timedelta(seconds=170 + 2 * k)
            lat, lon = setup.course.at(2.1 * (170 + 2 * k) + 150)  # a burst of speed
            insert_points(dsn, "live_points", COLS, [("Zoë-7", t, lat, lon)])
            page.wait_for_timeout(1000)
        page.wait_for_function(
            "(b) => document.querySelector('#board tbody tr.following "
            "td:nth-child(3)').textContent !== b",
            arg=before,
        )
        assert time.time() - t0 < 15
    assert len([u for u in page.requests if "/racers/" in u]) >= polls + 4  # every poll
    ends = trail_ends(page, color)
    assert near(ends["last"], ends["dot"])  # the trail reaches the new position

    # A bib finds its racer, whose row shows it, as the head's rows do theirs.
    page.fill("#find-id", "117")
    page.click("#find button")
    page.wait_for_function(
        "() => document.querySelector('#board tbody tr.following .name')?.textContent"
        " === 'Runner bib17'"
    )
    assert page.locator("#board tbody tr.following .bib").inner_text() == "117"
    assert page.locator("#board tbody tr .bib").all_inner_texts()[:5] == [
        "100", "101", "102", "103", "104"
    ]  # fmt: skip

    # A link to a racer who is not in the race says so.
    page.goto(large_race.url + "#racer=nobody")
    page.wait_for_function(
        "() => document.getElementById('find-msg').textContent === 'No racer nobody in this race.'"
    )
    page.fill("#find-id", "nobody")
    page.click("#find button")
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
        assert page.locator("#profile-svg line").count() == 3  # start, the hill top, finish
        cx = float(page.locator("#profile-svg circle").get_attribute("cx") or -1)
        # Michael, 3.4 m/s for 168 s: 571 m of the course's ~2,266 m.
        assert cx == pytest.approx(300 * 571 / race.setup.course.length_m, abs=3)
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
    distance = page.locator("#board tbody tr td:nth-child(3)")
    live = distance.all_inner_texts()
    assert live[:3] == ["0.35 mi", "0.32 mi", "0.21 mi"]  # 571, 521, 336 m at 2:48
    page.locator("#replay-at").fill("60")
    assert page.inner_text("#clock") == "Replay 1:00"
    # 1:00 in: 204, 186 and 120 m (3.4, 3.1 and 2 m/s); Kim still waiting.
    assert distance.all_inner_texts() == ["0.13 mi", "0.12 mi", "0.07 mi", "–"]
    assert names(page) == [HOSTILE, "Sarah", "The T", "Kim"]
    assert page.locator("#board tbody tr td:nth-child(5)").first.inner_text() == "leader"
    gap = page.locator("#board tbody tr td:nth-child(5)").nth(1).inner_text()
    assert gap in ("+0:05", "+0:06")  # Sarah reaches 186 m 5.5 s after Michael
    page.locator("#replay-at").fill("0")
    assert page.locator(".vehicle-marker").count() == 0  # before the first fix: no marker
    page.select_option("#replay-speed", "60")
    page.click("#replay-play")  # a minute a second
    page.wait_for_function(
        "() => /^Replay [1-2]:/.test(document.getElementById('clock').textContent)", timeout=5000
    )
    assert page.locator(".vehicle-marker").count() == 1
    page.click("#replay-play")  # pause
    shot(page, "replay")
    page.click("#replay-live")
    assert page.inner_text("#clock").startswith("Race time")
    assert distance.all_inner_texts()[:3] == live[:3]
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
        "() => document.querySelectorAll('path[stroke-width=\"3\"]').length >= 6"
    )  # a trail each, read from the packs
    page.wait_for_function(
        "() => [...document.querySelectorAll('#board tbody tr td:nth-child(3)')]"
        ".map(e => e.textContent).join() === "
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
            [...document.querySelectorAll('#board tbody tr')].map(tr => [
                tr.querySelector('.name').textContent,
                tr.querySelector('.swatch').style.background]))""")
        return got

    before = colours()
    assert names(page)[0] == HOSTILE and len(set(before.values())) == 4
    marker = page.locator(".vehicle-marker").evaluate("e => e.style.background")
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
            "() => document.querySelector('#board tbody tr .name').textContent === 'The T'",
            timeout=15_000,
        )
    assert colours() == before  # the same colour each, in a new order
    assert page.locator(".vehicle-marker").evaluate("e => e.style.background") == marker


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
