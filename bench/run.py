"""`make bench`: what a publish cycle costs at 5, 1,000, 10,000 and 50,000
racers, 10 minutes and 4 hours into the race (1 fix per racer every 5 s, a
cycle every 2 s), beside two baselines measured in the same run: a naive
publisher, and racepub as it was before one model and two shapes (at
PREVIOUS_COMMIT, its own bench cell, run from a git worktree). Then what a
spectator's first load costs (bench/first_load.py, in Chromium, beside the
previous form), Lighthouse on the page (bench/lighthouse.py, likewise), a
restart's catch-up and a standby's takeover (bench/restart.py), timing mats
(bench/mats.py), spectators (bench/spectators.py) and real input
(bench/inputs.py).

Real parts: a throwaway PostgreSQL, moto's S3 server in its own process on
loopback. Each cell runs in a fresh process, so its memory is its own.
Writes bench/RESULTS.md and prints it.

    python -m bench.run                      # everything (about an hour)

Sections can be left out: BENCH_FIRST_LOAD=0, BENCH_LIGHTHOUSE=0,
BENCH_MATS=0, BENCH_SPECTATORS=0, BENCH_INPUTS=0; BENCH_OLD= (no sizes) runs
no previous-form cells; BENCH_SIZES=5,1000 measures only those sizes.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.marathon import (
    BUCKET,
    FIX_EVERY_S,
    INTERVAL_S,
    LAT0,
    M_PER_DEG,
    OLD_FORM_COMMIT,
    PREVIOUS_COMMIT,
    PUT_PRICE_PER_1000,
    ROOT,
    count_rows,
    create_table,
    generate,
    old_tree,
    real_parts,
    rss_mb,
    run_old,
    write_race,
)
from racepub import config
from racepub.objects import gzip_bytes
from racepub.publisher.cycle import Publisher
from racepub.publisher.progress import Progress

SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "5,1000,10000,50000").split(",")]
AGES = [("10 min", 600), ("4 h", 4 * 3600)]
# The largest field measured 4 hours in: a cold start on 50,000 racers' 4
# hours (17.5 M rows, most racers past the finish and so on the general
# path) takes the publisher ~15 minutes here before its first cycle.
LONG_MAX = int(os.environ.get("BENCH_LONG_MAX", "50000"))
CYCLES = int(os.environ.get("BENCH_CYCLES", "8"))
BASELINE_CYCLES = 3
# Older history than this is a fix a minute for big fields, so the 4-hour
# table (50,000 x 2,880 fixes would be 144M rows) fits the time budget.
DENSE_S = 600
PREVIOUS_SIZES = [int(n) for n in os.environ.get("BENCH_OLD", "10000,50000").split(",") if n]
# Restart and takeover: (racers, race age s, a fix every s). The issue's
# figures: 10,000 racers / 3.6 M rows; 1.8 M rows for the takeover.
RESTARTS = [
    tuple(int(x) for x in spec.split("/"))
    for spec in os.environ.get("BENCH_RESTARTS", "10000/7200/20,50000/600/5").split(",")
    if spec
]


def cell(n: int, age_s: int, cycles: int = CYCLES) -> dict[str, Any]:
    """One (racers, race age) cell: racepub's cycles and the naive baseline's.

    The publisher starts cold on the whole history (its first cycle is a
    start-up catch-up through the same code as every cycle's read), then
    publishes `cycles` cycles with a fix per racer every FIX_EVERY_S
    written between them."""
    with real_parts() as parts:
        dsn, s3 = parts.dsn, parts.s3
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=age_s)
        t_gen = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_table(conn)
            dense_from = 0 if n <= 1000 else max(0, age_s - DENSE_S)
            if dense_from:
                generate(conn, n, start, 0, dense_from, 60)
            generate(conn, n, start, dense_from, age_s, FIX_EVERY_S)
            conn.execute("CREATE INDEX ON live_points (recorded_at)")
            conn.execute("ANALYZE live_points")
            rows_in_table = count_rows(conn)
        gen_s = time.perf_counter() - t_gen

        write_race(parts.work, n, dsn, parts.endpoint, start)
        cfg = config.load(str(parts.work / "racepub.toml"))
        race = cfg.race("b")
        pub = Publisher(cfg, race)
        t_start = time.perf_counter()
        pub.cycle()  # start-up: the whole history, and the static files
        start_s = time.perf_counter() - t_start

        stages: dict[str, list[float]] = {}
        puts: list[int] = []
        queries_before = pub.source.queries
        for c in range(cycles):
            t_cycle = age_s + c * INTERVAL_S
            with psycopg.connect(dsn, autocommit=True) as conn:
                generate(conn, n, start, t_cycle, t_cycle + INTERVAL_S, FIX_EVERY_S)
            stats = pub.cycle()
            for k, v in stats.ms.items():
                stages.setdefault(k, []).append(v)
            puts.append(stats.objects)
        queries = (pub.source.queries - queries_before) / cycles
        # What a spectator following one racer polls: snapshot.json, and in a
        # large race that racer's live shard (the largest, to be fair).
        poll = [s3.get_object(Bucket=BUCKET, Key="race/snapshot.json")["Body"].read()]
        snap = json.loads(gzip.decompress(poll[0]))
        trail_gz = 0
        if "field" in snap:
            field = snap["field"]
            shards = [
                s3.get_object(Bucket=BUCKET, Key=f"race/racers/{k}.json")["Body"].read()
                for k in range(field["shards"])
            ]
            poll.append(max(shards, key=len))
            trail_gz = max(
                s3.head_object(Bucket=BUCKET, Key=f"race/trails/{k}.json")["ContentLength"]
                for k in range(field["trails"])
            )
            follow = follow_requests(s3, field["trails"])
        else:
            follow = {"max": 0, "median": 0}
        poll_gz = sum(len(b) for b in poll)
        poll_raw = sum(len(gzip.decompress(b)) for b in poll)
        steady_rss = rss_mb()
        pub.close()

        base = baseline(dsn, n, s3)
        return {
            "racers": n,
            "age": age_s,
            "rows_in_table": rows_in_table,
            "gen_s": gen_s,
            "start_s": start_s,
            "stages": {k: (statistics.median(v), _p95(v)) for k, v in stages.items()},
            "queries": queries,
            "poll_raw": poll_raw,
            "poll_gz": poll_gz,
            "trail_gz": trail_gz,
            "follow_requests": follow,
            "puts": statistics.median(puts),
            "large": race.field_shape,
            "baseline": base,
            "rss_mb": steady_rss,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def follow_requests(s3: Any, trails: int) -> dict[str, float]:
    """What drawing one followed racer's whole trail costs a page, from every
    trail group as published: the group, each piece it lists for them, their
    recent trail (max and median over the field)."""
    counts = []
    for k in range(trails):
        body = s3.get_object(Bucket=BUCKET, Key=f"race/trails/{k}.json")["Body"].read()
        doc = json.loads(gzip.decompress(body))
        for chunks, recent in zip(doc["chunks"], doc["recent"], strict=True):
            counts.append(1 + len(chunks) + (recent is not None))
    return {"max": max(counts), "median": statistics.median(counts)}


def old_form(n: int, age_s: int) -> dict[str, Any] | None:
    """The same cell by racepub at PREVIOUS_COMMIT (its own bench, its own
    code), from a git worktree; None without the git history."""
    with old_tree(PREVIOUS_COMMIT) as tree:
        if tree is None:
            return None
        done = run_old(
            tree,
            [str(tree / "bench" / "run.py"), "--cell", str(n), str(age_s)],
            {"BENCH_CYCLES": str(CYCLES)},
        )
        if done.returncode != 0:
            print(f"bench: the old form's cell failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return None
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


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
                "WHERE user_id = ANY(%s) ORDER BY user_id, recorded_at DESC",
                (ids,),
            ).fetchall()
            t1 = time.perf_counter()
            racers = [
                {
                    "id": r,
                    "position": {"lat": lat, "lon": lon, "at": at.isoformat()},
                    "distance_m": (lat - LAT0) * M_PER_DEG,
                }
                for r, at, lat, lon in rows
            ]
            racers.sort(key=lambda x: -x["distance_m"])
            snap = {"schema": 1, "racers": racers}
            raw = json.dumps(snap).encode()
            t2 = time.perf_counter()
            gz = gzip_bytes(raw)
            t3 = time.perf_counter()
            s3.put_object(
                Bucket=BUCKET,
                Key="naive/snapshot.json",
                Body=gz,
                ContentEncoding="gzip",
                ContentType="application/json",
            )
            t4 = time.perf_counter()
            totals.append(
                {
                    "read": (t1 - t0) * 1000,
                    "render": (t2 - t1) * 1000,
                    "compress": (t3 - t2) * 1000,
                    "write": (t4 - t3) * 1000,
                    "total": (t4 - t0) * 1000,
                }
            )
            size = (len(raw), len(gz))
    return {
        "stages": {k: statistics.median(t[k] for t in totals) for k in totals[0]},
        "queries": 1,
        "poll_raw": size[0],
        "poll_gz": size[1],
    }


def _age(age_s: int) -> str:
    return f"{age_s // 60} min" if age_s < 3600 else f"{age_s / 3600:g} h"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def table(
    results: list[dict[str, Any]],
    old: dict[tuple[int, int], dict[str, Any]],
    restarts: list[dict[str, Any]],
) -> list[str]:
    lines = [
        "# racepub bench",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; "
        f"{CYCLES} cycles a cell (median / p95, ms), 1 fix per racer every {FIX_EVERY_S} s, "
        f"a cycle every {INTERVAL_S} s; uploads to moto's S3 server on loopback. "
        "Baseline: DISTINCT ON over the whole table + standard json, every cycle "
        f"(median of {BASELINE_CYCLES}). Previous form: racepub at {PREVIOUS_COMMIT} (before "
        "one model and two shapes: a small race's trail a chunk object a minute), its own "
        "bench cell, in the same run. Poll = what a spectator following one racer fetches "
        "each poll: "
        "snapshot.json, plus in a large race (more than 500 racers) that racer's live "
        "shard (the largest); their trail group (the largest) is fetched every 20 s. "
        "S3 $/race-hour: PUTs at list price ($0.005 per 1,000). Command: `make bench`.",
        "",
        "| racers | race age | rows in table | start-up s | read | update | render | compress "
        "| upload | total (median / p95) | previous form total | ×previous | baseline total "
        "| ×baseline | PUTs/cycle | S3 $/race-hour | poll gz (raw) | trail group gz "
        "| requests to draw a followed trail (max) | RSS MB (peak) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---:|---:|",
    ]
    for r in results:
        st = r["stages"]
        base = r["baseline"]

        def ms(k: str, st: dict[str, Any] = st) -> str:
            return f"{st[k][0]:.0f}" if k in st else "–"

        age = "10 min" if r["age"] == 600 else "4 h"
        total_med, total_p95 = st["total"]
        was = old.get((r["racers"], r["age"]))
        old_total = f"{was['stages']['total'][0]:.0f}" if was else "–"
        vs_old = f"{was['stages']['total'][0] / total_med:.1f}x" if was else "–"
        cost = r["puts"] * 3600 / INTERVAL_S * PUT_PRICE_PER_1000 / 1000
        lines.append(
            f"| {r['racers']:,} | {age} | {r['rows_in_table']:,} | {r['start_s']:.1f} | "
            f"{ms('read')} | {ms('update')} | {ms('render')} | {ms('compress')} | "
            f"{ms('upload')} | {total_med:.0f} / {total_p95:.0f} | {old_total} | {vs_old} | "
            f"{base['stages']['total']:.0f} | {base['stages']['total'] / total_med:.1f}x | "
            f"{r['puts']:.0f} | {cost:.2f} | {r['poll_gz']:,} ({r['poll_raw']:,}) | "
            f"{r['trail_gz']:,} | {r.get('follow_requests', {}).get('max', 0) or '–'} | "
            f"{r['rss_mb']:.0f} ({r['peak_rss_mb']:.0f}) |"
        )
    if old:
        lines += [
            "",
            "The previous form beside it (its own bench): PUTs/cycle and S3 $/race-hour, poll gz:",
            "",
        ]
        for (n, age_s), was in sorted(old.items()):
            cost = was["puts"] * 3600 / INTERVAL_S * PUT_PRICE_PER_1000 / 1000
            lines.append(
                f"- {n:,} racers, {_age(age_s)}: {was['stages']['total'][0]:.0f} "
                f"/ {was['stages']['total'][1]:.0f} ms, {was['puts']:.0f} PUTs, "
                f"${cost:.2f}/race-hour, poll {was['poll_gz']:,} B gz, peak RSS "
                f"{was['peak_rss_mb']:.0f} MB"
            )
    by = {(r["racers"], r["age"]): r for r in results}
    lines += ["", "Cycle at 4 h / cycle at 10 min (median totals):", ""]
    ratios = {}
    for n in sorted({r["racers"] for r in results}):
        if (n, 600) in by and (n, 14400) in by:
            a, b = by[(n, 600)]["stages"]["total"][0], by[(n, 14400)]["stages"]["total"][0]
            ratios[n] = b / a
            lines.append(f"- {n:,} racers: {b / a:.2f}")
    lines += [
        "",
        "Older history than the last 10 minutes is a fix a minute for fields over "
        "1,000 (50,000 x 4 h at a fix every 5 s would be 144M rows); the cursor's "
        "index makes each cycle's read independent of it, while the baseline's "
        "DISTINCT ON walks all of it. Each publisher starts cold on the whole table "
        "(start-up s: its first cycle, the history read and applied, everything "
        "published), then runs its cycles. RSS: after the cycles (peak: including "
        "the start-up). Queries/cycle: 1 (the read); `racepub run` adds one "
        "`SELECT 1` a cycle on the race lock's connection (the lock must be alive).",
        "",
    ]
    lines += restart_table(restarts)
    lines += goals(by, ratios, old, restarts)
    return lines


def restart_table(restarts: list[dict[str, Any]]) -> list[str]:
    if not restarts:
        return []
    out = [
        "## Restart and takeover",
        "",
        "bench/restart.py: a race published by one publisher; a standby reading along "
        "(Publisher.standby) takes over after the active one stops (its first cycle; "
        "add up to an interval for its next try at the lock); then a cold restart (a "
        "new process reads the whole history; chunks already in the sink are not "
        "packed again); then a restart from the race state saved a minute before "
        "the kill (statefile.py; the worst case: saved every minute): its first "
        "publish, including loading the state, and the rows it read since. Saving: "
        "the loop's pause for the fork, the child's pickling and writing, the file. "
        f"Old form's cold restart: racepub at {OLD_FORM_COMMIT} started the same way on "
        "the same table, in the same run (up to 10,000 racers).",
        "",
        "| racers | race age | rows | first publish s | standby's catch-up s "
        "| takeover: first cycle s | cold restart s | old form's cold restart s | ×old "
        "| restart from saved state s | ×cold | rows since | save: fork ms | save: write s "
        "| state MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in restarts:
        old = r.get("old_restart_s")
        was = f"{old:.1f} | {old / r['restart_s']:.1f}x" if old else "– | –"
        out.append(
            f"| {r['racers']:,} | {r['age_s'] / 3600:.1f} h | {r['rows']:,} | "
            f"{r['first_s']:.1f} | {r['standby_read_s']:.1f} | {r['takeover_s']:.2f} | "
            f"{r['restart_s']:.1f} | {was} | {r['resumed_s']:.1f} | "
            f"{r['restart_s'] / r['resumed_s']:.0f}x | {r['resumed_new']:,} | "
            f"{r['fork_ms']:.0f} | {r['state_write_s']:.1f} | {r['state_mb']:.0f} |"
        )
    return out + [""]


def goals(
    by: dict[tuple[int, int], dict[str, Any]],
    ratios: dict[int, float],
    old: dict[tuple[int, int], dict[str, Any]],
    restarts: list[dict[str, Any]],
) -> list[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = ["## Goals", ""]
    big = [by[k] for k in ((50000, 600), (50000, 14400)) if k in by]
    if big:
        med = max(r["stages"]["total"][0] for r in big)
        p95 = max(r["stages"]["total"][1] for r in big)
        poll = max(r["poll_gz"] for r in big)
        rss = max(r["rss_mb"] for r in big)
        out += [
            f"- 50,000 racers, median cycle <= 500 ms: {med:.0f} ms, {mark(med <= 500)}",
            f"- 50,000 racers, p95 <= 1 s: {p95:.0f} ms, {mark(p95 <= 1000)}",
            f"- 50,000 racers, poll for one followed racer <= 30 KB gz: {poll:,} B, "
            f"{mark(poll <= 30_000)}",
            f"- 50,000 racers, RSS <= 1 GB at 4 h: {rss:.0f} MB, {mark(rss <= 1024)}",
        ]
    for key in sorted(old):
        if key in by:
            x = old[key]["stages"]["total"][0] / by[key]["stages"]["total"][0]
            out.append(
                f"- {key[0]:,} racers ({_age(key[1])}), no slower than the previous form "
                f"beside it (ratio >= 1.0): {x:.2f}, {mark(x >= 1.0)}"
            )
    for key in ((50000, 14400),):
        if key in by and by[key].get("follow_requests"):
            most = by[key]["follow_requests"]["max"]
            out.append(
                f"- 50,000 racers 4 h in, following one: <= 10 requests to draw their "
                f"whole trail: {most} at most, {mark(most <= 10)}"
            )
    if (10000, 600) in by:
        keeps = 1000 / by[(10000, 600)]["stages"]["total"][1]
        out.append(
            f"- 10,000 racers keep up with a 1 s interval (p95 cycle <= 1.1 s, "
            f"i.e. >= 0.9 cycles/s): {keeps:.1f} cycles/s at p95, {mark(keeps >= 0.9)}"
        )
    if ratios:
        worst = max(ratios.values())
        out.append(
            f"- cycle at 4 h / 10 min <= 1.2 at every size: worst {worst:.2f}, {mark(worst <= 1.2)}"
        )
    small = [by[k] for k in ((5, 600), (5, 14400)) if k in by]
    if small:
        poll = by[(5, 600)]["poll_gz"] if (5, 600) in by else small[0]["poll_gz"]
        out.append(
            f"- 5 racers (the demo's size, 10 min in), poll <= 1.5 KB gz: {poll:,} B, "
            f"{mark(poll <= 1500)}"
        )
    for r in restarts:
        out.append(
            f"- {r['racers']:,} racers, standby publishes within a few intervals of "
            f"the takeover: first cycle {r['takeover_s']:.2f} s, "
            f"{mark(r['takeover_s'] <= 3 * INTERVAL_S)}"
        )
        if r["racers"] == 10000 and r["rows"] >= 3_000_000:
            # The 160 s was today's code on its machine; the same
            # code here, in this run, is the baseline (160 s without it).
            was = r.get("old_restart_s")
            base = f"the old form's {was:.0f} s in this run" if was else "160 s (the issue's)"
            was = was or 160.0
            x = was / r["restart_s"]
            out.append(
                f"- cold restart at 10,000 racers / {r['rows']:,} rows >= 5x faster "
                f"than {base}, reading everything: {r['restart_s']:.0f} s, {x:.1f}x, "
                f"{mark(x >= 5)}"
            )
            x = was / r["resumed_s"]
            out.append(
                f"- the same restart from the state saved a minute before: "
                f"{r['resumed_s']:.1f} s, {x:.0f}x, {mark(x >= 5)}"
            )
    if by:
        queries = max(r["queries"] for r in by.values()) + 1  # + the lock's SELECT 1
        out += [
            f"- database queries per cycle <= 2: {queries:.0f} (read + lock check), "
            f"{mark(queries <= 2)}"
        ]
    return out + [""]


def spectator_table(sp: dict[str, Any] | None) -> list[str]:
    out = ["## Spectators", ""]
    if sp is None:
        return out + ["Not measured (BENCH_SPECTATORS=0).", ""]
    if "skipped" in sp:
        return out + [f"Not measured: {sp['skipped']}.", ""]
    out += [
        f"Every racer's newest position, {sp['racers']:,} racers 10 min in, while `racepub "
        f"run` publishes every {sp['interval_s']} s and a fix per racer every 5 s is "
        f"written; wrk, {sp['connections']} connections for {sp['duration_s']} s on each "
        "row in turn, on this machine (its cores shared by every part and wrk):",
        "",
        f"- racepub: `{sp['object']}`, the object with every racer's position (the page "
        "polls it beside snapshot.json), through nginx as the CDN stand-in (proxy_cache "
        "honouring Cache-Control, proxy_cache_lock on) in front of moto's S3 server.",
        "- app, direct: what a competent team would build instead. "
        f"{sp['app_workers']} worker processes (one per core, one port by SO_REUSEPORT), "
        f"each a threaded HTTP/1.1 server with a pool of {sp['app_pool']} connections; one "
        "query per request (each racer's newest fix, a LATERAL lookup on an index on "
        "(user_id, recorded_at DESC)); orjson, gzip level 1 when asked (as nginx's gzip).",
        "- app behind a 1 s micro-cache: nginx in front of it (proxy_cache_valid 200 1s, "
        "proxy_cache_lock on, proxy_cache_use_stale updating).",
        "",
        "Counted at the source: origin requests in moto's or the app's request log; DB "
        "statements in PostgreSQL's statement log by application_name (racepub: its "
        "publisher's, whatever the load; the fixes written are in no row). View age: now "
        "minus the response's generated_at, sampled every "
        f"{sp['sample_every_s']} s during the load by one more client (counted at the "
        "origin and database, not in requests/s). nginx keeps copies in whole seconds: one "
        "valid for 1 s is served for up to 2 s.",
        "",
        "| serving | processes × DB connections | requests/s | p99 latency ms | errors | "
        "bytes/response (with headers) | origin requests/s | DB statements/s | "
        "view age s: median / max | stale by up to |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sp["results"]:
        p99 = f"{r['p99_ms']:,.0f}" if r["p99_ms"] is not None else "–"
        age = "{:.2f} / {:.2f}".format(*r["age_s"]) if r["age_s"] else "–"
        out.append(
            f"| {r['name']} | {r['processes']} | {r['rps']:,.0f} | {p99} | {r['errors']:,} | "
            f"{r['bytes']:,.0f} | {r['origin_per_s']:,.2f} | "
            f"{r['db_per_s'].get(r['db_by'], 0):,.1f} | {age} | {r['stale_by']} |"
        )
    return out + [""] + spectator_goals(sp) + [""]


def spectator_goals(sp: dict[str, Any]) -> list[str]:
    """racepub's row against DESIGN.md's promise and against the app's rows."""
    ours, *apps = sp["results"]
    others = sum(n for name, n in ours["db_per_s"].items() if name not in ("racepub", "feeder"))
    cdn_copy_s = max(1, sp["interval_s"] - 1)
    out = [
        f"- spectators never reach the database: {others:.1f} statements/s beside the "
        f"publisher's own {ours['db_per_s'].get('racepub', 0):.1f}, "
        f"{'met' if others == 0 else '**not met**'}",
        f"- origin requests: at most one per CDN copy ({cdn_copy_s} s): "
        f"{ours['origin_per_s']:.2f}/s, "
        f"{'met' if ours['origin_per_s'] <= 1 / cdn_copy_s else '**not met**'}",
    ]
    for app in apps:
        db = app["db_per_s"].get(app["db_by"], 0)
        out.append(
            f"- racepub against {app['name']}: {ours['rps'] / app['rps']:,.1f}x the "
            f"requests/s; its database statements/s: {db:,.1f} against the publisher's "
            f"{ours['db_per_s'].get('racepub', 0):.1f}"
        )
    return out


def _run(args: list[str], what: str) -> Any:
    """A measurement in a process of its own (its memory its own); its JSON."""
    print(f"bench: {what} ...", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"bench {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--cell":
        print(json.dumps(cell(int(sys.argv[2]), int(sys.argv[3]))))
        return
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    cells = [
        (n, label, age) for n in SIZES for label, age in AGES if age <= DENSE_S or n <= LONG_MAX
    ]
    spectators = os.environ.get("BENCH_SPECTATORS", "1") != "0"
    inputs = os.environ.get("BENCH_INPUTS", "1") != "0"
    mats = os.environ.get("BENCH_MATS", "1") != "0"
    lighthouse = os.environ.get("BENCH_LIGHTHOUSE", "1") != "0"
    # Each measurement a step: how far the bench is, and about how long still.
    previous = [(n, age) for n in PREVIOUS_SIZES for _, age in AGES]
    loads = os.environ.get("BENCH_FIRST_LOAD", "1") != "0"
    progress = Progress(
        "bench",
        len(cells)
        + len(previous)
        + len(RESTARTS)
        + spectators
        + inputs
        + loads
        + mats
        + lighthouse,
        "steps",
    )

    def step(result: Any) -> Any:
        progress.update(progress.done + 1)
        return result

    results = [
        step(_run(["bench.run", "--cell", str(n), str(age)], f"{n:,} racers, {label}"))
        for n, label, age in cells
    ]
    old: dict[tuple[int, int], dict[str, Any]] = {}
    for n, age in previous:
        print(f"bench: the previous form, {n:,} racers, {_age(age)} ...", file=sys.stderr)
        was = step(old_form(n, age))
        if was is not None:
            old[(n, age)] = was
    restarts = [
        step(_run(["bench.restart", *map(str, spec)], f"restart {spec}")) for spec in RESTARTS
    ]
    text = table(results, old, restarts)
    if loads:
        from bench.first_load import markdown as first_load_markdown

        text += first_load_markdown(step(_run(["bench.first_load", "--all"], "first loads")))
    if lighthouse:
        from bench.lighthouse import markdown as lighthouse_markdown

        text += lighthouse_markdown(step(_run(["bench.lighthouse"], "Lighthouse (mobile)")))
    if mats:
        from bench.mats import markdown as mats_markdown

        text += mats_markdown(step(_run(["bench.mats", "50000", "3000"], "timing mats")))
    if spectators:
        text += spectator_table(step(_run(["bench.spectators"], "spectators (nginx + wrk)")))
    if inputs:
        from bench.inputs import markdown

        text += [""] + markdown(step(_run(["bench.inputs"], "real input (read, flood, freshness)")))
    progress.close()
    out = ROOT / "bench" / "RESULTS.md"
    out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
