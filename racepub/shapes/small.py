"""The small shape: every racer's full record in `snapshot.json`, by rank,
with their trail: `tail` (the points since the trail was last cut) and
`track` (the pieces before them, as ranges of packs). The snapshot's
`trail` block lists the pieces of the whole field: a page reads each pack
once, with one range request, for every racer (DESIGN.md, "Trails")."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..config import Race
from ..model.board import Board, envelope, points, records
from ..model.race import RaceState
from . import Fetch, Output
from .results import RESULTS_EVERY_S
from .trails import Read, Ref, TrailStore

CUT_EVERY_S = 60.0  # a small race's trails are cut every minute of race time
_RANGE = re.compile(r"^(.+)#bytes=(\d+)-(\d+)$")


def range_url(ref: Ref) -> str:
    """A piece as a record's `track` lists it: the pack and the byte range
    of its gzip member, as an HTTP Range header says it (last byte included)."""
    key, at, length = ref
    return f"{key}#bytes={at}-{at + length - 1}"


def parse_range_url(url: str) -> Ref | None:
    m = _RANGE.match(url)
    if m is None:
        return None
    first, last = int(m.group(2)), int(m.group(3))
    return (m.group(1), first, last - first + 1) if last >= first else None


class SmallShape:
    results_every_s: float | None = RESULTS_EVERY_S

    def __init__(self, race: Race, state: RaceState, store: TrailStore | None = None):
        self.race, self.state = race, state
        self._store = store or TrailStore(state, 1, CUT_EVERY_S)

    @property
    def store(self) -> TrailStore:
        return self._store

    def once(self) -> list[Any]:
        return []

    def publish(self, board: Board, seq: int, read: Read, submit: Callable[..., Any]) -> Output:
        store, state = self.store, self.state
        store.cut(board.now, seq, everyone=self.state.state(board.now) == "finished")
        store.merge(store.pack(seq), submit, read)
        order = [int(i) for i in board.moment.order]
        recs = records(state, board, order)
        _, per = store.refs(0)  # group 0 is the whole field, in config order
        for rec, i in zip(recs, order, strict=True):
            rec["tail"] = points(state.order[i].tail_xyt)
            rec["track"] = [range_url(ref) for ref in per[i]]
        doc = store.doc(0)
        snap = envelope(state, board.now, seq) | {
            "racers": recs,
            "trail": {
                "packs": list(doc["packs"]),
                "pieces": doc["pieces"],
                "ids": [t.racer.id for t in state.order],
                "until": store.until(0),
            },
        }
        return Output(snap, [p.object() for p in store.unwritten if p.size], [])

    def resume(self, snapshot: dict[str, Any], fetch: Fetch) -> dict[str, float]:
        """Take on the pieces the published snapshot lists."""
        block = snapshot.get("trail")
        ids = [t.racer.id for t in self.state.order]
        if not isinstance(block, dict) or block.get("ids") != ids:
            return {}
        packs = list(block["packs"])
        number = {key: n for n, key in enumerate(packs)}
        where = {rid: k for k, rid in enumerate(ids)}
        chunks: list[list[list[int]]] = [[] for _ in ids]
        for rec in snapshot.get("racers", []):
            k = where.get(rec.get("id"), -1)
            for url in rec.get("track", []) if k >= 0 else []:
                ref = parse_range_url(url)
                if ref is None or ref[0] not in number:
                    return {}
                chunks[k].append([number[ref[0]], ref[1], ref[2]])
        doc = {"packs": packs, "pieces": block["pieces"], "chunks": chunks}
        self.store.adopt(0, doc, list(block["until"]))
        return {}
