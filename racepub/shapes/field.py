"""The field shape, for large races (DESIGN.md, "Large races"): the whole
field, fresh and consistent every cycle, in a few dozen objects; its
snapshot carries a `field` block saying where the rest is. Pure but for the
bytes it makes; the publisher writes them.

Every cycle writes, with that cycle's `seq` and one ranking of the field:
- `snapshot.json`: the leaderboard head as full records, and the `field` block;
- `racers/<n>.json` for every shard: each member's live numbers as columns.

And, without a PUT per racer: the trails' pack (shapes/trails.py), with the
recent trails of the trail groups due, and `trails/<k>.json`, each at least
every TRAIL_EVERY_S: for each member of the group, where their pieces and
their recent trail are in the packs.

Written once per start (immutable, named by content): `roster/<hash>/<n>.json`
(who is in each shard, in column order, with names) and `names/<hash>/<key>.json`
(a name index, for finding a racer by name).
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from .. import objects
from ..config import Race
from ..model.board import SEARCHED, Board, envelope, identity, records, status_counts
from ..model.race import RaceState
from ..model.splits import splits
from ..model.standings import STATUS_CODES
from ..objects import Object
from ..timefmt import iso
from . import Fetch, Output
from .encode import NULL_INT, json_bytes, with_arrays
from .trails import Read, Ref, TrailStore, fnv1a32

TRAIL_EVERY_S = 60.0  # each trail group's recent trails are rewritten this often
# Racers per trail group: a trail group is rewritten every TRAIL_EVERY_S, so
# a follower fetches theirs that often (its size grows with the group).
TRAIL_GROUP = 500
# A large race's trails are cut every this much race time (and a racer's
# recent trail spans at most that): each cut is a piece in the packs.
CUT_EVERY_S = 1200.0
DENSITY_BINS = 200
NAMES_MAX = 1500  # a name index object splits into three-letter keys above this


def shard_of(racer_id: str, shards: int) -> int:
    """Which shard holds a racer: FNV-1a (32-bit) of the id's UTF-8 bytes,
    modulo the number of shards. The page computes the same."""
    return fnv1a32(racer_id) % shards


def fold(text: str) -> str:
    """A name as searched: accents off, lower case (the page folds alike)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()


def tokens(text: str) -> list[str]:
    return [t for t in "".join(c if c.isalnum() else " " for c in fold(text)).split() if t]


def name_key(prefix: str) -> str:
    """A name index object's key: the folded prefix when it is plain ASCII
    letters and digits, else ~ and the hex of its UTF-8 bytes."""
    if prefix.isascii() and prefix.isalnum():
        return prefix
    return "~" + prefix.encode().hex()


