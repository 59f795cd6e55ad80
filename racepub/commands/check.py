"""`racepub check`: preflight before race day. Prints a report; True if all is well."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from .. import objects
from ..config import Config, Race
from ..errors import RacepubError
from ..model.course import Course, race_course
from ..shapes.page import csp, environment
from ..shapes.results import RESULTS_TEMPLATE
from ..shapes.trial import template_problem
from ..sink import open_sink
from ..source import (
    connect,
    describe,
    index_advice,
    insert_order_columns,
    missing_columns,
    type_problems,
)
from .tiles import load_basemap


def check(cfg: Config, race: Race, out: Callable[[str], None] = print) -> bool:
    ok = True

    def report(good: bool, what: str, detail: str) -> None:
        nonlocal ok
        ok = ok and good
        if what.startswith("warn  "):  # a warning: printed, not a failure
            out(f"{what}: {detail}")
            return
        out(f"{'ok  ' if good else 'FAIL'}  {what}: {detail}")

    report(
        True,
        "config",
        f"{cfg.path} (race {race.id}: {len(race.racers)} racers, every {race.interval_s}s)",
    )
    try:
        course = race_course(race)
        climb = (
            ", with elevation"
            if any(e is not None for e in course.elevations)
            else ", no elevation"
        )
        report(
            True,
            "course",
            f"{race.course}: its {course.source} ({len(course.points)} "
            f"points, {course.length_m / 1000:.2f} km{climb}, "
            f"{len(course.waypoints)} named waypoints)",
        )
    except RacepubError as e:
        report(False, "course", str(e))
    else:
        report(*_templates(race, course))
    good, what, detail, own_map = _map(race)
    report(good, what, detail)
    policy = cdn_csp(None if own_map else race.tiles, race.template_dir)
    report(
        True,
        "csp",
        "the CDN's Content-Security-Policy header for this race: the page's own, "
        "results.html's style by its hash, and no framing by other sites "
        f'(CloudFormation: ContentSecurityPolicy="{policy}")',
    )
    for good, what, detail in _database(cfg):
        report(good, what, detail)
    report(*_sink(cfg, race))
    return ok


def cdn_csp(tiles: str | None, template_dir: Path | None = None) -> str:
    """The Content-Security-Policy header a CDN sends with every object of
    the race: what the page's own <meta> allows (script and style files of
    its origin only), and results.html's inline <style> by the hash of its
    text (the header and the page's <meta> both apply, so a header without
    it unstyles the results); frame-ancestors, which a <meta> cannot say,
    keeps other sites from framing the page."""
    directives = csp(tiles).split("; ")
    hashes = " ".join(f"'{h}'" for h in inline_style_hashes(template_dir))
    directives = [
        f"{d} {hashes}" if d.startswith("style-src ") and hashes else d for d in directives
    ]
    return "; ".join([*directives, "frame-ancestors 'none'"])


def inline_style_hashes(template_dir: Path | None = None) -> list[str]:
    """sha256-… of each <style> element's text in results.html (the race's
    template, else racepub's), as CSP hashes them."""
    env = environment(template_dir)
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, RESULTS_TEMPLATE)
    return [
        "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        for text in re.findall(r"<style>(.*?)</style>", source, re.S)
        if "{{" not in text and "{%" not in text  # rendered as written
    ]


