"""Entrants files (racers_file, [[races.NAME.racers]]) come from registrants:
ids and names are checked when the config is loaded, for a small race and a
large one. Real PostgreSQL; the publisher writes to a directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from racepub import config
from racepub.cli import main
from racepub.config import MAX_ID_CHARS, MAX_NAME_CHARS
from racepub.errors import ConfigError
from racepub.publisher.cycle import Publisher
from tests.helpers import create_points_table, write_race

LARGE = "shard_above = 10\nshard_size = 5\nhead_size = 4"
RLO, LRI, PDI = "\u202e", "\u2066", "\u2069"
# (name in the file, name published)
CLEANED = {
    "r01": (f"Ann{RLO}gnp.exe", "Anngnp.exe"),
    "r02": ("Bob\tde\x1b[31mla\x7fCruz", "Bob de [31mla Cruz"),
    "r03": (f"{LRI}Zoë{PDI}\u2028Ångström", "Zoë Ångström"),
    "r04": ("Carla\x85Marx\x0b\x0c", "Carla Marx"),
}
TEXT_EVERYWHERE = ("\x00", "\x1b", "\x7f", "\x85", "\x0b", "\u2028", RLO, LRI, PDI)


def entrants(tmp_path: Path, rows: list[tuple[str, str]], large: bool) -> Path:
    """A race whose racers are all in entrants.csv (the large form: above 10)."""
    n = 14 if large else 3
    body = rows + [(f"x{i:02d}", f"Runner {i}") for i in range(n - len(rows))]
    (tmp_path / "entrants.csv").write_bytes(
        ("id,name,kind\n" + "".join(f'{i},"{name}",runner\n' for i, name in body)).encode()
    )
    extra = 'racers_file = "entrants.csv"\n' + (LARGE if large else "")
    return write_race(tmp_path, "postgresql://db.invalid/x", racers="\n", extra=extra).path


@pytest.mark.parametrize("form", ["small", "large"])
@pytest.mark.parametrize(
    ("row", "expect"),
    [
        (("r1", "Ann\x00Lee"), "entrants.csv:2: column name = 'Ann\\x00Lee' has a NUL character"),
        (("r1", "A" * 60_000), "entrants.csv:2: column name is 60,000 characters long"),
        (("r1", "ab " * 20_000), "entrants.csv:2: column name is 59,999 characters long"),
        (("r1\x00", "Ann"), "entrants.csv:2: column id = 'r1\\x00': expected a non-empty string"),
        (("r1\x1b", "Ann"), "entrants.csv:2: column id = 'r1\\x1b'"),
        ((f"r1{RLO}", "Ann"), "entrants.csv:2: column id = 'r1\\u202e'"),
        (("9" * (MAX_ID_CHARS + 1), "Ann"), "entrants.csv:2: column id = '999"),
        (("r1", f"{RLO}\t\x1b"), "entrants.csv:2: column name is empty"),
    ],
)
def test_an_entrant_that_cannot_be_published_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str, row: tuple[str, str], expect: str
) -> None:
    """NUL, an id of control or bidi characters or longer than 200, a name
    longer than 200: exit 2, one line naming the file and its line. (A NUL id
    used to pass `check` and then fail every cycle in PostgreSQL; a
    60,000-character name made 20,031 name-index objects.)"""
    path = entrants(tmp_path, [row], large=form == "large")
    for command in (["check"], ["run", "--once"]):
        code = main([*command, "--race", "t", "--config", str(path)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(str(tmp_path / "entrants.csv")), lines
        assert expect in lines[0]
        assert len(lines[0]) < 400


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("id", '"1001\\u0000"', "races.t.racers[0].id = '1001\\x00': expected a non-empty string"),
        ("id", '"1001\\u202e"', "races.t.racers[0].id = '1001\\u202e'"),
        ("id", '"' + "1" * 201 + '"', "races.t.racers[0].id = '111"),
        (
            "name",
            '"Mi\\u0000chael"',
            "races.t.racers[0].name = 'Mi\\x00chael': expected a non-empty name",
        ),
        ("name", '"' + "M" * (MAX_NAME_CHARS + 1) + '"', "races.t.racers[0].name = 'MMM"),
    ],
)
def test_racers_in_the_config_are_checked_alike(
    tmp_path: Path, field: str, value: str, expect: str
) -> None:
    path = write_race(tmp_path, "postgresql://db.invalid/x").path
    old = 'id = "1001"' if field == "id" else 'name = "Michael"'
    path.write_text(path.read_text().replace(old, f"{field} = {value}", 1))
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert expect in str(e.value)


def test_the_longest_name_allowed_costs_a_large_race_little(tmp_path: Path, dsn: str) -> None:
    """A name of MAX_NAME_CHARS made of distinct two-letter words, the most
    name-index objects one name can make, is taken whole: about one object
    per three characters, not 20,031 for a name of 60,000."""
    words = " ".join(
        a + b for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"
    )
    name = words[:MAX_NAME_CHARS].rstrip().ljust(MAX_NAME_CHARS, "z")
    create_points_table(dsn)
    path = entrants(tmp_path, [("r1", name)], large=True)
    path.write_text(path.read_text().replace("postgresql://db.invalid/x", dsn))
    cfg = config.load(str(path))
    assert cfg.race("t").racers[0].name == name
    pub = Publisher(cfg, cfg.race("t"))
    try:
        pub.cycle()
    finally:
        pub.close()
    index = list((tmp_path / "public" / "names").rglob("*.json"))
    # Its 67 words keys, the other racers' 17 ("ru", "x0", "0".."12"...).
    assert len(index) <= MAX_NAME_CHARS // 3 + 20


@pytest.mark.parametrize("form", ["small", "large"])
def test_control_and_bidi_characters_never_reach_a_published_object(
    tmp_path: Path, dsn: str, form: str
) -> None:
    """Tabs, escapes, DEL, C1 controls, line separators become spaces and
    bidi overrides and isolates are removed at load: nothing of them reaches
    the page, snapshot.json, the shards, rosters and name index, or the
    results; the names read as the registrant's, in order."""
    create_points_table(dsn)
    rows = [(rid, name) for rid, (name, _) in CLEANED.items()]
    path = entrants(tmp_path, rows, large=form == "large")
    path.write_text(path.read_text().replace("postgresql://db.invalid/x", dsn))
    race = config.load(str(path)).race("t")
    assert {r.id: r.name for r in race.racers if r.id in CLEANED} == {
        rid: clean for rid, (_, clean) in CLEANED.items()
    }
    cfg = config.load(str(path))
    pub = Publisher(cfg, cfg.race("t"))
    try:
        pub.cycle()
    finally:
        pub.close()
    published = {p: p.read_bytes() for p in (tmp_path / "public").rglob("*") if p.is_file()}
    names = [p for p in published if "names" in p.parts]
    assert ("names" in {p.parts[-3] for p in names}) == (form == "large")
    for p, body in published.items():
        if p.suffix in (".json", ".html", ".csv"):
            text = body.decode()
            assert not any(c in text for c in TEXT_EVERYWHERE), p
            # ...nor escaped in JSON (\u202e, \u0000, \u001b).
            assert not any(f"\\u{ord(c):04x}" in text.lower() for c in TEXT_EVERYWHERE), p
    snap = json.loads(published[tmp_path / "public" / "snapshot.json"])
    if form == "small":
        assert {r["id"]: r["name"] for r in snap["racers"] if r["id"] in CLEANED} == {
            rid: clean for rid, (_, clean) in CLEANED.items()
        }
    else:
        rosters = [json.loads(published[p]) for p in published if "roster" in p.parts]
        shown = {
            i: n
            for doc in rosters
            for i, n in zip(doc["identity"]["id"], doc["identity"]["name"], strict=True)
        }
        assert {rid: shown[rid] for rid in CLEANED} == {
            rid: clean for rid, (_, clean) in CLEANED.items()
        }
