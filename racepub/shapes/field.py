"""The large-race form (DESIGN.md, "Large races"): the whole field, fresh and
consistent every cycle, in a few dozen objects. Pure but for the bytes it
makes; the publisher writes them.

Every cycle writes, with that cycle's `seq` and one ranking of the field:
- `snapshot.json`: the leaderboard head as full records, and the `field` block;
- `racers/<n>.json` for every shard: each member's live record as columns.

And, without a PUT per racer:
- `packs/<seq>-<token>.bin`: one immutable object a cycle holding, as gzip
  members read by HTTP range requests, the chunks cut that cycle and the
  recent trails of the trail groups due;
- `trails/<k>.json`, each at least every TRAIL_EVERY_S: for each member of
  the group, where their chunks and their recent trail are in the packs.

Written once per start (immutable, named by content): `roster/<hash>/<n>.json`
(who is in each shard, in column order, with names) and `names/<hash>/<key>.json`
(a name index, for finding a racer by name).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import unicodedata
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from .. import objects
from ..config import Race
from ..model.race import RaceState, display_name
from ..model.standings import STATUS_CODES, Moment
from ..model.track import Chunk, fnv1a32
from ..objects import Object, gzip_bytes
from ..timefmt import iso
from .page import NULL_INT, array_json, json_bytes, with_arrays

TRAIL_EVERY_S = 60.0  # each trail group's recent trails are rewritten this often
# Racers per trail group: 50,000 racers make 108 groups, ~4 rewritten a
# cycle (each a PUT), ~10 KB gzipped each at 4 h (a follower's, every 20 s).
TRAIL_GROUP = 500
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


@dataclass
class Pack:
    """One cycle's pack: gzip members appended; where each is."""

    key: str
    parts: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, body: bytes) -> tuple[int, int]:
        member = gzip_bytes(body)
        at = self.size
        self.parts.append(member)
        self.size += len(member)
        return at, len(member)

    def object(self) -> Object:
        return objects.make(self.key, b"".join(self.parts), 0)


Ref = tuple[str, int, int]  # (pack key, offset, length) of a gzip member


class ChunkRefs:
    """Where each racer's published chunks are, flat in an array per racer:
    (pack, offset, length), the pack as an index into `keys`. (A tuple and
    two ints a chunk were ~150 bytes: at 50,000 racers 4 hours in, a dozen
    chunks each, 70 MB.)"""

    def __init__(self, n: int):
        self.keys: list[str] = []
        self._ids: dict[str, int] = {}
        self._flat = [array("q") for _ in range(n)]

    def count(self, i: int) -> int:
        return len(self._flat[i]) // 3

    def of(self, i: int) -> list[Ref]:
        flat, keys = self._flat[i], self.keys
        return [(keys[flat[k]], flat[k + 1], flat[k + 2]) for k in range(0, len(flat), 3)]

    def add(self, i: int, refs: list[Ref]) -> None:
        flat = self._flat[i]
        for key, at, length in refs:
            pack = self._ids.get(key)
            if pack is None:
                pack = self._ids[key] = len(self.keys)
                self.keys.append(key)
            flat.extend((pack, at, length))

    def replace(self, i: int, refs: list[Ref]) -> None:
        self._flat[i] = array("q")
        self.add(i, refs)


@dataclass
class Cycle:
    """What a cycle of the large form writes, and what to remember once it is
    written (commit); a failed cycle's pack is forgotten and made again."""

    snapshot: dict[str, Any]
    packs: list[Object]  # in place before the trail groups that point into them
    trails: list[Object]
    # The live shards, rendered one by one as they are asked for: the first
    # upload while the rest are made (at 50,000 racers, 36 PUTs of ~25 KB).
    shards: Callable[[], Iterator[Object]]
    commit: Callable[[], None]

    def objects(self) -> list[Object]:
        return [*self.packs, *self.trails, *self.shards()]


