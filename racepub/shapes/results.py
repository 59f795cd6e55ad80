"""The race's results: results.json, results.csv and results.html, from the
same ranking as the snapshot. Pure; no I/O but the template.

While the race is live they are provisional (and say so); once its state is
`finished` they are final. The publisher writes them when they change."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

import jinja2

from ..config import Racer
from ..model.board import Board, envelope, identity, records
from ..model.race import RaceState
from ..objects import Object, make_results
from ..timefmt import iso
from .encode import json_bytes
from .page import clock_text

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


def objects(res: Results, env: jinja2.Environment) -> list[Object]:
    return [
        make_results("results.json", json_bytes(res.body), res.final),
        make_results("results.csv", csv_bytes(res), res.final),
        make_results("results.html", html_bytes(res, env), res.final),
    ]


# Who each row is, as identity() says it (its colour is the page's business).
_WHO = [key for key in identity(Racer("-", "-")) if key != "color"]


def csv_bytes(res: Results) -> bytes:
    """One row per racer, one column per checkpoint; opens in a spreadsheet
    as is (UTF-8 with a byte order mark, times as h:mm:ss).

    Names come from registrants and checkpoint names from the config or a
    GPX, and a spreadsheet runs a cell that starts with = + - @, a tab or a
    carriage return as a formula. So a quote goes before each place in a
    text cell where a formula could start, also after a ';', tab or '|'
    (the separator some locales split on: their cells start there), and
    text is quoted; the numbers written here stay bare numbers."""
    checkpoints = [
        s["name"] for s in (res.body["racers"][0]["splits"] if res.body["racers"] else [])
    ]
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
    for r in res.body["racers"]:
        w.writerow(
            _text_cells(
                [
                    r["rank"],
                    "" if r["category_rank"] is None else r["category_rank"],
                    *("" if r[k] is None else r[k] for k in _WHO),
                    r["status"],
                    _time(r["finish_s"]),
                    "" if r["finish_s"] is None else r["finish_s"],
                    _time(r["gun_finish_s"]),
                    "" if r["gun_finish_s"] is None else r["gun_finish_s"],
                    _time(r["pace_s_per_km"]),
                    _time(r["gap_to_winner_s"]),
                    "" if r["distance_m"] is None else r["distance_m"],
                    *(_time(s["at_s"]) for s in r["splits"]),
                ]
            )
        )
    return ("\ufeff" + out.getvalue()).encode()


def html_bytes(res: Results, env: jinja2.Environment) -> bytes:
    racers = res.body["racers"]
    checkpoints = [s["name"] for s in (racers[0]["splits"] if racers else [])]
    rows = [
        {
            "rank": r["rank"],
            "bib": r["bib"],
            "name": r["name"],
            "kind": r["kind"],
            "status": r["status"],
            "finish": _time(r["finish_s"]),
            "pace": _time(r["pace_s_per_km"]),
            "gap": ("+" + _time(r["gap_to_winner_s"])) if r["gap_to_winner_s"] else "",
            "splits": [_time(s["at_s"]) for s in r["splits"]],
        }
        for r in racers
    ]
    return (
        env.get_template(RESULTS_TEMPLATE)
        .render(
            race=res.body["race"],
            final=res.final,
            generated_at=res.body["generated_at"],
            checkpoints=checkpoints,
            bibs=any(r["bib"] for r in racers),
            rows=rows,
        )
        .encode()
    )


def _time(seconds: float | None) -> str:
    return "" if seconds is None else clock_text(seconds)


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
