"""One publish cycle: read -> update -> render -> write. Used by --once and by the loop."""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
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
from ..errors import SinkError, SourceError
from ..model.course import load_gpx
from ..model.race import Batch, RaceState, chunk_body, latest_time
from ..model.standings import Moment
from ..model.track import Chunk
from ..objects import Object
from ..shapes.field import LargeForm
from ..shapes.page import environment, json_bytes, page_context, render_page
from ..shapes.results import RESULTS_EVERY_S, results
from ..shapes.results import objects as results_objects
from ..sink import Sink, open_sink
from ..source import PointSource
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
STANDBY_KEEP_S = 600.0  # a standby keeps chunks this long for the takeover
# A catch-up publishes its chunks in packs of about this many points as it
# goes (a large race): hours of 50,000 racers' would otherwise all wait in
# memory for the first cycle (17.5 M points: the start-up peaked at 4.5 GB).
PACK_AHEAD_POINTS = 1_000_000
RELEASE_AFTER_ROWS = 200_000  # a read this big (a catch-up) frees much memory


@dataclass
class CycleStats:
    seq: int = 0
    racers: int = 0
    new_points: int = 0
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
            "dropped": self.dropped,
            "dropped_by": dict(self.reasons),
            "objects": self.objects,
            "bytes": self.bytes,
            **{f"{k}_ms": round(v, 1) for k, v in self.ms.items()},
        }

    def line(self) -> str:
        stages = " ".join(f"{k}={v:.0f}ms" for k, v in self.ms.items())
        why = ",".join(f"{k}:{v}" for k, v in sorted(self.reasons.items()))
        return (
            f"seq={self.seq} racers={self.racers} new={self.new_points} "
            f"dropped={self.dropped}{f'({why})' if why else ''} objects={self.objects} "
            f"bytes={self.bytes} {stages}"
        )


