"""Every racer's trail, for both shapes: pieces in immutable packs, merged as
the race goes on, so drawing whole trails costs a spectator a handful of
requests however long the race has run (DESIGN.md, "Trails").

The field is split into trail groups by FNV-1a of the id (the page finds a
racer's group without an index; a small race is one group). A group's
members are cut together, at its turn every `cut_every_s` of race time
(groups take turns), or as soon as one of them has `chunk_points` points
since the last cut: a cut is a level-0 piece, each member's new points one
gzip member, side by side in the cycle's pack. MERGE pieces of one level
are merged into one piece of the next, each racer's points one member
again, up to the top level. A racer's trail is then at most MERGE - 1
pieces a level below the top and one per top piece, and each pack holds a
group's members side by side: one range request reads a piece for all of
them.

Merging reads the pieces back from the sink (a few ranges of packs already
written) on a thread, off the cycle: no trail point stays in memory once
cut, and a merge that fails leaves the pieces as they were, to be merged
later. Pieces are never changed; a merge makes a new one, and the index
(a trail group's document, or a small snapshot) lists the new one from the
cycle that writes it.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from isal import igzip

from .. import objects
from ..model.race import RaceState
from ..objects import Object, gzip_bytes
from .encode import array_json

log = logging.getLogger(__name__)
MERGE = 4  # pieces of one level merged into one of the next
# The top level is the one whose pieces span about this much race time:
# merging further would re-read ever longer pieces for ever fewer requests.
TOP_SPAN_S = 5400.0
# A long catch-up writes its pieces as it goes once a pack holds this much.
PACK_AHEAD_BYTES = 8 << 20

Ref = tuple[str, int, int]  # (pack key, offset, length) of one gzip member
Read = Callable[[str, int, int], bytes]  # a byte range of a written object


def fnv1a32(text: str) -> int:
    """FNV-1a, 32-bit, of the UTF-8 bytes: a stable hash the page computes too."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


@dataclass
class Pack:
    """One pack being filled: gzip members appended, where each begins."""

    key: str
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    sealed: bool = False  # on its way to the sink: never added to again

    @classmethod
    def new(cls, seq: int) -> Pack:
        return cls(objects.pack_key(seq, secrets.token_hex(4)))

    def add(self, blob: bytes) -> int:
        at = self.size
        self.parts.append(blob)
        self.size += len(blob)
        return at

    def object(self) -> Object:
        return objects.make(self.key, b"".join(self.parts), 0)


@dataclass
class Piece:
    """A piece of a trail group's trails: its members' gzip members side by
    side in a pack, in racer order (config order)."""

    level: int
    pack: str
    at: int  # where its first member begins in the pack
    racers: np.ndarray  # int64 racer indices, ascending
    ends: np.ndarray  # int64 end of each member, from `at`
    written: bool = False  # its pack is in the sink: it can be read back, merged

    @property
    def length(self) -> int:
        return int(self.ends[-1])

    def refs(self, members: np.ndarray) -> list[Ref | None]:
        """Each member's gzip member in this piece (None: not in it)."""
        pos = np.searchsorted(self.racers, members)
        pos_c = np.minimum(pos, len(self.racers) - 1)
        hit = self.racers[pos_c] == members
        starts = np.concatenate(([0], self.ends[:-1]))
        return [
            (self.pack, self.at + int(starts[p]), int(self.ends[p] - starts[p])) if h else None
            for p, h in zip(pos_c.tolist(), hit.tolist(), strict=True)
        ]


@dataclass
class Merged:
    """A merge done on a thread: the pieces it replaces and what replaces them."""

    group: int
    replaces: list[Piece]
    level: int
    racers: np.ndarray
    blob: bytes
    ends: np.ndarray


