"""An installed wheel (not only a checkout) carries the templates, static
files and demo; the systemd unit's install lines install it from a checkout."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_templates_static_and_demo(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
    )
    wheel = next((tmp_path / "dist").glob("racepub-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "racepub/templates/index.html.j2",
        "racepub/static/js/main.js",
        "racepub/static/app.css",
        "racepub/static/vendor/leaflet/leaflet.js",
        "racepub/static/vendor/leaflet/images/marker-icon.png",
        "racepub/commands/demo_race/racepub.toml",
        "racepub/commands/demo_race/outrunthet.gpx",
    ):
        assert name in names

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    # Run from elsewhere with only the installed copy of racepub importable.
    probe = (
        "import racepub.assets as a, racepub.commands.demo as d; "
        "print(a.templates_dir()); print(len(a.static_files()[1])); "
        "print(d.DEMO_DIR)"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(site)!r}); "
            f"sys.path.append({_site_packages()!r}); {probe}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    templates, n_static, demo_dir = out.split()
    assert Path(templates).is_relative_to(site)
    assert Path(demo_dir).is_relative_to(site)
    assert int(n_static) >= 8


def _site_packages() -> str:
    import jinja2

    return str(Path(jinja2.__file__).parents[1])


@pytest.mark.slow
def test_the_units_install_lines_install_racepub_from_a_checkout(tmp_path: Path) -> None:
    """The venv and pip lines of deploy/systemd/racepub@.service's header,
    run as written but for where: /opt/racepub in a temporary folder, the
    checkout this one. The dependencies are those of this environment
    (offline; what an index would give), so what is tested is that pip
    makes racepub from a checkout, and puts the command where the unit's
    ExecStart runs it, an installed copy that finds its templates."""
    unit = (ROOT / "deploy" / "systemd" / "racepub@.service").read_text()
    recipe = [line[4:].split("  #")[0] for line in unit.splitlines() if line.startswith("#   ")]
    opt = tmp_path / "opt" / "racepub"

    def as_here(line: str) -> list[str]:
        argv = shlex.split(line.replace("/opt/racepub", str(opt)))
        return [str(ROOT) if a == "/path/to/racepub" else a for a in argv]

    make_venv = as_here(next(line for line in recipe if " -m venv " in line))
    assert make_venv[:3] == ["python3", "-m", "venv"]
    subprocess.run([sys.executable, *make_venv[1:]], check=True)
    install = as_here(next(line for line in recipe if "/bin/pip install " in line))
    assert install[:3] == [str(opt / "bin" / "pip"), "install", str(ROOT)]
    here = {**os.environ, "PYTHONPATH": _site_packages(), "PIP_NO_INDEX": "1"}
    subprocess.run([*install, "--quiet", "--no-build-isolation"], check=True, env=here)

    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    command = Path(shlex.split(exec_start.split("=", 1)[1])[0].replace("/opt/racepub", str(opt)))
    assert command.is_file()
    ran = subprocess.run(
        [str(command), "run", "--help"], capture_output=True, text=True, env=here, cwd=tmp_path
    )
    assert ran.returncode == 0 and "RACEPUB_DATABASE_URL" in ran.stdout, ran.stderr
    where = subprocess.run(
        [
            str(opt / "bin" / "python"),
            "-c",
            "import racepub.assets as a; print(a.templates_dir())",
        ],
        capture_output=True,
        text=True,
        env=here,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(opt)  # the installed copy, not the checkout
