"""Bytes to publish: snapshot.json, track chunks, the map page. Pure; no I/O but templates."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from ..assets import templates_dir
from ..config import Race, Racer
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
    category: str | None
    distance: str  # the progress the rank is decided by ("≈" when estimated)
    pace: str
    gap: str
    status: str
    state: str  # the status in words when it is not plain racing ("stale")
    finish: str  # the finish time, or how soon it is expected ("in 15 min")
    soon: str  # under it: "finished", or the expected finish's time of day
    fix: str  # when their newest fix was, in the race's time of day
    vs: list[str]  # a runner's margin on each vehicle, in words


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
    bibs: bool  # some racer wears a bib: the board has a bib column
    categories: list[str]  # the racers' categories, sorted: a filter and a column
    course_length: str  # in the race's units: "1.41 mi"
    story: list[tuple[str, list[tuple[str, str]]]]  # each vehicle: runners' margins (text, side)
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
    categories, bibs = _entrants(race.racers)
    per = 1609.344 if race.units == "mi" else 1000.0
    offset = race.starts_at.utcoffset() or timedelta(0)
    generated = _time(snapshot["generated_at"])
    length = snapshot["race"]["course_length_m"]
    rows = []
    for r in snapshot["racers"]:
        progress, estimated = ranked_progress(r)
        status = r.get("status", "waiting")
        finish, soon = "", ""
        if r["finish_s"] is not None:
            finish, soon = clock_text(r["finish_s"]), "finished"
        elif r["eta_s"] is not None and status == "racing":
            at = generated + timedelta(seconds=r["eta_s"]) + offset
            finish, soon = f"in {_soon(r['eta_s'])}", f"at ≈ {at:%H:%M}"
        rows.append(
            BoardRow(
                rank=r["rank"],
                id=r["id"],
                name=r["name"],
                kind=r["kind"],
                color=r["color"],
                bib=r["bib"],
                category=r.get("category"),
                distance=f"{'≈ ' if estimated else ''}{progress / per:.2f} {race.units}"
                if r["position"]
                else "–",
                pace=f"{clock_text(r['pace_s_per_km'] * per / 1000)} /{race.units}"
                if r["pace_s_per_km"]
                else "",
                gap=_gap(r, snapshot["racers"][0] if snapshot["racers"] else None),
                status=status,
                state=" · ".join(
                    ([] if status == "racing" else [status])
                    + (["estimated"] if r.get("estimated") else [])
                )
                if status not in ("waiting", "finished")
                else "",
                finish=finish,
                soon=soon,
                fix=_fix(r, offset),
                vs=[_versus(v, per, race.units) for v in r.get("vs_vehicles", [])],
            )
        )
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
        bibs=bibs,
        categories=categories,
        course_length=f"{length / per:.2f} {race.units}",
        story=[] if race.field_shape else _story(snapshot["racers"]),
        config={
            "race": race.id,
            "title": race.title,
            "starts_at": snapshot["race"]["starts_at"],
            "interval_s": race.interval_s,
            "units": race.units,
            "utc_offset_min": round(offset.total_seconds() / 60),  # the race's clock
            "categories": categories,
            "bibs": bibs,
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


# What the page needs of the entrants (their categories, whether any wears a
# bib), worked out once per field: a page is rendered every cycle and a
# field may be 50,000 racers. Keyed by the racers tuple itself (its hash
# would walk it every call).
_ENTRANTS: dict[int, tuple[tuple[Racer, ...], list[str], bool]] = {}


def _entrants(racers: tuple[Racer, ...]) -> tuple[list[str], bool]:
    got = _ENTRANTS.get(id(racers))
    if got is None or got[0] is not racers:
        got = (
            racers,
            sorted({r.category for r in racers if r.category}),
            any(r.bib for r in racers),
        )
        _ENTRANTS[id(racers)] = got
    return got[1], got[2]


@functools.cache
def _geometry(course: Course) -> list[list[float]]:
    return course.simplified().geometry()  # the page embeds it: at most 5,000 points


@functools.cache
def _profile(course: Course) -> list[list[float]] | None:
    return course.profile()


def _gap(r: dict[str, Any], leader: dict[str, Any] | None) -> str:
    """Behind the leader; finishers by their finish times as shown."""
    if r["rank"] == 1 and r["position"]:
        return "leader"
    if r["finish_s"] is not None and leader is not None and leader["finish_s"] is not None:
        return "+" + clock_text(whole_seconds(r["finish_s"]) - whole_seconds(leader["finish_s"]))
    return "" if r["gap_s"] is None else f"+{clock_text(r['gap_s'])}"


def _story(racers: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each vehicle's runners, ahead or behind it, as the page's strip says it."""
    out = []
    for v in (r for r in racers if r["kind"] == "vehicle"):
        chips = [] if v["position"] else [(f"{v['name']} has not started", "waiting")]
        for r in racers if v["position"] else []:
            mine = next((x for x in r.get("vs_vehicles", []) if x["id"] == v["id"]), None)
            if r["kind"] == "vehicle":
                continue
            if mine is None or mine["ahead"] is None:
                chips.append((f"{r['name']}: not started", "waiting"))
                continue
            side = "ahead" if mine["ahead"] else "behind"
            by = clock_text(mine["seconds"]) if mine["seconds"] is not None else ""
            chips.append((f"{r['name']}: {by} {side}".replace(":  ", ": "), side))
        out.append((v["name"], chips))
    return out


def _fix(r: dict[str, Any], offset: timedelta) -> str:
    if not r["position"]:
        return "waiting"
    if r.get("status") == "finished":
        return "finished"
    return f"last fix {_time(r['position']['at']) + offset:%H:%M:%S}"


def _versus(v: dict[str, Any], per: float, units: str) -> str:
    """A runner against a vehicle in words: "1:12 ahead of The T (120 m)"
    (static/js/story.js versusText says the same)."""
    if v["ahead"] is None:
        return ""
    side = "ahead of" if v["ahead"] else "behind"
    by = clock_text(v["seconds"]) if v["seconds"] is not None else None
    far = _margin(v["metres"], per, units) if v["metres"] else None
    if by and far:
        return f"{by} {side} {v['name']} ({far})"
    return f"{by or far or 'level'} {side} {v['name']}"


def _margin(m: float, per: float, units: str) -> str:
    """A short distance: metres (feet in a race in miles) under a tenth of the unit."""
    if m < per / 10:
        return f"{round(m * 3.28084)} ft" if units == "mi" else f"{round(m)} m"
    return f"{m / per:.2f} {units}"


def ranked_progress(r: dict[str, Any]) -> tuple[float, bool]:
    """The progress a record's rank is decided by (progress_m: carried on
    to the snapshot's moment, model/standings.py), and whether it is
    estimated beyond the newest fix. static/js/numbers.js says the same."""
    d = float(r["distance_m"])
    if r.get("progress_m") is None:
        return d, False
    return float(r["progress_m"]), r["progress_m"] - d >= 0.5


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _soon(seconds: float) -> str:
    """A duration to come, roughly: "40 s", "15 min", "1 h 05 min"."""
    s = whole_seconds(seconds)
    if s < 60:
        return f"{s} s"
    minutes = math.ceil(s / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def whole_seconds(seconds: float) -> int:
    """The one rounding rule for times (road-race results): up to the next
    whole second, so 1,250.5 s is 20:51; a time already whole stays."""
    return math.ceil(round(seconds, 3))


def clock_text(seconds: float) -> str:
    """Seconds as the page shows them, rounded up: m:ss, or h:mm:ss."""
    s = max(0, whole_seconds(seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"
