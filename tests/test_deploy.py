"""What an organizer deploys: the systemd unit passes systemd's own check
and runs a command racepub accepts; the licence is the one declared."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from racepub.cli import parser

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "racepub@.service"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # As installed for race "outrunthet", racepub where the venv has it.
    racepub = Path(sys.executable).with_name("racepub")
    unit = tmp_path / "racepub@outrunthet.service"
    unit.write_text(UNIT.read_text().replace("/opt/racepub/bin/racepub", str(racepub)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    # Unknown or misspelt settings are only warnings: none may name the unit.
    about_unit = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and about_unit == [], done.stdout + done.stderr


def test_systemd_unit_runs_a_command_racepub_accepts() -> None:
    lines = UNIT.read_text().splitlines()
    exec_start = next(line.split("=", 1)[1] for line in lines if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.replace("%i", "outrunthet"))
    assert argv[0].endswith("/racepub")
    args = parser().parse_args(argv[1:])
    assert (args.command, args.race) == ("run", "outrunthet")
    # Stopped with SIGTERM, given longer than racepub's own 5 s grace and
    # the race state's save; the state kept where systemd says.
    assert "KillSignal=SIGTERM" in lines and "TimeoutStopSec=60" in lines
    assert "StateDirectory=racepub" in lines
    assert "User=racepub" in lines and "Restart=on-failure" in lines
    env = (ROOT / "deploy" / "systemd" / "racepub.env.example").read_text()
    assert "RACEPUB_DATABASE_URL=" in env


def test_licence_is_the_declared_one() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # Vendored code keeps its own licence beside it.
    assert "BSD" in (ROOT / "static" / "vendor" / "leaflet" / "LICENSE").read_text()
