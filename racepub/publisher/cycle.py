"""One publish cycle: read -> update -> shape -> write. Used by --once and by the loop."""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from .. import objects
from ..assets import static_files
from ..commands.tiles import load_basemap
from ..config import Config, Race
from ..errors import SinkError, SourceError, UsageError
from ..model.board import Board
from ..model.course import race_course
from ..model.race import RaceState
from ..objects import Object
from ..rows import Batch, latest_time
from ..shapes import Shape, make_shape
from ..shapes.encode import json_bytes
from ..shapes.event import page_objects as event_page
from ..shapes.event import summary_object
from ..shapes.page import environment, page_context, render_page
from ..shapes.results import objects as results_objects
from ..shapes.results import results
from ..shapes.trial import template_problem
from ..sink import Sink, open_sink
from ..source import PointSource, ReadSource
from ..timefmt import ts
from . import heap
from .progress import Progress
from .statefile import Saved, StateFile, fingerprint

log = logging.getLogger(__name__)
UPLOAD_THREADS = 16
WRITE_INTERVALS = 2  # a sink silent for about this many intervals fails the cycle
COMPRESS_THREADS = 2
PAGE_EVERY_S = 30.0
PROGRESS_EVERY_S = 5.0  # a long catch-up logs how far it has got this often
# A standby writes nothing, so it cuts no trails: it keeps each racer's points
# of this long, which the publisher it stands by for may not have cut yet.
STANDBY_KEEP_S = 600.0
RELEASE_AFTER_ROWS = 200_000  # a read this big (a catch-up) frees much memory


@dataclass
class CycleStats:
    seq: int = 0
    racers: int = 0
    new_points: int = 0
    reads: int = 0  # timing mats' reads that were facts
    dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # this cycle's drops by reason
    objects: int = 0
    bytes: int = 0
    ms: dict[str, float] = field(default_factory=dict)
    state: str = ""  # the race's: pre | live | finished

    def fields(self) -> dict[str, Any]:
        """The cycle's figures as keys (a JSON log line's)."""
        return {
            "seq": self.seq,
            "racers": self.racers,
            "new": self.new_points,
            "reads": self.reads,
            "dropped": self.dropped,
            "dropped_by": dict(self.reasons),
            "objects": self.objects,
            "bytes": self.bytes,
            **{f"{k}_ms": round(v, 1) for k, v in self.ms.items()},
        }

    def line(self) -> str:
        stages = " ".join(f"{k}={v:.0f}ms" for k, v in self.ms.items())
        why = ",".join(f"{k}:{v}" for k, v in sorted(self.reasons.items()))
        reads = f"reads={self.reads} " if self.reads else ""
        return (
            f"seq={self.seq} racers={self.racers} new={self.new_points} {reads}"
            f"dropped={self.dropped}{f'({why})' if why else ''} objects={self.objects} "
            f"bytes={self.bytes} {stages}"
        )


def _put_if_new(sink: Sink, obj: Object) -> None:
    """Into a sink others write too (an event's): only if not there already."""
    if sink.fingerprint(obj.key) != obj.sha256:
        sink.put(obj)


def _settle_garbage() -> None:
    """Collect this cycle's young garbage, then exempt what survived from
    future collections. The race state is millions of long-lived objects:
    a full collection walked them all (the worst cycles of a mass race:
    DESIGN.md, Memory). What survives a cycle is live state, freed by
    reference counting when dropped; reference cycles among it are not
    expected."""
    gc.collect(1)
    gc.freeze()


