"""An installed wheel (not only a checkout) carries the templates, static files and demo."""

from __future__ import annotations

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
