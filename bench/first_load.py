"""What a spectator's first load costs, in a real browser: requests and
bytes for the page, its static files, the snapshot and every racer's whole
trail (a small race), or one followed racer's whole trail (a large race).

A race is published live, cycle by cycle on a clock of its own (its fixes
inserted as they would arrive), by this checkout's code or by an older
commit's from a git worktree (the same script runs both), to a directory
served as the CDN would serve it. Then Chromium opens the page.

    python -m bench.first_load 5 6000        # racers, race age s
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.marathon import ROOT, course_gpx

# Publishes a race live: fixes of (t, t + cycle_s] inserted, then a cycle at
# t + cycle_s, to the race's age. Runs in this checkout or an older one's
# worktree: it finds the Publisher where each keeps it.
PUBLISH = """
import sys
from datetime import datetime
import psycopg
try:
    from racepub.publisher.cycle import Publisher
except ImportError:
    from racepub.publish import Publisher
from racepub import config

path, dsn, n, age_s, every_s, cycle_s = sys.argv[1:7]
n, age_s, every_s, cycle_s = int(n), float(age_s), float(every_s), float(cycle_s)
cfg = config.load(path)
race = cfg.race("b")
start = race.starts_at.timestamp()
clock = {"now": start}
pub = Publisher(cfg, race, clock=lambda: clock["now"])
INSERT = (
    "INSERT INTO live_points (user_id, recorded_at, lat, lon) "
    "SELECT r::text, %(start)s + make_interval(secs => s), "
    "%(lat0)s + s * (2.6 + (r %% 7) * 0.05) / 111195.0, "
    "%(lon0)s + 0.0005 * sin(s * (2.6 + (r %% 7) * 0.05) / 700) "
    "FROM generate_series(0, %(n)s - 1) r, "
    "LATERAL (SELECT k * %(every)s + (r %% 5) AS s "
    "FROM generate_series((%(t0)s / %(every)s)::int - 1, (%(t1)s / %(every)s)::int + 1) k) f "
    "WHERE s > %(t0)s AND s <= %(t1)s"
)
t = 0.0
with psycopg.connect(dsn, autocommit=True) as conn:
    while t < age_s:
        t1 = min(t + cycle_s, age_s)
        conn.execute(INSERT, {"start": race.starts_at, "lat0": 42.30, "lon0": -71.10,
                              "n": n, "every": every_s, "t0": t, "t1": t1})
        clock["now"] = start + t1 + 0.5
        pub.cycle()
        t = t1
store = getattr(getattr(pub, "shape", None), "store", None)
for _ in range(4):  # merges under way land in the next cycles
    if store is not None:
        store.settle()
    clock["now"] += 0.001
    pub.cycle()
pub.close()
"""


def race_config(
    work: Path,
    n: int,
    dsn: str,
    start: datetime,
    shard_above: int,
    tiles: str = "https://tiles.invalid/{z}/{x}/{y}.png",
) -> Path:
    """The bench marathon (a vertex every 10 m) with n runners, a directory sink."""
    course_gpx(work / "course.gpx")
    (work / "entrants.csv").write_text(
        "id,name,kind\n" + "".join(f"{i},Runner {i},runner\n" for i in range(n))
    )
    path = work / "racepub.toml"
    path.write_text(f"""
