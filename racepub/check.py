"""`racepub check`: preflight before race day. Prints a report; True if all is well."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import psycopg
from psycopg import sql

from . import objects
from .config import Config, Race
from .course import load_gpx
from .errors import RacepubError
from .sink import open_sink
from .source import connect, describe, index_advice, missing_columns


def check(cfg: Config, race: Race, out: Callable[[str], None] = print) -> bool:
    ok = True

    def report(good: bool, what: str, detail: str, warning: str | None = None) -> None:
        nonlocal ok
        ok = ok and good
        out(f"{'ok  ' if good else 'FAIL'}  {what}: {detail}")
        if warning:
            out(f"warn  {what}: {warning}")

    report(True, "config", f"{cfg.path} (race {race.id}: {len(race.racers)} racers, "
           f"every {race.interval_s}s)")
    try:
        course = load_gpx(race.course)
        report(True, "course", f"{race.course} ({len(course.points)} points, "
               f"{course.length_m / 1000:.2f} km)")
    except RacepubError as e:
        report(False, "course", str(e))
    report(*_database(cfg))
    report(*_sink(cfg, race))
    return ok


def _database(cfg: Config) -> tuple[bool, str, str, str | None]:
    try:
        with connect(cfg.dsn) as conn:
            columns = describe(conn, cfg.source)
            if not columns:
                return False, "database", f"no table {cfg.source.table!r}", None
            missing = missing_columns(cfg.source, columns)
            if missing:
                return False, "database", (f"table {cfg.source.table!r} has no column "
                                           f"{', '.join(map(repr, missing))}"), None
            # The publisher needs SELECT and nothing else.
            conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 0").format(
                sql.Identifier(*cfg.source.table_parts)))
            advice = index_advice(conn, cfg.source)
    except RacepubError as e:
        return False, "database", str(e), None
    except psycopg.Error as e:
        return False, "database", str(e).strip().splitlines()[0], None
    warning = None
    if advice:
        warning = f"no index serves the incremental read (it would scan the table); add: {advice}"
    return True, "database", f"table {cfg.source.table!r} readable, columns present", warning


def _sink(cfg: Config, race: Race) -> tuple[bool, str, str]:
    key = f".racepub-check-{secrets.token_hex(4)}.txt"
    try:
        sink = open_sink(race.sink, cfg.s3)
        sink.put(objects.make(key, b"racepub check\n", race.interval_s))
        sink.delete(key)
    except RacepubError as e:
        return False, "sink", str(e)
    return True, "sink", f"{sink.describe()} writable (probe written and removed)"
