"""Bytes to publish: snapshot.json, track chunks, the map page. Pure; no I/O but templates."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from ..assets import templates_dir
from ..config import Race
from ..model.course import Course

PAGE_TEMPLATE = "index.html.j2"


@dataclass(frozen=True)
class BoardRow:
    """One leaderboard row as the page first paints it (before any script)."""

    rank: int
    id: str
    name: str
    kind: str
    color: str | None
    bib: str | None
    distance: str
    pace: str
    gap: str
    status: str
    finish: str


@dataclass(frozen=True)
class PageContext:
    """Everything index.html.j2 receives. A race's own template gets the same."""

    title: str
    race_id: str
    starts_at: str
    state: str  # pre | live | finished
    interval_s: int
    static: str  # relative URL prefix of the static files, e.g. "static/3f2a…"
    csp: str  # Content-Security-Policy for the page's <meta>
    rows: list[BoardRow]
    field: bool  # the field shape (a large race): rows are the leaderboard head of `count`
    count: str  # how many racers, formatted
    config: dict[str, Any]  # handed to the page's script as JSON (escaped by tojson)


def environment(template_dir: Path | None) -> jinja2.Environment:
    """A race's template directory is tried first, then the package's own."""
    dirs = ([str(template_dir)] if template_dir else []) + [str(templates_dir())]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs), autoescape=True, undefined=jinja2.StrictUndefined
    )


def page_context(
    race: Race,
    course: Course,
    snapshot: dict[str, Any],
    static_prefix: str,
    basemap: dict[str, Any] | None = None,
) -> PageContext:
    """basemap: the race's own (Publisher._basemap), drawn instead of `tiles`."""
    per = 1609.344 if race.units == "mi" else 1000.0
    rows = [
        BoardRow(
            rank=r["rank"],
            id=r["id"],
            name=r["name"],
            kind=r["kind"],
            color=r["color"],
            bib=r["bib"],
            distance=f"{r['distance_m'] / per:.2f} {race.units}" if r["position"] else "–",
            pace=f"{clock_text(r['pace_s_per_km'] * per / 1000)} /{race.units}"
            if r["pace_s_per_km"]
            else "",
            gap=_gap(r["gap_s"]),
            status="finished"
            if r["finish_s"] is not None
            else ("racing" if r["position"] else "waiting"),
            finish=f"finished {clock_text(r['finish_s'])}" if r["finish_s"] is not None else "",
        )
        for r in snapshot["racers"]
    ]
    return PageContext(
        title=race.title,
        race_id=race.id,
        starts_at=snapshot["race"]["starts_at"],
        state=snapshot["race"]["state"],
        interval_s=race.interval_s,
        static=static_prefix,
        csp=csp(None if basemap else race.tiles),
        rows=rows,
        field=race.field_shape,
        count=f"{len(race.racers):,}",
        config={
            "race": race.id,
            "title": race.title,
            "starts_at": snapshot["race"]["starts_at"],
            "interval_s": race.interval_s,
            "units": race.units,
            "tiles": race.tiles,
            "attribution": race.tile_attribution,
            "basemap": basemap,
            "course": _geometry(course.lap),  # a race of laps: the lap, drawn once
            "course_length_m": round(course.length_m, 1),
            "laps": course.laps,
            "lap_m": round(course.lap_m, 1),
            "profile": _profile(course.lap),  # null without elevation: no profile drawn
            "pace_window_s": race.pace_window_s,
            # Where the checkpoints are (config and GPX waypoints, as the
            # records' splits list them), the finish left out.
            "checkpoints": [
                [c["name"], c["distance_m"]]
                for c in next((r["splits"] for r in snapshot["racers"] if r.get("splits")), [])
            ][:-1],
        },
    )


def render_page(env: jinja2.Environment, ctx: PageContext) -> bytes:
    # Its fields as they are (asdict would deep-copy the course every time).
    names = {f.name: getattr(ctx, f.name) for f in fields(ctx)}
    return env.get_template(PAGE_TEMPLATE).render(names | {"ctx": ctx}).encode()


def csp(tiles: str | None) -> str:
    """Only the page's own scripts and styles; images also from the tile host,
    or, with the race's own basemap (tiles=None), the blobs its tiles become."""
    if tiles is None:
        return (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self' data: blob:; base-uri 'none'; form-action 'none'"
        )
    parts = urlsplit(tiles.replace("{s}", "a"))
    tile_host = f"{parts.scheme}://{parts.netloc}"
    if "{s}" in tiles:
        tile_host = f"{parts.scheme}://*.{parts.netloc.split('.', 1)[-1]}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src 'self' data: {tile_host}; base-uri 'none'; form-action 'none'"
    )


@functools.cache
def _geometry(course: Course) -> list[list[float]]:
    return course.simplified().geometry()  # the page embeds it: at most 5,000 points


@functools.cache
def _profile(course: Course) -> list[list[float]] | None:
    return course.profile()


def _gap(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return "leader" if seconds == 0 else f"+{clock_text(seconds)}"


def whole_seconds(seconds: float) -> int:
    """The one rounding rule for times (road-race results): up to the next
    whole second, so 1,250.5 s is 20:51; a time already whole stays."""
    return math.ceil(round(seconds, 3))


def clock_text(seconds: float) -> str:
    """Seconds as the page shows them, rounded up: m:ss, or h:mm:ss."""
    s = max(0, whole_seconds(seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"
