"""What real race-day input costs, measured (issue: real phones, hostile rows):

- read: a cycle's read at 10,000 racers with the time cursor (lookback_s) and
  with an ingest column, on the same table;
- flood: the demo's race (5 racers, interval 3 s) with one racer sending
  10,000 rows a cycle (standing still, off course, at the finish line),
  beside the same race without them;
- freshness: how long a fix takes to show on a spectator's page (headless
  Chromium) through a caching proxy (nginx honouring Cache-Control, as a
  CDN does), with the page's polling before this work and now.

    python -m bench.inputs            # prints a JSON result; bench.run tabulates it
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg

from bench.marathon import FIX_EVERY_S, INTERVAL_S, ROOT, generate, write_race
from bench.spectators import NGINX, NGINX_CONF, tools_missing
from racepub.commands.demo import demo_config
from racepub.commands.localdb import LocalPostgres, free_port
from racepub.commands.simulate import create_table, fixes, insert
from racepub.config import Source
from racepub.model.course import Course
from racepub.publisher.cycle import Publisher
from racepub.source import PointSource

READ_RACERS = 10_000
CYCLES = 8
# The page's polling as it was before this work (racepub at a0bdc46).
OLD_APP_COMMIT = "a0bdc46"
FRESH_S = int(os.environ.get("BENCH_FRESH_S", "40"))


def _median_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[max(0, int(0.95 * len(ordered) + 0.5) - 1)]


def read_cost() -> dict[str, Any]:
    """The same 10,000-racer table read by both cursors, cycle after cycle."""
    db = LocalPostgres()
    dsn = db.start()
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=600)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
                "recorded_at timestamptz, lat float8, lon float8)"
            )
            generate(conn, READ_RACERS, start, 0, 600, FIX_EVERY_S)
            conn.execute("CREATE INDEX ON live_points (recorded_at)")
            conn.execute("ANALYZE live_points")
        ids = [str(i) for i in range(READ_RACERS)]
        base = Source(
            table="live_points", racer="user_id", time="recorded_at", lat="lat", lon="lon"
        )
        sources = {
            "time cursor (lookback_s = 30)": PointSource(dsn, base, ids, start.timestamp()),
            'ingest = "id"': PointSource(
                dsn, dataclasses.replace(base, ingest="id"), ids, start.timestamp()
            ),
        }
        for source in sources.values():  # the catch-up read of a start
            for _ in source.read(time.time()):
                pass
        ms: dict[str, list[float]] = {k: [] for k in sources}
        rows: dict[str, list[int]] = {k: [] for k in sources}
        for c in range(CYCLES):
            with psycopg.connect(dsn, autocommit=True) as conn:
                generate(
                    conn,
                    READ_RACERS,
                    start,
                    600 + c * INTERVAL_S,
                    600 + (c + 1) * INTERVAL_S,
                    FIX_EVERY_S,
                )
            for name, source in sources.items():
                before = source.rows_read
                t0 = time.perf_counter()
                for _ in source.read(time.time()):
                    pass
                ms[name].append((time.perf_counter() - t0) * 1000)
                rows[name].append(source.rows_read - before)
        for source in sources.values():
            source.close()
        new = READ_RACERS * INTERVAL_S / FIX_EVERY_S
        return {
            "racers": READ_RACERS,
            "new_rows": new,
            "results": {
                name: {"ms": _median_p95(ms[name]), "rows": statistics.median(rows[name])}
                for name in sources
            },
        }
    finally:
        db.destroy()


FLOODS: dict[str, Callable[[Course], tuple[float, float]]] = {
    "standing still": lambda course: course.at(1500.0),
    "off course": lambda course: (course.at(1500.0)[0] + 0.05, course.at(1500.0)[1]),
    "at the finish line": lambda course: course.at(course.length_m),
}


def flood_cost() -> dict[str, Any]:
    """The demo race, 10 minutes in; each cycle its 2-3 s of fixes, and in the
    flooded runs 10,000 more rows from one racer, milliseconds apart."""
    results: dict[str, Any] = {}
    for name in ["none", *FLOODS]:
        work = Path(tempfile.mkdtemp(prefix="racepub-flood-"))
        db = LocalPostgres()
        dsn = db.start()
        try:
            starts_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
            cfg = demo_config(dsn, work, starts_at)
            race = cfg.race("outrunthet")
            pub = Publisher(cfg, race)
            with psycopg.connect(dsn, autocommit=True) as conn:
                create_table(conn, cfg)
                t = starts_at.timestamp()
                insert(conn, cfg, list(fixes(race, pub.course, t, t + 600)))
            pub.cycle()
            cycles, objects = [], []
            for c in range(CYCLES):
                a = t + 600 + c * race.interval_s
                rows = list(fixes(race, pub.course, a, a + race.interval_s))
                if name != "none":
                    lat, lon = FLOODS[name](pub.course)
                    rows += [
                        ("1004", a + k / 1000, lat + (k % 7) * 1e-6, lon) for k in range(10_000)
                    ]
                with psycopg.connect(dsn, autocommit=True) as conn:
                    insert(conn, cfg, rows)
                stats = pub.cycle()
                cycles.append(stats.ms["total"])
                objects.append(stats.objects)
            pub.close()
            results[name] = {
                "ms": _median_p95(cycles),
                "objects": statistics.median(objects),
                "interval_s": race.interval_s,
            }
        finally:
            db.destroy()
            shutil.rmtree(work, ignore_errors=True)
    return results


# nginx as a CDN that honours Cache-Control and collapses misses: the first
# request after expiry waits for the origin (no background update, which
# would hand it the old copy whatever the headers say).
FRESH_NGINX_CONF = NGINX_CONF.replace("            proxy_cache_background_update on;\n", "")
VARNISH = "/usr/sbin/varnishd"


def _cdn(kind: str, work: Path, origin: int, port: int) -> subprocess.Popen[bytes]:
    """A caching proxy in front of the origin, as spectators' CDN: nginx
    (which sends its own Date and no Age) or Varnish (which, as CloudFront,
    passes the origin's Date and adds Age)."""
    if kind == "nginx":
        (work / "cache").mkdir(exist_ok=True)
        (work / "nginx.conf").write_text(
            FRESH_NGINX_CONF.format(
                work=work,
                cdn=port,
                origin=origin,
                # spectators' micro-cache in front of an app: idle here
                app=origin,
                micro=free_port(),
                user="user root;" if os.geteuid() == 0 else "",
            )
        )
        return subprocess.Popen(
            [NGINX, "-c", str(work / "nginx.conf"), "-p", str(work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return subprocess.Popen(
        [
            VARNISH,
            "-F",
            "-a",
            f"127.0.0.1:{port}",
            "-b",
            f"127.0.0.1:{origin}",
            "-n",
            str(work / "varnish"),
            "-s",
            "malloc,64m",
            # No grace beyond what Cache-Control grants (as CloudFront):
            # Varnish's default serves a stale copy for 10 s more.
            "-p",
            "default_grace=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def freshness() -> dict[str, Any]:
    """Fix -> visible on the page through a CDN stand-in, the old page and the new."""
    missing = tools_missing()
    if not Path(VARNISH).exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "varnish"],
            capture_output=True,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        )
    missing += [
        t
        for t, path in (("varnish", VARNISH), ("chromium", "/usr/bin/chromium"))
        if not Path(path).exists()
    ]
    if missing:
        return {"skipped": f"needs {' and '.join(missing)}"}
    from playwright.sync_api import sync_playwright

    old_app = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{OLD_APP_COMMIT}:static/app.js"],
        capture_output=True,
        check=True,
    ).stdout
    work = Path(tempfile.mkdtemp(prefix="racepub-fresh-"))
    os.chmod(work, 0o755)
    db = LocalPostgres()
    dsn = db.start()
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        moto_port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1"
        )
        for _ in range(300):
            try:
                s3.create_bucket(Bucket="bench-live")
                break
            except Exception:  # still starting
                time.sleep(0.1)
        s3.put_bucket_policy(
            Bucket="bench-live",
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::bench-live/*",
                        }
                    ],
                }
            ),
        )
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
                "recorded_at timestamptz, lat float8, lon float8)"
            )
        path = write_race(work, 5, dsn, f"http://127.0.0.1:{moto_port}", start)
        path.write_text(path.read_text() + 'tiles = "http://127.0.0.1:9/{z}/{x}/{y}.png"\n')
        inserted: list[tuple[float, float]] = []  # (fix time, when it went in)

        def feed() -> None:  # racer 0 sends a fix a second, stamped as it is taken
            with psycopg.connect(dsn, autocommit=True) as conn:
                while not stop.wait(1.0 - time.time() % 1.0):
                    now = round(time.time(), 3)
                    d = 3.0 * (now - start.timestamp())
                    conn.execute(
                        "INSERT INTO live_points (user_id, recorded_at, lat, lon) "
                        "VALUES ('0', to_timestamp(%s), %s, -71.1)",
                        (now, 42.30 + d / 111_195.0),
                    )
                    inserted.append((now, time.time()))

        threading.Thread(target=feed, daemon=True).start()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "racepub",
                    "run",
                    "--race",
                    "b",
                    "--config",
                    str(path),
                    "--state-dir",
                    str(work / "state"),
                ],  # nothing saved outside the work dir
                stdout=subprocess.DEVNULL,
                stderr=(work / "publisher.log").open("wb"),
            )
        )
        results: dict[str, Any] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            for cdn in ("nginx", "varnish"):
                port = free_port()
                proxy = _cdn(cdn, work, moto_port, port)
                procs.append(proxy)
                time.sleep(3)
                url = f"http://127.0.0.1:{port}/bench-live/race/index.html"
                for name, app in (("before", old_app), ("now", None)):
                    results[f"{cdn}, {name}"] = _watch(browser, url, app, inserted)
                proxy.terminate()
                proxy.wait(10)
            browser.close()
        return {"interval_s": INTERVAL_S, "duration_s": FRESH_S, "results": results}
    finally:
        stop.set()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        db.destroy()
        shutil.rmtree(work, ignore_errors=True)


def _watch(
    browser: Any, url: str, app: bytes | None, inserted: list[tuple[float, float]]
) -> dict[str, Any]:
    """Load the page and note, for every fix sent meanwhile, when the page
    first received a snapshot showing it (or a newer one)."""
    page = browser.new_context().new_page()
    if app is not None:  # the old page's one script, in place of the modules' entry
        page.route("**/js/main.js", _serve(app))
    shown: list[tuple[float, float]] = []  # (when received, newest fix time shown)
    polls = [0]

    def on_response(res: Any) -> None:
        if not res.url.endswith("/snapshot.json"):
            return
        polls[0] += 1
        if os.environ.get("BENCH_DEBUG"):  # the poll timeline, to see the phase
            h = res.headers
            print(
                f"{time.time() % 100:6.2f} Date={h.get('date', '')[17:25]} Age={h.get('age')}",
                file=sys.stderr,
            )
        try:
            snap = json.loads(res.body())
        except Exception:
            return
        for r in snap.get("racers", []):
            if r["id"] == "0" and r["position"]:
                at = datetime.fromisoformat(r["position"]["at"]).timestamp()
                shown.append((time.time(), at))

    page.on("response", on_response)
    page.goto(url)
    page.wait_for_timeout(4000)
    polls[0] = 0
    t0 = time.time()
    page.wait_for_timeout(FRESH_S * 1000)
    page.context.close()
    delays = []
    sent = [(t, at) for t, at in inserted if t0 + 2 < at < t0 + FRESH_S - 8]
    for fix_t, at in sent:
        seen = next((got for got, newest in shown if newest >= fix_t - 0.001 and got >= at), None)
        if seen is not None:
            delays.append(seen - at)
    p50, p95 = _median_p95(delays) if delays else (None, None)
    return {
        "p50_s": p50,
        "p95_s": p95,
        "fixes": len(delays),
        "expected": len(sent),
        "polls_per_min": polls[0] * 60 / FRESH_S,
    }


def _serve(body: bytes) -> Any:
    def handler(route: Any) -> None:
        route.fulfill(body=body, content_type="text/javascript")

    return handler


def markdown(r: dict[str, Any]) -> list[str]:
    out = ["## Real input", ""]
    rc = r["read"]
    out += [
        f"Read cost per cycle, {rc['racers']:,} racers, {rc['new_rows']:,.0f} new rows a "
        f"cycle (a fix per racer every {FIX_EVERY_S} s, a cycle every {INTERVAL_S} s), "
        f"same table, both indexes; median / p95 of {CYCLES} reads after the catch-up:",
        "",
        "| cursor | read ms | rows returned per read | ratio to ingest |",
        "|---|---:|---:|---:|",
    ]
    ingest = rc["results"]['ingest = "id"']["ms"][0]
    for name, v in rc["results"].items():
        out.append(
            f"| {name} | {v['ms'][0]:.0f} / {v['ms'][1]:.0f} | {v['rows']:,.0f} | "
            f"{v['ms'][0] / ingest:.1f}x |"
        )
    fl = r["flood"]
    base = fl["none"]["ms"][0]
    out += [
        "",
        f"One racer flooding the demo's race (5 racers, interval "
        f"{fl['none']['interval_s']} s): 10,000 rows a cycle, milliseconds apart; cycle "
        f"median / p95 of {CYCLES}:",
        "",
        "| flood | cycle ms | ratio to no flood | objects written per cycle |",
        "|---|---:|---:|---:|",
    ]
    for name, v in fl.items():
        out.append(
            f"| {name} | {v['ms'][0]:.0f} / {v['ms'][1]:.0f} | {v['ms'][0] / base:.1f}x"
            f" | {v['objects']:.0f} |"
        )
    fr = r["freshness"]
    out += [
        "",
        "Fix -> visible: from a fix going into the database to the page (headless "
        "Chromium) receiving a snapshot that shows it, through a CDN stand-in: nginx "
        "(proxy_cache honouring Cache-Control, misses collapsed; it sends its own Date "
        "and no Age) and Varnish (which, as CloudFront, passes the origin's Date and adds "
        f"Age). Interval {INTERVAL_S} s, a fix a second, {FRESH_S} s per row; the page's "
        f"polling before this work ({OLD_APP_COMMIT}) and now:",
        "",
    ]
    if "skipped" in fr:
        return out + [f"Not measured: {fr['skipped']}.", ""]
    out += [
        "| CDN, page | p50 s | p95 s | fixes shown / sent | snapshot requests per minute |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in fr["results"].items():
        p50 = f"{v['p50_s']:.1f}" if v["p50_s"] is not None else "–"
        p95 = f"{v['p95_s']:.1f}" if v["p95_s"] is not None else "–"
        out.append(
            f"| {name} | {p50} | {p95} | {v['fixes']} / {v['expected']} | "
            f"{v['polls_per_min']:.0f} |"
        )
    return out + [""]


def main() -> None:
    result = {"read": read_cost(), "flood": flood_cost(), "freshness": freshness()}
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--markdown":
        print("\n".join(markdown(json.loads(sys.stdin.read()))))
    else:
        main()
