"""`racepub run` as organizers run it: a loop that publishes every interval and stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.helpers import create_points_table, insert_points, write_race


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def read_snapshot(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


def test_run_publishes_every_interval_and_stops_on_sigterm(tmp_path: Path, dsn: str) -> None:
    create_points_table(dsn, "CREATE TABLE live_points (user_id text, recorded_at timestamptz, "
                             "lat float8, lon float8)")
    setup = write_race(tmp_path, dsn, interval_s=1)
    snap_path = setup.sink_dir / "snapshot.json"
    proc = subprocess.Popen([sys.executable, "-m", "racepub", "run", "--race", "t",
                             "--config", str(setup.path)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (read_snapshot(snap_path) or {}).get("seq", 0) >= 2)
        assert all(r["status"] == "waiting" for r in read_snapshot(snap_path)["racers"])
        # Two fixes: a racer's first fix is held until the next one confirms it.
        insert_points(dsn, "live_points", ("user_id", "recorded_at", "lat", "lon"),
                      [("1002", setup.starts_at + timedelta(seconds=t), *setup.course.at(d))
                       for t, d in ((58, 143), (60, 150))])
        # The next cycles pick the new point up without a restart.
        sarah = wait_for(lambda: next((r for r in (read_snapshot(snap_path) or {}).get(
            "racers", []) if r["id"] == "1002" and r["position"]), None))
        assert sarah["rank"] == 1 and abs(sarah["distance_m"] - 150) < 1
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
    lines = [ln for ln in stderr.splitlines() if " seq=" in ln]
    assert len(lines) >= 3 and "racers=3" in lines[-1]
    assert "Traceback" not in stderr
