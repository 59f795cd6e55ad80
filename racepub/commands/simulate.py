"""Realistic points for the configured racers along the course (rehearsals, the demo).

Each racer follows a known truth: runners at a steady pace with gentle
surges, vehicles cruising between stops and waiting at each. Fixes come
every ~2 s with a few metres of GPS noise and are stamped with real wall
time; `speed` makes racers move that many times faster (a 25-minute race
takes 2.5 minutes at speed 10). A race whose start is in the past is
backfilled up to now, then continues live.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..config import Config, Race, Racer
from ..model.course import Course, race_course
from ..publisher.progress import Progress
from ..source import connect
from ..timefmt import ts

log = logging.getLogger(__name__)

FIX_EVERY_S = 2.0
GPS_NOISE_M = 4.0
AFTER_FINISH_S = 30.0  # fixes keep coming a little past the line
RUN_ON_S = 8.0  # racers carry on through the line for a few seconds, then stop
STOP_DWELL_S = 25.0
# The founding race (4.1 miles): three runners beat the trolley.
FOUNDING_FINISH_S = [24 * 60 + 8, 24 * 60 + 10, 24 * 60 + 15, 26 * 60 + 40]
FOUNDING_VEHICLE_S = 24 * 60 + 49


@dataclass(frozen=True)
class Truth:
    """Where a racer is (metres along the course) at race time t (seconds)."""

    racer: Racer
    finish_s: float
    distance: Callable[[float], float]


def truths(race: Race, course: Course) -> list[Truth]:
    out = []
    runners = vehicles = 0
    for racer in race.racers:
        rng = random.Random(f"{race.id}/{racer.id}")
        if racer.kind == "vehicle":
            finish = FOUNDING_VEHICLE_S * (1 + 0.05 * vehicles)
            out.append(Truth(racer, finish, _vehicle(course, finish)))
            vehicles += 1
        else:
            if runners < len(FOUNDING_FINISH_S):
                finish = float(FOUNDING_FINISH_S[runners])
            else:
                finish = FOUNDING_FINISH_S[-1] * rng.uniform(0.9, 1.3)
            out.append(Truth(racer, finish, _runner(course.length_m, finish, rng)))
            runners += 1
    return out


def _runner(length: float, finish: float, rng: random.Random) -> Callable[[float], float]:
    # Pace swings of ±2-5% (amp·2π), a few surges and fades per race.
    waves, amp, phase = rng.randint(2, 5), rng.uniform(0.003, 0.008), rng.uniform(0, math.tau)

    def distance(t: float) -> float:
        u = min(max(t / finish, 0.0), 1.0)
        # Monotone, and exact at the start and the finish.
        wobble = amp * (math.sin(math.tau * waves * u + phase) - math.sin(phase)) / waves
        return length * (u + wobble * (1 - u) * u * 4)

    return distance


def _vehicle(course: Course, finish: float) -> Callable[[float], float]:
    stops = [d for d in course.cum[1:-1]] or [course.length_m / 2]
    moving = max(finish - STOP_DWELL_S * len(stops), finish * 0.3)
    dwell = (finish - moving) / len(stops)
    v = course.length_m / moving
    # (distance at which it stops, time it arrives there)
    schedule = [(d, d / v + i * dwell) for i, d in enumerate(stops)]

    def distance(t: float) -> float:
        waited = 0.0
        for d, arrive in schedule:
            if t < arrive:
                break
            if t < arrive + dwell:
                return d
            waited += dwell
        return min(v * (t - waited), course.length_m)

    return distance


def fixes(
    race: Race, course: Course, since: float, until: float, speed: float = 1.0
) -> Iterator[tuple[str, float, float, float]]:
    """(racer id, epoch time, lat, lon) for every fix in [since, until)."""
    start = ts(race.starts_at)
    for truth in truths(race, course):
        rng = random.Random(f"{race.id}/{truth.racer.id}/fixes")
        end = start + (truth.finish_s + AFTER_FINISH_S) / speed
        t = start + rng.uniform(0, FIX_EVERY_S)
        while t < min(until, end):
            if t >= since:
                race_t = (t - start) * speed
                d = truth.distance(race_t)
                if race_t > truth.finish_s:  # through the line, then slowing to a stop
                    d = course.length_m + min(race_t - truth.finish_s, RUN_ON_S) * (
                        course.length_m / truth.finish_s
                    )
                x, y = course.beyond(d)
                noisy = course.to_latlon(
                    x + _noise(t, truth.racer.id, 0), y + _noise(t, truth.racer.id, 1)
                )
                yield truth.racer.id, round(t, 3), noisy[0], noisy[1]
            t += FIX_EVERY_S + rng.uniform(-0.3, 0.3)


def _noise(t: float, racer_id: str, axis: int) -> float:
    # Deterministic per (racer, time): a rerun writes the same points.
    return random.Random(f"{racer_id}/{t:.3f}/{axis}").gauss(0, GPS_NOISE_M)


def race_over_at(race: Race, course: Course, speed: float) -> float:
    longest = max(t.finish_s for t in truths(race, course)) + AFTER_FINISH_S
    return ts(race.starts_at) + longest / speed


def create_table(conn: psycopg.Connection[object], cfg: Config) -> None:
    """A source table shaped like the config says (for the demo and rehearsals)."""
    s = cfg.source
    parts = s.table_parts
    if len(parts) == 2:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(parts[0])))
    cols = [
        sql.SQL("{} text NOT NULL").format(sql.Identifier(s.racer)),
        sql.SQL("{} timestamptz NOT NULL").format(sql.Identifier(s.time)),
        sql.SQL("{} double precision").format(sql.Identifier(s.lat)),
        sql.SQL("{} double precision").format(sql.Identifier(s.lon)),
    ]
    if s.ingest:
        cols.insert(0, sql.SQL("{} bigserial PRIMARY KEY").format(sql.Identifier(s.ingest)))
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(*parts), sql.SQL(", ").join(cols)
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{parts[-1]}_time_idx"),
            sql.Identifier(*parts),
            sql.Identifier(s.ingest or s.time),
        )
    )


def insert(
    conn: psycopg.Connection[object], cfg: Config, rows: list[tuple[str, float, float, float]]
) -> None:
    s = cfg.source
    query = sql.SQL("INSERT INTO {} ({}, {}, {}, {}) VALUES (%s, to_timestamp(%s), %s, %s)").format(
        sql.Identifier(*s.table_parts),
        sql.Identifier(s.racer),
        sql.Identifier(s.time),
        sql.Identifier(s.lat),
        sql.Identifier(s.lon),
    )
    with conn.cursor() as cur:
        cur.executemany(query, rows)


def simulate(
    cfg: Config,
    race: Race,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    tick_s: float = 1.0,
) -> int:
    """Write fixes as wall time passes until the race is over; return how many."""
    course = race_course(race)
    over = race_over_at(race, course, speed)
    stop = stop or threading.Event()
    written = 0
    since = start = ts(race.starts_at)
    # Race minutes simulated, of the race's length (its slowest finisher and a margin).
    progress = Progress("simulating", (over - start) * speed / 60, "race min")
    with connect(cfg.dsn) as conn:
        while not stop.is_set():
            now = time.time()
            rows = list(fixes(race, course, since, now, speed))
            if rows:
                insert(conn, cfg, rows)
                written += len(rows)
            since = max(since, now)
            progress.update((now - start) * speed / 60, f"{written:,} fixes")
            if now >= over:
                break
            stop.wait(tick_s)
    progress.close()
    log.info("simulation wrote %d fixes", written)
    return written
