"""The race: every racer's track, and the snapshot model (schema 1). Pure; no I/O."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .clock import CLOCK_SLACK_S, FUTURE_HORIZON_S, FUTURE_TOLERANCE_S, MAX_HELD, PhoneClock
from .config import Race
from .course import Course
from .standings import Standings
from .timefmt import iso, ts
from .track import TIMELINE_STEP_M, Chunk, Fix, Rules, Track, fnv1a32, racer_key

SCHEMA = 1
LARGE_TIMELINE_STEP_M = 50.0  # gaps in a large race: half the memory, ample precision
MAX_NAME = 80  # characters of a name published; a 10,000-character name is someone's joke


class Row(NamedTuple):
    """A raw row from the source, before any check. (A tuple: a large race
    makes ~40,000 a cycle, and a frozen dataclass costs 3x as much to build.)"""

    racer_id: str
    t: float | None
    lat: float | None
    lon: float | None
    accuracy: float | None = None  # metres, when the source has the column (0: unknown)
    # When the row reached the database (its now() when read, or the ingest
    # timestamp); None when unknown (a first read after a start).
    arrival: float | None = None
    problem: str | None = None  # set by the source: bad_value, invalid


@dataclass
class RaceState:
    race: Race
    course: Course
    tracks: dict[str, Track] = field(init=False)
    dropped: Counter[str] = field(default_factory=Counter)  # rows dropped before a track

    def __post_init__(self) -> None:
        # Each racer's published record, rebuilt only when they have news; the
        # rest only have their rank, status, ETA and gap to the racer ahead
        # brought up to date (at 50,000 racers, most are unchanged a cycle).
        self._records: dict[str, dict[str, Any]] = {}
        self._eta_at: dict[str, float | None] = {}
        self._ahead_of: dict[str, str | None] = {}
        self._dirty: set[str] = set()
        self.clocks: dict[str, PhoneClock] = {}  # racers whose phones stamp ahead
        # Fixes stamped ahead of their arrival, per racer: (stamp, lat, lon),
        # judged again once their (corrected) time has come.
        self._held: dict[str, list[tuple[float, float, float]]] = {}
        self._after_gap: set[str] = set()  # racers with a fix held after a silence
        self._leader_id: str | None = None
        self.start_t = ts(self.race.starts_at)
        self.end_t = ts(self.race.ends_at) if self.race.ends_at else None
        race = self.race
        rules = {kind: Rules(start_t=self.start_t, max_mps=speed / 3.6,
                             chunk_points=race.chunk_points,
                             pace_window_s=race.pace_window_s, off_course_m=race.off_course_m,
                             min_spacing_s=race.min_fix_spacing_s,
                             # The longest tail (a staggered first chunk) thins
                             # to tail_points.
                             tail_stride=-(-(race.chunk_points * 3 // 2)
                                           // max(1, race.tail_points - 1))
                             if race.large else 0, stagger=race.large,
                             timeline_step_m=LARGE_TIMELINE_STEP_M if race.large
                             else TIMELINE_STEP_M)
                 for kind, speed in race.max_kmh.items()}
        self._track_drops: Counter[str] = Counter()  # shared by the tracks
        self.tracks = {r.id: Track(racer=r, course=self.course, rules=rules[r.kind],
                                   race_drops=self._track_drops)
                       for r in race.racers}
        self.vehicles = [t for t in self.tracks.values() if t.racer.kind == "vehicle"]
        self.standings = Standings(list(self.tracks.values()))  # config order; large races' ranks
        # Large races: which racers each shard object holds (fixed for the race).
        self.shard_members: list[list[str]] = [[] for _ in range(race.shards)]
        for r in race.racers if race.shards else ():
            self.shard_members[shard_of(r.id, race.shards)].append(r.id)

    def update(self, rows: Iterable[Row], now: float) -> tuple[int, list[Chunk]]:
        """Check and apply new rows; return (rows accepted, chunks now full)."""
        per_racer: dict[str, list[Fix]] = {}
        for row in rows:
            reason = self._row_problem(row)
            if reason is None:
                assert row.t is not None and row.lat is not None and row.lon is not None
                t = self._on_phone_clock(row.racer_id, row.t, row.arrival)
                reason = self._time_problem(t)
                if reason is None and t > (now if row.arrival is None else row.arrival) \
                        + FUTURE_TOLERANCE_S:
                    reason = self._hold(row.racer_id, row.t, row.lat, row.lon, now)
                if reason is None:
                    per_racer.setdefault(row.racer_id, []).append(Fix(t, row.lat, row.lon))
                    continue
            if reason == "not_a_racer":
                self.dropped[reason] += 1
            else:  # counted against the racer, and published with their record
                self.tracks[row.racer_id].drop(reason)
                self._dirty.add(row.racer_id)
        for racer_id, fixes in self._due(now).items():
            per_racer.setdefault(racer_id, []).extend(fixes)
        chunks: list[Chunk] = []
        accepted = 0
        one_each: list[tuple[Track, Fix]] = []  # the usual case: one new fix per racer
        for racer_id, fixes in per_racer.items():
            track = self.tracks[racer_id]
            self._dirty.add(racer_id)
            usual = track.last is not None and track.after_gap is None
            if len(fixes) == 1 and usual and not track.search(fixes[0]).in_order:
                if track.admit(fixes[0]):
                    one_each.append((track, fixes[0]))
                continue
            before = track.count
            chunks.extend(track.add(fixes))
            accepted += track.count - before
            if track.after_gap is not None:
                self._after_gap.add(racer_id)
        if one_each:
            searches = [track.search(fix) for track, fix in one_each]
            projections = self.course.project_many(
                [f.lat for _, f in one_each], [f.lon for _, f in one_each],
                [s.near_m for s in searches], [s.ahead_m for s in searches],
                [s.expect_m for s in searches], [s.prefer for s in searches],
                self.race.off_course_m)
            for (track, fix), proj in zip(one_each, projections, strict=True):
                chunks.extend(track.add_projected(fix, proj))
            accepted += len(one_each)
        for racer_id in list(self._after_gap):  # held fixes whose next fix never came
            track = self.tracks[racer_id]
            before = track.count
            chunks.extend(track.settle(now))
            accepted += track.count - before
            if track.after_gap is None:
                self._after_gap.discard(racer_id)
                self._dirty.add(racer_id)
        return accepted, chunks

    def _row_problem(self, row: Row) -> str | None:
        if row.racer_id not in self.tracks:
            return "not_a_racer"
        if row.problem:
            return row.problem
        if row.t is None or row.lat is None or row.lon is None:
            return "null"
        if not (math.isfinite(row.lat) and math.isfinite(row.lon) and math.isfinite(row.t)):
            return "not_finite"
        if not (-90.0 <= row.lat <= 90.0 and -180.0 <= row.lon <= 180.0):
            return "out_of_range"
        if row.lat == 0.0 and row.lon == 0.0:
            return "out_of_range"  # "null island": a phone's placeholder, not a place
        # 0, NULL (and nonsense) accuracy means unknown: Traccar stores 0.
        if row.accuracy is not None and row.accuracy > 0 and \
                not row.accuracy <= self.race.max_accuracy_m:
            return "inaccurate"
        return None

    def _time_problem(self, t: float) -> str | None:
        if t < self.start_t:
            return "before_start"  # privacy: where a racer was before the start
        if self.end_t is not None and t > self.end_t:
            return "after_end"
        return None

    def _on_phone_clock(self, racer_id: str, t: float, arrival: float | None) -> float:
        """The fix's time corrected for its phone's clock (clock.py)."""
        clock = self.clocks.get(racer_id)
        if arrival is not None and (clock is not None or t - arrival > CLOCK_SLACK_S):
            if clock is None:
                clock = self.clocks[racer_id] = PhoneClock()
            clock.observe(t, arrival)
        return t - clock.offset_s if clock is not None else t

    def _hold(self, racer_id: str, t: float, lat: float, lon: float, now: float) -> str:
        """A fix stamped ahead of now: held until its time comes. Counted as
        `future` while it is not published: held, or (too far ahead, too
        many) not kept."""
        held = self._held.setdefault(racer_id, [])
        if t - now <= FUTURE_HORIZON_S and len(held) < MAX_HELD:
            held.append((t, lat, lon))
        return "future"

    def _due(self, now: float) -> dict[str, list[Fix]]:
        """Held fixes whose corrected time has come, to be judged as new."""
        due: dict[str, list[Fix]] = {}
        for racer_id, held in list(self._held.items()):
            clock = self.clocks.get(racer_id)
            offset = clock.offset_s if clock is not None else 0.0
            keep = []
            track = self.tracks[racer_id]
            for t, lat, lon in held:
                if t - offset <= now:
                    track.undrop("future")  # judged again, as a fix like any other
                    reason = self._time_problem(t - offset)
                    if reason is None:
                        due.setdefault(racer_id, []).append(Fix(t - offset, lat, lon))
                    else:
                        track.drop(reason)
                else:
                    keep.append((t, lat, lon))
            if keep:
                self._held[racer_id] = keep
            else:
                del self._held[racer_id]
        return due

    def seed_clock(self, racer_id: str, offset_s: float) -> None:
        """A phone's offset as last published: a restarted publisher corrects
        the fixes it reads again before it has seen new ones arrive."""
        if racer_id in self.tracks and offset_s:
            clock = self.clocks.setdefault(racer_id, PhoneClock())
            clock.offset_s = offset_s

    def dropped_total(self) -> Counter[str]:
        return self.dropped + self._track_drops

    # -- the snapshot ------------------------------------------------------------

    def state(self, now: float) -> str:
        if now < self.start_t:
            return "pre"
        if self.end_t is not None and now >= self.end_t:
            return "finished"
        if self.tracks and all(t.finish_t is not None for t in self.tracks.values()):
            return "finished"
        return "live"

    def ranked(self) -> list[Track]:
        """Finished by finish time, then by progress, then waiting in config order."""
        return sorted(self.tracks.values(), key=self._rank_key)

    def _rank_key(self, t: Track) -> tuple[int, float, int]:
        order = self.standings.index[t.racer.id]
        if t.finish_t is not None:
            return (0, t.finish_t, order)
        if t.last is not None:
            return (1, -t.distance_m, order)
        return (2, 0.0, order)

    def snapshot(self, now: float, seq: int) -> dict[str, Any]:
        ranked = self.ranked()
        leader = ranked[0] if ranked and ranked[0].last is not None else None
        racers = []
        ahead: Track | None = None
        vehicles = self.vehicles
        leader_id = leader.racer.id if leader else None
        new_leader = leader_id != self._leader_id
        for rank, track in enumerate(ranked, start=1):
            rid = track.racer.id
            ahead_id = ahead.racer.id if ahead else None
            rec = self._records.get(rid)
            if rec is None or rid in self._dirty:
                rec = self._racer(track, rank, leader, ahead, vehicles, now)
                self._records[rid] = rec
            else:
                self._refresh(rec, track, rank, leader if new_leader else None, ahead,
                              ahead_id, vehicles, now)
            self._ahead_of[rid] = ahead_id
            racers.append(dict(rec))  # a copy: the cached record changes next cycle
            ahead = track if track.last is not None else ahead
        self._dirty.clear()
        self._leader_id = leader_id
        return self._envelope(now, seq) | {"racers": racers}

    def _envelope(self, now: float, seq: int) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "race": {
                "id": self.race.id,
                "title": self.race.title,
                "starts_at": iso(self.start_t),
                "ends_at": iso(self.end_t) if self.end_t is not None else None,
                "state": self.state(now),
                "course_length_m": round(self.course.length_m, 1),
                "interval_s": self.race.interval_s,
                "units": self.race.units,
            },
            "generated_at": iso(now),
            "seq": seq,
        }

    def large_snapshot(self, now: float, seq: int, shard_ids: Iterable[int],
                       shard_every_s: float) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """The large-race form: snapshot.json with the leaderboard head and the
        field's counts, and the shard objects due this cycle (DESIGN.md).

        Every racer is ranked each cycle (a sort), but records are built only
        for the head and the racers of the shards written: that, not the
        field's size, is what a cycle renders."""
        race, standings = self.race, self.standings
        standings.update(self._dirty)
        count = len(self.tracks)
        leader = standings.at(1) if count else None
        leader = leader if leader is not None and leader.last is not None else None
        vehicles = self.vehicles

        def record(track: Track) -> dict[str, Any]:
            # Racers with a fix rank before those without: the one just
            # above a racer with a fix has one too.
            rank = standings.rank_of(track.racer.id)
            ahead = standings.at(rank - 1) if rank > 1 and track.last is not None else None
            return self._racer(track, rank, leader, ahead, vehicles, now, thin=True)

        head = standings.top(race.head_size)
        head += [v for v in vehicles if standings.rank_of(v.racer.id) > race.head_size]
        snap = self._envelope(now, seq) | {
            "racers": [record(t) for t in head],
            "field": {
                "count": count,
                "by_status": standings.counts(now - race.stale_after_s),
                "head": len(head),
                "shards": race.shards,
                "shard_url": "racers/{shard}.json",
                "shard_of": "fnv1a32",
                "shard_every_s": shard_every_s,
                "tail_points": race.tail_points,
            },
        }
        shards = {}
        for n in shard_ids:
            members = standings.by_rank(self.shard_members[n])
            shards[n] = {"schema": SCHEMA, "race": race.id, "shard": n,
                         "shards": race.shards, "generated_at": iso(now), "seq": seq,
                         "racers": [record(t) for t in members]}
        self._dirty.clear()
        return snap, shards

    def _racer(self, t: Track, rank: int, leader: Track | None, ahead: Track | None,
               vehicles: list[Track], now: float, thin: bool = False) -> dict[str, Any]:
        r = t.racer
        out: dict[str, Any] = {
            "id": r.id, "name": display_name(r.name), "kind": r.kind, "color": r.color,
            "status": "waiting", "position": None, "distance_m": 0.0, "rank": rank,
            "elapsed_s": None, "pace_s_per_km": None, "speed_kmh": None, "gap_s": None,
            "gap_ahead_s": None, "eta_s": None, "finish_s": None, "off_course": False,
            "dropped": dict(sorted(t.dropped.items())),
        }
        if thin:  # a large race: constant size however long the race (DESIGN.md)
            out["tail"] = t.thin_tail()
            out["chunks"] = t.chunks
            out["track_url"] = f"tracks/{racer_key(r.id)}/{{n}}.json"
        else:
            out["tail"] = t.tail()
            out["track"] = t.track_keys
        if r.kind == "runner" and vehicles:
            out["vs_vehicles"] = [_versus(t, v) for v in vehicles]
        if t.last is None:
            return out
        last = t.last
        end_t = t.finish_t if t.finish_t is not None else last.t
        if t.finish_t is not None:
            status = "finished"
        elif now - last.t > self.race.stale_after_s:
            status = "stale"
        else:
            status = "racing"
        recent = t.recent_speed()
        speed = recent if t.finish_t is None else t.average_speed(self.start_t)
        distance = t.distance_m
        out.update({
            "status": status,
            "position": {"lat": last.lat, "lon": last.lon, "at": iso(last.t)},
            "distance_m": round(distance, 1),
            "elapsed_s": round(end_t - self.start_t),
            "pace_s_per_km": round(1000 / speed, 1) if speed else None,
            "speed_kmh": round(speed * 3.6, 1) if speed is not None else None,
            "gap_s": _gap(t, leader),
            "gap_ahead_s": _gap(t, ahead),
            "off_course": t.off_course,
        })
        clock = self.clocks.get(r.id)
        if clock is not None and clock.offset_s:
            out["clock_offset_s"] = clock.offset_s  # stamps were this far ahead: corrected
        if t.finish_t is not None:
            out["finish_s"] = round(t.finish_t - self.start_t, 1)
            out["eta_s"] = 0
        else:
            projected = self._projected_speed(t, recent)
            if projected:
                remaining = self.course.length_m - distance
                eta_at = last.t + remaining / projected
                self._eta_at[r.id] = eta_at
                out["eta_s"] = max(0, round(eta_at - now))
        return out

    def _refresh(self, rec: dict[str, Any], t: Track, rank: int, new_leader: Track | None,
                 ahead: Track | None, ahead_id: str | None, vehicles: list[Track],
                 now: float) -> None:
        """What changes for a racer with no news: rank, staleness, the ETA
        countdown, the gap when the lead changes hands, who is just ahead,
        and where the vehicles are."""
        rec["rank"] = rank
        if new_leader is not None:
            rec["gap_s"] = _gap(t, new_leader)
        if t.last is not None and t.finish_t is None:
            rec["status"] = "stale" if now - t.last.t > self.race.stale_after_s else "racing"
            eta_at = self._eta_at.get(t.racer.id)
            if eta_at is not None:
                rec["eta_s"] = max(0, round(eta_at - now))
        if self._ahead_of.get(t.racer.id, "") != ahead_id:
            rec["gap_ahead_s"] = _gap(t, ahead)
        if "vs_vehicles" in rec:
            rec["vs_vehicles"] = [_versus(t, v) for v in vehicles]

    def _projected_speed(self, t: Track, recent: float | None) -> float | None:
        """Speed for the rest of the race: recent and average blended (a
        runner who stops slows it at once, yet one pause does not stall
        it); vehicles, which stop and start, by their average alone."""
        avg = t.average_speed(self.start_t)
        if t.racer.kind == "vehicle" or recent is None:
            return avg
        if avg is None:
            return recent or None
        return 0.5 * recent + 0.5 * avg


