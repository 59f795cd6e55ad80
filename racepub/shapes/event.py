"""An event of several races (a marathon, a half and a 10 km sharing a start
area and an audience): one page leading to each.

Each race's publisher writes, every cycle, its race's `summary.json` into
its own sink (its title, state, leader, counts by status), and the event's
page (`index.html` and its static files) into the event's sink. The page is
made from the config alone, the same bytes whichever publisher writes it,
so no publisher overwrites another's part: the page reads every race's
summary, each written by that race's publisher alone. Pure; no I/O but the
template.
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import quote

import jinja2

from ..config import Config, Event
from ..model.board import SCHEMA, Board, envelope, identity, status_counts
from ..model.race import RaceState
from ..objects import SUMMARY, Object, make
from .encode import json_bytes
from .page import csp

EVENT_TEMPLATE = "event.html.j2"


def summary(state: RaceState, board: Board, seq: int) -> dict[str, Any]:
    """What the event's page says of a race: its state, its leader (their
    identity, distance, finish), how many racers are at what."""
    moment = board.moment
    race = envelope(state, board.now, seq)
    leader = moment.leader()
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "race": race["race"],
        "generated_at": race["generated_at"],
        "seq": seq,
        "count": len(state.order),
        "by_status": status_counts(moment),
        "leader": None,
    }
    if leader is not None:
        rec = float(board.distance_m[leader])
        finish = float(board.finish_s[leader])
        out["leader"] = identity(state.order[leader].racer) | {
            "distance_m": round(rec, 1),
            "finish_s": None if finish != finish else round(finish, 1),
        }
    return out


def summary_object(state: RaceState, board: Board, seq: int) -> Object:
    return make(SUMMARY, json_bytes(summary(state, board, seq)), state.race.interval_s)


def page_objects(
    config: Config,
    event: Event,
    env: jinja2.Environment,
    static_hash: str,
    static: list[tuple[str, bytes]],
) -> list[Object]:
    """The event's page and its static files, for the event's sink: the
    same bytes from every race's publisher."""
    races = []
    for rid in event.races:
        race = config.races[rid]
        place = posixpath.relpath(race.sink[race.sink.index(":") + 1 :], _place(event.sink))
        # A path, never a scheme or a query: "javascript:" or "#" in a sink
        # is spelt as the key's own characters.
        races.append({"id": rid, "title": race.title, "place": f"./{quote(place.strip('/'))}/"})
    prefix = f"static/{static_hash}"
    interval = max(config.races[r].interval_s for r in event.races)
    body = (
        env.get_template(EVENT_TEMPLATE)
        .render(
            title=event.title,
            races=races,
            static=prefix,
            csp=csp(None),
            config={"races": races, "interval_s": interval},
        )
        .encode()
    )
    out = [make("index.html", body, interval)]
    out += [make(f"{prefix}/{rel}", data, interval) for rel, data in static]
    return out


def _place(sink: str) -> str:
    """A sink's place, as race sinks under it are spelt (scheme and bucket kept)."""
    return sink[sink.index(":") + 1 :].rstrip("/")
