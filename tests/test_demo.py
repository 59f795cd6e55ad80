"""`racepub demo` as a user runs it: a URL printed, a live race behind it, a clean stop."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as r:
        data: dict[str, object] = json.loads(r.read())
        return data


def test_demo_serves_a_live_race_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "racepub", "demo"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, workdir = None, ""
        deadline = time.monotonic() + 90
        lines = []
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/).*working files in (\S+)\)", line)
            url, workdir = (m.group(1), m.group(2)) if m else (None, "")
        assert url, "".join(lines)
        time.sleep(3)
        with urllib.request.urlopen(url, timeout=5) as r:
            page = r.read().decode()
        assert "Outrun the T" in page and "Michael" in page
        first = get_json(url + "snapshot.json")
        time.sleep(5)
        second = get_json(url + "snapshot.json")
        assert int(second["seq"]) > int(first["seq"])  # type: ignore[call-overload]
        racers = second["racers"]
        assert isinstance(racers, list) and len(racers) == 5
        assert all(r["status"] == "racing" and r["distance_m"] > 500 for r in racers)
        assert {r["kind"] for r in racers} == {"runner", "vehicle"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        finally:
            proc.kill()
    assert code == 0
    # The throwaway PostgreSQL went with it.
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                if workdir.encode() in _read(p)]
    assert not Path(workdir).exists()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended while we looked
        return b""