def _settle_garbage() -> None:
    """Collect this cycle's young garbage, then exempt what survived from
    future collections. The race state is millions of long-lived objects:
    a full collection walked them all (1.4 s pauses at 50,000 racers, the
    p95 cycle). What survives a cycle is live state, freed by reference
    counting when dropped; reference cycles among it are not expected."""
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
        self.course = load_gpx(race.course)
        self.state = RaceState(race, self.course)
        self.sink = sink or open_sink(race.sink, config.s3, race.interval_s)
        heap.tune()  # before the upload threads make their arenas
        # Uploads run here, each cycle's with a deadline: a hung request must
        # not hold the loop (it finishes, or times out, in the background).
        self._uploads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload")
        # The sink may answer nothing for this long before a cycle fails.
        self._stall_s = WRITE_INTERVALS * race.interval_s + 1.0
        self._lag_s: float | None = None  # the last cycle's start to its snapshot in place
        self.source = PointSource(
            config.dsn, config.source, [r.id for r in race.racers], ts(race.starts_at)
        )
        self.env = environment(race.template_dir)
        self.static_hash, files = static_files()
        self.static_objects = [
            objects.make(f"static/{self.static_hash}/{rel}", body, race.interval_s)
            for rel, body in files.items()
        ]
        self.basemap = self._basemap()  # what the page needs to draw it; None: `tiles`
        self.pending: dict[str, bytes] = {}  # small race: chunks cut but not yet written
        self.pending_chunks: list[Chunk] = []  # large race: chunks not yet in a pack
        self.statefile: StateFile | None = None
        self._restored_seq: int | None = None  # the seq a restored state was saved at
        if state_dir is not None:
            with open(race.course, "rb") as f:
                key = fingerprint(race, f.read(), config.source, config.dsn)
            self.statefile = StateFile(state_dir, race, key)
            self._restore(self.statefile.load(self.course))
        # The large form (large.py); a small race publishes every record itself.
        self.large = LargeForm(race, self.state) if race.large else None
        self.written: dict[str, str | None] = {}  # key -> sha256 in the sink (None: absent)
        self.listed: set[str] = set()  # chunk keys the live snapshot lists
        # Newest fix per racer in the snapshot found on (re)start: never publish
        # less than that, e.g. from a replica that lags after a failover.
        self.floor: dict[str, float] = {}
        self.seq: int | None = None
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
        self._uploads.shutdown(wait=False, cancel_futures=True)
        if self.statefile is not None:
            self.statefile.close()
            if self.seq is not None or self._current:
                self.statefile.save(self._saved(), wait=True)

    # -- the race state on disk (statefile.py) ---------------------------------------

    def _saved(self) -> Saved:
        return Saved(
            self.seq,
            self.state,
            self.source.cursor(),
            dict(self.pending),
            list(self.pending_chunks),
            self.clock(),
        )

    def _restore(self, saved: Saved | None) -> None:
        if saved is None:
            return
        self.state, self.pending, self.pending_chunks = (
            saved.state,
            saved.pending,
            saved.pending_chunks,
        )
        self.source.restore(saved.cursor)
        self._restored_seq = saved.seq
        log.info(
            "carrying on from the race state saved %.0f s ago (%s): reading only the rows since",
            max(0.0, self.clock() - saved.saved_at),
            self.statefile.path if self.statefile else "",
        )

    def _start_over(self) -> None:
        """Forget a restored state: read the race from its start."""
        self.state = RaceState(self.race, self.course)
        self.source.close()
        self.source = PointSource(
            self.source.dsn, self.source.cfg, self.source.racer_ids, self.source.start_t
        )
        self.pending, self.pending_chunks = {}, []
        self._dropped_before = Counter()
        if self.large is not None:
            self.large = LargeForm(self.race, self.state)

    def _maybe_save(self) -> None:
        if self.statefile is not None and self.statefile.due():
            self.statefile.save(self._saved())

    def forget_sink(self) -> None:
        """Read the sink afresh before the next write (another publisher may
        have written meanwhile): seq and what is in place come from it."""
        self.seq = None
        self.written.clear()
        self.listed.clear()
        self.floor.clear()

    def _resume(self) -> None:
        """Carry on from what spectators see now: seq keeps growing across
        restarts, and chunks the live snapshot lists are already in place.
        (A sink that cannot be read fails the cycle; the next one tries again.)"""
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
        if self.large is not None and "field" in old:
            # What spectators see is in the live shards and trail groups too.
            try:
                floor = self.large.resume(self._get_many)
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError, IndexError):
                log.warning("the published shards are unreadable; writing them afresh")
                floor = {}
            for rid, at in floor.items():
                self.floor[rid] = max(at, self.floor.get(rid, at))

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        """sink.get for many keys at once, bounded like every write."""
        return self._in_time([self._uploads.submit(self.sink.get, key) for key in keys])

    def _note_published(self, racers: list[dict[str, Any]]) -> None:
        for racer in racers:
            for key in racer.get("track", []):
                self.listed.add(key)
            if racer.get("clock_offset_s"):  # the phone's clock, as last corrected
                self.state.seed_clock(racer["id"], float(racer["clock_offset_s"]))
            if racer.get("position"):
                at = datetime.fromisoformat(racer["position"]["at"]).timestamp()
                self.floor[racer["id"]] = max(at, self.floor.get(racer["id"], at))

    def cycle(self) -> CycleStats:
        """Publish once. Raises SourceError/SinkError; the published snapshot
        then stays as it was."""
        stats = CycleStats(racers=len(self.race.racers))
        t0 = time.perf_counter()
        if self.seq is None:
            self._resume()
            # Chunks cut while standing by that the sink has already.
            for key in [k for k in self.pending if k in self.listed]:
                del self.pending[key]
                self.listed.discard(key)
        assert self.seq is not None
        now = self.clock()
        read_s, update_s = self._advance(now, stats, publishing=True)
        if read_s + update_s > self.race.interval_s:
            # A catch-up (a start, a burst) read for longer than an interval:
            # what it publishes is as of now, when it is made (a large race's
            # trail groups, stamped before a three-minute start-up, would
            # all be due again at once in the next cycle).
            now = self.clock()
        t2 = time.perf_counter()

        seq = self.seq + 1
        moment = self.state.moment(now)
        large = None
        if self.large is not None:
            large = self.large.cycle(now, seq, moment, self.pending_chunks)
            snap = large.snapshot
        else:
            snap = self.state.snapshot(now, seq, moment)
        if self._lag_s is not None:
            # How long after generated_at the last snapshot was in place: the
            # page polls that long after the next is due (DESIGN.md).
            snap["publish_lag_s"] = round(self._lag_s, 3)
        self._never_regress()
        static_prefix = f"static/{self.static_hash}"
        # The page's server-rendered table is for the first paint only (the
        # script takes over from snapshot.json) and CDNs keep it a minute:
        # re-render it now and then, or at once when the race's state changes.
        state = snap["race"]["state"]
        page_obj = None
        if now - self._page_at >= PAGE_EVERY_S or state != self._page_state:
            page = render_page(
                self.env, page_context(self.race, self.course, snap, static_prefix, self.basemap)
            )
            page_obj = objects.make(objects.PAGE, page, self.race.interval_s)
        results_objs = self._results(now, moment, state)
        first = self.static_objects + [
            objects.make(k, b, self.race.interval_s) for k, b in self.pending.items()
        ]
        if self.large is not None:  # written once per start, unchanged ones skipped
            first += self.large.roster_objects + self.large.name_objects
        snap_obj = objects.make(objects.SNAPSHOT, json_bytes(snap), self.race.interval_s)
        t3 = time.perf_counter()
        if getattr(self.sink, "compresses", False):
            # zlib lets go of the GIL: both cores compress while Python waits.
            # (A large race's shards: in the upload threads, as they are made.)
            made = [*large.packs, *large.trails] if large is not None else []
            todo = [
                o
                for o in [*first, *made, *results_objs, page_obj, snap_obj]
                if o is not None and o.compressible
            ]
            with ThreadPoolExecutor(COMPRESS_THREADS) as pool:
                list(pool.map(lambda o: o.gzipped, todo))
        t_compress = time.perf_counter()

        # Order keeps readers consistent: chunks and assets; packs; the trail
        # groups that point into them, the shards and the page; then the
        # snapshot that points at them all.
        self._write_all(first, stats)
        submit = self._uploads.submit
        later = [submit(self._write, o, stats) for o in [*results_objs, page_obj] if o]
        render_s = 0.0
        if large is not None:
            packs = [submit(self._write, o, stats) for o in large.packs]
            t_shards = time.perf_counter()
            later += [submit(self._write, o, stats) for o in large.shards()]
            render_s = time.perf_counter() - t_shards
            try:
                self._in_time(packs)
            except SinkError:
                for f in later:
                    f.cancel()
                raise
            later += [submit(self._write, o, stats) for o in large.trails]
        self._in_time(later)
        if page_obj is not None:
            self._page_at, self._page_state = now, state
        self._in_time([self._uploads.submit(self._write, snap_obj, stats, True)])
        self._lag_s = time.perf_counter() - t0
        self.seq = seq
        self.pending.clear()
        if large is not None:
            large.commit()
            self.pending_chunks.clear()
        _settle_garbage()
        if stats.new_points >= RELEASE_AFTER_ROWS:
            heap.release()
        self._maybe_save()
        t4 = time.perf_counter()

        stats.seq, stats.state = seq, state
        stats.ms = {
            "read": read_s * 1000,
            "update": update_s * 1000,
            # The shards' making overlaps their upload: counted as render.
            "render": (t3 - t2 + render_s) * 1000,
            "compress": (t_compress - t3) * 1000,
            "upload": (t4 - t_compress - render_s) * 1000,
            "total": (t4 - t0) * 1000,
        }
        return stats

    def standby(self) -> CycleStats:
        """While another publisher holds the race: read and apply the source
        as it does, publishing nothing, so that taking over costs a cycle,
        not a catch-up. What the other writes meanwhile is read back at
        takeover (forget_sink): chunks it has published are not written
        again; chunks cut here more than STANDBY_KEEP_S ago are let go (the
        active publisher has packed them long since, or is not publishing)."""
        stats = CycleStats(racers=len(self.race.racers))
        t0 = time.perf_counter()
        now = self.clock()
        read_s, update_s = self._advance(now, stats)
        if self.large is not None:
            keep = now - STANDBY_KEEP_S
            self.pending_chunks = [c for c in self.pending_chunks if c.xyt[-1] >= keep]
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
        """Read the new rows and apply them (catch_up)."""
        return self.catch_up(self.source.read(now), now, stats, publishing)

    def catch_up(
        self,
        batches: Iterator[Batch],
        now: float,
        stats: CycleStats | None = None,
        publishing: bool = False,
    ) -> tuple[float, float]:
        """Apply rows batch by batch (memory stays bounded): every cycle's
        read, a restart's catch-up, a standby's reading along. A long one (a
        restart hours into a race) says how it is getting on every
        PROGRESS_EVERY_S. Returns (seconds reading, seconds applying)."""
        stats = stats or CycleStats(racers=len(self.race.racers))
        read_s = update_s = 0.0
        start = time.monotonic()
        progress: Progress | None = None  # a long one: how far, how fast, how long still
        try:
            while True:
                t_read = time.perf_counter()
                rows = next(batches, None)
                read_s += time.perf_counter() - t_read
                if rows is None:
                    break
                t_update = time.perf_counter()
                accepted, chunks = self.state.update(rows, now)
                stats.new_points += accepted
                if self.large is not None:
                    self.pending_chunks.extend(chunks)
                    if publishing:
                        self._pack_ahead(stats)
                for chunk in chunks if self.large is None else ():
                    if chunk.key in self.listed:  # published before a restart: never rewritten
                        self.listed.discard(chunk.key)
                    else:
                        self.pending[chunk.key] = json_bytes(chunk_body(chunk))
                # A catch-up's rows are young garbage; what it built is state.
                # Unfrozen, the growing state was walked by every full
                # collection: a quarter of a cold restart's time.
                _settle_garbage()
                update_s += time.perf_counter() - t_update
                if progress is None and time.monotonic() - start >= PROGRESS_EVERY_S:
                    # The race's time read so far, of all there is to read.
                    progress = Progress("catching up", (now - self.state.start_t) / 60, "race min")
                if progress is not None:
                    upto = latest_time(rows)
                    if upto is not None:
                        progress.update(
                            (upto - self.state.start_t) / 60, f"{stats.new_points:,} points"
                        )
        finally:
            if progress is not None:
                progress.close()
        dropped = self.state.dropped_total()
        stats.reasons = {
            k: v - self._dropped_before.get(k, 0)
            for k, v in dropped.items()
            if v > self._dropped_before.get(k, 0)
        }
        stats.dropped = sum(stats.reasons.values())
        self._dropped_before = dropped
        return read_s, update_s

    def _pack_ahead(self, stats: CycleStats) -> None:
        """Write the chunks cut so far in a pack of their own once they are
        PACK_AHEAD_POINTS (a long catch-up); the next trail groups list them."""
        assert self.large is not None and self.seq is not None
        if len(self.pending_chunks) * self.race.chunk_points < PACK_AHEAD_POINTS:
            return  # (chunks are chunk_points long, but for a staggered first)
        pack, commit = self.large.pack_ahead(self.seq + 1, self.pending_chunks)
        if pack is not None:
            self._write_all([pack], stats)
        commit()
        self.pending_chunks.clear()

    def _results(self, now: float, moment: Moment, state: str) -> list[Object]:
        """results.json/.csv/.html: provisional every RESULTS_EVERY_S while the
        race is live (small races: a large field's are made once, at the
        end), final once it is finished; written only when they change
        (a late fix changes them)."""
        final = state == "finished"
        if state == "pre" or (not final and self.large is not None):
            return []
        if now - self._results_at < RESULTS_EVERY_S and not (final and not self._results_final):
            return []
        if final and not self._results_final:
            log.info("race %s is finished: final results", self.race.id)
        self._results_at, self._results_final = now, final
        # The same results are the same bytes: _write skips what the sink has.
        return results_objects(results(self.state, moment, now), self.env)

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

    def _write_all(self, objs: list[Object], stats: CycleStats) -> None:
        self._in_time([self._uploads.submit(self._write, o, stats) for o in objs])

    def _in_time(self, futures: list[Future[Any]]) -> list[Any]:
        """The futures' results; SinkError if any failed, or if the sink
        answered none of them for about two intervals (a stalled connection:
        the rest are cancelled, so a late upload never overwrites what a
        later cycle wrote). A catch-up writing thousands of chunks takes as
        long as it takes, as long as the sink keeps answering."""
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=self._stall_s, return_when=FIRST_COMPLETED)
            failed = [f.exception() for f in done if f.exception() is not None]
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
        """Whether the sink lacks these exact bytes. Chunks are cut once per
        process (and never when the live snapshot lists them already); for
        other keys the sink is asked once, then remembered."""
        if obj.key.startswith(("tracks/", objects.SHARDS, objects.TRAILS, objects.PACKS)):
            return True  # new every time: chunks cut once, the rest carry seq
        if obj.key not in self.written:
            self.written[obj.key] = self.sink.fingerprint(obj.key)
        return self.written[obj.key] != obj.sha256

    def _write(self, obj: Object, stats: CycleStats, force: bool = False) -> None:
        if not force and not self._changed(obj):
            return
        sent = self.sink.put(obj)
        if not obj.key.startswith(("tracks/", objects.PACKS)):
            self.written[obj.key] = obj.sha256
        stats.objects += 1
        stats.bytes += sent
