"""`racepub demo` as a user runs it: a URL printed, a live race behind it, a clean stop."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as r:
        data: dict[str, object] = json.loads(r.read())
        return data


def start_demo(cwd: Path) -> subprocess.Popen[str]:
    """`racepub demo` in a process of its own, its output in one pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "racepub", "demo"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_demo_serves_a_live_race_and_stops_cleanly(tmp_path: Path) -> None:
    proc = start_demo(tmp_path)
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
        assert servers(workdir)  # its database is in its working files
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
    assert not servers(workdir)
    assert not Path(workdir).exists()


def servers(workdir: str) -> list[Path]:
    """PostgreSQL processes serving the demo's data directory."""
    return [
        p
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if _read(p).startswith(b"/")
        and b"postgres" in _read(p)
        and f"{workdir}/pg/data".encode() in _read(p)
    ]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended while we looked
        return b""


def working_files(proc: subprocess.Popen[str]) -> str:
    """The folder the demo says it keeps its working files in (once it has started)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        m = re.search(r"working files in (\S+)\)", proc.stdout.readline())
        if m:
            return m.group(1)
    raise AssertionError("the demo never said where its working files are")


@pytest.mark.slow
def test_killed_demo_leaves_no_database_behind(tmp_path: Path) -> None:
    proc = start_demo(tmp_path)
    try:
        workdir = working_files(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not servers(workdir):
            time.sleep(0.2)
        assert servers(workdir)  # its database is in its working files
    finally:
        proc.kill()  # no chance to clean up (and none left running if the above failed)
        proc.wait(timeout=10)
    data = Path(workdir) / "pg" / "data"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (servers(workdir) or data.exists()):
        time.sleep(0.2)
    assert not servers(workdir)  # gone soon after, by itself
    assert not data.exists()  # and its data with it
    shutil.rmtree(workdir)  # what a kill -9 leaves: the small working files


@pytest.mark.slow
def test_demo_stops_on_a_signal_another_thread_receives(tmp_path: Path) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads: the
    demo stops, and cleans up, whichever gets it."""
    proc = start_demo(tmp_path)
    workdir = ""
    try:
        workdir = working_files(proc)
        others = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir()]
        others = [t for t in others if t != proc.pid]
        assert others  # (the publisher's, the simulator's, the server's)
        tgkill = ctypes.CDLL(None, use_errno=True).tgkill
        assert tgkill(proc.pid, others[0], signal.SIGTERM) == 0
        assert proc.wait(timeout=20) == 0
        assert not servers(workdir)
        assert not Path(workdir).exists()
    finally:
        if proc.poll() is None:  # deaf to it: killed, and what a kill leaves removed
            proc.kill()
            proc.wait(timeout=10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and servers(workdir):
                time.sleep(0.2)
            shutil.rmtree(workdir, ignore_errors=True)
