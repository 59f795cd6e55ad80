"""bench/ is part of the codebase: a smoke run of its cells at a few hundred
racers, through the same code `make bench` runs (real PostgreSQL, moto's S3
server), so a change that breaks the bench fails here, not on race week."""

from __future__ import annotations

import pytest

from bench import lighthouse, mats, restart, spectators
from bench.run import cell, goals, restart_table, spectator_table, table


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


@pytest.mark.slow
def test_bench_mats_at_a_few_hundred_racers() -> None:
    age = 2_600  # the fastest (4.2 m/s) are past the 10K mat
    with_mats, phones_only = mats.run(300, age, True, cycles=2), mats.run(300, age, False, cycles=2)
    assert with_mats["reads_in_table"] > 300  # every start read, and the 10K's first
    # Runners without a phone are placed by their reads; with phones only, no one is.
    assert with_mats["estimated"] == 300 - with_mats["phones"] and phones_only["estimated"] == 0
    assert with_mats["queries_per_cycle"] == pytest.approx(2.0, abs=0.2)
    lines = mats.markdown([with_mats, phones_only])
    assert any(line.startswith("| 300 (with mats) | 43 min | 30 |") for line in lines)
    assert any("phones-only cycle" in line for line in lines)


def test_lighthouse_table_and_its_tile() -> None:
    """The section bench.run writes from bench.lighthouse's figures, and the
    grey tile the page is served (a PNG Chromium can draw: its chunks whole)."""
    cell = {"performance": 98, "accessibility": 100, "best-practices": 96, "seo": 100}
    cells = [
        {"form": "new", **cell, "cls": 0.048, "lcp_ms": 2103.7, "blocking": ["app.css"]},
        {
            "form": "previous",
            **cell,
            "performance": 89,
            "cls": 0.165,
            "lcp_ms": 2409.0,
            "blocking": ["app.css", "leaflet.js"],
        },
    ]
    lines = lighthouse.markdown(cells)
    assert "| this code | 98 | 100 | 96 | 100 | 0.048 | 2,104 | app.css |" in lines
    assert "| previous form | 89 | 100 | 96 | 100 | 0.165 | 2,409 | app.css, leaflet.js |" in lines
    assert any(line.endswith(": met") for line in lines)
    png = lighthouse.grey_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")


WRK = """Running 20s test @ http://127.0.0.1:8080/positions.json
  2 threads and 256 connections
  Latency Distribution
     50%    1.23ms
     99%  400.12ms
  1000000 requests in 20.00s, 15.26GB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  50000.00
"""


def test_spectator_figures_and_table() -> None:
    """What bench/spectators.py reads from wrk and PostgreSQL's log, and the
    section it makes beside the baselines (the load itself runs in make bench)."""
    got = spectators.wrk_figures(WRK)
    assert got["requests"] == 1_000_000 and got["rps"] == 1_000_000 / spectators.DURATION_S
    assert got["p99_ms"] == 400.12 and got["errors"] == 3 + 2 + 7
    assert got["bytes"] == pytest.approx(16_386, rel=0.001)
    log = ["app:LOG:  execute _pg3_0: SELECT", "racepub:LOG:  statement: SELECT 1", "app:ERROR: x"]
    assert spectators.statements(log) == {"app": 1, "racepub": 1}

    def row(name: str, db_by: str, db: float, rps: float) -> dict[str, object]:
        return {
            "name": name,
            "processes": "2 × 4",
            "db_by": db_by,
            "stale_by": "the query",
            "rps": rps,
            "p99_ms": 9.0,
            "errors": 0,
            "bytes": 16_000.0,
            "origin_per_s": 0.5,
            "db_per_s": {db_by: db, "feeder": 0.5},
            "age_s": [1.0, 2.0],
        }

    result = {
        "racers": 1000,
        "object": "race/racers/0.json",
        "connections": 256,
        "duration_s": 20,
        "interval_s": 2,
        "app_workers": 2,
        "app_pool": 4,
        "sample_every_s": 0.2,
        "results": [row("racepub", "racepub", 1.0, 40_000), row("app, direct", "app", 200, 200)],
    }
    lines = spectator_table(result)
    row_line = "| racepub | 2 × 4 | 40,000 | 9 | 0 | 16,000 | 0.50 | 1.0 | 1.00 / 2.00 |"
    assert any(line.startswith(row_line) for line in lines)
    assert any(line.startswith("- spectators never reach the database: 0.0") for line in lines)
    assert any("against app, direct: 200.0x" in line for line in lines)
