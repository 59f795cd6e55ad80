"""One model, two shapes: the same race published small (every record in the
snapshot) and large (a head, shards of columns, trail groups) says the same
numbers of every racer, and draws the same trails. Real PostgreSQL; the
objects as a spectator's page reads them from a directory sink."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from racepub import config
from racepub.publisher.cycle import Publisher
from racepub.shapes.field import shard_of
from tests.helpers import (
    COLS,
    create_points_table,
    dir_reader,
    fixes,
    insert_points,
    now_utc,
    piece_points,
    record_trail,
    write_race,
)

N = 30
CHECKPOINTS = """
[[races.t.checkpoints]]
name = "Hill"
distance_m = 300

[[races.t.checkpoints]]
name = "Bridge"
distance_m = 700
"""


def publisher(tmp_path: Path, dsn: str, shape: str, clock: dict[str, float]) -> Publisher:
    """The race, small or large, published to a directory of its own."""
    home = tmp_path / shape
    home.mkdir()
    (home / "entrants.csv").write_text(
        "id,name,kind,bib\n"
        + "".join(f"r{i:02d},Runner {i},runner,{100 + i}\n" for i in range(N))
        + "tram,The T,vehicle,\n"
    )
    extra = 'racers_file = "entrants.csv"\nchunk_points = 12\n' + (
        "shard_above = 10\nshard_size = 7\nhead_size = 5\n" if shape == "large" else ""
    )
    setup = write_race(home, dsn, racers=CHECKPOINTS, starts_at=START, extra=extra)
    cfg = config.load(str(setup.path))
    race = cfg.race("t")
    assert race.field_shape == (shape == "large")
    return Publisher(cfg, race, clock=lambda: clock["now"])


START = now_utc() - timedelta(hours=1)


def numbers_small(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    snap = json.loads((root / "snapshot.json").read_text())
    read = dir_reader(root)
    out = {}
    for r in snap["racers"]:
        out[r["id"]] = {
            "bib": r["bib"],
            "rank": r["rank"],
            "distance_m": None if r["position"] is None else r["distance_m"],
            "progress_m": r["progress_m"],
            "gap_s": r["gap_s"],
            "finish_s": r["finish_s"],
            "gun_finish_s": r["gun_finish_s"],
            "splits": [s["at_s"] for s in r.get("splits", [])],
            "trail": [p[2] for p in record_trail(read, r)],
        }
    return out, snap


def numbers_large(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    snap = json.loads((root / "snapshot.json").read_text())
    field = snap["field"]
    read = dir_reader(root)
    out: dict[str, dict[str, Any]] = {}
    for k in range(field["shards"]):
        roster = json.loads((root / field["roster_url"].replace("{shard}", str(k))).read_text())
        shard = json.loads((root / field["shard_url"].replace("{shard}", str(k))).read_text())
        assert shard["seq"] == snap["seq"]
        for j, rid in enumerate(roster["identity"]["id"]):
            out[rid] = {
                "bib": roster["identity"]["bib"][j],
                "rank": shard["rank"][j],
                "distance_m": shard["distance_m"][j],
                "progress_m": (
                    None
                    if shard["ahead_m"][j] is None
                    else shard["distance_m"][j] + shard["ahead_m"][j]
                ),
                "gap_s": shard["gap_s"][j],
                "finish_s": shard["finish_s"][j],
                "gun_finish_s": shard["gun_finish_s"][j],
            }
    for g in range(field["trails"]):
        doc = json.loads((root / field["trail_url"].replace("{trail}", str(g))).read_text())
        for k, rid in enumerate(doc["ids"]):
            assert shard_of(rid, field["trails"]) == g
            out[rid]["splits"] = doc["splits"][k]
            refs = [*doc["chunks"][k], *([doc["recent"][k]] if doc["recent"][k] else [])]
            flat: list[float] = []
            for p, at, n in refs:
                flat += piece_points(read, doc["packs"][p], at, n, rid)
            times = sorted({flat[i + 2] for i in range(0, len(flat), 3)})
            out[rid]["trail"] = times
    return out, snap


@pytest.mark.parametrize("until", [400.0, 1500.0])
def test_small_and_large_shapes_publish_the_same_race(
    tmp_path: Path, dsn: str, until: float
) -> None:
    """30 runners at different speeds and a tram, fixes coming in cycle by
    cycle (by 1500 s the quick ones have finished): every racer's rank,
    distance, gap, finish and splits are the same in both shapes, and so
    are their trails (the large shape's recent trail is thinned: its points
    are among the small shape's)."""
    create_points_table(dsn)
    probe = write_race(tmp_path, dsn, starts_at=START)
    rows: list[tuple[Any, ...]] = []
    for i in range(N):
        rows += fixes(probe, f"r{i:02d}", 1.2 + 0.06 * i, until, every=2.0 + (i % 3))
    rows += fixes(probe, "tram", 1.5, until, every=5.0)
    clock = {"now": 0.0}
    small_pub = publisher(tmp_path, dsn, "small", clock)
    large_pub = publisher(tmp_path, dsn, "large", clock)
    cycles = [until / 2 + 2 * k for k in range(3)] + [until + 2 * k for k in range(3)]
    done = 0.0
    try:
        for at in cycles:
            insert_points(
                dsn,
                "live_points",
                COLS,
                [r for r in rows if done < (r[1] - START).total_seconds() <= at],
            )
            done = at
            clock["now"] = START.timestamp() + at + 0.5
            small_pub.cycle()
            large_pub.cycle()
    finally:
        small_pub.close()
        large_pub.close()

    small, snap_s = numbers_small(tmp_path / "small" / "public")
    large, snap_l = numbers_large(tmp_path / "large" / "public")
    assert snap_s["seq"] == snap_l["seq"] == len(cycles)
    assert snap_s["generated_at"] == snap_l["generated_at"]
    assert set(small) == set(large) and len(small) == N + 1
    finished = 0
    for rid, s in small.items():
        g = large[rid]
        assert g["bib"] == s["bib"] == (None if rid == "tram" else str(100 + int(rid[1:]))), rid
        assert g["rank"] == s["rank"], rid
        # The same number; shards carry whole metres and seconds.
        assert g["distance_m"] == pytest.approx(s["distance_m"], abs=0.55), rid
        assert (g["gap_s"] is None) == (s["gap_s"] is None), rid
        assert g["gap_s"] == pytest.approx(s["gap_s"], abs=0.55), rid
        # What the rank is decided by, the board shows: the same in both.
        assert g["progress_m"] == pytest.approx(s["progress_m"], abs=0.55), rid
        assert g["finish_s"] == s["finish_s"] and g["gun_finish_s"] == s["gun_finish_s"], rid
        assert g["splits"] == s["splits"], rid
        # Every point the large shape draws is the small shape's, and so is
        # the newest.
        assert set(g["trail"]) <= set(s["trail"]) and g["trail"][-1] == s["trail"][-1], rid
        finished += s["finish_s"] is not None
    assert sorted(s["rank"] for s in small.values()) == list(range(1, N + 2))
    assert finished > 5 if until > 1000 else finished == 0  # the course is 1.1 km
    # The large snapshot's head is the small snapshot's first records, whole.
    head = [r["id"] for r in snap_l["racers"][:5]]
    assert head == [r["id"] for r in snap_s["racers"][:5]]
    for r in snap_l["racers"]:
        mine = next(x for x in snap_s["racers"] if x["id"] == r["id"])
        assert {k: v for k, v in r.items() if k not in ("tail", "track")} == {
            k: v for k, v in mine.items() if k not in ("tail", "track")
        }