class LargeForm:
    def __init__(self, race: Race, state: RaceState):
        self.race, self.state = race, state
        n = len(state.order)
        self.shards = max(1, math.ceil(n / race.shard_size))
        self.trails = self.shards * max(1, math.ceil(race.shard_size / TRAIL_GROUP))
        ids = [t.racer.id for t in state.order]
        hashes = np.array([fnv1a32(i) for i in ids], dtype=np.int64)
        # Members in column order (config order), per shard and trail group.
        self.members = [np.flatnonzero(hashes % self.shards == k) for k in range(self.shards)]
        # The whole field in shard order, and where each shard's part begins.
        self.by_shard = np.concatenate(self.members)
        self.shard_at = np.cumsum([0] + [len(m) for m in self.members]).tolist()
        self.groups = [np.flatnonzero(hashes % self.trails == k) for k in range(self.trails)]
        self.roster_objects, roster_hash = self._rosters()
        self.name_objects, names_hash = self._names()
        self.roster_url = objects.roster_key(roster_hash, "{shard}")
        self.names_url = objects.names_key(names_hash, "{key}")
        self.chunk_refs = ChunkRefs(n)
        self.recent_refs: list[Ref | None] = [None] * n
        self.trail_at = np.full(self.trails, -math.inf)  # when each group was last written
        self.lat0, self.lon0 = (round(c, 6) for c in state.course.at(state.course.length_m / 2))

    # -- what never changes during a race ----------------------------------------

    def _rosters(self) -> tuple[list[Object], str]:
        bodies = []
        for k, members in enumerate(self.members):
            racers = [self.state.order[i].racer for i in members.tolist()]
            bodies.append(
                {
                    "schema": 1,
                    "race": self.race.id,
                    "shard": k,
                    "shards": self.shards,
                    "ids": [r.id for r in racers],
                    "names": [display_name(r.name) for r in racers],
                    "kinds": [r.kind for r in racers],
                    "colors": [r.color for r in racers],
                }
            )
        raw = [json_bytes(b) for b in bodies]
        digest = hashlib.sha256(b"\0".join(raw)).hexdigest()[:12]
        return [
            objects.make(objects.roster_key(digest, str(k)), body, self.race.interval_s)
            for k, body in enumerate(raw)
        ], digest

    def _names(self) -> tuple[list[Object], str]:
        """Every racer under the first two letters of each word of their name
        (and their id); a key holding more than NAMES_MAX splits into keys of
        three letters, and says so."""
        by2: dict[str, set[int]] = {}
        words: dict[int, list[str]] = {}
        for i, t in enumerate(self.state.order):
            words[i] = tokens(t.racer.name) + tokens(t.racer.id)
            for w in words[i]:
                by2.setdefault(w[:2], set()).add(i)
        bodies: dict[str, dict[str, Any]] = {}
        for k2, found in by2.items():
            if len(found) <= NAMES_MAX:
                bodies[name_key(k2)] = {"key": k2, "racers": self._named(found)}
                continue
            bodies[name_key(k2)] = {
                "key": k2,
                "split": True,
                "racers": self._named({i for i in found if any(w == k2 for w in words[i])}),
            }
            by3: dict[str, set[int]] = {}
            for i in found:
                for w in words[i]:
                    if len(w) >= 3 and w[:2] == k2:
                        by3.setdefault(w[:3], set()).add(i)
            for k3, more in by3.items():
                bodies[name_key(k3)] = {"key": k3, "racers": self._named(more)}
        raw = {key: json_bytes(body) for key, body in sorted(bodies.items())}
        digest = hashlib.sha256(
            b"\0".join(k.encode() + b"\0" + v for k, v in raw.items())
        ).hexdigest()[:12]
        return [
            objects.make(objects.names_key(digest, key), body, self.race.interval_s)
            for key, body in raw.items()
        ], digest

    def _named(self, found: set[int]) -> list[list[str]]:
        racers = [self.state.order[i].racer for i in sorted(found)]
        return [[r.id, display_name(r.name)] for r in racers]

    # -- a cycle -----------------------------------------------------------------------

    def cycle(self, now: float, seq: int, moment: Moment, chunks: list[Chunk]) -> Cycle:
        due = self._due_groups(now)
        pack, new_refs, recent = self._pack(seq, chunks, due)
        chunk_refs = self.chunk_refs
        merged = {i: chunk_refs.of(i) + refs for i, refs in new_refs.items()}
        trail_objs = [self._trail_object(g, seq, now, merged, recent) for g in due]

        def shards() -> Iterator[Object]:
            columns = self._shard_columns(now, moment)
            return (self._shard_object(k, seq, now, columns) for k in range(self.shards))

        def commit() -> None:
            for i, refs in new_refs.items():
                chunk_refs.add(i, refs)
            for i, ref in recent.items():
                self.recent_refs[i] = ref
            self.trail_at[due] = now

        packs = [pack.object()] if pack.parts else []
        return Cycle(self._snapshot(now, seq, moment), packs, trail_objs, shards, commit)

    def pack_ahead(self, seq: int, chunks: list[Chunk]) -> tuple[Object | None, Callable[[], None]]:
        """A pack of these chunks alone, written before the cycle that lists
        them (a long catch-up's: hours of chunks would otherwise all wait in
        memory for the first cycle), and what to remember once written."""
        pack, new_refs, _ = self._pack(seq, chunks, [])

        def commit() -> None:
            for i, refs in new_refs.items():
                self.chunk_refs.add(i, refs)

        return (pack.object() if pack.parts else None), commit

    def _pack(
        self, seq: int, chunks: list[Chunk], due: list[int]
    ) -> tuple[Pack, dict[int, list[Ref]], dict[int, Ref]]:
        """A pack of the chunks not packed yet and the recent trails of the
        trail groups due; where each racer's pieces are in it."""
        state = self.state
        pack = Pack(objects.pack_key(seq, secrets.token_hex(4)))
        pieces: list[tuple[int, str, Any]] = []  # (racer index, kind, (lat, lon, t) flat)
        for chunk in chunks:
            i = state.standings.index[chunk.racer_id]
            if chunk.n < self.chunk_refs.count(i):
                continue  # in a pack already, before a restart: never cut again
            pieces.append((i, "chunk", chunk.xyt))
        for g in due:
            for i in self.groups[g].tolist():
                if state.order[i].last is not None:
                    pieces.append((i, "recent", state.order[i].recent()))
        new_refs: dict[int, list[Ref]] = {}
        recent: dict[int, Ref] = {}
        for (i, kind, _), body in zip(pieces, self._bodies(pieces), strict=True):
            at, length = pack.add(body)
            if kind == "chunk":
                new_refs.setdefault(i, []).append((pack.key, at, length))
            else:
                recent[i] = (pack.key, at, length)
        return pack, new_refs, recent

    def _bodies(self, pieces: list[tuple[int, str, Any]]) -> list[bytes]:
        """Each chunk or recent trail as a pack holds it: {"racer", "t0",
        "points": [[lat, lon, seconds after t0], ...]} (t0: the race's start),
        compact to make and to fetch; the page turns them into times. All
        rounded at once, as one array."""
        if not pieces:
            return []
        flat = np.concatenate([np.frombuffer(xyt, dtype=np.float64) for _, _, xyt in pieces])
        rows = flat.reshape(-1, 3)
        t0 = self.state.start_t
        rows = np.column_stack(
            (np.round(rows[:, 0], 6), np.round(rows[:, 1], 6), np.round(rows[:, 2] - t0, 3))
        )
        bodies, at = [], 0
        order = self.state.order
        start = b',"t0":' + orjson.dumps(t0) + b',"points":'
        for i, _, xyt in pieces:
            n = len(xyt) // 3
            bodies.append(
                b'{"racer":'
                + orjson.dumps(order[i].racer.id)
                + start
                + array_json(rows[at : at + n])
                + b"}"
            )
            at += n
        return bodies

    def _due_groups(self, now: float) -> list[int]:
        """The trail groups to rewrite: each at least every TRAIL_EVERY_S,
        spread evenly over the cycles (all at once on a start)."""
        if not np.isfinite(self.trail_at).any():
            return list(range(self.trails))
        # Within TRAIL_EVERY_S less a cycle: no bridge from a recent trail to
        # the live position spans more than TRAIL_EVERY_S of race time.
        interval = self.race.interval_s
        cycles = max(1.0, (TRAIL_EVERY_S - interval) / interval)
        per_cycle = math.ceil(self.trails / math.floor(cycles))
        oldest = np.argsort(self.trail_at, kind="stable")[:per_cycle]
        # And any group that old by the clock: cycles may come further apart
        # than the interval (a slow database, a loop that fell behind).
        overdue = np.flatnonzero(self.trail_at <= now - (TRAIL_EVERY_S - interval))
        return [int(g) for g in np.union1d(oldest, overdue)]

    def _trail_object(
        self,
        g: int,
        seq: int,
        now: float,
        merged: dict[int, list[Ref]],
        recent: dict[int, Ref],
    ) -> Object:
        members = self.groups[g].tolist()
        packs: dict[str, int] = {}

        def ref(r: Ref | None) -> list[int] | None:
            if r is None:
                return None
            return [packs.setdefault(r[0], len(packs)), r[1], r[2]]

        refs = self.chunk_refs
        chunks = [[ref(r) for r in (merged[i] if i in merged else refs.of(i))] for i in members]
        latest = [ref(recent.get(i, self.recent_refs[i])) for i in members]
        body = {
            "schema": 1,
            "race": self.race.id,
            "trail": g,
            "trails": self.trails,
            "seq": seq,
            "generated_at": iso(now),
            "packs": list(packs),
            "ids": [self.state.order[i].racer.id for i in members],
            "chunks": chunks,
            "recent": latest,
        }
        return objects.make(objects.trail_key(g), json_bytes(body), self.race.interval_s)

    def _shard_columns(self, now: float, moment: Moment) -> dict[str, np.ndarray]:
        """Every shard's live columns at once, for the whole field in shard
        order (shard 0's members, then shard 1's, ...): made per shard, the
        same arithmetic cost 36 times the numpy calls at 50,000 racers."""
        st = self.state.standings
        m = self.by_shard
        waiting = moment.status[m] == STATUS_CODES["waiting"]

        def col(values: np.ndarray, decimals: int = 0) -> np.ndarray:
            """Rounded; null where unknown (or the racer has no fix yet)."""
            bad = ~np.isfinite(values) | waiting
            rounded = np.round(np.where(bad, 0.0, values), decimals)
            if decimals:
                return np.where(bad, np.nan, rounded)
            return np.where(bad, NULL_INT, rounded.astype(np.int64))

        lat, lon, recent = st.lat[m], st.lon[m], st.recent[m]
        with np.errstate(invalid="ignore", divide="ignore"):
            pace = np.where(recent > 0, 1000.0 / recent, np.nan)
        return {
            "rank": moment.rank[m],
            "status": moment.status[m],
            "distance_m": col(st.progress[m]),
            "lat_e6": col((lat - self.lat0) * 1e6),
            "lon_e6": col((lon - self.lon0) * 1e6),
            "age_ms": col((now - st.last_t[m]) * 1000),
            "pace_s_per_km": col(pace),
            "gap_s": col(moment.gap_s[m]),
            "eta_s": col(moment.eta_s[m]),
            "finish_s": col(st.finish_t[m] - self.state.start_t, 1),
        }

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

    def _snapshot(self, now: float, seq: int, moment: Moment) -> dict[str, Any]:
        state, race = self.state, self.race
        head = [int(i) for i in moment.order[: race.head_size]]
        vehicles = np.flatnonzero(state.standings.vehicle)
        head += vehicles[moment.rank[vehicles] > race.head_size].tolist()
        return state.envelope(now, seq, moment) | {
            "racers": state.records(head, moment, trails=False),
            "field": {
                "count": len(state.order),
                "by_status": state.standings.counts(moment),
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

    def resume(self, get_many: Callable[[list[str]], list[bytes | None]]) -> dict[str, float]:
        """Carry on from what spectators see: the chunks each trail group
        lists are in place (never cut again into a pack). Returns each
        racer's published fix time (from the live shards): the floor the
        publisher never goes below. Every trail group and shard is asked
        for at once (`get_many`): hundreds of objects at 50,000 racers."""
        keys = [objects.trail_key(g) for g in range(self.trails)] + [
            objects.shard_key(k) for k in range(self.shards)
        ]
        docs = [None if body is None else orjson.loads(body) for body in get_many(keys)]
        groups, shards = docs[: self.trails], docs[self.trails :]
        if any(doc is not None and doc.get("trails") != self.trails for doc in groups):
            return {}  # another layout (the field changed): nothing to carry on from
        index = self.state.standings.index
        for g, doc in enumerate(groups):
            if doc is None:
                continue
            # Due again on the usual schedule, not all in the first cycle
            # (at 50,000 racers that cycle rewrote every group: 8 s).
            self.trail_at[g] = datetime.fromisoformat(doc["generated_at"]).timestamp()
            for rid, chunks, latest in zip(doc["ids"], doc["chunks"], doc["recent"], strict=False):
                i = index.get(rid)
                if i is None:
                    continue
                self.chunk_refs.replace(i, [(doc["packs"][p], at, n) for p, at, n in chunks])
                if latest is not None:
                    self.recent_refs[i] = (doc["packs"][latest[0]], latest[1], latest[2])
        floor: dict[str, float] = {}
        for k, doc in enumerate(shards):
            if doc is None or doc.get("shards") != self.shards:
                continue
            generated = datetime.fromisoformat(doc["generated_at"]).timestamp()
            for i, age in zip(self.members[k].tolist(), doc["age_ms"], strict=False):
                if age is not None:
                    floor[self.state.order[i].racer.id] = generated - age / 1000
        return floor
