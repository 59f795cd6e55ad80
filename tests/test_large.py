"""The large-race form: snapshot.json carries the leaderboard head, racer
records live in shard objects (DESIGN.md). Real PostgreSQL, moto S3."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from racepub import config
from racepub.config import Racer
from racepub.publish import Publisher
from racepub.race import shard_of
from tests.helpers import (
    POINTS_DDL,
    RaceSetup,
    create_points_table,
    insert_points,
    now_utc,
    versions,
    write_race,
)
from tests.test_publish import truth_rows

N = 23  # runners, plus one vehicle
LARGE = """
    shard_above = 10
    shard_size = 5
    head_size = 4
    shard_writes = 2
    tail_points = 4
    chunk_points = 12
"""


def racers_csv(tmp_path: Path) -> None:
    rows = [f"r{i:02d},Runner {i},runner\n" for i in range(N)] + ["tram,The T,vehicle\n"]
    (tmp_path / "entrants.csv").write_text("id,name,kind\n" + "".join(rows))


def test_fnv1a_shard_of_matches_published_vectors() -> None:
    # FNV-1a 32-bit reference values (the page computes the same in JS).
    assert shard_of("", 2**32) == 0x811C9DC5
    assert shard_of("a", 2**32) == 0xE40C292C
    assert shard_of("foobar", 2**32) == 0xBF9CF968
    assert shard_of("Zoë", 7) == shard_of("Zoë", 7)  # UTF-8 bytes, not code points


class Bucket:
    def __init__(self, name: str):
        self.s3, self.name = boto3.client("s3", region_name="us-east-1"), name

    def json(self, key: str) -> Any:
        body = self.s3.get_object(Bucket=self.name, Key=f"race/{key}")["Body"].read()
        return json.loads(gzip.decompress(body))

    def versions(self) -> dict[str, int]:
        return versions(self.s3, self.name)


def large_race(tmp_path: Path, dsn: str, bucket: str, speed: Callable[[int], float],
               until_s: float, tram: bool) -> RaceSetup:
    """N runners (and the tram) from entrants.csv, their fixes in the table."""
    create_points_table(dsn, POINTS_DDL)
    racers_csv(tmp_path)
    setup = write_race(tmp_path, dsn, sink=f"s3://{bucket}/race", racers="\n",
                       starts_at=now_utc() - timedelta(minutes=3),
                       extra='racers_file = "entrants.csv"\n' + LARGE)
    rows = [row for i in range(N) for row in truth_rows(setup, f"r{i:02d}", speed(i), until_s)]
    if tram:
        rows += truth_rows(setup, "tram", 2.6, until_s)
    insert_points(dsn, "live_points", ("user_id", "recorded_at", "lat", "lon"), rows)
    return setup


def test_large_race_publishes_head_and_shards(tmp_path: Path, dsn: str, bucket: str) -> None:
    setup = large_race(tmp_path, dsn, bucket, lambda i: 2.0 + 0.05 * i, 170, tram=True)
    cfg = config.load(str(setup.path))
    race = cfg.race("t")
    assert race.large and race.shards == 5
    pub = Publisher(cfg, race)
    pub.cycle()
    out = Bucket(bucket)

    snap = out.json("snapshot.json")
    assert snap["schema"] == 1 and snap["seq"] == 1
    field = snap["field"]
    assert field["count"] == N + 1 and field["shards"] == 5
    assert field["by_status"] == {"racing": N + 1, "stale": 0, "finished": 0, "waiting": 0}
    assert field["shard_url"] == "racers/{shard}.json" and field["shard_of"] == "fnv1a32"
    # The head: the fastest four, and the vehicle wherever it is.
    head = [r["id"] for r in snap["racers"]]
    assert head[:4] == ["r22", "r21", "r20", "r19"] and head[4:] == ["tram"]
    assert [r["rank"] for r in snap["racers"]][:4] == [1, 2, 3, 4]

    # Every racer in exactly the shard the documented hash names, ranked,
    # with the full record of schema 1 and a thinned tail.
    seen: dict[str, dict[str, Any]] = {}
    for n in range(5):
        shard = out.json(f"racers/{n}.json")
        assert (shard["shard"], shard["shards"], shard["seq"]) == (n, 5, 1)
        ranks = [r["rank"] for r in shard["racers"]]
        assert ranks == sorted(ranks)
        for r in shard["racers"]:
            assert shard_of(r["id"], 5) == n
            seen[r["id"]] = r
    assert len(seen) == N + 1
    assert sorted(r["rank"] for r in seen.values()) == list(range(1, N + 2))
    r05 = seen["r05"]
    expected_m = (2.0 + 0.05 * 5) * 169
    assert r05["distance_m"] == pytest.approx(expected_m, abs=3)
    assert r05["position"]["at"] == (setup.starts_at + timedelta(seconds=169)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert 1 <= len(r05["tail"]) <= 4 and r05["tail"][-1][2] == r05["position"]["at"]
    # A large race's records say how many chunks and where, not every key.
    # The chunks and the tail hold each of the 85 fixes once, in order; the
    # first chunk's size is staggered by id (6..17 fixes), the rest hold 12.
    assert "track" not in r05 and r05["track_url"] == "tracks/r05/{n}.json"
    chunks = [out.json(f"tracks/r05/{n}.json")["points"] for n in range(r05["chunks"])]
    assert 6 <= len(chunks[0]) <= 17 and all(len(c) == 12 for c in chunks[1:])
    times = [p[2] for c in chunks for p in c]
    assert times == sorted(set(times)) and 85 - 12 < len(times) <= 85
    assert r05["chunks"] == 1 + (85 - len(chunks[0])) // 12
    assert snap["racers"][0] == seen["r22"] | {}  # head and shard agree in the same cycle

    # Shards are polled like the snapshot: cached for one interval, served
    # stale if the origin errors; gzip-compressed JSON.
    head = out.s3.head_object(Bucket=bucket, Key="race/racers/0.json")
    assert head["CacheControl"] == "public, max-age=2, s-maxage=1, stale-if-error=86400"
    assert (head["ContentType"], head["ContentEncoding"]) == ("application/json", "gzip")
    # Nothing secret in any object: no DSN, database host or port, no AWS key.
    for key in out.versions():
        got = out.s3.get_object(Bucket=bucket, Key=key)
        data = got["Body"].read()
        if got.get("ContentEncoding") == "gzip":
            data = gzip.decompress(data)
        for secret in (dsn, dsn.split("@")[1], "testing", "postgres"):
            assert secret.encode() not in data, (key, secret)

    # Later cycles rewrite shard_writes shards, round robin, and the snapshot.
    before = out.versions()
    pub.cycle()
    pub.cycle()
    pub.cycle()
    after = out.versions()
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert grew.pop("race/snapshot.json") == 3
    assert sum(grew.values()) == 6 and set(grew) <= {f"race/racers/{n}.json" for n in range(5)}
    assert max(grew.values()) - min(grew.values()) <= 1 and len(grew) == 5
    assert out.json("snapshot.json")["field"]["shard_every_s"] == 3 * 2  # ceil(5/2) cycles
    pub.close()


def test_large_race_restart_resumes_from_shards(tmp_path: Path, dsn: str,
                                                bucket: str) -> None:
    setup = large_race(tmp_path, dsn, bucket, lambda i: 2.5, 100, tram=False)
    cfg = config.load(str(setup.path))
    first = Publisher(cfg, cfg.race("t"))
    first.cycle()
    first.cycle()
    first.close()
    out = Bucket(bucket)
    before = out.versions()

    again = Publisher(cfg, cfg.race("t"))
    again.cycle()
    again.close()
    after = out.versions()
    assert out.json("snapshot.json")["seq"] == 3  # seq carries on
    # Chunks the shards listed were not rewritten; every shard was (a new run
    # writes them all before its first snapshot points at them).
    rewritten = {k for k in after if after[k] != before.get(k, 0)}
    assert not any("/tracks/" in k for k in rewritten)
    assert {f"race/racers/{n}.json" for n in range(5)} <= rewritten


def test_large_ranks_are_the_small_forms_ranks() -> None:
    """The array-kept standings of a large race rank exactly as ranked() does:
    finishers by time, then progress, ties and the waiting in config order."""
    import random

    from tests.test_race import T0, make_state, run

    rnd = random.Random(3)
    racers = tuple(Racer(f"r{i}", f"R{i}", "vehicle" if i == 7 else "runner")
                   for i in range(60))
    state = make_state(*racers, shard_above=10, shard_size=8, head_size=5)
    assert state.race.large
    for cycle in range(12):
        rows = []
        for i, r in enumerate(racers):
            if i % 9 == 0 or rnd.random() < 0.3:
                continue  # some never start; the rest report now and then
            speed = 3.0 + (i % 5) * 0.4  # ties in speed: equal progress, config order
            rows += run(r.id, cycle * 60, cycle * 60 + 58, speed, every=2.0,
                        d0=speed * cycle * 60)
        state.update(rows, T0 + cycle * 60 + 60)
        snap, shards = state.large_snapshot(T0 + cycle * 60 + 60, cycle + 1,
                                            range(state.race.shards), 0.0)
        expected = {t.racer.id: k for k, t in enumerate(state.ranked(), start=1)}
        got = {r["id"]: r["rank"] for s in shards.values() for r in s["racers"]}
        assert got == expected
        assert [r["id"] for r in snap["racers"]][:5] == list(expected)[:5]
        by_status = snap["field"]["by_status"]
        assert by_status["waiting"] == sum(1 for t in state.tracks.values() if t.last is None)
        assert by_status["finished"] == sum(1 for t in state.tracks.values()
                                            if t.finish_t is not None)
    assert snap["field"]["by_status"]["finished"] > 0  # the course is short: some finish


def test_large_race_chunks_do_not_all_fill_at_once() -> None:
    """Everyone's first fix comes at the gun; with equal chunks, every racer
    would cut one in the same cycle (50,000 PUTs at once in a marathon)."""
    from tests.test_race import T0, make_state, run

    racers = tuple(Racer(f"r{i}", f"R{i}") for i in range(200))
    state = make_state(*racers, chunk_points=10, shard_above=100)
    assert state.race.large
    per_cycle = []
    for cycle in range(40):  # a fix per racer per cycle, all in step
        rows = [row for r in racers for row in run(r.id, 2.0 * cycle, 2.0 * cycle, 1.0,
                                                   d0=2.0 * cycle)]
        _, chunks = state.update(rows, T0 + 2.0 * cycle + 1)
        per_cycle.append(len(chunks))
    assert sum(per_cycle) > 500  # every racer cut several
    assert max(per_cycle) <= 200 * 0.25  # spread out: about 200 / 10 a cycle
