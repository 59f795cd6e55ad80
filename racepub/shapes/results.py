"""The race's results: results.json, results.csv and results.html, from the
same ranking as the snapshot. Pure; no I/O but the template.

While the race is live they are provisional (and say so); once its state is
`finished` they are final. The publisher writes them when they change."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import jinja2

from ..config import Racer
from ..model.board import Board, envelope, identity, records
from ..model.race import RaceState
from ..objects import Object, make_results
from ..timefmt import iso
from .encode import json_bytes
from .page import clock_text, whole_seconds

RESULTS_TEMPLATE = "results.html.j2"
RESULTS_EVERY_S = 60.0  # provisional results while the race is live, at most this often


@dataclass(frozen=True)
class Results:
    final: bool
    body: dict[str, Any]


def results(state: RaceState, board: Board, now: float) -> Results:
    """Every racer by place: the finishers by net time (from their own
    start; a wave's racers are not slower by their wave's wait), then the
    rest as they are on the road; each with their place in their category,
    status, net and gun finish, pace, gap to the winner, splits."""
    final = state.state(now) == "finished"
    recs = records(state, board, [int(i) for i in board.moment.order])
    finished = sorted(
        (r for r in recs if r["finish_s"] is not None), key=lambda r: (r["finish_s"], r["rank"])
    )
    recs = finished + [r for r in recs if r["finish_s"] is None]
    winner = finished[0]["finish_s"] if finished else None
    racers = []
    in_category: dict[str, int] = {}
    for place, r in enumerate(recs, 1):
        gap = None
        if r["finish_s"] is not None and winner is not None:
            gap = round(r["finish_s"] - winner, 1)
        category = r.get("category")
        if category is not None:
            in_category[category] = in_category.get(category, 0) + 1
        racers.append(
            {"rank": place, "category_rank": in_category[category] if category else None}
            | identity(state.tracks[r["id"]].racer)
            | {
                "status": "dnf"
                if final and r["finish_s"] is None and r["position"]
                else "dns"
                if final and not r["position"]
                else r["status"],
                "finish_s": r["finish_s"],
                "gun_finish_s": r["gun_finish_s"],
                "distance_m": r["distance_m"],
                "pace_s_per_km": r["pace_s_per_km"],
                "gap_to_winner_s": gap,
                "splits": r.get("splits", []),
            }
        )
    race = envelope(state, now, 0)["race"]
    # generated_at: the moment the results describe, the newest fix in them,
    # so the same results are the same bytes (and not written again).
    newest = max((t.last.t for t in state.tracks.values() if t.last is not None), default=now)
    body = {
        "schema": 1,
        "race": race | {"state": "finished" if final else "live"},
        "generated_at": iso(min(newest, now)),
        "final": final,
        "racers": racers,
    }
    return Results(final, body)


def objects(res: Results, env: jinja2.Environment, tz: tzinfo | None = None) -> list[Object]:
    """tz: the race's own time zone (its start's UTC offset): results.html's clock."""
    return [
        make_results("results.json", json_bytes(res.body), res.final),
        make_results("results.csv", csv_bytes(res), res.final),
        make_results("results.html", html_bytes(res, env, tz), res.final),
    ]


# Who each row is, as identity() says it (its colour is the page's business).
_WHO = [key for key in identity(Racer("-", "-")) if key != "color"]


def csv_bytes(res: Results) -> bytes:
    """One row per racer, one column per checkpoint; opens in a spreadsheet
    as is (UTF-8 with a byte order mark, times as h:mm:ss, rounded up to the
    next whole second as road-race results are; the seconds in finish_s are
    results.json's, exact).

    Names come from registrants and checkpoint names from the config or a
    GPX, and a spreadsheet runs a cell that starts with = + - @, a tab or a
    carriage return as a formula. So a quote goes before each place in a
    text cell where a formula could start, also after a ';', tab or '|'
    (the separator some locales split on: their cells start there), and
    text is quoted; the numbers written here stay bare numbers."""
    racers = res.body["racers"]
    checkpoints = [s["name"] for s in (racers[0]["splits"] if racers else [])]
    winner = _winner(racers)
    out = io.StringIO()
    w = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC)  # numbers bare, text quoted
    w.writerow(
        _text_cells(
            [
                "rank",
                "category_rank",
                *_WHO,
                "status",
                "finish",
                "finish_s",
                "gun_finish",
                "gun_finish_s",
                "pace_per_km",
                "gap_to_winner",
                "distance_m",
                *checkpoints,
            ]
        )
    )
    for r in racers:
        w.writerow(
            _text_cells(
                [
                    r["rank"],
                    _blank(r["category_rank"]),
                    *("" if r[k] is None else r[k] for k in _WHO),
                    r["status"],
                    _time(r["finish_s"]),
                    _blank(r["finish_s"]),
                    _time(r["gun_finish_s"]),
                    _blank(r["gun_finish_s"]),
                    _time(r["pace_s_per_km"]),
                    _gap(r, winner),
                    _blank(r["distance_m"]),
                    *(_time(s["at_s"]) for s in r["splits"]),
                ]
            )
        )
    return ("\ufeff" + out.getvalue()).encode()