class FieldShape:
    results_every_s: float | None = None  # a large field's results: once, final

    def __init__(self, race: Race, state: RaceState, store: TrailStore | None = None):
        self.race, self.state = race, state
        n = len(state.order)
        self.shards = max(1, math.ceil(n / race.shard_size))
        self.trails = self.shards * max(1, math.ceil(race.shard_size / TRAIL_GROUP))
        ids = [t.racer.id for t in state.order]
        hashes = np.array([fnv1a32(i) for i in ids], dtype=np.int64)
        # Members in column order (config order), per shard.
        self.members = [np.flatnonzero(hashes % self.shards == k) for k in range(self.shards)]
        # The whole field in shard order, and where each shard's part begins.
        self.by_shard = np.concatenate(self.members)
        self.shard_at = np.cumsum([0] + [len(m) for m in self.members]).tolist()
        if store is None or store.groups != self.trails:
            store = TrailStore(state, self.trails, CUT_EVERY_S)
        self._store = store
        self.roster_objects, roster_hash = self._rosters()
        self.name_objects, names_hash = self._names()
        self.roster_url = objects.roster_key(roster_hash, "{shard}")
        self.names_url = objects.names_key(names_hash, "{key}")
        self.lat0, self.lon0 = (round(c, 6) for c in state.course.at(state.course.length_m / 2))

    @property
    def store(self) -> TrailStore:
        return self._store

    def once(self) -> list[Object]:
        return self.roster_objects + self.name_objects

    # -- what never changes during a race ----------------------------------------

    def _rosters(self) -> tuple[list[Object], str]:
        bodies = []
        for k, members in enumerate(self.members):
            who = [identity(self.state.order[i].racer) for i in members.tolist()]
            bodies.append(
                {
                    "schema": 1,
                    "race": self.race.id,
                    "shard": k,
                    "shards": self.shards,
                    # Each field of a racer's identity as a column, in shard order.
                    "identity": {key: [w[key] for w in who] for key in (who[0] if who else {})},
                }
            )
        raw = [json_bytes(b) for b in bodies]
        digest = hashlib.sha256(b"\0".join(raw)).hexdigest()[:12]
        return [
            objects.make(objects.roster_key(digest, str(k)), body, self.race.interval_s)
            for k, body in enumerate(raw)
        ], digest

    def _names(self) -> tuple[list[Object], str]:
        """Every racer under the first two letters of each word they can be
        found by (their name, id, bib: board.SEARCHED); a key holding more
        than NAMES_MAX splits into keys of three letters, and says so."""
        by2: dict[str, set[int]] = {}
        words: dict[int, list[str]] = {}
        fields = list(identity(self.state.order[0].racer)) if self.state.order else []
        head = {"fields": fields, "searched": list(SEARCHED)}
        for i, t in enumerate(self.state.order):
            who = identity(t.racer)
            words[i] = [w for key in SEARCHED for w in tokens(str(who[key] or ""))]
            for w in words[i]:
                by2.setdefault(w[:2], set()).add(i)
        bodies: dict[str, dict[str, Any]] = {}
        for k2, found in by2.items():
            if len(found) <= NAMES_MAX:
                bodies[name_key(k2)] = {"key": k2, **head, "racers": self._named(found)}
                continue
            bodies[name_key(k2)] = {
                "key": k2,
                **head,
                "split": True,
                "racers": self._named({i for i in found if any(w == k2 for w in words[i])}),
            }
            by3: dict[str, set[int]] = {}
            for i in found:
                for w in words[i]:
                    if len(w) >= 3 and w[:2] == k2:
                        by3.setdefault(w[:3], set()).add(i)
            for k3, more in by3.items():
                bodies[name_key(k3)] = {"key": k3, **head, "racers": self._named(more)}
        raw = {key: json_bytes(body) for key, body in sorted(bodies.items())}
        digest = hashlib.sha256(
            b"\0".join(k.encode() + b"\0" + v for k, v in raw.items())
        ).hexdigest()[:12]
        return [
            objects.make(objects.names_key(digest, key), body, self.race.interval_s)
            for key, body in raw.items()
        ], digest

    def _named(self, found: set[int]) -> list[list[Any]]:
        """The racers found, each as the values of their identity, in the
        order its `fields` name them."""
        return [list(identity(self.state.order[i].racer).values()) for i in sorted(found)]

    # -- a cycle -----------------------------------------------------------------------

    def publish(self, board: Board, seq: int, read: Read, submit: Callable[..., Any]) -> Output:
        store, now = self.store, board.now
        store.cut(now, seq, everyone=self.state.state(now) == "finished")
        pack = store.pack(seq)
        store.merge(pack, submit, read)
        due = self._due_groups(now)
        recent = store.recent([i for g in due for i in store.members[g].tolist()], pack)
        trails = [self._trail_object(g, seq, now, recent) for g in due]

        def shards() -> Iterator[Object]:
            columns = self._shard_columns(board)
            return (self._shard_object(k, seq, now, columns) for k in range(self.shards))

        def commit() -> None:
            for g in due:
                for i in store.members[g].tolist():
                    store.recent_refs[i] = recent.get(i)
            store.index_at[due] = now

        packs = [p.object() for p in store.unwritten if p.size]
        return Output(self._snapshot(board, seq), packs, trails, shards, commit)

    def _due_groups(self, now: float) -> list[int]:
        """The trail groups to rewrite: each at least every TRAIL_EVERY_S,
        spread evenly over the cycles (all at once on a start)."""
        written = self.store.index_at
        if not np.isfinite(written).any():
            return list(range(self.trails))
        # Within TRAIL_EVERY_S less a cycle: no bridge from a recent trail to
        # the live position spans more than TRAIL_EVERY_S of race time.
        interval = self.race.interval_s
        cycles = max(1.0, (TRAIL_EVERY_S - interval) / interval)
        per_cycle = math.ceil(self.trails / math.floor(cycles))
        oldest = np.argsort(written, kind="stable")[:per_cycle]
        # And any group that old by the clock: cycles may come further apart
        # than the interval (a slow database, a loop that fell behind).
        overdue = np.flatnonzero(written <= now - (TRAIL_EVERY_S - interval))
        return [int(g) for g in np.union1d(oldest, overdue)]

    def _trail_object(self, g: int, seq: int, now: float, recent: dict[int, Ref]) -> Object:
        """Group g's index: its pieces, each member's ranges in them, their
        recent trails, and (with checkpoints) their splits."""
        store = self.store
        doc = store.doc(g)
        packs: dict[str, int] = doc["packs"]
        members = store.members[g].tolist()

        def ref(r: Ref | None) -> list[int] | None:
            if r is None:
                return None
            return [packs.setdefault(r[0], len(packs)), r[1], r[2]]

        latest = [ref(recent.get(i)) for i in members]  # none: all cut
        body: dict[str, Any] = {
            "schema": 1,
            "race": self.race.id,
            "trail": g,
            "trails": self.trails,
            "seq": seq,
            "generated_at": iso(now),
            "packs": list(packs),
            "pieces": doc["pieces"],
            "ids": [self.state.order[i].racer.id for i in members],
            "chunks": doc["chunks"],
            "recent": latest,
            "until": store.until(g),
        }
        cps = self.state.checkpoints
        if cps:
            start = self.state.start_t
            body["splits"] = [
                [s["at_s"] for s in splits(self.state.order[i], cps, start)] for i in members
            ]
        return objects.make(objects.trail_key(g), json_bytes(body), self.race.interval_s)

    def _shard_columns(self, board: Board) -> dict[str, np.ndarray]:
        """Every shard's live columns at once, for the whole field in shard
        order (shard 0's members, then shard 1's, ...): the board's columns,
        rounded as shards publish them."""
        m = self.by_shard
        moment = board.moment
        waiting = moment.status[m] == STATUS_CODES["waiting"]

        def col(values: np.ndarray, decimals: int = 0) -> np.ndarray:
            """Rounded; null where unknown (or the racer has no fix yet)."""
            bad = ~np.isfinite(values) | waiting
            rounded = np.round(np.where(bad, 0.0, values), decimals)
            if decimals:
                return np.where(bad, np.nan, rounded)
            return np.where(bad, NULL_INT, rounded.astype(np.int64))

        distance, progress = col(board.distance_m[m]), col(moment.estimate_m[m])
        unknown = (distance == NULL_INT) | (progress == NULL_INT)
        columns = {
            "rank": moment.rank[m],
            "status": moment.status[m],
            "distance_m": distance,
            # progress_m as how far it runs on beyond the fix: a few metres,
            # not a second column of five digits (3 KB of a 30 KB poll)
            "ahead_m": np.where(unknown, NULL_INT, progress - distance),
            "lat_e6": col((board.lat[m] - self.lat0) * 1e6),
            "lon_e6": col((board.lon[m] - self.lon0) * 1e6),
            "age_ms": col((board.now - board.fix_t[m]) * 1000),
            "pace_s_per_km": col(board.pace_s_per_km[m]),
            "gap_s": col(moment.gap_s[m]),
            "eta_s": col(moment.eta_s[m]),
            "finish_s": col(board.finish_s[m], 1),
            "gun_finish_s": col(board.gun_finish_s[m], 1),
            "estimated": board.estimated[m].astype(np.int64),
        }
        if self.state.course.laps > 1:
            columns["lap"] = col(board.lap[m])
        return columns

    def _shard_object(self, k: int, seq: int, now: float, columns: dict[str, np.ndarray]) -> Object:
        """A shard's live records as columns, in roster order: what a page
        following one of its members polls every cycle."""
        head = {
            "schema": 1,
            "race": self.race.id,
            "shard": k,
            "shards": self.shards,
            "seq": seq,
            "generated_at": iso(now),
            "lat0": self.lat0,
            "lon0": self.lon0,
        }
        part = slice(self.shard_at[k], self.shard_at[k + 1])
        body = with_arrays(head, {name: values[part] for name, values in columns.items()})
        return objects.make(objects.shard_key(k), body, self.race.interval_s)

    def _snapshot(self, board: Board, seq: int) -> dict[str, Any]:
        state, race, moment = self.state, self.race, board.moment
        head = [int(i) for i in moment.order[: race.head_size]]
        vehicles = np.flatnonzero(state.standings.vehicle)
        head += vehicles[moment.rank[vehicles] > race.head_size].tolist()
        return envelope(state, board.now, seq) | {
            "racers": records(state, board, head),
            "field": {
                "count": len(state.order),
                "by_status": status_counts(moment),
                "head": len(head),
                "shards": self.shards,
                "shard_of": "fnv1a32",
                "shard_url": objects.shard_key("{shard}"),
                "roster_url": self.roster_url,
                "trails": self.trails,
                "trail_url": objects.trail_key("{trail}"),
                "trail_every_s": TRAIL_EVERY_S,
                "names_url": self.names_url,
                "density": {
                    "bins": DENSITY_BINS,
                    "counts": state.standings.density(moment, DENSITY_BINS),
                },
            },
        }

    # -- a restart -----------------------------------------------------------------------

    def resume(self, snapshot: dict[str, Any], fetch: Fetch) -> dict[str, float]:
        """Carry on from what spectators see: the pieces each trail group
        lists are taken on (never cut again), and each group is due again
        on its schedule. Returns each racer's published fix time (from the
        live shards): the floor the publisher never goes below. Every trail
        group and shard is asked for at once (`fetch`): a mass race has
        hundreds of them."""
        if "field" not in snapshot:
            return {}
        store = self.store
        keys = [objects.trail_key(g) for g in range(self.trails)] + [
            objects.shard_key(k) for k in range(self.shards)
        ]
        docs = [None if body is None else orjson.loads(body) for body in fetch(keys)]
        groups, shards = docs[: self.trails], docs[self.trails :]
        if any(doc is not None and doc.get("trails") != self.trails for doc in groups):
            return {}  # another layout (the field changed): nothing to carry on from
        for g, doc in enumerate(groups):
            if doc is None:
                continue
            ids = [self.state.order[i].racer.id for i in store.members[g].tolist()]
            if doc.get("ids") != ids or not store.adopt(g, doc, doc.get("until", [])):
                continue
            # Due again on the usual schedule, not all in the first cycle.
            store.index_at[g] = datetime.fromisoformat(doc["generated_at"]).timestamp()
            for i, latest in zip(store.members[g].tolist(), doc["recent"], strict=False):
                if latest is not None:
                    store.recent_refs[i] = (doc["packs"][latest[0]], latest[1], latest[2])
        floor: dict[str, float] = {}
        for k, doc in enumerate(shards):
            if doc is None or doc.get("shards") != self.shards:
                continue
            generated = datetime.fromisoformat(doc["generated_at"]).timestamp()
            for i, age in zip(self.members[k].tolist(), doc["age_ms"], strict=False):
                if age is not None:
                    floor[self.state.order[i].racer.id] = generated - age / 1000
        return floor
