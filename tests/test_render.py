"""The page as rendered: a race's own template first, escaping, CSP, the context contract."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from racepub.config import Race, Racer
from racepub.model.board import snapshot
from racepub.model.course import Course
from racepub.model.race import RaceState
from racepub.shapes.page import PageContext, csp, environment, page_context, render_page
from tests.helpers import STOPS


def race(**kw: Any) -> Race:
    return Race(
        id="t",
        title="</script><b>T</b>",
        starts_at=datetime(2014, 7, 25, tzinfo=UTC),
        course=Path("c.gpx"),
        interval_s=2,
        sink="dir:x",
        racers=(Racer("1", "<i>Ann</i>"),),
        **kw,
    )


def render(r: Race) -> str:
    course = Course(STOPS)
    snap = snapshot(RaceState(r, course), now=0.0, seq=1)
    return render_page(
        environment(r.template_dir), page_context(r, course, snap, "static/abc")
    ).decode()


def test_text_is_escaped_in_html_and_in_embedded_json() -> None:
    html = render(race())
    assert "<i>Ann</i>" not in html and "&lt;i&gt;Ann&lt;/i&gt;" in html
    config = re.search(
        r'<script type="application/json" id="race-config">(.*?)</script>', html, re.S
    )
    assert config is not None
    assert "</script>" not in config.group(1)  # cannot close the script element early
    assert json.loads(config.group(1))["title"] == "</script><b>T</b>"


def test_a_race_can_restyle_its_page(tmp_path: Path) -> None:
    (tmp_path / "index.html.j2").write_text(
        "<!doctype html><h1 class=mine>{{ title }}</h1>{% for row in rows %}"
        "<p>{{ row.name }}</p>{% endfor %}"
    )
    html = render(race(template_dir=tmp_path))
    assert html.startswith("<!doctype html><h1 class=mine>&lt;/script&gt;")
    assert "<p>&lt;i&gt;Ann&lt;/i&gt;</p>" in html
    assert "leaflet" not in html  # the package's template was not used


def test_page_context_is_what_the_template_uses() -> None:
    # StrictUndefined: the package template fails on any name not in the context.
    html = render(race())
    documented = {f.name for f in fields(PageContext)}
    template = (Path(__file__).parents[1] / "templates" / "index.html.j2").read_text()
    used = set(re.findall(r"\{\{-?\s*([a-z_]+)", template))
    used |= set(re.findall(r"\{%-?\s*(?:if(?: not)?|for [\w, ]+ in)\s+([a-z_]+)", template))
    # Names a loop binds ({% for a, b in ... %}) are the template's own.
    bound = {
        n
        for names in re.findall(r"\{%-?\s*for ([\w, ]+) in", template)
        for n in re.split(r"[, ]+", names)
        if n
    }
    assert "rows" in used and used <= documented | bound
    assert "Content-Security-Policy" in html


def test_csp_allows_only_own_scripts_and_the_tile_host() -> None:
    policy = csp("https://tile.example.org/{z}/{x}/{y}.png")
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "img-src 'self' data: https://tile.example.org" in policy
    assert "unsafe" not in policy
    assert "https://*.tile.example.org" in csp("https://{s}.tile.example.org/{z}/{x}/{y}.png")
