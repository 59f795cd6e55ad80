"""`make bench`: what a publish cycle costs, beside a naive baseline measured
in the same run, at 5, 1,000, 10,000 and 50,000 racers, 10 minutes and
4 hours into the race (1 fix per racer every 5 s, a cycle every 2 s).

Real parts: a throwaway PostgreSQL, moto's S3 server in its own process on
loopback. Each cell runs in a fresh process, so peak RSS is that cell's own.
Writes bench/RESULTS.md and prints it.

    python bench/run.py                 # the full table (a few minutes)
    BENCH_SIZES=5,1000 python bench/run.py
"""

from __future__ import annotations

import gzip
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from racepub import config  # noqa: E402
from racepub.course import write_gpx  # noqa: E402
from racepub.localdb import LocalPostgres, free_port  # noqa: E402
from racepub.objects import gzip_bytes  # noqa: E402
from racepub.publish import Publisher  # noqa: E402
from racepub.race import Row  # noqa: E402
from racepub.track import published  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "5,1000,10000,50000").split(",")]
AGES = [("10 min", 600), ("4 h", 4 * 3600)]
FIX_EVERY_S = 5
INTERVAL_S = 2
CYCLES = int(os.environ.get("BENCH_CYCLES", "8"))
BASELINE_CYCLES = 3
# Older history than this is generated a fix a minute for big fields, so the
# 4-hour table (50,000 x 2,880 fixes would be 144M rows) fits the time budget.
DENSE_S = 600
LAT0, LON0 = 42.30, -71.10
M_PER_DEG = 111_195.0
COURSE_M = 42_195
BUCKET = "bench-live"


def course_gpx(path: Path) -> None:
    """A marathon, north from (LAT0, LON0), a vertex every 10 m as GPS tracks have."""
    pts = [(LAT0 + d / M_PER_DEG, LON0 + 0.0005 * math.sin(d / 700))
           for d in range(0, COURSE_M + 1, 10)]
    path.write_text(write_gpx(pts, "bench marathon"))


