"""The README's config reference is the config racepub reads: every key
declared (config.RACE_OPTIONS, the Source and S3 fields) is documented there,
and every key documented there is read. A key added without documentation
fails here. The example parses, and every help line is a line."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from racepub import config

README = Path(__file__).resolve().parents[1] / "README.md"


def reference() -> dict[str, set[str]]:
    """Keys per table of the README's "Config reference" TOML block."""
    text = README.read_text()
    block = re.search(r"## Config reference\n\n```toml\n(.*?)\n```", text, re.S)
    assert block, "README has no Config reference block"
    doc = tomllib.loads(block.group(1))
    race = doc["races"]["outrunthet"]
    return {
        "database": set(doc["database"]),
        "source": set(doc["source"]),
        "s3": set(doc["s3"]),
        "detections": set(doc["detections"]),
        "race": set(race),
    }


def test_every_declared_key_is_documented_and_every_documented_key_is_read() -> None:
    documented = reference()
    declared = {
        "database": {"dsn"},
        "source": {f.name for f in dataclasses.fields(config.Source)},
        "s3": {f.name for f in dataclasses.fields(config.S3)},
        "detections": {f.name for f in dataclasses.fields(config.Detections)},
        "race": {o.key for o in config.RACE_OPTIONS} | set(config.RACE_TABLES),
    }
    for table in declared:
        assert documented[table] - declared[table] == set(), f"[{table}]: documented, not read"
        assert declared[table] - documented[table] == set(), f"[{table}]: read, not documented"


def test_race_options_are_fields_of_race_and_say_what_they_do() -> None:
    fields = {f.name for f in dataclasses.fields(config.Race)}
    for option in config.RACE_OPTIONS:
        assert option.key in fields, option.key  # its default is the Race field's
        assert option.help and "\n" not in option.help and option.expected


def test_a_race_made_in_code_gets_the_dependent_defaults(tmp_path: Path) -> None:
    """chunk_points follows the field's size whoever makes the Race."""
    racers = tuple(config.Racer(str(i), f"R{i}") for i in range(600))
    common: dict[str, Any] = {
        "id": "t",
        "title": "T",
        "starts_at": datetime.now(UTC),
        "course": tmp_path / "c.gpx",
        "sink": "dir:x",
    }
    assert config.Race(**common, racers=racers[:5]).chunk_points == config.SMALL_CHUNK_POINTS
    assert config.Race(**common, racers=racers).chunk_points == config.LARGE_CHUNK_POINTS
    assert config.Race(**common, racers=racers, chunk_points=50).chunk_points == 50
