"""The large-race form (DESIGN.md, "Large races"): every cycle writes the
snapshot (head and field overview) and every live shard, all of one moment;
trails live in packs read by byte range; rosters and a name index are written
once. Real PostgreSQL, moto S3."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from racepub import config, source
from racepub.config import Racer
from racepub.model.board import snapshot
from racepub.model.standings import STATUS_CODES
from racepub.publisher.cycle import Publisher
from racepub.shapes import trails as trails_mod
from racepub.shapes.field import CUT_EVERY_S, FieldShape, fold, name_key, shard_of, tokens
from racepub.shapes.trails import TrailStore
from racepub.sink import open_sink
from tests.helpers import (
    COLS,
    RaceSetup,
    assert_nothing_secret,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    versions,
    write_race,
)
from tests.test_real_inputs import cerknica, when

N = 23  # runners, plus one vehicle
LARGE = """
    shard_above = 10
    shard_size = 5
    head_size = 4
    chunk_points = 12
"""
NAMES = {"r03": "Zoë Ångström", "r07": "José Núñez-Sánchez", "r11": "ZOE Baker"}


def racers_csv(tmp_path: Path) -> None:
    rows = [f"r{i:02d},{NAMES.get(f'r{i:02d}', f'Runner {i}')},runner\n" for i in range(N)]
    (tmp_path / "entrants.csv").write_text(
        "id,name,kind\n" + "".join(rows) + "tram,The T,vehicle\n", encoding="utf-8"
    )


def fnv1a_reference(data: bytes) -> int:
    """FNV-1a 32 as its authors define it, over bytes (isthe.com/chongo/tech/comp/fnv)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) % 2**32
    return h


def test_fnv1a_shard_of_matches_published_vectors() -> None:
    # The FNV authors' test vectors, and the page's rule: UTF-8 bytes of the id.
    assert shard_of("", 2**32) == 0x811C9DC5
    assert shard_of("a", 2**32) == 0xE40C292C
    assert shard_of("foobar", 2**32) == 0xBF9CF968
    assert shard_of("Zoë", 2**32) == fnv1a_reference("Zoë".encode()) == 0xC2A2BDDC
    assert shard_of("Zoë", 2**32) != fnv1a_reference("Zoë".encode("latin-1"))


class Bucket:
    def __init__(self, name: str, prefix: str = "race"):
        self.s3, self.name = boto3.client("s3", region_name="us-east-1"), name
        self.prefix = prefix

    def raw(self, key: str) -> bytes:
        got = self.s3.get_object(Bucket=self.name, Key=f"{self.prefix}/{key}")
        body: bytes = got["Body"].read()
        return gzip.decompress(body) if got.get("ContentEncoding") == "gzip" else body

    def json(self, key: str) -> Any:
        return json.loads(self.raw(key))

    def versions(self) -> dict[str, int]:
        return versions(self.s3, self.name)

    def trail(self, snap: dict[str, Any], racer_id: str) -> list[list[float]]:
        """A racer's trail as the page draws it: its trail group names the
        pack ranges of its chunks and recent trail; each range is one gzip
        member. Points as [lat, lon, seconds after the start]."""
        field = snap["field"]
        group = self.json(
            field["trail_url"].replace("{trail}", str(shard_of(racer_id, field["trails"])))
        )
        k = group["ids"].index(racer_id)
        points: list[list[float]] = []
        for ref in [*group["chunks"][k], group["recent"][k]]:
            if ref is None:
                continue
            pack, at, length = group["packs"][ref[0]], ref[1], ref[2]
            got = self.s3.get_object(
                Bucket=self.name,
                Key=f"{self.prefix}/{pack}",
                Range=f"bytes={at}-{at + length - 1}",
            )
            piece = json.loads(gzip.decompress(got["Body"].read()))
            assert piece["racer"] == racer_id
            points += [p for p in piece["points"] if not points or p[2] > points[-1][2]]
        return points