def write_race(work: Path, n: int, dsn: str, endpoint: str, start: datetime) -> Path:
    """The bench marathon's config, course and entrants, in `work`."""
    course_gpx(work / "course.gpx")
    (work / "entrants.csv").write_text(
        "id,name,kind\n" + "".join(f"{i},Runner {i},runner\n" for i in range(n)))
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
[s3]
endpoint_url = "{endpoint}"
region = "us-east-1"
[races.b]
title = "Bench marathon"
starts_at = "{start.isoformat()}"
course = "course.gpx"
interval_s = {INTERVAL_S}
sink = "s3://{BUCKET}/race"
racers_file = "entrants.csv"
""")
    return path


def speed(i: int) -> float:
    return 2.4 + (i * 7919 % 1000) / 1000 * 1.8  # 2.4 .. 4.2 m/s


def generate(conn: psycopg.Connection[Any], n: int, start: datetime, t0: float,
             t1: float, every: int) -> None:
    """Racer r's fixes at every*k + r % 5 seconds after the start, for those
    in [t0, t1): staggered, as phones are. Generated in SQL."""
    conn.execute(
        "INSERT INTO live_points (user_id, recorded_at, lat, lon) "
        "SELECT r::text, %(start)s + make_interval(secs => s), "
        "%(lat0)s + least(s * (2.4 + ((r * 7919) %% 1000) / 1000.0 * 1.8), %(len)s) / %(m)s "
        "  + (random() - 0.5) * 6e-5, "
        "%(lon0)s + 0.0005 * sin(least(s * (2.4 + ((r * 7919) %% 1000) / 1000.0 * 1.8), "
        "  %(len)s) / 700) + (random() - 0.5) * 8e-5 "
        "FROM generate_series(0, %(n)s::int - 1) r, "
        "LATERAL (SELECT k * %(every)s::int + r %% 5 AS s FROM generate_series("
        "  %(k0)s::int, %(k1)s::int) k) f "
        "WHERE s >= %(t0)s AND s < %(t1)s",
        {"start": start, "lat0": LAT0, "lon0": LON0, "len": COURSE_M - 50, "m": M_PER_DEG,
         "n": n, "t0": t0, "t1": t1, "every": every, "k0": int(t0 // every) - 1,
         "k1": int(t1 // every) + 1})


def cell(n: int, age_s: int) -> dict[str, Any]:
    """One (racers, race age) cell: racepub's cycles and the baseline's."""
    work = Path(tempfile.mkdtemp(prefix="racepub-bench-"))
    db = LocalPostgres(work / "pg")
    dsn = db.start()
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for _ in range(100):
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # the server is still starting
                time.sleep(0.1)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=age_s)
        t_gen = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
                         "recorded_at timestamptz, lat float8, lon float8)")
            dense_from = 0 if n <= 1000 else max(0, age_s - DENSE_S)
            if dense_from:
                generate(conn, n, start, 0, dense_from, 60)
            generate(conn, n, start, dense_from, age_s, FIX_EVERY_S)
            conn.execute("CREATE INDEX ON live_points (recorded_at)")
            conn.execute("ANALYZE live_points")
            rows_in_table = conn.execute("SELECT count(*) FROM live_points").fetchone()[0]
        gen_s = time.perf_counter() - t_gen

        write_race(work, n, dsn, endpoint, start)
        cfg = config.load(str(work / "racepub.toml"))
        race = cfg.race("b")
        pub = Publisher(cfg, race)
        # Warm start: the state a publisher running since the start would hold
        # (each racer's two newest fixes; older ones are in chunks already),
        # and the cursor at the table's end. Catching up on the whole history
        # is a restart's cost, not a cycle's.
        t_now = time.time()
        warm = []
        for i in range(n):
            for back in (FIX_EVERY_S, 0):
                t = age_s - back - (i % 5) - 1
                d = min(speed(i) * t, COURSE_M - 50)
                warm.append(Row(str(i), start.timestamp() + t, LAT0 + d / M_PER_DEG,
                                LON0 + 0.0005 * math.sin(d / 700)))
        pub.state.update(warm, t_now)
        steady_state(pub, age_s)
        with psycopg.connect(dsn) as conn:
            pub.source._hwm = pub.source._low = conn.execute(
                "SELECT max(id) FROM live_points").fetchone()[0]
        pub.cycle()  # the first cycle uploads the static files: not a steady one

        stages: dict[str, list[float]] = {}
        puts: list[int] = []
        queries_before = pub.source.queries
        for c in range(CYCLES):
            t_cycle = age_s + c * INTERVAL_S
            with psycopg.connect(dsn, autocommit=True) as conn:
                generate(conn, n, start, t_cycle, t_cycle + INTERVAL_S, FIX_EVERY_S)
            stats = pub.cycle()
            for k, v in stats.ms.items():
                stages.setdefault(k, []).append(v)
            puts.append(stats.objects)
        queries = (pub.source.queries - queries_before) / CYCLES
        # What a spectator following one racer polls: snapshot.json, and in a
        # large race the racer's shard too (the largest, to be fair).
        poll = [s3.get_object(Bucket=BUCKET, Key="race/snapshot.json")["Body"].read()]
        if race.large:
            shards = [s3.get_object(Bucket=BUCKET, Key=f"race/racers/{k}.json")[
                "Body"].read() for k in range(race.shards)]
            poll.append(max(shards, key=len))
        poll_gz = sum(len(b) for b in poll)
        poll_raw = sum(len(gzip.decompress(b)) for b in poll)
        pub.close()

        base = baseline(dsn, n, s3)
        return {
            "racers": n, "age": age_s, "rows_in_table": rows_in_table, "gen_s": gen_s,
            "stages": {k: (statistics.median(v), _p95(v)) for k, v in stages.items()},
            "queries": queries, "poll_raw": poll_raw, "poll_gz": poll_gz,
            "puts": statistics.median(puts), "large": race.large,
            "shard_every_s": (-(-race.shards // race.shard_writes) * INTERVAL_S
                              if race.large else INTERVAL_S),
            "baseline": base, "peak_rss_mb": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        moto.terminate()
        db.destroy()


def steady_state(pub: Publisher, age_s: int) -> None:
    """Make each track what it would be after running since the start: the
    chunks already cut (their sizes as Track.chunk_size makes them, so the
    stagger spreads chunk PUTs as it would) and the tail that has grown since.
    The tail's points are synthetic but shaped like the race's (a fix every
    5 s back along the course)."""
    fixes_so_far = age_s // FIX_EVERY_S
    for i, track in enumerate(pub.state.tracks.values()):
        last = track.last
        if last is None:
            continue
        rules = track.rules
        n_tail, chunks = fixes_so_far, 0
        while n_tail >= track.chunk_size(chunks):
            n_tail -= track.chunk_size(chunks)
            chunks += 1
        xyt = array("d")
        for k in range(n_tail - 1, -1, -1):
            back = k * FIX_EVERY_S * speed(i)
            xyt.extend((last.lat - back / M_PER_DEG, last.lon, last.t - k * FIX_EVERY_S))
        track.tail_xyt = xyt
        track.sparse = [published(xyt[j], xyt[j + 1], xyt[j + 2])
                        for j in range(0, len(xyt), 3)
                        if rules.tail_stride and (j // 3) % rules.tail_stride == 0]
        track.chunks = chunks


def baseline(dsn: str, n: int, s3: Any) -> dict[str, Any]:
    """The naive publisher: every cycle re-reads every racer's newest point
    (DISTINCT ON over the whole table) and re-renders everything with the
    standard json module."""
    ids = [str(i) for i in range(n)]
    totals: list[dict[str, float]] = []
    size = (0, 0)
    with psycopg.connect(dsn) as conn:
        for _ in range(BASELINE_CYCLES):
            t0 = time.perf_counter()
            rows = conn.execute(
                "SELECT DISTINCT ON (user_id) user_id, recorded_at, lat, lon FROM live_points "
                "WHERE user_id = ANY(%s) ORDER BY user_id, recorded_at DESC", (ids,)).fetchall()
            t1 = time.perf_counter()
            snap = {"schema": 1, "racers": [
                {"id": r, "position": {"lat": lat, "lon": lon, "at": at.isoformat()},
                 "distance_m": (lat - LAT0) * M_PER_DEG} for r, at, lat, lon in rows]}
            snap["racers"].sort(key=lambda x: -x["distance_m"])
            raw = json.dumps(snap).encode()
            t2 = time.perf_counter()
            gz = gzip_bytes(raw)
            t3 = time.perf_counter()
            s3.put_object(Bucket=BUCKET, Key="naive/snapshot.json", Body=gz,
                          ContentEncoding="gzip", ContentType="application/json")
            t4 = time.perf_counter()
            totals.append({"read": (t1 - t0) * 1000, "render": (t2 - t1) * 1000,
                           "compress": (t3 - t2) * 1000, "write": (t4 - t3) * 1000,
                           "total": (t4 - t0) * 1000})
            size = (len(raw), len(gz))
    return {"stages": {k: statistics.median(t[k] for t in totals) for k in totals[0]},
            "queries": 1, "poll_raw": size[0], "poll_gz": size[1]}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def table(results: list[dict[str, Any]], spectators: dict[str, Any] | None) -> str:
    lines = [
        "# racepub bench",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; "
        f"{CYCLES} cycles a cell (median / p95, ms), 1 fix per racer every {FIX_EVERY_S} s, "
        f"a cycle every {INTERVAL_S} s; uploads to moto's S3 server on loopback. "
        "Baseline: DISTINCT ON over the whole table + standard json, every cycle "
        f"(median of {BASELINE_CYCLES}). Ratio = baseline / racepub. Poll = what a "
        "spectator following one racer fetches each poll: snapshot.json, plus in a large "
        "race (more than 500 racers) that racer's shard (the largest). "
        "Command: `make bench`.",
        "",
        "| racers | race age | rows in table | read | update | render | compress | upload "
        "| total (median / p95) | baseline total | ratio | PUTs/cycle | queries/cycle "
        "| poll gz (raw) | baseline poll gz | ratio | peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        st = r["stages"]
        base = r["baseline"]

        def ms(k: str, st: dict[str, Any] = st) -> str:
            return f"{st[k][0]:.0f}" if k in st else "–"

        age = "10 min" if r["age"] == 600 else "4 h"
        total_med, total_p95 = st["total"]
        lines.append(
            f"| {r['racers']:,} | {age} | {r['rows_in_table']:,} | {ms('read')} | "
            f"{ms('update')} | {ms('render')} | {ms('compress')} | {ms('upload')} | "
            f"{total_med:.0f} / {total_p95:.0f} | {base['stages']['total']:.0f} | "
            f"{base['stages']['total'] / total_med:.1f}x | {r['puts']:.0f} | "
            f"{r['queries']:.1f} | {r['poll_gz']:,} ({r['poll_raw']:,}) | "
            f"{base['poll_gz']:,} | {base['poll_gz'] / r['poll_gz']:.1f}x | "
            f"{r['peak_rss_mb']:.0f} |")
    by = {(r["racers"], r["age"]): r for r in results}
    lines += ["", "Cycle at 4 h / cycle at 10 min (median totals):", ""]
    ratios = {}
    for n in sorted({r["racers"] for r in results}):
        if (n, 600) in by and (n, 14400) in by:
            a, b = by[(n, 600)]["stages"]["total"][0], by[(n, 14400)]["stages"]["total"][0]
            ratios[n] = b / a
            lines.append(f"- {n:,} racers: {b / a:.2f}")
    lines += ["", "Older history than the last 10 minutes is a fix a minute for fields over "
              "1,000 (50,000 x 4 h at a fix every 5 s would be 144M rows); the cursor's "
              "index makes each cycle's read independent of it, while the baseline's "
              "DISTINCT ON walks all of it. Each publisher starts warm, in the state it "
              "would have after running since the start (see steady_state): chunks fill, "
              "and are uploaded, at the steady rate. "
              "Queries/cycle counts the read; `racepub run` adds one `SELECT 1` a cycle on "
              "the race lock's connection (the lock must be alive).", ""]
    lines += goals(by, ratios)
    lines += spectator_table(spectators)
    return "\n".join(lines)


def goals(by: dict[tuple[int, int], dict[str, Any]], ratios: dict[int, float]) -> list[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = ["## Goals", ""]
    big = [by[k] for k in ((50000, 600), (50000, 14400)) if k in by]
    if big:
        med = max(r["stages"]["total"][0] for r in big)
        p95 = max(r["stages"]["total"][1] for r in big)
        poll = max(r["poll_gz"] for r in big)
        out += [f"- 50,000 racers, median cycle <= 500 ms: {med:.0f} ms, {mark(med <= 500)}",
                f"- 50,000 racers, p95 well under the 2 s interval: {p95:.0f} ms, "
                f"{mark(p95 < 1500)}",
                f"- 50,000 racers, poll for one followed racer <= 30 KB gz: {poll:,} B, "
                f"{mark(poll <= 30_000)}"]
    if ratios:
        worst = max(ratios.values())
        out.append(f"- cycle at 4 h / 10 min <= 1.2 at every size: worst {worst:.2f}, "
                   f"{mark(worst <= 1.2)}")
    small = [by[k] for k in ((5, 600), (5, 14400)) if k in by]
    if small:
        poll = by[(5, 600)]["poll_gz"] if (5, 600) in by else small[0]["poll_gz"]
        out.append(f"- 5 racers (the demo's size, 10 min in), poll <= 1.5 KB gz: {poll:,} B, "
                   f"{mark(poll <= 1500)}")
    queries = max(r["queries"] for r in by.values()) + 1  # + the lock's SELECT 1
    out += [f"- database queries per cycle <= 2: {queries:.0f} (read + lock check), "
            f"{mark(queries <= 2)}", ""]
    return out


def spectator_table(sp: dict[str, Any] | None) -> list[str]:
    out = ["## Spectators", ""]
    if sp is None:
        return out + ["Not measured (BENCH_SPECTATORS=0).", ""]
    if "skipped" in sp:
        return out + [f"Not measured: {sp['skipped']}.", ""]
    out += [
        f"wrk, {sp['connections']} connections for {sp['duration_s']} s, polling "
        f"snapshot.json of a {sp['racers']:,}-racer race while `racepub run` publishes it "
        f"every {sp['interval_s']} s and the app writes a fix per racer every 5 s. racepub: "
        "through nginx (proxy_cache honouring Cache-Control, proxy_cache_lock on) in front "
        "of moto's S3 server. Naive: a WSGI app (16 database connections) that queries "
        "PostgreSQL per request. Origin GETs counted in moto's request log; database "
        "statements in PostgreSQL's statement log, by application_name.",
        "",
        "| endpoint | requests/s | p99 latency ms | errors | origin GETs/s | "
        "DB statements/s from spectators | per 1,000 requests | publisher's own DB "
        "statements/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in sp["results"].items():
        origin = f"{r['origin_gets_per_s']:.2f}" if r["origin_gets_per_s"] is not None \
            else "– (no cache)"
        p99 = f"{r['p99_ms']:.0f}" if r["p99_ms"] is not None else "–"
        out.append(f"| {name} | {r['rps']:,.0f} | {p99} | {r['errors']:,} | {origin} | "
                   f"{r['db_per_s']:.1f} | {r['db_per_1000']:.1f} | "
                   f"{r['publisher_db_per_s']:.1f} |")
    return out + [""]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--cell":
        print(json.dumps(cell(int(sys.argv[2]), int(sys.argv[3]))))
        return
    results = []
    for n in SIZES:
        for label, age in AGES:
            print(f"bench: {n:,} racers, {label} ...", file=sys.stderr, flush=True)
            done = subprocess.run([sys.executable, __file__, "--cell", str(n), str(age)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"bench cell {n}/{label} failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    spectators = None
    if os.environ.get("BENCH_SPECTATORS", "1") != "0":
        print("bench: spectators (nginx + wrk) ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "spectators.py")],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"bench spectators failed:\n{done.stderr[-3000:]}")
        spectators = json.loads(done.stdout.strip().splitlines()[-1])
    text = table(results, spectators)
    if os.environ.get("BENCH_INPUTS", "1") != "0":
        print("bench: real input (read cost, flood, freshness) ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "inputs.py")],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"bench inputs failed:\n{done.stderr[-3000:]}")
        sys.path.insert(0, str(ROOT / "bench"))
        from inputs import markdown

        text += "\n" + "\n".join(markdown(json.loads(done.stdout.strip().splitlines()[-1])))
    out = ROOT / "bench" / "RESULTS.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
