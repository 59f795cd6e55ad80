"""bench/ is part of the codebase: a smoke run of its cells at a few hundred
racers, through the same code `make bench` runs (real PostgreSQL, moto's S3
server), so a change that breaks the bench fails here, not on race week."""

from __future__ import annotations

import pytest

from bench import restart
from bench.run import cell, goals, restart_table, table


@pytest.mark.slow
def test_bench_cell_and_table_at_a_few_hundred_racers() -> None:
    r = cell(600, 600, cycles=2)  # above shard_above: the large form
    assert r["racers"] == 600 and r["large"] and r["rows_in_table"] == 600 * 120
    total, p95 = r["stages"]["total"]
    assert 0 < total <= p95
    # A cycle writes the snapshot, the live shard, a pack and trail groups due.
    assert r["puts"] >= 3 and 0 < r["poll_gz"] < 30_000 and r["trail_gz"] > 0
    lines = table([r], {}, [])
    assert any(line.startswith("| 600 | 10 min | 72,000 |") for line in lines)


@pytest.mark.slow
def test_bench_restart_and_takeover_at_a_few_hundred_racers() -> None:
    r = restart.measure(300, 900, 20)
    assert r["rows"] == 300 * 45
    assert r["takeover_s"] > 0 and r["restart_s"] > 0
    assert r["restart_ms"]["read"] > 0  # the restart read the history again
    assert r["old_restart_s"] > 0  # the baseline: the old form's code, on the same table
    lines = restart_table([r])
    assert any(line.startswith("| 300 | 0.2 h | 13,500 |") for line in lines)
    assert any("standby publishes" in line for line in goals({}, {}, {}, [r]))