def _database(cfg: Config) -> list[tuple[bool, str, str]]:
    """(ok, what, detail) lines: reachable, columns present and of usable
    types, SELECT allowed; and warnings (ok, "warn …") for what would cost
    fixes on race day: no index for the read, no insert-order column."""
    src = cfg.source
    try:
        with connect(cfg.dsn) as conn:
            columns = describe(conn, src)
            if not columns:
                return [(False, "database", f"no table {src.table!r}")]
            missing = missing_columns(src, columns)
            if missing:
                return [
                    (
                        False,
                        "database",
                        f"table {src.table!r} has no column {', '.join(map(repr, missing))}",
                    )
                ]
            errors, warnings = type_problems(src, columns)
            if errors:
                return [(False, "database", e) for e in errors]
            # The publisher needs SELECT and nothing else.
            conn.execute(
                sql.SQL("SELECT 1 FROM {} LIMIT 0").format(sql.Identifier(*src.table_parts))
            )
            advice = index_advice(conn, src)
            ordered = insert_order_columns(conn, src)
    except RacepubError as e:
        hint = f" ({_dsn_from(cfg)})" if str(e).startswith("cannot connect") else ""
        return [(False, "database", f"{e}{hint}")]
    except psycopg.errors.InsufficientPrivilege as e:
        return [
            (
                False,
                "database",
                f"{str(e).strip().splitlines()[0]} (the publisher needs SELECT on it: "
                f"GRANT SELECT ON {src.table} TO <its role>)",
            )
        ]
    except psycopg.Error as e:
        return [(False, "database", str(e).strip().splitlines()[0])]
    mode = (
        f"cursor {src.ingest!r} (insert order)"
        if src.ingest
        else f"cursor {src.time!r} looking back {src.lookback_s} s"
    )
    lines = [(True, "database", f"table {src.table!r} readable, columns present, {mode}")]
    lines += [(True, "warn  database", w) for w in warnings]
    if advice:
        lines.append(
            (
                True,
                "warn  database",
                f"no index serves the incremental read (it would scan the table); add: {advice}",
            )
        )
    arrivals = [c for c in ordered if columns[c].startswith("timestamp")]
    if src.ingest and not columns[src.ingest].startswith("timestamp") and not src.arrival:
        if arrivals:
            lines.append(
                (
                    True,
                    "warn  source",
                    "no arrival column: a phone whose clock runs ahead is found live, but not "
                    "by a publisher catching up on the race (its times then a minute off); "
                    f'this table has one; add to [source]:  arrival = "{arrivals[0]}"',
                )
            )
    if not src.ingest:
        fix = (
            f'this table has one; add to [source]:  ingest = "{ordered[0]}"'
            if ordered
            else "add an identity column or a received_at timestamptz DEFAULT now()"
        )
        lines.append(
            (
                True,
                "warn  source",
                "no ingest column: fixes a phone uploads more "
                f"than lookback_s ({src.lookback_s} s) late, after a tunnel or a dead "
                f"battery, are never read; {fix}",
            )
        )
    return lines


def _dsn_from(cfg: Config) -> str:
    """Where the DSN came from, so the line says what to set."""
    if os.environ.get("RACEPUB_DATABASE_URL"):
        return "the DSN is $RACEPUB_DATABASE_URL"
    return f"the DSN is [database] dsn in {cfg.path}, or set $RACEPUB_DATABASE_URL"


def _map(race: Race) -> tuple[bool, str, str, bool]:
    """Where the page's map comes from: (ok, what, detail, the race's own basemap)."""
    if race.basemap is not None:
        try:
            basemap = load_basemap(race.basemap)
        except RacepubError as e:
            return (False, "basemap", f"{e} (racepub tiles --race {race.id} --from SOURCE)", False)
        kind = (
            f"{basemap.tile_type} tiles"
            if basemap.raster
            else "vector tiles (drawn in the Protomaps basemap schema's light flavour)"
        )
        return (
            True,
            "basemap",
            (
                f"{race.basemap}: {len(basemap.body) / 1e6:.1f} MB of "
                f"{kind}, zooms {basemap.min_zoom}-"
                f"{basemap.max_zoom}; the page asks no third party"
            ),
            True,
        )
    if "tile.openstreetmap.org" in race.tiles:
        return (
            True,
            "warn  tiles",
            (
                "the page's map comes from tile.openstreetmap.org, whose usage policy forbids "
                "heavy use: a popular race gets throttled or blocked, and every spectator's "
                "browser talks to a third party. Cut the race's own basemap from an archive of "
                f"the area (racepub tiles --race {race.id} --from AREA.pmtiles), or set tiles "
                "to a provider you have an agreement with"
            ),
            False,
        )
    return True, "tiles", f"the page's map comes from {race.tiles}", False


def _sink(cfg: Config, race: Race) -> tuple[bool, str, str]:
    key = f".racepub-check-{secrets.token_hex(4)}.txt"
    try:
        sink = open_sink(race.sink, cfg.s3)
        sink.put(objects.make(key, b"racepub check\n", race.interval_s))
        sink.delete(key)
    except RacepubError as e:
        return False, "sink", f"{e}{_policy(race.sink) if 'AccessDenied' in str(e) else ''}"
    return True, "sink", f"{sink.describe()} writable (probe written and removed)"


def _templates(race: Race, course: Course) -> tuple[bool, str, str]:
    problem = template_problem(race, course)
    if problem is not None:
        return False, "template", problem
    own = f" ({race.template_dir} first)" if race.template_dir else ""
    return True, "template", f"the page and results render{own}"


def _policy(sink_url: str) -> str:
    """The grants the publisher needs on an s3:// sink, spelt out for it."""
    bucket, _, prefix = sink_url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    keys = f"{prefix}/*" if prefix else "*"
    return (
        f"; for {sink_url}: s3:PutObject, s3:GetObject, s3:DeleteObject on "
        f"arn:aws:s3:::{bucket}/{keys} and s3:ListBucket on arn:aws:s3:::{bucket} "
        f"(condition s3:prefix {keys})"
    )
