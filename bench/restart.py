"""A restart's catch-up and a standby's takeover, measured.

- restart: a publisher has published a race of N racers hours in; a new
  process starts cold (`racepub run` after a crash): how long until its
  first snapshot, reading the whole history again. The chunks the sink
  already holds are not packed again.
- takeover: a standby has read along (Publisher.standby) while the active
  publisher ran; the active one dies; how long the standby's first cycle
  takes (add up to an interval for its next try at the lock).

    python -m bench.restart 10000 7200 20    # racers, race age s, a fix every s
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.marathon import INTERVAL_S, count_rows, create_table, generate, real_parts, write_race
from racepub import config
from racepub.publish import Publisher


def measure(n: int, age_s: int, every_s: int) -> dict[str, Any]:
    with real_parts() as parts:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=age_s)
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            create_table(conn)
            generate(conn, n, start, 0, age_s, every_s)
            conn.execute("CREATE INDEX ON live_points (recorded_at)")
            conn.execute("ANALYZE live_points")
            rows = count_rows(conn)
        write_race(parts.work, n, parts.dsn, parts.endpoint, start)
        cfg = config.load(str(parts.work / "racepub.toml"))
        race = cfg.race("b")

        first = Publisher(cfg, race)
        t0 = time.perf_counter()
        first.cycle()  # the race's first publisher, on an empty bucket
        first_s = time.perf_counter() - t0
        standby = Publisher(cfg, race)
        t0 = time.perf_counter()
        standby.standby()  # reading along from the start, as `racepub run` does
        standby_read_s = time.perf_counter() - t0

        # One interval of the race goes on, published by the active one and
        # read by the standby; then the active one is gone.
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            generate(conn, n, start, age_s, age_s + INTERVAL_S, every_s)
        first.cycle()
        standby.standby()
        first.close()
        with psycopg.connect(parts.dsn, autocommit=True) as conn:
            generate(conn, n, start, age_s + INTERVAL_S, age_s + 2 * INTERVAL_S, every_s)
        standby.forget_sink()  # what taking the lock does
        t0 = time.perf_counter()
        standby.cycle()
        takeover_s = time.perf_counter() - t0
        standby.close()

        restarted = Publisher(cfg, race)  # a cold restart: kill -9, then `racepub run`
        t0 = time.perf_counter()
        stats = restarted.cycle()
        restart_s = time.perf_counter() - t0
        restarted.close()
        return {"racers": n, "age_s": age_s, "every_s": every_s, "rows": rows,
                "first_s": first_s, "standby_read_s": standby_read_s,
                "takeover_s": takeover_s, "restart_s": restart_s,
                "restart_ms": stats.ms}


def main() -> None:
    n, age, every = (int(a) for a in sys.argv[1:4])
    print(json.dumps(measure(n, age, every)))


if __name__ == "__main__":
    main()