class Publisher:
    def __init__(
        self,
        config: Config,
        race: Race,
        *,
        sink: Sink | None = None,
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
    ):
        """state_dir: where the race state is saved now and then, and found
        on a restart (statefile.py); None: a restart reads the race again."""
        self.race, self.clock = race, clock
        self.course = race_course(race)
        self._hold_for_start = config.detections is not None and config.detections.start_mat
        if race.template_dir is not None and (problem := template_problem(race, self.course)):
            # A race's own template that cannot render stops `run` here (exit
            # 2), not every cycle with a traceback.
            raise UsageError(f"race {race.id}'s template: {problem}")
        self.state = RaceState(race, self.course, hold_for_start=self._hold_for_start)
        self.shape: Shape = make_shape(race, self.state)
        self.sink = sink or open_sink(race.sink, config.s3, race.interval_s)
        heap.tune()  # before the upload threads make their arenas
        # Uploads run here, each cycle's with a deadline: a hung request must
        # not hold the loop (it finishes, or times out, in the background).
        self._uploads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload")
        # Trails' pieces are merged here, off the cycle (shapes/trails.py).
        self._merges = ThreadPoolExecutor(1, thread_name_prefix="merge")
        # The sink may answer nothing for this long before a cycle fails.
        self._stall_s = WRITE_INTERVALS * race.interval_s + 1.0
        self._lag_s: float | None = None  # the last cycle's start to its snapshot in place
        # The last snapshot upload: the next waits for it (_write_snapshot).
        self._snapshot_put: Future[Any] | None = None
        self.source = PointSource(
            config.dsn, config.source, [r.id for r in race.racers], ts(race.starts_at)
        )
        # Timing mats' chip reads, when the race has them: a second query a cycle.
        self.reads = (
            ReadSource(
                config.dsn, config.detections, [r.id for r in race.racers], ts(race.starts_at)
            )
            if config.detections is not None
            else None
        )
        self.env = environment(race.template_dir)
        self.static_hash, files = static_files()
        self.static_objects = [
            objects.make(f"static/{self.static_hash}/{rel}", body, race.interval_s)
            for rel, body in files.items()
        ]
        self.basemap = self._basemap()  # what the page needs to draw it; None: `tiles`
        # An event of several races (shapes/event.py): its page, in its own
        # sink, written once per start (unchanged: not at all).
        self.event = config.event_of(race.id)
        self.event_sink: Sink | None = None
        self._event_objects: list[Object] = []
        if self.event is not None:
            self.event_sink = open_sink(self.event.sink, config.s3, race.interval_s)
            wanted = {"app.css", "event.js"}
            self._event_objects = event_page(
                config,
                self.event,
                self.env,
                self.static_hash,
                [(rel, body) for rel, body in files.items() if rel in wanted],
            )
        self.statefile: StateFile | None = None
        self._restored_seq: int | None = None  # the seq a restored state was saved at
        if state_dir is not None:
            with open(race.course, "rb") as f:
                key = fingerprint(race, f.read(), (config.source, config.detections), config.dsn)
            self.statefile = StateFile(state_dir, race, key)
            self._restore(self.statefile.load(self.course))
        self.written: dict[str, str | None] = {}  # key -> sha256 in the sink (None: absent)
        # Newest fix per racer in the snapshot found on (re)start: never publish
        # less than that, e.g. from a replica that lags after a failover.
        self.floor: dict[str, float] = {}
        self.seq: int | None = None
        self._attempt = 0  # the seq of the last snapshot attempted: each attempt has its own
        self._dropped_before: Counter[str] = self.state.dropped_total()
        self._page_at, self._page_state = -math.inf, ""
        self._current = False  # a standby has read all there was
        self._results_at = -math.inf
        self._results_final = False

    def _basemap(self) -> dict[str, Any] | None:
        """The race's own basemap (tiles.py), uploaded with the static files."""
        if self.race.basemap is None:
            return None
        basemap = load_basemap(self.race.basemap)
        key = objects.basemap_key(hashlib.sha256(basemap.body).hexdigest()[:12])
        self.static_objects.append(objects.make(key, basemap.body, self.race.interval_s))
        return {
            "url": key,
            # raster: drawn by pmtiles' Leaflet layer; vector (the Protomaps
            # basemap schema): by protomaps-leaflet, in its "light" flavour.
            "type": "raster" if basemap.raster else "vector",
            "min_zoom": basemap.min_zoom,
            "max_zoom": basemap.max_zoom,
            "bounds": basemap.bounds,
            "attribution": basemap.attribution,
        }

    def close(self) -> None:
        """Let go of the database and the uploads; save the race state as it
        is (a restart then reads only what comes after)."""
        self.source.close()
        if self.reads is not None:
            self.reads.close()
        self._uploads.shutdown(wait=False, cancel_futures=True)
        self._merges.shutdown(wait=False, cancel_futures=True)
        if self.statefile is not None:
            self.statefile.close()
            if self.seq is not None or self._current:
                self.statefile.save(self._saved(), wait=True)

    # -- the race state on disk (statefile.py) ---------------------------------------

    def _saved(self) -> Saved:
        cursor = {"points": self.source.cursor(), "reads": self.reads and self.reads.cursor()}
        return Saved(self.seq, self.state, cursor, self.shape.store, self.clock())

    def _restore(self, saved: Saved | None) -> None:
        if saved is None:
            return
        self.state = saved.state
        self.shape = make_shape(self.race, self.state, saved.trails)
        self.source.restore(saved.cursor["points"])
        if self.reads is not None and saved.cursor.get("reads") is not None:
            self.reads.restore(saved.cursor["reads"])
        self._restored_seq = saved.seq
        log.info(
            "carrying on from the race state saved %.0f s ago (%s): reading only the rows since",
            max(0.0, self.clock() - saved.saved_at),
            self.statefile.path if self.statefile else "",
        )

    def _start_over(self) -> None:
        """Forget a restored state: read the race from its start."""
        self.state = RaceState(self.race, self.course, hold_for_start=self._hold_for_start)
        self.shape = make_shape(self.race, self.state)
        self.source.close()
        self.source = PointSource(
            self.source.dsn, self.source.cfg, self.source.racer_ids, self.source.start_t
        )
        if self.reads is not None:
            self.reads.close()
            self.reads = ReadSource(
                self.reads.dsn, self.reads.cfg, self.reads.racer_ids, self.reads.start_t
            )
        self._dropped_before = Counter()

    def _maybe_save(self) -> None:
        if self.statefile is not None and self.statefile.due():
            self.statefile.save(self._saved())

    def forget_sink(self) -> None:
        """Read the sink afresh before the next write (another publisher may
        have written meanwhile): seq and what is in place come from it."""
        self.seq = None
        self.written.clear()
        self.floor.clear()

    def _resume(self) -> None:
        """Carry on from what spectators see now: seq keeps growing across
        restarts, and the trails' pieces published are taken on, never cut
        again. (A sink that cannot be read fails the cycle; the next one
        tries again.)"""
        body = self.sink.get(objects.SNAPSHOT)
        self.seq = 0
        old = None
        try:
            old = None if body is None else orjson.loads(body)
            if old is not None and old.get("race", {}).get("id") == self.race.id:
                self.seq = int(old.get("seq", 0))
            else:
                old = None
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, KeyError):
            log.warning("the published snapshot.json is unreadable; starting at seq 1")
            old = None
        self._attempt = max(self._attempt, self.seq)
        restored, self._restored_seq = self._restored_seq, None
        if restored is not None and self.seq < restored:
            log.warning(
                "the sink is behind the saved race state (seq %d, saved at %d): "
                "it is not the one that state was published to; reading the race "
                "from the start",
                self.seq,
                restored,
            )
            self._start_over()
        if old is None:
            return
        try:
            self._note_published(old.get("racers", []))
        except (TypeError, ValueError, AttributeError, KeyError):
            log.warning("the published snapshot.json is unreadable; starting at seq 1")
            self.seq = 0
            return
        if restored is not None and self.seq >= restored:
            return  # the state saved holds the trails as they were published
        try:
            floor = self.shape.resume(old, self._get_many)
        except (orjson.JSONDecodeError, TypeError, ValueError, KeyError, IndexError):
            log.warning("the published trails are unreadable; writing them afresh")
            floor = {}
        for rid, at in floor.items():
            self.floor[rid] = max(at, self.floor.get(rid, at))

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        """sink.get for many keys at once, bounded like every write."""
        return self._in_time([self._uploads.submit(self.sink.get, key) for key in keys])

    def _note_published(self, racers: list[dict[str, Any]]) -> None:
        for racer in racers:
            if racer.get("clock_offset_s"):  # the phone's clock, as last corrected
                self.state.seed_clock(racer["id"], float(racer["clock_offset_s"]))
            if racer.get("position"):
                at = datetime.fromisoformat(racer["position"]["at"]).timestamp()
                self.floor[racer["id"]] = max(at, self.floor.get(racer["id"], at))

    def cycle(self) -> CycleStats:
        """Publish once: read, update, shape, write. Raises SourceError or
        SinkError; the published snapshot then stays as it was."""
        stats = CycleStats(racers=len(self.race.racers))
        t0 = time.perf_counter()
        if self.seq is None:
            self._resume()
        assert self.seq is not None
        now = self.clock()
        read_s, update_s = self._advance(now, stats, publishing=True)
        if read_s + update_s > self.race.interval_s:
            # A catch-up (a start, a burst) read for longer than an interval:
            # what it publishes is as of now, when it is made.
            now = self.clock()
        t2 = time.perf_counter()

        # Every attempt has a seq of its own: a late upload of a failed one is
        # older than what comes after it, and the page never steps back.
        self._attempt = seq = max(self._attempt, self.seq) + 1
        board = Board.of(self.state, self.state.moment(now))
        out = self.shape.publish(board, seq, self.sink.get_range, self._merges.submit)
        snap = out.snapshot
        if self._lag_s is not None:
            # How long after generated_at the last snapshot was in place: the
            # page polls that long after the next is due (DESIGN.md).
            snap["publish_lag_s"] = round(self._lag_s, 3)
        self._never_regress()
        state = snap["race"]["state"]
        page_obj = self._page(now, snap)
        results_objs = self._results(now, board, state)
        first = self.static_objects + self.shape.once() + out.first
        then = [*out.then, *results_objs, *([page_obj] if page_obj else [])]
        if self.event is not None:
            then.append(summary_object(self.state, board, seq))
        snap_obj = objects.make(objects.SNAPSHOT, json_bytes(snap), self.race.interval_s)
        t3 = time.perf_counter()
        self._compress([*first, *then, snap_obj])
        t_compress = time.perf_counter()

        # Order keeps readers consistent: what others point at (assets, packs,
        # rosters); the trail groups, shards, results and the page; then the
        # snapshot that points at them all.
        self.shape.store.seal()
        self._write_all(first, stats)
        if self._event_objects:  # the event's page, once per start
            sink = self.event_sink
            assert sink is not None
            self._in_time([self._uploads.submit(_put_if_new, sink, o) for o in self._event_objects])
            self._event_objects = []
        later = [self._uploads.submit(self._write, o, stats) for o in then]
        t_lazy = time.perf_counter()
        later += [self._uploads.submit(self._write, o, stats) for o in out.lazy()]
        render_s = time.perf_counter() - t_lazy
        self._in_time(later)
        if page_obj is not None:
            self._page_at, self._page_state = now, state
        self._write_snapshot(snap_obj, stats)
        self._lag_s = time.perf_counter() - t0
        self.seq = seq
        self.shape.store.written({o.key for o in out.first})
        out.commit()
        _settle_garbage()
        if stats.new_points >= RELEASE_AFTER_ROWS:
            heap.release()
        self._maybe_save()
        t4 = time.perf_counter()

        stats.seq, stats.state = seq, state
        stats.ms = {
            "read": read_s * 1000,
            "update": update_s * 1000,
            # Shards are made while the first of them upload: counted as render.
            "render": (t3 - t2 + render_s) * 1000,
            "compress": (t_compress - t3) * 1000,
            "upload": (t4 - t_compress - render_s) * 1000,
            "total": (t4 - t0) * 1000,
        }
        return stats

    def _page(self, now: float, snap: dict[str, Any]) -> Object | None:
        """The page's server-rendered table is for the first paint only (the
        script takes over from snapshot.json) and CDNs keep it a minute:
        re-rendered now and then, or at once when the race's state changes."""
        state = snap["race"]["state"]
        if now - self._page_at < PAGE_EVERY_S and state == self._page_state:
            return None
        prefix = f"static/{self.static_hash}"
        ctx = page_context(self.race, self.course, snap, prefix, self.basemap)
        return objects.make(objects.PAGE, render_page(self.env, ctx), self.race.interval_s)

    def _compress(self, objs: Iterable[Object]) -> None:
        """Gzip what the sink stores gzipped, on both cores (zlib lets go of
        the GIL while Python waits); the shards are compressed as they are
        made, in the upload threads."""
        if not getattr(self.sink, "compresses", False):
            return
        todo = [o for o in objs if o.compressible]
        with ThreadPoolExecutor(COMPRESS_THREADS) as pool:
            list(pool.map(lambda o: o.gzipped, todo))

    def standby(self) -> CycleStats:
        """While another publisher holds the race: read and apply the source
        as it does, publishing nothing, so that taking over costs a cycle,
        not a catch-up. What the other writes meanwhile is read back at
        takeover (forget_sink): the trails' pieces it has published are taken
        on, and only the points since are cut here."""
        stats = CycleStats(racers=len(self.race.racers))
        t0 = time.perf_counter()
        now = self.clock()
        read_s, update_s = self._advance(now, stats)
        stats.ms = {
            "read": read_s * 1000,
            "update": update_s * 1000,
            "total": (time.perf_counter() - t0) * 1000,
        }
        if stats.new_points >= RELEASE_AFTER_ROWS:
            heap.release()
        self._maybe_save()
        if not self._current:
            self._current = True
            log.info(
                "standby is current: %d rows read in %.1f s; ready to take over",
                self.source.rows_read,
                stats.ms["total"] / 1000,
            )
        return stats

    def _advance(
        self, now: float, stats: CycleStats, publishing: bool = False
    ) -> tuple[float, float]:
        """Read the new rows and apply them (catch_up); then the timing mats'
        new reads, if the race has them. Where fixes wait for a racer's
        first read (hold_for_start), the reads first: a catch-up after a
        restart then meets each racer's start before their fixes."""
        reads_first = self.state.hold_for_start
        read_s = update_s = 0.0
        if reads_first:
            read_s, update_s = self._read_mats(now, stats)
        r, u = self.catch_up(self.source.read(now), now, stats, publishing)
        read_s, update_s = read_s + r, update_s + u
        if not reads_first:
            r, u = self._read_mats(now, stats)
            read_s, update_s = read_s + r, update_s + u
        return read_s, update_s

    def _read_mats(self, now: float, stats: CycleStats) -> tuple[float, float]:
        if self.reads is None:
            return 0.0, 0.0
        t0 = time.perf_counter()
        rows = self.reads.read(now)
        t1 = time.perf_counter()
        stats.reads += self.state.read_mats(rows, now)
        self._count_drops(stats)
        return t1 - t0, time.perf_counter() - t1

    def catch_up(
        self,
        batches: Iterator[Batch],
        now: float,
        stats: CycleStats | None = None,
        publishing: bool = False,
    ) -> tuple[float, float]:
        """Apply rows batch by batch (memory stays bounded): every cycle's
        read, a restart's catch-up, a standby's reading along. The trails
        are cut as the race's time passes (a publisher's; a standby keeps
        what it may have to publish). A long one (a restart hours into a
        race) says how it is getting on every PROGRESS_EVERY_S. Returns
        (seconds reading, seconds applying)."""
        stats = stats or CycleStats(racers=len(self.race.racers))
        read_s = update_s = 0.0
        start = time.monotonic()
        progress: Progress | None = None  # a long one: how far, how fast, how long still
        store = self.shape.store
        try:
            while True:
                t_read = time.perf_counter()
                rows = next(batches, None)
                read_s += time.perf_counter() - t_read
                if rows is None:
                    break
                t_update = time.perf_counter()
                stats.new_points += self.state.update(rows, now)
                upto = latest_time(rows)
                reached = now if upto is None else min(upto, now)
                if publishing and self.seq is not None:
                    store.cut(reached, self.seq + 1)
                    self._write_ahead(stats)
                else:
                    store.trim(reached - STANDBY_KEEP_S)
                # A catch-up's rows are young garbage; what it built is state.
                # Unfrozen, the growing state was walked by every full
                # collection.
                _settle_garbage()
                update_s += time.perf_counter() - t_update
                if progress is None and time.monotonic() - start >= PROGRESS_EVERY_S:
                    # The race's time read so far, of all there is to read.
                    progress = Progress("catching up", (now - self.state.start_t) / 60, "race min")
                if progress is not None and upto is not None:
                    progress.update(
                        (upto - self.state.start_t) / 60, f"{stats.new_points:,} points"
                    )
        finally:
            if progress is not None:
                progress.close()
        self._count_drops(stats)
        return read_s, update_s

    def _count_drops(self, stats: CycleStats) -> None:
        more, n = self._drops()
        stats.reasons = dict(Counter(stats.reasons) + Counter(more))
        stats.dropped += n

    def _drops(self) -> tuple[dict[str, int], int]:
        """What was dropped since the last time asked, by reason, and in all."""
        dropped = self.state.dropped_total()
        before = self._dropped_before
        reasons = {k: v - before.get(k, 0) for k, v in dropped.items() if v > before.get(k, 0)}
        self._dropped_before = dropped
        return reasons, sum(reasons.values())

    def _write_ahead(self, stats: CycleStats) -> None:
        """A long catch-up writes its full packs as it goes: hours of a large
        race's trails would otherwise all wait in memory for its first cycle.
        The cycle's trail groups list them."""
        store = self.shape.store
        packs = store.seal(full_only=True)
        if packs:
            self._write_all([p.object() for p in packs], stats)
            store.written({p.key for p in packs})

    def _results(self, now: float, board: Board, state: str) -> list[Object]:
        """results.json/.csv/.html: provisional every results_every_s while
        the race is live (a large field's are made once, at the end), final
        once it is finished; written only when they change (a late fix
        changes them)."""
        final = state == "finished"
        every = self.shape.results_every_s
        if state == "pre" or (not final and every is None):
            return []
        if now - self._results_at < (every or 0.0) and not (final and not self._results_final):
            return []
        if final and not self._results_final:
            log.info("race %s is finished: final results", self.race.id)
        self._results_at, self._results_final = now, final
        # The same results are the same bytes: _write skips what the sink has.
        return results_objects(
            results(self.state, board, now), self.env, self.race.starts_at.tzinfo
        )

    def _never_regress(self) -> None:
        """Refuse to publish a race behind what spectators already see."""
        if not self.floor:
            return
        newest = {i: t.last.t for i, t in self.state.tracks.items() if t.last is not None}
        behind = [
            i
            for i, t in self.floor.items()
            if i in self.state.tracks and newest.get(i, 0.0) < t - 0.001
        ]
        if behind:
            raise SourceError(
                f"the database is behind the published race for {len(behind)} "
                f"racer(s) (a lagging replica?); keeping what is published"
            )
        self.floor.clear()

    def _write_snapshot(self, obj: Object, stats: CycleStats) -> None:
        """The snapshot, last; not while this process's earlier upload is
        still in flight (a stalled cycle's). One the store completes after
        the client gave up can still land over it: every attempt has its own
        higher seq, so that copy says it is older, and pages keep the newer
        (tests/test_faults.py) until the next cycle rewrites it."""
        before = self._snapshot_put
        if before is not None and not before.done():
            done, _ = wait([before], timeout=self._stall_s)
            if not done:
                raise SinkError(
                    "an earlier snapshot upload has not finished: not writing a newer one yet"
                )
        self._snapshot_put = self._uploads.submit(self._write, obj, stats, True)
        self._in_time([self._snapshot_put])

    def _write_all(self, objs: list[Object], stats: CycleStats) -> None:
        self._in_time([self._uploads.submit(self._write, o, stats) for o in objs])

    def _in_time(self, futures: list[Future[Any]]) -> list[Any]:
        """The futures' results; SinkError if any failed, or if the sink
        answered none of them for about two intervals (a stalled connection:
        the rest are cancelled if they have not started). A catch-up writing
        thousands of pieces takes as long as it takes, as long as the sink
        keeps answering."""
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=self._stall_s, return_when=FIRST_COMPLETED)
            failed = [f.exception() for f in done if f.exception() is not None]
            heard = time.monotonic() - getattr(self.sink, "heard_at", -math.inf)
            if not done and not failed and heard < self._stall_s:
                continue  # answering, if only with errors: botocore's retries end each write
            if failed or not done:
                for f in pending:
                    f.cancel()
                if failed:
                    raise failed[0]  # type: ignore[misc]
                raise SinkError(
                    f"the sink did not answer for {self._stall_s:.0f} s "
                    f"({len(pending)} of {len(futures)} writes unfinished)"
                )
        return [f.result() for f in futures]

    def _changed(self, obj: Object) -> bool:
        """Whether the sink lacks these exact bytes. Packs are new every time;
        shards and trail groups carry seq. For other keys the sink is asked
        once, then remembered."""
        if obj.key.startswith((objects.SHARDS, objects.TRAILS, objects.PACKS)):
            return True
        if obj.key not in self.written:
            self.written[obj.key] = self.sink.fingerprint(obj.key)
        return self.written[obj.key] != obj.sha256

    def _write(self, obj: Object, stats: CycleStats, force: bool = False) -> None:
        if not force and not self._changed(obj):
            return
        sent = self.sink.put(obj)
        if not obj.key.startswith(objects.PACKS):
            self.written[obj.key] = obj.sha256
        stats.objects += 1
        stats.bytes += sent