def shard_of(racer_id: str, shards: int) -> int:
    """Which shard object holds a racer: FNV-1a (32-bit) of the id's UTF-8
    bytes, modulo the number of shards. The page computes the same."""
    return fnv1a32(racer_id) % shards


def display_name(name: str) -> str:
    name = " ".join(name.split())  # no newlines or runs of blanks in a leaderboard
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "…"


def _versus(runner: Track, vehicle: Track) -> dict[str, Any]:
    """Man against machine: ahead or behind the vehicle, by metres and seconds."""
    out: dict[str, Any] = {"id": vehicle.racer.id, "name": display_name(vehicle.racer.name),
                           "ahead": None, "metres": None, "seconds": None}
    if runner.last is None or vehicle.last is None:
        return out
    if runner.finish_t is not None or vehicle.finish_t is not None:
        ahead = (vehicle.finish_t is None or
                 (runner.finish_t is not None and runner.finish_t < vehicle.finish_t))
    else:
        ahead = runner.distance_m > vehicle.distance_m
    out["ahead"] = ahead
    out["metres"] = round(abs(runner.distance_m - vehicle.distance_m), 1)
    out["seconds"] = _gap(vehicle, runner) if ahead else _gap(runner, vehicle)
    return out


def _gap(t: Track, other: Track | None) -> float | None:
    """How long ago `other` was where `t` is now."""
    if other is None or t.last is None:
        return None
    if other is t:
        return 0.0
    if t.finish_t is not None and other.finish_t is not None:
        return round(t.finish_t - other.finish_t, 1)
    when = other.time_at(t.distance_m)
    if when is None:
        return None
    return round(max(0.0, t.last.t - when), 1)


def chunk_body(chunk: Chunk) -> dict[str, Any]:
    return {"racer": chunk.racer_id, "points": chunk.points}
