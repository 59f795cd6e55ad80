"""Config: every bad value is refused with exit 2 and a line naming file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from racepub import config
from racepub.cli import main
from racepub.errors import ConfigError
from tests.helpers import write_race

DSN = "postgresql://racepub_ro@replica.internal/app"


@pytest.fixture
def cfg_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RACEPUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("RACEPUB_CONFIG", raising=False)
    return write_race(tmp_path, DSN).path


def run_with(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["run", "--race", "t", "--config", str(path), "--once", *args])
    return code, capsys.readouterr().err


def test_valid_config_loads_typed_frozen(cfg_path: Path) -> None:
    cfg = config.load(str(cfg_path))
    race = cfg.race("t")
    assert race.interval_s == 2
    assert [r.id for r in race.racers] == ["1001", "1002", "2001"]
    assert race.racers[2].kind == "vehicle"
    assert race.starts_at.tzinfo is not None
    assert race.sink == f"dir:{cfg_path.parent / 'public'}"  # relative to the config
    with pytest.raises(AttributeError):
        race.interval_s = 5  # type: ignore[misc]


BAD = [
    # (replace this, with this, the message must contain all of these)
    ("interval_s = 2", "interval_s = 0", ["races.t.interval_s = 0", "whole seconds 1..3600"]),
    ("interval_s = 2", 'interval_s = "3"', ["races.t.interval_s = '3'"]),
    ("interval_s = 2", "interval_s = 1.5", ["races.t.interval_s = 1.5"]),
    ("interval_s = 2", "interval_s = true", ["races.t.interval_s = True"]),
    (
        'starts_at = "',
        'starts_at = "yesterday" #',
        ["races.t.starts_at = 'yesterday'", "UTC offset"],
    ),
    ('course = "course.gpx"', 'course = "nope.gpx"', ["races.t.course = 'nope.gpx'", "GPX file"]),
    (
        'sink = "dir:public"',
        'sink = "ftp://host/x"',
        ["races.t.sink = 'ftp://host/x'", "s3://bucket/prefix or dir:PATH"],
    ),
    ('name = "Sarah"', 'name = ""', ["races.t.racers[1].name = ''", "non-empty"]),
    (
        'kind = "vehicle"',
        'kind = "bicycle"',
        ["races.t.racers[2].kind = 'bicycle'", "runner or vehicle"],
    ),
    ('color = "#17bebb"', 'color = "teal"', ["races.t.racers[1].color = 'teal'"]),
    ('id = "1002"', 'id = "1001"', ["racer id '1001' appears twice"]),
    ('id = "1002"', "id = 1.5", ["races.t.racers[1].id = 1.5", "string or integer"]),
    (
        'id = "1002"',
        'ident = "1002"',
        ["races.t.racers[1].ident: unknown key", "races.t.racers[1].id: missing"],
    ),
    ('title = "Test race"', 'titel = "Test race"', ["races.t.titel: unknown key"]),
    ("[source]", "[sorce]", ["sorce: unknown key"]),
    ('table = "live_points"', 'table = "x\\"; DROP TABLE y; --"', ["source.table = "]),
    ('table = "live_points"', 'table = "a.b.c"', ["source.table = 'a.b.c'"]),
    ('racer = "user_id"', "racer = 7", ["source.racer = 7", "a column name"]),
    ('lat = "lat"', 'lat = "lat"\nlookback_s = -1', ["source.lookback_s = -1"]),
    (
        "[database]",
        '[s3]\nendpoint_url = "localhost:5000"\n[database]',
        ["s3.endpoint_url = 'localhost:5000'", "http(s)://"],
    ),
    (f'dsn = "{DSN}"', "", ["database.dsn: missing"]),
    (
        'title = "Test race"',
        'title = "Test race"\nunits = "furlongs"',
        ["races.t.units = 'furlongs'", "km or mi"],
    ),
    (
        'title = "Test race"',
        'title = "Test race"\ntiles = "https://t.example/{z}.png"',
        ["races.t.tiles", "{z}, {x} and {y}"],
    ),
    (
        'title = "Test race"',
        'title = "Test race"\nends_at = "2000-01-01T00:00:00Z"',
        ["races.t.ends_at = 2000-01-01T00:00:00+00:00", "after starts_at"],
    ),
    (
        'title = "Test race"',
        'title = "Test race"\nmax_kmh = { runner = 0 }',
        ["races.t.max_kmh.runner = 0"],
    ),
    # A year past 9998 once in UTC: every time derived from it would overflow.
    (
        'title = "Test race"',
        'title = "Test race"\nends_at = "9999-12-31T23:00:00-05:00"',
        ["races.t.ends_at = '9999-12-31T23:00:00-05:00'", "between 1970 and 9998"],
    ),
    (
        'title = "Test race"',
        'title = "Test race"\nmin_fix_spacing_s = -1',
        ["races.t.min_fix_spacing_s = -1", "seconds, 0..60"],
    ),
    ('lat = "lat"', 'lat = "lat"\nvalid = 3', ["source.valid = 3", "a column name"]),
    # The DSN may hold a password: its value is never repeated.
    (
        f'dsn = "{DSN}"',
        'dsn = ["postgresql://u:S3cr3t@h/db"]',
        ["database.dsn = (not shown: it may hold a password)"],
    ),
    # A DSN libpq cannot parse failed every cycle (exit 1: restarted every
    # 2 s by systemd); libpq's own message quotes it, password and all.
    (
        f'dsn = "{DSN}"',
        'dsn = "postgresql://x:S3cr3t@[bad"',
        [
            "database.dsn = (not shown: it may hold a password): end of string reached when "
            "looking for matching … in IPv6 host address in URI: …: expected a PostgreSQL URL"
        ],
    ),
    (
        f'dsn = "{DSN}"',
        'dsn = "postgresql://x:S3cr%zz3t@h/db"',
        ["database.dsn = (not shown", "invalid percent-encoded token", "percent-encode any"],
    ),
    (
        f'dsn = "{DSN}"',
        'dsn = "postgresql://x:S3c@r3t@h/db"',
        ["database.dsn = (not shown", "its host has an '@' in it"],
    ),
    (
        f'dsn = "{DSN}"',
        'dsn = "host=h password=S3cr3t port=99999"',
        ["database.dsn = (not shown", "its port is not a number 1..65535"],
    ),
]


@pytest.mark.parametrize(("old", "new", "expect"), BAD, ids=[b[2][0][:40] for b in BAD])
def test_bad_value_exits_2_naming_file_and_key(
    cfg_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, expect: list[str]
) -> None:
    text = cfg_path.read_text()
    assert old in text
    cfg_path.write_text(text.replace(old, new, 1))
    code, err = run_with(cfg_path, capsys)
    assert code == 2
    assert "Traceback" not in err and "S3cr3t" not in err
    for part in expect:
        assert part in err
    first = next(line for line in err.splitlines() if any(p in line for p in expect))
    assert first.startswith(f"{cfg_path}:")


def test_all_problems_reported_at_once(cfg_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = cfg_path.read_text().replace("interval_s = 2", "interval_s = 0")
    cfg_path.write_text(text.replace('kind = "vehicle"', 'kind = "tram"'))
    code, err = run_with(cfg_path, capsys)
    assert code == 2
    assert "interval_s = 0" in err and "kind = 'tram'" in err


def test_local_time_without_offset_is_refused(
    cfg_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        ln if not ln.startswith("starts_at") else "starts_at = 2014-07-25T11:00:00"
        for ln in cfg_path.read_text().splitlines()
    ]
    cfg_path.write_text("\n".join(lines))
    code, err = run_with(cfg_path, capsys)
    assert code == 2 and "races.t.starts_at = 2014-07-25T11:00:00" in err


def test_not_toml_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RACEPUB_CONFIG", raising=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("[races\n")
    assert run_with(bad, capsys)[0] == 2
    monkeypatch.chdir(tmp_path)
    code = main(["check", "--race", "t"])
    err = capsys.readouterr().err
    assert code == 2 and "racepub.toml: no such config file" in err


def test_unknown_race_names_the_configured_ones(
    cfg_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--race", "nope", "--config", str(cfg_path), "--once"])
    err = capsys.readouterr().err
    assert code == 2 and "races.nope: no such race (configured: t)" in err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "--race" in capsys.readouterr().err
    assert main(["simulate", "--race", "t", "--speed", "-1"]) == 2


def test_env_config_and_database_url(
    cfg_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("RACEPUB_CONFIG", str(cfg_path))
    assert config.load(None).dsn == DSN
    monkeypatch.setenv("RACEPUB_DATABASE_URL", "postgresql://other/db")
    assert config.load(None).dsn == "postgresql://other/db"
    # With the variable set, [database] may be left out altogether.
    text = cfg_path.read_text().replace(f'[database]\ndsn = "{DSN}"', "")
    cfg_path.write_text(text)
    assert config.load(None).dsn == "postgresql://other/db"
    # --config wins over the variable.
    other = tmp_path / "other.toml"
    other.write_text(text.replace('title = "Test race"', 'title = "Other"'))
    assert config.load(str(other)).race("t").title == "Other"


def test_racers_file(cfg_path: Path) -> None:
    (cfg_path.parent / "entrants.csv").write_text(
        'id,name,kind,color\n3001,Ann,runner,#123456\n3002,"Bob, Jr.",vehicle,\n'
    )
    text = cfg_path.read_text().replace(
        'title = "Test race"', 'title = "Test race"\nracers_file = "entrants.csv"'
    )
    cfg_path.write_text(text)
    race = config.load(str(cfg_path)).race("t")
    assert [(r.id, r.name, r.kind, r.color) for r in race.racers[-2:]] == [
        ("3001", "Ann", "runner", "#123456"),
        ("3002", "Bob, Jr.", "vehicle", None),
    ]


@pytest.mark.parametrize(
    ("csv", "expect"),
    [
        ("id,name,kind\n3001,Ann,runner\n3002,,runner\n", "entrants.csv:3: column name is empty"),
        ("id,name,kind\n3001,Ann,skater\n", "entrants.csv:2: column kind = 'skater'"),
        ("id,name\n3001,Ann\n", "entrants.csv:1: header 'id,name'"),
        ("id,name,kind\n1001,Dup,runner\n", "racer id '1001' appears twice"),
    ],
)
def test_racers_file_errors_name_line(cfg_path: Path, csv: str, expect: str) -> None:
    (cfg_path.parent / "entrants.csv").write_text(csv)
    text = cfg_path.read_text().replace(
        'title = "Test race"', 'title = "Test race"\nracers_file = "entrants.csv"'
    )
    cfg_path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(cfg_path))
    assert expect in str(e.value)


def test_a_malformed_database_url_in_the_environment_exits_2_unshown(
    cfg_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RACEPUB_DATABASE_URL", "postgresql://x:S3cr3t@[bad")
    for command in (["run", "--once"], ["check"], ["status"]):
        code = main([*command, "--race", "t", "--config", str(cfg_path)])
        err = capsys.readouterr().err
        assert code == 2 and "S3cr3t" not in err and "Traceback" not in err
        assert err.splitlines() == [
            f"RACEPUB_DATABASE_URL (it overrides {cfg_path}: database.dsn) = (not shown: it may "
            "hold a password): end of string reached when looking for matching … in IPv6 host "
            "address in URI: …: expected a PostgreSQL URL (postgresql://user@host:port/database) "
            "or key=value pairs; percent-encode any @ : / [ ] % in the password"
        ]
