"""A mass race with timing mats, measured: 50,000 runners on the bench
marathon, every one with a chip and one in ten with a phone, mats at the
start, 10, 20, 30 and 40 km and the finish, 50 minutes in: the 10 km mat
reads the field as it passes (a couple of thousand runners a minute). The
publisher starts cold on the whole history, then runs its cycles, each with
its 2 s of fixes and reads written between them; beside it, in the same
run, the same race with phones only (no [detections]): what the mats cost.

    python -m bench.mats 50000 3000      # racers, race age s: prints JSON
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.marathon import (
    COURSE_M,
    FIX_EVERY_S,
    INTERVAL_S,
    create_table,
    generate,
    real_parts,
    write_race,
)
from racepub import config
from racepub.publisher.cycle import Publisher

CYCLES = 8
PHONE_EVERY = 10  # one runner in this many carries a phone
MATS = {"10K": 10_000.0, "20K": 20_000.0, "30K": 30_000.0, "40K": 40_000.0}
MAT_AT = {"start": 0.0, **MATS, "finish": float(COURSE_M)}


def create_reads(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "CREATE TABLE chip_reads (id bigserial PRIMARY KEY, bib text, mat text, "
        "read_at timestamptz)"
    )


def reads_between(
    conn: psycopg.Connection[Any], n: int, start: datetime, t0: float, t1: float
) -> int:
    """Every runner's reads at the start (the gun) and at each mat they reach
    in [t0, t1), at their speed in bench.marathon.generate."""
    done = conn.execute(
        "INSERT INTO chip_reads (bib, mat, read_at) "
        "SELECT r::text, m.name, %(start)s + make_interval(secs => s) "
        "FROM generate_series(0, %(n)s::int - 1) r, "
        "  unnest(%(names)s::text[], %(ds)s::float8[]) AS m(name, d), "
        "  LATERAL (SELECT m.d / (2.4 + ((r * 7919) %% 1000) / 1000.0 * 1.8) AS s) f "
        "WHERE s >= %(t0)s AND s < %(t1)s",
        {
            "start": start,
            "n": n,
            "names": list(MAT_AT),
            "ds": list(MAT_AT.values()),
            "t0": t0,
            "t1": t1,
        },
    )
    return done.rowcount


def run(n: int, age_s: int, mats: bool, cycles: int = CYCLES) -> dict[str, Any]:
    """The race published: start-up on the history, then CYCLES cycles."""
    with real_parts() as parts:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=age_s)
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            create_table(conn)
            create_reads(conn)
            generate(conn, n, start, 0, age_s, FIX_EVERY_S, PHONE_EVERY)
            reads_in_table = reads_between(conn, n, start, 0, age_s) if mats else 0
            conn.execute("ANALYZE")
        path = write_race(parts.work, n, parts.dsn, parts.endpoint, start)
        text = path.read_text()
        if mats:
            text = text.replace(
                "[s3]",
                '[detections]\ntable = "chip_reads"\nracer = "bib"\ncheckpoint = "mat"\n'
                'time = "read_at"\ningest = "id"\n\n[s3]',
            )
            text += "".join(
                f'\n[[races.b.checkpoints]]\nname = "{name}"\ndistance_m = {d}\n'
                for name, d in MATS.items()
            )
        path.write_text(text)
        cfg = config.load(str(path))
        pub = Publisher(cfg, cfg.race("b"))
        t0 = time.perf_counter()
        pub.cycle()
        start_s = time.perf_counter() - t0

        def queries() -> int:
            return pub.source.queries + (pub.reads.queries if pub.reads else 0)

        at_start = queries()
        stages: dict[str, list[float]] = {}
        reads_per_cycle, estimated = [], 0
        for c in range(cycles):
            a = age_s + c * INTERVAL_S
            with psycopg.connect(parts.dsn, autocommit=True) as conn:
                generate(conn, n, start, a, a + INTERVAL_S, FIX_EVERY_S, PHONE_EVERY)
                if mats:
                    reads_per_cycle.append(reads_between(conn, n, start, a, a + INTERVAL_S))
            stats = pub.cycle()
            for k, v in stats.ms.items():
                stages.setdefault(k, []).append(v)
        estimated = int(pub.state.standings.estimated.sum())
        per_cycle = (queries() - at_start) / cycles
        pub.close()
        return {
            "racers": n,
            "age_s": age_s,
            "mats": mats,
            "phones": (n + PHONE_EVERY - 1) // PHONE_EVERY,
            "reads_in_table": reads_in_table,
            "reads_per_cycle": statistics.median(reads_per_cycle) if reads_per_cycle else 0,
            "estimated": estimated,
            "start_s": start_s,
            "queries_per_cycle": per_cycle,
            "stages": {k: (statistics.median(v), sorted(v)[-1]) for k, v in stages.items()},
        }


def markdown(cells: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Timing mats",
        "",
        "bench/mats.py: the bench marathon, every runner with a chip and one in "
        f"{PHONE_EVERY} with a phone (a fix every {FIX_EVERY_S} s), mats at the start, "
        f"{', '.join(MATS)} and the finish, reads and fixes of each {INTERVAL_S} s written "
        "between cycles; beside it the same race and phones without [detections]. "
        f"{CYCLES} cycles (median / worst, ms).",
        "",
        "| racers | race age | phones | reads in table | reads a cycle | placed by mats "
        "| start-up s | read | update | render | upload | total | source queries a cycle |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        st = c["stages"]
        label = "with mats" if c["mats"] else "phones only"
        out.append(
            f"| {c['racers']:,} ({label}) | {c['age_s'] // 60} min | {c['phones']:,} | "
            f"{c['reads_in_table']:,} | {c['reads_per_cycle']:,.0f} | {c['estimated']:,} | "
            f"{c['start_s']:.1f} | {st['read'][0]:.0f} | {st['update'][0]:.0f} | "
            f"{st['render'][0]:.0f} | {st['upload'][0]:.0f} | "
            f"{st['total'][0]:.0f} / {st['total'][1]:.0f} | {c['queries_per_cycle']:.1f} |"
        )
    with_mats = [c for c in cells if c["mats"]]
    without = [c for c in cells if not c["mats"]]
    if with_mats and without:
        x = with_mats[0]["stages"]["total"][0] / without[0]["stages"]["total"][0]
        out += ["", f"The mats' cycle costs {x:.2f}x the phones-only cycle's (medians)."]
    return out + [""]


if __name__ == "__main__":
    n, age = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (50_000, 3000)
    print(json.dumps([run(n, age, True), run(n, age, False)]))