def html_bytes(res: Results, env: jinja2.Environment, tz: tzinfo | None = None) -> bytes:
    """The results as a page that fits a phone: in the race's units, times
    of day on the race's clock (tz; else UTC, and says so), times rounded
    up to the next whole second; a category filter that needs no script."""
    racers = res.body["racers"]
    race = res.body["race"]
    units = race.get("units") or "km"
    per = _METRES[units]
    # The finish is the Time column: the splits before it are columns.
    checkpoints = [s["name"] for s in (racers[0]["splits"] if racers else [])][:-1]
    categories = sorted({r["category"] for r in racers if r.get("category")})
    winner = _winner(racers)
    rows = [
        {
            "rank": r["rank"],
            "bib": r["bib"],
            "name": r["name"],
            "kind": r["kind"],
            "category": r.get("category") or "",
            "category_rank": r.get("category_rank"),
            "group": f"c{categories.index(r['category'])}" if r.get("category") else "",
            "status": r["status"],
            "finish": _time(r["finish_s"]),
            "distance": "" if r["distance_m"] is None else f"{r['distance_m'] / per:.2f}",
            "pace": _time(r["pace_s_per_km"] * per / 1000 if r["pace_s_per_km"] else None),
            "gap": _ahead_of(_gap(r, winner)),
            "splits": [_time(s["at_s"]) for s in r["splits"][:-1]],
        }
        for r in racers
    ]
    return (
        env.get_template(RESULTS_TEMPLATE)
        .render(
            race=race,
            final=res.final,
            started=_local(race["starts_at"], tz, "%a %-d %b %Y, %H:%M"),
            generated=_local(res.body["generated_at"], tz, "%H:%M:%S"),
            zone=_zone(race["starts_at"], tz),
            length=f"{race['course_length_m'] / per:.2f} {units}",
            units=units,
            checkpoints=checkpoints,
            categories=categories,
            ranked=any(r["category_rank"] is not None for r in rows),
            bibs=any(r["bib"] for r in racers),
            rows=rows,
        )
        .encode()
    )


_METRES = {"km": 1000.0, "mi": 1609.344}


def _time(seconds: float | None) -> str:
    return "" if seconds is None else clock_text(seconds)


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _winner(racers: list[dict[str, Any]]) -> float | None:
    return next((r["finish_s"] for r in racers if r["finish_s"] is not None), None)


def _gap(r: dict[str, Any], winner: float | None) -> str:
    """Behind the winner: the difference of the finish times as written
    (each rounded up), so the gaps add up to what the times say."""
    if r["finish_s"] is None or winner is None:
        return ""
    gap = whole_seconds(r["finish_s"]) - whole_seconds(winner)
    return clock_text(gap) if gap else ""


def _ahead_of(gap: str) -> str:
    return f"+{gap}" if gap else ""


def _local(iso_text: str, tz: tzinfo | None, fmt: str) -> str:
    return (
        datetime.fromisoformat(iso_text.replace("Z", "+00:00")).astimezone(tz or UTC).strftime(fmt)
    )


def _zone(iso_text: str, tz: tzinfo | None) -> str:
    """The race clock's name: "UTC−04:00" (its offset at the start), or "UTC"."""
    at = datetime.fromisoformat(iso_text.replace("Z", "+00:00")).astimezone(tz or UTC)
    offset = at.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "\u2212"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# Where a spreadsheet would start a formula (OWASP, "CSV Injection"): at the
# start of a cell, or after a character some spreadsheet takes for a cell or
# line break (',' ';' tab '|' CR LF: the separator depends on the locale),
# past blanks and quotes, a = + - @ (or its full-width form). A cell that
# starts with a tab or a carriage return is one too.
_FORMULA = re.compile(r"(^|[,;\t|\r\n])(?=[\s\"']*[=+\-@\uff1d\uff0b\uff0d\uff20])|^(?=[\t\r])")


def _text_cells(row: list[Any]) -> list[Any]:
    return [_text_cell(v) if isinstance(v, str) else v for v in row]


def _text_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a quote before each place a formula
    could start (a leading quote is not shown; the cell holds the rest)."""
    return _FORMULA.sub(lambda m: m.group(0) + "'", text)