[database]
dsn = "{dsn}"
[source]
table = "live_points"
racer = "user_id"
time = "recorded_at"
lat = "lat"
lon = "lon"
ingest = "id"
[races.b]
title = "First load"
starts_at = "{start.isoformat()}"
course = "course.gpx"
interval_s = 2
sink = "dir:public"
racers_file = "entrants.csv"
shard_above = {shard_above}
tiles = "{tiles}"
""")
    return path


def publish(
    dsn: str,
    work: Path,
    n: int,
    age_s: float,
    every_s: float,
    cycle_s: float,
    tree: Path | None = None,
    shard_above: int = 500,
    tiles: str | None = None,
) -> Path:
    """The race published live to work/public by this checkout (tree None)
    or by the code in `tree`; its fixes in a fresh table."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS live_points")
        conn.execute(
            "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
            "recorded_at timestamptz, lat float8, lon float8)"
        )
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=age_s + 60)
    path = race_config(work, n, dsn, start, shard_above, *([tiles] if tiles else []))
    args = [str(path), dsn, str(n), str(age_s), str(every_s), str(cycle_s)]
    done = subprocess.run(
        [sys.executable, "-c", PUBLISH, *args],
        capture_output=True,
        text=True,
        cwd=tree or ROOT,
        env={**os.environ, "PYTHONPATH": str(tree or ROOT)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"publishing failed:\n{done.stderr[-3000:]}")
    return work / "public"


@contextlib.contextmanager
def served(root: Path) -> Iterator[str]:
    """The directory as the CDN serves it (racepub serve): its base URL."""
    from racepub.commands.serve import make_server

    server = make_server(root, interval_s=2, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def first_load(browser: Any, base: str, follow: str | None = None) -> dict[str, Any]:
    """Open the page (following `follow`, in a large race) until the network
    is quiet: requests and bytes from the race's origin, and those of the
    trails (packs, trail groups, old chunks), and each racer's trail as the
    page has it (its GPX download: every point with its time)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = ctx.new_page()
    seen: list[tuple[str, int]] = []

    def finished(req: Any) -> None:
        if req.url.startswith(base):
            seen.append((req.url, int(req.sizes()["responseBodySize"])))

    page.on("requestfinished", finished)
    page.goto(base + (f"#racer={follow}" if follow else ""))
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)  # what the first poll asked for, drawn
    page.wait_for_load_state("networkidle")
    trail_urls = [u for u, _ in seen if any(k in u for k in ("/packs/", "/trails/", "/tracks/"))]
    out: dict[str, Any] = {
        "requests": len(seen),
        "bytes": sum(size for _, size in seen),
        "trail_requests": len(trail_urls),
        "trails": {},
    }
    ids = (
        [follow]
        if follow
        else page.eval_on_selector_all("#board tbody tr", "rows => rows.map(r => r.dataset.racer)")
    )
    for rid in ids:
        if rid != follow:
            page.click(f'#board tbody tr[data-racer="{rid}"]')
        with page.expect_download() as got:
            page.click("#gpx")
        text = Path(got.value.path()).read_text()
        times = [
            datetime.fromisoformat(chunk.split("</time>")[0]).timestamp()
            for chunk in text.split("<time>")[1:]
        ]
        out["trails"][rid] = times
        if rid != follow:
            page.click(f'#board tbody tr[data-racer="{rid}"]')  # unfollow
    ctx.close()
    return out


# (racers, race age s, a fix every s, a cycle every s, following): the small
# race of the goal at three ages, and one racer of a large race 4 hours in
# (the racers followed draw the same pieces whatever the field's size: the
# bench's 50,000-racer cell counts them from its trail groups).
CELLS = [
    (5, 600, 2.0, 30.0, None),
    (5, 6000, 2.0, 30.0, None),
    (5, 14400, 2.0, 30.0, None),
    (1000, 14400, 20.0, 60.0, "7"),
]


def measure_all() -> list[dict[str, Any]]:
    """Every cell, by this checkout and by the previous form, in one run."""
    from playwright.sync_api import sync_playwright

    from bench.marathon import PREVIOUS_COMMIT, old_tree
    from racepub.commands.localdb import LocalPostgres

    work = Path(tempfile.mkdtemp(prefix="racepub-firstload-"))
    work.chmod(0o711)
    db = LocalPostgres(work / "pg")
    dsn = db.start()
    out = []
    try:
        with sync_playwright() as p, old_tree(PREVIOUS_COMMIT) as tree:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu"],
            )
            for n, age_s, every_s, cycle_s, follow in CELLS:
                row: dict[str, Any] = {"racers": n, "age_s": age_s, "follow": follow}
                for form, code in (("new", None), ("previous", tree)):
                    if form == "previous" and code is None:
                        continue
                    home = work / f"{form}-{n}-{age_s}"
                    home.mkdir()
                    root = publish(dsn, home, n, age_s, every_s, cycle_s, code)
                    with served(root) as base:
                        got = first_load(browser, base, follow)
                    fixes = max(len(v) for v in got.pop("trails").values())
                    row[form] = got | {"points": fixes}
                out.append(row)
            browser.close()
    finally:
        db.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return out


def markdown(cells: list[dict[str, Any]]) -> list[str]:
    out = [
        "## A spectator's first load",
        "",
        "bench/first_load.py: a race published live, cycle by cycle, by this code and by "
        "the previous form (the same script, its own code from a git worktree), served as "
        "the CDN serves it; Chromium opens the page (the map's tiles left out) until the "
        "network is quiet. A small race: the page, its static files, the snapshot and "
        "every racer's whole trail; a large race: one followed racer's whole trail. "
        "Points: the longest trail as the page has it (its GPX).",
        "",
        "| race | age | requests | ×previous | KB | trail requests | previous: requests "
        "| previous: KB | previous: trail requests |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        new, was = c["new"], c.get("previous")
        race = f"{c['racers']:,} racers" + (", following one" if c["follow"] else "")
        age = f"{c['age_s'] // 60} min" if c["age_s"] < 3600 else f"{c['age_s'] / 3600:g} h"
        prev = (
            f"{was['requests'] / new['requests']:.1f}x | {new['bytes'] / 1000:,.0f} | "
            f"{new['trail_requests']} | {was['requests']} | {was['bytes'] / 1000:,.0f} | "
            f"{was['trail_requests']}"
            if was
            else f"– | {new['bytes'] / 1000:,.0f} | {new['trail_requests']} | – | – | –"
        )
        out.append(f"| {race} | {age} | {new['requests']} | {prev} |")
    goals = []
    for c in cells:
        new = c["new"]
        if c["follow"] is None and c["age_s"] >= 6000:
            ok = new["requests"] <= 30
            goals.append(
                f"- {c['racers']} racers {c['age_s'] // 60} min in, the whole first load "
                f"<= 30 requests: {new['requests']}, {'met' if ok else '**not met**'}"
            )
        elif c["follow"] is not None:
            ok = new["trail_requests"] <= 10
            goals.append(
                f"- following one racer 4 h in, <= 10 requests to draw their trail: "
                f"{new['trail_requests']}, {'met' if ok else '**not met**'}"
            )
    return out + ["", *goals, ""]


def main(n: int, age_s: float) -> None:
    from playwright.sync_api import sync_playwright

    from racepub.commands.localdb import LocalPostgres

    work = Path(tempfile.mkdtemp(prefix="racepub-firstload-"))
    work.chmod(0o711)
    db = LocalPostgres(work / "pg")
    dsn = db.start()
    try:
        root = publish(dsn, work, n, age_s, 2.0, 30.0)
        with sync_playwright() as p, served(root) as base:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu"],
            )
            got = first_load(browser, base)
            browser.close()
        print({k: v for k, v in got.items() if k != "trails"})
        for rid, times in got["trails"].items():
            print(rid, len(times), len(set(times)), times == sorted(times))
    finally:
        db.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--all"]:
        print(json.dumps(measure_all()))
    else:
        main(int(sys.argv[1]), float(sys.argv[2]))
