"""What an organizer deploys: the systemd unit passes systemd's own check,
is sandboxed as tightly as systemd can rate it (`systemd-analyze security`),
runs a command racepub accepts and is installed with root owning what it
reads; the licence is the one declared."""

from __future__ import annotations

import re
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


def test_systemd_unit_is_sandboxed(tmp_path: Path) -> None:
    """systemd's own rating of the unit's exposure: 6.7 (MEDIUM) with what
    the unit had before; at most 2.0 now. What is left is what a publisher
    cannot do without: TCP out to PostgreSQL and S3, to any address."""
    unit = tmp_path / "racepub@outrunthet.service"
    unit.write_text(UNIT.read_text())
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout
    # Still what the publisher needs: its state, TCP and a local socket, a fork.
    lines = UNIT.read_text().splitlines()
    assert "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" in lines
    assert "PrivateNetwork=yes" not in lines and "StateDirectory=racepub" in lines
    assert "SystemCallFilter=@system-service" in lines  # fork, clone included


def install_recipe() -> list[str]:
    """The shell lines of the unit's header that install it."""
    return [line[4:] for line in UNIT.read_text().splitlines() if line.startswith("#   ")]


def test_install_recipe_keeps_root_owning_what_racepub_reads() -> None:
    """The publisher's user reads /etc/racepub and can change nothing in it:
    not the config, and not the env file root's systemd reads (it could
    otherwise put anything in root's hands)."""
    recipe = install_recipe()
    installs = [shlex.split(line.split("#")[0]) for line in recipe if line.startswith("install ")]
    etc = [argv for argv in installs if any(a.startswith("/etc/racepub") for a in argv)]
    assert etc, recipe
    for argv in etc:
        assert argv[argv.index("-o") + 1] == "root" and argv[argv.index("-g") + 1] == "racepub"
        mode = argv[argv.index("-m") + 1]
        assert mode in ("0750", "0640"), argv  # nothing for the group to write, others nothing
    folder = next(argv for argv in etc if "-d" in argv)
    assert folder[-1] == "/etc/racepub" and folder[folder.index("-m") + 1] == "0750"
    env_file = next(argv for argv in etc if argv[-1].endswith(".env"))
    assert env_file[env_file.index("-m") + 1] == "0640"
    assert not any("-o racepub" in line or "chown racepub" in line for line in recipe)
    assert "pip install racepub" not in UNIT.read_text()  # no package is published
    readme = (ROOT / "README.md").read_text()
    for line in recipe:
        assert line.split("  #")[0].strip() in readme, line  # README says the same


def test_licence_is_the_declared_one() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # Vendored code keeps its own licence beside it.
    assert "BSD" in (ROOT / "static" / "vendor" / "leaflet" / "LICENSE").read_text()