def large_race(
    tmp_path: Path,
    dsn: str,
    bucket: str,
    speed: Callable[[int], float],
    until_s: float,
    tram: bool,
    create_table: bool = True,
) -> tuple[RaceSetup, list[tuple[Any, ...]]]:
    """N runners (and the tram) from entrants.csv; their fixes, not yet in the table."""
    if create_table:
        create_points_table(dsn)
    racers_csv(tmp_path)
    setup = write_race(
        tmp_path,
        dsn,
        sink=f"s3://{bucket}/race",
        racers="\n",
        starts_at=now_utc() - timedelta(seconds=until_s + 5),
        extra='racers_file = "entrants.csv"\n' + LARGE,
    )
    rows = [row for i in range(N) for row in fixes(setup, f"r{i:02d}", speed(i), until_s)]
    if tram:
        rows += fixes(setup, "tram", 2.6, until_s)
    return setup, rows


def shards_of_cycle(out: Bucket, snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every racer's live record of one cycle: the shard's columns, named by
    the roster (ids in column order)."""
    field = snap["field"]
    got: dict[str, dict[str, Any]] = {}
    for k in range(field["shards"]):
        roster = out.json(field["roster_url"].replace("{shard}", str(k)))
        shard = out.json(field["shard_url"].replace("{shard}", str(k)))
        assert shard["seq"] == snap["seq"] and shard["generated_at"] == snap["generated_at"]
        ids = roster["identity"]["id"]
        assert ids and len(ids) == len(shard["rank"])
        cols = [c for c in shard if isinstance(shard[c], list)]
        for j, rid in enumerate(ids):
            assert shard_of(rid, field["shards"]) == k and rid not in got
            got[rid] = {c: shard[c][j] for c in cols} | {
                "name": roster["identity"]["name"][j],
                "shard": shard,
            }
    return got


def test_one_cycle_one_truth(tmp_path: Path, dsn: str, bucket: str) -> None:
    """Every object of a cycle carries its seq and one ranking of the whole
    field; the shards' numbers are the head's numbers."""
    setup, rows = large_race(tmp_path, dsn, bucket, lambda i: 2.0 + 0.05 * i, 170, tram=True)
    insert_points(dsn, "live_points", COLS, rows)
    cfg = config.load(str(setup.path))
    race = cfg.race("t")
    assert race.field_shape
    pub = Publisher(cfg, race)
    out = Bucket(bucket)
    try:
        for seq in (1, 2):
            pub.cycle()
            snap = out.json("snapshot.json")
            assert snap["seq"] == seq
            field = snap["field"]
            assert field["count"] == N + 1 and field["shards"] == 5
            assert field["by_status"] == {"finished": 0, "racing": N + 1, "stale": 0, "waiting": 0}
            live = shards_of_cycle(out, snap)
            assert len(live) == N + 1
            # One ranking: unique, 1..N+1, by the same rule as the head (and
            # the truth: the runners' speeds, the tram wherever it is).
            assert sorted(r["rank"] for r in live.values()) == list(range(1, N + 2))
            by_rank = sorted(live, key=lambda rid: live[rid]["rank"])
            runners = [rid for rid in by_rank if rid != "tram"]
            assert runners == [f"r{i:02d}" for i in reversed(range(N))]
            head = snap["racers"]
            assert [r["id"] for r in head[:4]] == by_rank[:4] and head[-1]["id"] == "tram"
            for r in head:
                mine = live[r["id"]]
                assert mine["rank"] == r["rank"] and mine["status"] == 1  # racing
                # The same numbers; shards carry whole metres and seconds.
                assert mine["distance_m"] == pytest.approx(r["distance_m"], abs=0.55)
                assert (mine["gap_s"] is None) == (r["gap_s"] is None)
                assert mine["gap_s"] == pytest.approx(r["gap_s"], abs=0.55)
                shard = mine["shard"]
                lat = shard["lat0"] + mine["lat_e6"] / 1e6
                assert lat == pytest.approx(r["position"]["lat"], abs=2e-6)
            # Only rank 1 has no gap; everyone else is behind.
            assert [rid for rid in live if live[rid]["gap_s"] == 0] == [by_rank[0]]
            # The field overview: everyone on course, counted once.
            density = field["density"]
            assert density["bins"] == len(density["counts"]) == 200
            assert sum(density["counts"]) == N + 1
            r05 = live["r05"]
            assert r05["distance_m"] == pytest.approx((2.0 + 0.05 * 5) * 169, abs=3)
            assert r05["age_ms"] >= 0 and r05["name"] == "Runner 5"

        # Live objects are polled like the snapshot; packs, rosters and name
        # indexes never change once written.
        for key in ("racers/0.json", "trails/0.json"):
            head_obj = out.s3.head_object(Bucket=bucket, Key=f"race/{key}")
            assert head_obj["CacheControl"] == "public, max-age=2, s-maxage=1, stale-if-error=86400"
            assert head_obj["ContentEncoding"] == "gzip"
        written = out.versions()
        for key, n in written.items():
            if key.startswith(("race/packs/", "race/roster/", "race/names/")):
                assert n == 1, key
                cache = out.s3.head_object(Bucket=bucket, Key=key)["CacheControl"]
                assert "immutable" in cache
        # Every shard, every cycle: no round robin.
        assert all(written[f"race/racers/{k}.json"] == 2 for k in range(5))
        # Nothing secret in any object: no DSN, database host or port, no AWS key.
        assert_nothing_secret({key: out.raw(key.removeprefix("race/")) for key in written}, dsn)
    finally:
        pub.close()


@pytest.mark.slow
def test_followed_trail_has_every_fix_and_no_long_bridges(
    tmp_path: Path, dsn: str, bucket: str
) -> None:
    """Fixes arrive over several cycles; the trail a page draws (chunks and
    recent trail from the packs, then the live position) has each fix of the
    chunks once, in order, and a point at least every 60 s of race time."""
    setup, rows = large_race(tmp_path, dsn, bucket, lambda i: 2.5, 280, tram=False)
    cfg = config.load(str(setup.path))
    pub = Publisher(cfg, cfg.race("t"))
    out = Bucket(bucket)
    try:
        by_t = sorted(rows, key=lambda r: r[1])
        start = setup.starts_at
        for cycle in range(140):  # fixes come in as they would: an interval's worth a cycle
            insert_points(
                dsn,
                "live_points",
                COLS,
                [r for r in by_t if 2 * cycle < (r[1] - start).total_seconds() <= 2 * cycle + 2],
            )
            pub.cycle()
            if cycle % 9 != 8:
                continue
            snap = out.json("snapshot.json")
            live = shards_of_cycle(out, snap)
            assert snap["field"]["trails"] >= 4  # several groups: they take turns
            for rid in ("r00", "r03", "r19"):
                trail = out.trail(snap, rid)
                times = [p[2] for p in trail]
                assert times == sorted(set(times)) and times[0] == 1.0
                newest = snap_t(snap) - live[rid]["age_ms"] / 1000 - setup.starts_at.timestamp()
                assert newest == pytest.approx(2 * cycle + 1, abs=0.01)
                drawn = [*times, newest]
                steps = [b - a for a, b in zip(drawn, drawn[1:], strict=False)]
                assert max(steps) <= 60.0, (rid, cycle, steps)
        # The chunks hold every fix (12 each; the first staggered by id).
        snap = out.json("snapshot.json")
        trail = out.trail(snap, "r05")
        assert {1.0 + 2 * k for k in range(60)} <= {p[2] for p in trail}
    finally:
        pub.close()


def snap_t(snap: dict[str, Any]) -> float:
    return datetime.fromisoformat(snap["generated_at"]).timestamp()


def test_find_a_racer_by_name_or_bib(tmp_path: Path, dsn: str, bucket: str) -> None:
    """The name index: one object per folded two-letter prefix of each word
    of a name or id; case and accents do not matter."""
    setup, rows = large_race(tmp_path, dsn, bucket, lambda i: 2.0, 30, tram=False)
    insert_points(dsn, "live_points", COLS, rows)
    cfg = config.load(str(setup.path))
    pub = Publisher(cfg, cfg.race("t"))
    try:
        pub.cycle()
    finally:
        pub.close()
    out = Bucket(bucket)
    url = out.json("snapshot.json")["field"]["names_url"]

    def find(query: str) -> set[str]:
        words = tokens(query)
        obj = out.json(url.replace("{key}", name_key(words[0][:2])))
        found = set()
        for values in obj["racers"]:
            racer = dict(zip(obj["fields"], values, strict=True))
            text = " ".join(str(racer[f] or "") for f in obj["searched"])
            if all(any(w.startswith(q) for w in tokens(text)) for q in words):
                found.add(racer["id"])
        return found

    assert find("zoe") == {"r03", "r11"}
    assert find("ZOË ång") == {"r03"}
    assert find("angstrom") == {"r03"}
    assert find("nunez") == {"r07"} and find("sanchez") == {"r07"}
    assert find("r07") == {"r07"}  # a bib
    assert fold("Ångström") == "angstrom" and name_key("ön") == "~" + "ön".encode().hex()


def test_name_index_splits_a_crowded_prefix() -> None:
    """A prefix that would list more than NAMES_MAX racers splits into
    three-letter keys, so no index object grows past a couple of dozen KB."""
    from tests.test_race import make_state

    racers = tuple(
        Racer(f"b{i}", f"{('Smith', 'Smolen', 'Small')[i % 3]} {i}") for i in range(4000)
    )
    state = make_state(*racers, shard_above=10)
    form = FieldShape(state.race, state)
    objs = {o.key.rsplit("/", 1)[1]: o for o in form.name_objects}
    sm = json.loads(objs["sm.json"].body)
    assert sm["split"] is True and sm["racers"] == []  # nobody is called just "Sm"
    assert {
        len(json.loads(objs[k].body)["racers"]) for k in ("smi.json", "smo.json", "sma.json")
    } == {1333, 1334}
    assert max(len(o.gzipped) for o in form.name_objects) < 30_000


def test_restart_carries_on_from_the_published_trails(
    tmp_path: Path, dsn: str, bucket: str
) -> None:
    setup, rows = large_race(tmp_path, dsn, bucket, lambda i: 2.5, 100, tram=False)
    insert_points(dsn, "live_points", COLS, rows)
    cfg = config.load(str(setup.path))
    first = Publisher(cfg, cfg.race("t"))
    first.cycle()
    first.cycle()
    first.close()
    out = Bucket(bucket)
    snap = out.json("snapshot.json")
    before = out.versions()
    trail = out.trail(snap, "r05")

    def chunk_refs() -> dict[str, list[tuple[str, int, int]]]:
        refs = {}
        for g in range(snap["field"]["trails"]):
            doc = out.json(f"trails/{g}.json")
            for rid, chunks in zip(doc["ids"], doc["chunks"], strict=True):
                refs[rid] = [(doc["packs"][p], at, n) for p, at, n in chunks]
        return refs

    published = chunk_refs()
    # Every runner's 50 fixes are cut (one read, one cut); the tram has none.
    assert all(refs for rid, refs in published.items() if rid != "tram")

    again = Publisher(cfg, cfg.race("t"))
    again.cycle()
    # The trail groups read back are due on their schedule, not all at once
    # (a 50,000-racer takeover rewrote every group in its first cycle).
    rewritten = [k for k, v in out.versions().items() if k.startswith("race/trails/")]
    rewritten = [k for k in rewritten if out.versions()[k] != before[k]]
    assert 0 < len(rewritten) < snap["field"]["trails"]
    for _ in range(snap["field"]["trails"]):  # every trail group rewritten once
        again.cycle()
    again.close()
    after = out.versions()
    snap = out.json("snapshot.json")
    assert snap["seq"] == 3 + snap["field"]["trails"]  # seq carries on
    # The chunks already published are not packed again (no new fixes came):
    # every trail group lists the very same byte ranges, and r05's trail is
    # what it was.
    assert chunk_refs() == published
    assert out.trail(snap, "r05") == trail
    assert {f"race/racers/{n}.json" for n in range(5)} <= {
        k for k in after if after[k] != before.get(k, 0)
    }


def test_ranks_compare_racers_at_one_moment() -> None:
    """A racer whose newest fix is older is carried forward at their recent
    speed before ranking: ranked by where everyone is now."""
    from tests.helpers import T0
    from tests.test_race import make_state, run

    a, b = Racer("a", "A"), Racer("b", "B")
    state = make_state(a, b)
    # a: 3 m/s, newest fix at 100 s (300 m); b: 3.1 m/s, newest fix at 96 s
    # (297.6 m): at 100 s b is at ~310 m, ahead.
    state.update(run("a", 0, 100, 3.0) + run("b", 0, 96, 3.1), T0 + 101)
    snap = snapshot(state, T0 + 100, 1)
    assert [r["id"] for r in snap["racers"]] == ["b", "a"]
    assert snap["racers"][0]["distance_m"] < snap["racers"][1]["distance_m"]  # as recorded
    assert snap["racers"][0]["gap_s"] == 0 and snap["racers"][1]["gap_s"] > 0
    # Not past a plausible limit: a racer silent for minutes is not carried on.
    moment = state.moment(T0 + 400)
    assert moment.estimate_m[1] <= 297.6 + 3.1 * 30 + 1


def test_large_race_trails_do_not_all_fill_at_once() -> None:
    """Everyone's first fix comes at the gun; with equal chunks, every racer
    would be cut in the same cycle (a pack of 50,000 racers' points at once).
    Trail groups take turns: their first cuts come at different sizes."""
    from tests.helpers import T0
    from tests.test_race import make_state, run

    racers = tuple(Racer(f"r{i}", f"R{i}") for i in range(400))
    state = make_state(*racers, chunk_points=10, shard_above=100)
    assert state.race.field_shape
    store = TrailStore(state, 8, CUT_EVERY_S)
    per_cycle = []
    for cycle in range(40):  # a fix per racer per cycle, all in step
        rows = [
            row for r in racers for row in run(r.id, 2.0 * cycle, 2.0 * cycle, 1.0, d0=2.0 * cycle)
        ]
        state.update(rows, T0 + 2.0 * cycle + 1)
        per_cycle.append(store.cut(T0 + 2.0 * cycle + 1, cycle + 1))
    assert sum(per_cycle) > 400 * 30  # every racer cut, every point once
    assert max(per_cycle) <= 400 * 12 * 0.4  # spread out: never everyone at once


def test_a_long_catch_up_packs_its_chunks_as_it_goes(
    tmp_path: Path, dsn: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start-up reading hours of a large race writes its chunks in packs
    as it reads (memory stays bounded); the trails spectators get are the
    ones a start-up holding every chunk to the end publishes."""
    setup, rows = large_race(tmp_path, dsn, bucket, lambda i: 2.5 + i / 50, 200, tram=True)
    insert_points(dsn, "live_points", COLS, rows)
    cfg = config.load(str(setup.path))
    race = cfg.race("t")
    s3 = boto3.client("s3", region_name="us-east-1")
    at_once = f"{bucket}-at-once"
    s3.create_bucket(Bucket=at_once)

    def trails(pub: Publisher, out: Bucket) -> tuple[int, dict[str, list[list[float]]]]:
        try:
            pub.cycle()
        finally:
            pub.close()
        snap = out.json("snapshot.json")
        packs = [k for k in out.versions() if k.startswith("race/packs/")]
        return len(packs), {r.id: out.trail(snap, r.id) for r in race.racers}

    monkeypatch.setattr(trails_mod, "PACK_AHEAD_BYTES", 2000)
    monkeypatch.setattr(source, "BATCH_ROWS", 300)  # read in batches, as hours are
    packs, as_it_goes = trails(Publisher(cfg, race), Bucket(bucket))
    monkeypatch.undo()
    one, held = trails(
        Publisher(cfg, race, sink=open_sink(f"s3://{at_once}/race")), Bucket(at_once)
    )
    assert one == 1 and packs > 5  # 2,400 rows, 300 a batch: a pack after most
    assert as_it_goes == held
    assert sum(len(t) for t in held.values()) > 24 * 80


def test_a_phone_sending_a_fix_a_minute_is_still_cut_every_20_minutes() -> None:
    """A chunk of a large race holds 240 fixes: 20 minutes at a fix every
    5 s, but four hours for a phone saving its battery at one a minute, all
    of it in memory and in the recent trail rewritten every minute. Trails
    are cut by race time too, trail groups in turn (not all at once)."""
    from tests.helpers import T0
    from tests.test_race import make_state, run

    racers = tuple(Racer(f"r{i}", f"R{i}") for i in range(400))
    state = make_state(*racers, shard_above=100, chunk_points=240)  # the large default
    assert state.race.field_shape
    store = TrailStore(state, 8, CUT_EVERY_S)
    per_cycle = []
    for minute in range(120):
        rows = [row for r in racers for row in run(r.id, 60.0 * minute, 60.0 * minute, 0.8)]
        state.update(rows, T0 + 60.0 * minute + 1)
        per_cycle.append(store.cut(T0 + 60.0 * minute + 1, minute + 1))
        for track in state.order:
            assert len(track.tail_xyt) // 3 <= 21 and len(track.recent()) // 3 <= 22
    assert sum(per_cycle) >= 400 * 100  # two hours: all but the last 20 minutes cut
    assert max(per_cycle) <= 400 * 20 * 0.25  # spread out: groups take turns


@pytest.mark.slow
def test_real_recordings_in_a_large_race(tmp_path: Path, dsn: str, bucket: str) -> None:
    """A real device's log (tests/data/cerknicko-jezero.gpx: a fix every few
    seconds, silences of up to 14 minutes) as 20 racers, each starting 11 s
    after the one before. Published live, cycle by cycle, a followed racer's
    trail bridges no longer than the recording's own silences; a cold start
    reading the whole race at once (a restart's catch-up) publishes the same
    records and the same trails."""
    pts, course, _ = cerknica()
    first = when(pts[0]).timestamp()
    offsets = {f"c{k:02d}": 11.0 * k for k in range(20)}
    span = when(pts[-1]).timestamp() - first + max(offsets.values())
    (tmp_path / "entrants.csv").write_text(
        "id,name,kind\n" + "".join(f"{rid},Car {rid},vehicle\n" for rid in offsets)
    )
    starts_at = (now_utc() - timedelta(seconds=span + 120)).replace(microsecond=0)
    start = starts_at.timestamp()
    setup = write_race(
        tmp_path,
        dsn,
        sink=f"s3://{bucket}/race",
        racers="\n",
        starts_at=starts_at,
        points=list(course.points),
        extra='racers_file = "entrants.csv"\n' + LARGE,
    )
    create_points_table(dsn)
    recorded = {  # each racer's fixes, seconds after the start
        rid: [5 + off + when(p).timestamp() - first for p in pts] for rid, off in offsets.items()
    }
    rows = sorted(
        (
            (rid, datetime.fromtimestamp(start + t, UTC), p.latitude, p.longitude)
            for rid, times in recorded.items()
            for t, p in zip(times, pts, strict=True)
        ),
        key=lambda r: r[1],
    )
    cfg = config.load(str(setup.path))
    clock = {"now": start}
    live = Publisher(cfg, cfg.race("t"), clock=lambda: clock["now"])
    out = Bucket(bucket)
    try:
        step = 30.0
        for c in range(int(span // step) + 3):
            t0, t1 = start + c * step, start + (c + 1) * step
            insert_points(
                dsn, "live_points", COLS, [r for r in rows if t0 < r[1].timestamp() <= t1]
            )
            clock["now"] = t1
            live.cycle()
            if c % 7:
                continue
            snap = out.json("snapshot.json")
            if "field" not in snap or not any(r["position"] for r in snap["racers"]):
                continue
            records = shards_of_cycle(out, snap)
            rid = "c07"
            trail = [p[2] for p in out.trail(snap, rid)]
            newest = clock["now"] - records[rid]["age_ms"] / 1000 - start
            drawn = [*trail, newest] if not trail or newest > trail[-1] else trail
            assert drawn == sorted(drawn) and set(trail) <= {round(t, 3) for t in recorded[rid]}
            for a, b in zip(drawn, drawn[1:], strict=False):
                inside = [t for t in recorded[rid] if a < t < b]
                # Longer than a minute only where the device was silent.
                assert b - a <= 60.0 or not inside, (c, a, b, inside)
        final = out.json("snapshot.json")
        assert final["race"]["state"] == "finished"
        want = shards_of_cycle(out, final)
        assert all(r["status"] == STATUS_CODES["finished"] for r in want.values())
    finally:
        live.close()

    # A cold start on everything at once: the same numbers and trails.
    (tmp_path / "cold.toml").write_text(
        setup.path.read_text().replace(f"s3://{bucket}/race", f"s3://{bucket}/cold")
    )
    cfg = config.load(str(tmp_path / "cold.toml"))
    cold = Publisher(cfg, cfg.race("t"), clock=lambda: clock["now"])
    try:
        cold.cycle()
    finally:
        cold.close()
    again = Bucket(bucket, "cold")
    snap = again.json("snapshot.json")
    got = shards_of_cycle(again, snap)
    for rid in offsets:  # every column: rank, status, distance, position, gap, finish...
        for col in want[rid].keys() - {"name", "shard"}:
            assert got[rid][col] == want[rid][col], (rid, col)
        assert again.trail(snap, rid) == out.trail(final, rid), rid