class TrailStore:
    def __init__(self, state: RaceState, groups: int, cut_every_s: float):
        self.state = state
        self.groups = groups
        self.cut_every_s = cut_every_s
        ids = [t.racer.id for t in state.order]
        self.group_of = np.array([fnv1a32(i) % groups for i in ids], dtype=np.int64)
        self.members = [np.flatnonzero(self.group_of == g) for g in range(groups)]
        self.stacks: list[list[Piece]] = [[] for _ in range(groups)]
        self.top = max(1, math.floor(math.log(max(TOP_SPAN_S / cut_every_s, 1.0), MERGE)))
        # Groups take turns: group g is cut at (k + phase[g]) * cut_every_s.
        self.phase = (np.arange(groups) + 1.0) / groups
        self.next_cut = state.start_t + cut_every_s * self.phase
        # A group's first cut comes at a share of chunk_points between half
        # and one and a half, by group, so groups fill up in turn too.
        chunk = state.race.chunk_points
        for g, members in enumerate(self.members):
            first = max(2, round(chunk * (0.5 + self.phase[g])))
            for i in members.tolist():
                state.order[i].cut_len = 3 * first
        n = len(state.order)
        # Each racer's newest point in their pieces: a restart that reads
        # the race again does not cut what is published already.
        self.newest = np.full(n, -math.inf)
        # Packs made and not yet in the sink (a failed cycle writes them next).
        self.unwritten: list[Pack] = []
        self._jobs: dict[int, Future[Merged]] = {}
        # The large shape's recent trails: where each racer's is, and when
        # each group's index was last written.
        self.recent_refs: list[Ref | None] = [None] * n
        self.index_at = np.full(groups, -math.inf)

    def __getstate__(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["_jobs"] = {}  # threads are not saved: merged again after a restart
        return out

    # -- cutting -------------------------------------------------------------------

    def pack(self, seq: int) -> Pack:
        """The pack this cycle fills (one made and not written is filled on)."""
        last = self.unwritten[-1] if self.unwritten else None
        if last is None or last.sealed or last.size >= PACK_AHEAD_BYTES:
            self.unwritten.append(Pack.new(seq))
        return self.unwritten[-1]

    def seal(self, full_only: bool = False) -> list[Pack]:
        """The packs to write now, never added to again (a CDN may keep what
        it fetched of one for a year): every one with something in it, or
        (a catch-up writing as it goes) those full already."""
        out = [
            p for p in self.unwritten if p.size and (p.size >= PACK_AHEAD_BYTES or not full_only)
        ]
        for p in out:
            p.sealed = True
        self.unwritten = [p for p in self.unwritten if p.size]
        return out

    def cut(self, reached: float, seq: int, everyone: bool = False) -> int:
        """Cut every group whose turn has come by `reached` (race time) or
        with a full member; with `everyone` (the race is over), every group.
        Returns the points cut."""
        full = self.state.full
        due = set(
            range(self.groups) if everyone else np.flatnonzero(self.next_cut <= reached).tolist()
        )
        if full:
            due |= set(self.group_of[np.fromiter(full, np.int64, len(full))].tolist())
            full.clear()
        if not due:
            return 0
        pack, cut = self.pack(seq), 0
        chunk = self.state.race.chunk_points
        for g in sorted(due):
            racers, bodies = [], []
            for i in self.members[g].tolist():
                track = self.state.order[i]
                track.cut_len = 3 * chunk
                if not track.tail_xyt:
                    continue
                xyt = np.frombuffer(track.take_tail(), dtype=np.float64)
                xyt = xyt.reshape(-1, 3)
                xyt = xyt[xyt[:, 2] > self.newest[i]]
                if len(xyt):
                    self.newest[i] = xyt[-1, 2]
                    racers.append(i)
                    bodies.append(xyt)
                    cut += len(xyt)
            k = (reached - self.state.start_t) / self.cut_every_s - self.phase[g]
            self.next_cut[g] = self.state.start_t + self.cut_every_s * (
                math.floor(k) + 1 + self.phase[g]
            )
            if racers:
                self._add(g, 0, pack, np.array(racers, np.int64), self._members(racers, bodies))
        return cut

    def trim(self, before_t: float) -> None:
        """A standby cuts nothing (it writes nothing): it keeps the points
        since `before_t`, which the publisher it stands by for may not have
        cut yet."""
        self.state.full.clear()
        for track in self.state.order:
            track.trim(before_t)

    def _members(self, racers: list[int], points: list[np.ndarray]) -> list[bytes]:
        """Each racer's points as a gzip member: {"racer", "t0", "points":
        [[lat, lon, seconds after t0], ...]} (t0: the race's start). All
        rounded at once, as one array."""
        t0 = self.state.start_t
        flat = np.concatenate(points)
        rows = np.column_stack(
            (np.round(flat[:, 0], 6), np.round(flat[:, 1], 6), np.round(flat[:, 2] - t0, 3))
        )
        order, start = self.state.order, b',"t0":' + orjson.dumps(t0) + b',"points":'
        out, at = [], 0
        for i, pts in zip(racers, points, strict=True):
            body = (
                b'{"racer":'
                + orjson.dumps(order[i].racer.id)
                + start
                + array_json(rows[at : at + len(pts)])
                + b"}"
            )
            out.append(gzip_bytes(body))
            at += len(pts)
        return out

    def recent(self, indices: list[int], pack: Pack) -> dict[int, Ref]:
        """The racers' recent trails (Track.recent) as members of the pack."""
        racers = [i for i in indices if self.state.order[i].tail_xyt]
        if not racers:
            return {}
        order = self.state.order
        pts = [np.frombuffer(order[i].recent(), np.float64).reshape(-1, 3) for i in racers]
        members = self._members(racers, pts)
        out: dict[int, Ref] = {}
        for i, blob in zip(racers, members, strict=True):
            out[i] = (pack.key, pack.add(blob), len(blob))
        return out

    def _add(self, g: int, level: int, pack: Pack, racers: np.ndarray, blobs: list[bytes]) -> Piece:
        at = pack.add(b"".join(blobs))
        ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        piece = Piece(level, pack.key, at, racers, ends)
        self.stacks[g].append(piece)
        return piece

    def written(self, keys: set[str]) -> None:
        """These packs are in the sink: their pieces can be read back."""
        self.unwritten = [p for p in self.unwritten if p.key not in keys]
        for stack in self.stacks:
            for piece in stack:
                if piece.pack in keys:
                    piece.written = True

    # -- merging ---------------------------------------------------------------------

    def merge(self, pack: Pack, submit: Callable[..., Future[Merged]], read: Read) -> int:
        """Put the merges done since the last cycle into this cycle's pack,
        then start the next ones (one a group at a time). Returns the
        pieces merged into new ones."""
        merged = 0
        for g, job in list(self._jobs.items()):
            if not job.done():
                continue
            del self._jobs[g]
            try:
                done = job.result()
            except Exception as e:  # a read failed: the pieces stay as they are
                log.warning("merging trail group %d's pieces failed (%s): later", g, e)
                continue
            stack = self.stacks[g]
            k = _find(stack, done.replaces)
            if k is None:
                continue  # the stack changed under it (a restart adopted others)
            at = pack.add(done.blob)
            stack[k : k + len(done.replaces)] = [
                Piece(done.level, pack.key, at, done.racers, done.ends)
            ]
            merged += len(done.replaces)
        for g, stack in enumerate(self.stacks):
            if g in self._jobs:
                continue
            run = _mergeable(stack, self.top)
            if run is not None:
                self._jobs[g] = submit(self._merge_job, g, stack[run : run + MERGE], read)
        return merged

    def settle(self) -> None:
        """Wait for the merges under way (tests, a stop)."""
        for job in list(self._jobs.values()):
            job.exception()

    def _merge_job(self, g: int, pieces: list[Piece], read: Read) -> Merged:
        """Read the pieces back; each racer's points of all of them as one member."""
        by_racer: dict[int, list[bytes]] = {}
        for piece in pieces:
            blob = read(piece.pack, piece.at, piece.length)
            if len(blob) != piece.length:
                raise ValueError(f"{piece.pack}: {len(blob)} bytes, expected {piece.length}")
            start = 0
            for i, end in zip(piece.racers.tolist(), piece.ends.tolist(), strict=True):
                by_racer.setdefault(i, []).append(_points(_inflate(blob[start:end])))
                start = end
        racers = np.array(sorted(by_racer), dtype=np.int64)
        t0 = orjson.dumps(self.state.start_t)
        members = []
        for i in racers.tolist():
            parts = [p[1:-1] for p in by_racer[i] if p != b"[]"]
            body = (
                b'{"racer":'
                + orjson.dumps(self.state.order[i].racer.id)
                + b',"t0":'
                + t0
                + b',"points":['
                + b",".join(parts)
                + b"]}"
            )
            members.append(gzip_bytes(body))
        ends = np.cumsum([len(m) for m in members], dtype=np.int64)
        return Merged(g, pieces, pieces[0].level + 1, racers, b"".join(members), ends)

    # -- the index -------------------------------------------------------------------

    def refs(self, g: int) -> tuple[list[Piece], list[list[Ref]]]:
        """Group g's pieces, oldest first, and each member's members in them."""
        members = self.members[g]
        per: list[list[Ref]] = [[] for _ in range(len(members))]
        for piece in self.stacks[g]:
            for k, ref in enumerate(piece.refs(members)):
                if ref is not None:
                    per[k].append(ref)
        return self.stacks[g], per

    def doc(self, g: int) -> dict[str, Any]:
        """What a restart needs of group g, as its index publishes it: the
        pieces ([pack, offset, length, level], packs by number), each
        member's ranges in them, and the newest point they hold."""
        pieces, per = self.refs(g)
        packs: dict[str, int] = {}

        def num(key: str) -> int:
            return packs.setdefault(key, len(packs))

        out_pieces = [[num(p.pack), p.at, p.length, p.level] for p in pieces]
        chunks = [[[num(r[0]), r[1], r[2]] for r in refs] for refs in per]
        return {"packs": packs, "pieces": out_pieces, "chunks": chunks}

    def adopt(self, g: int, doc: dict[str, Any], until: list[float | None]) -> bool:
        """Take on group g's pieces as a publisher before this one published
        them (a restart, a takeover): their points are not cut again, and
        they are merged on as if this process had cut them. False (nothing
        taken) if the document does not fit this group."""
        members = self.members[g]
        try:
            packs = list(doc["packs"])
            pieces = [(packs[p], int(at), int(n), int(lv)) for p, at, n, lv in doc["pieces"]]
            chunks = doc["chunks"]
            if len(chunks) != len(members) or len(until) != len(members):
                return False
            stack: list[Piece] = []
            for key, at, length, level in pieces:
                inside = []
                for k, refs in enumerate(chunks):
                    for p, off, n in refs:
                        if packs[p] == key and at <= off < at + length:
                            inside.append((off, int(members[k]), off + n - at))
                inside.sort()
                racers = np.array([i for _, i, _ in inside], dtype=np.int64)
                ends = np.array([e for _, _, e in inside], dtype=np.int64)
                starts = np.concatenate(([0], ends[:-1]))
                if (
                    not len(racers)
                    or ends[-1] != length
                    or np.any(np.diff(racers) <= 0)
                    or np.any(np.array([o - at for o, _, _ in inside]) != starts)
                ):
                    return False  # not pieces as this store makes them
                stack.append(Piece(level, key, at, racers, ends, written=True))
        except (KeyError, TypeError, ValueError, IndexError):
            return False
        self.stacks[g] = stack
        for i, newest in zip(members.tolist(), until, strict=True):
            if newest is not None:
                self.newest[i] = self.state.start_t + float(newest)
        return True

    def until(self, g: int) -> list[float | None]:
        """Each member's newest point in group g's pieces, in seconds after
        the start (None: none yet): what a restart does not cut again."""
        start = self.state.start_t
        return [
            math.ceil((float(v) - start) * 1000) / 1000 if math.isfinite(v) else None
            for v in self.newest[self.members[g]]
        ]


def _inflate(member: bytes) -> bytes:
    out: bytes = igzip.decompress(member)  # type: ignore[no-untyped-call]
    return out


def _points(body: bytes) -> bytes:
    """The points array of a member's body, as its JSON text."""
    start = body.index(b'"points":') + len(b'"points":')
    return body[start:-1]


def _find(stack: list[Piece], pieces: list[Piece]) -> int | None:
    for k in range(len(stack) - len(pieces) + 1):
        if all(stack[k + j] is p for j, p in enumerate(pieces)):
            return k
    return None


def _mergeable(stack: list[Piece], top: int) -> int | None:
    """Where the oldest run of MERGE written pieces of one level below the
    top begins (None: no such run)."""
    run = 0
    for k, piece in enumerate(stack):
        if (
            piece.level < top
            and piece.written
            and run
            and stack[k - 1].level == piece.level
            and stack[k - 1].written
        ):
            run += 1
        else:
            run = 1 if piece.level < top and piece.written else 0
        if run == MERGE:
            return k - MERGE + 1
    return None
