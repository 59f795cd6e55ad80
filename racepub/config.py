"""The TOML config, loaded into frozen dataclasses.

Every problem is collected and reported at once, each naming the file, the
key, the bad value and what is expected. Unknown keys are errors: a typo in a
race-day config must not be silently ignored.
"""

from __future__ import annotations

import csv
import os
import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from .errors import ConfigError, UsageError
from .model.course import OFF_COURSE_M

DEFAULT_CONFIG = "racepub.toml"
DEFAULT_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
DEFAULT_ATTRIBUTION = "© OpenStreetMap contributors"
KINDS = ("runner", "vehicle")
# Fastest plausible speed per kind; a fix implying more is a GPS jump.
DEFAULT_MAX_KMH = {"runner": 30.0, "vehicle": 120.0}

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SMALL_CHUNK_POINTS = 30
LARGE_CHUNK_POINTS = 240  # 20 minutes of fixes every 5 s
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
# A SQL identifier as users write them; it is still quoted, never spliced.
_IDENT = re.compile(r"^[^\x00\"]{1,63}$")
# Entrants files come from registrants. An id is matched against the source's
# racer column: at most this long, and no control or bidi characters in it.
MAX_ID_CHARS = 200
# A name is published on every page, shard and index: at most this long
# (after the cleaning below); the page shows the first 80 characters.
MAX_NAME_CHARS = 200
MAX_BIB_CHARS = 20
# The entrants file's optional columns, beside id, name and kind.
OPTIONAL_COLUMNS = ("color", "bib", "category", "start")
MAX_CATEGORY_CHARS = 40
# Bidi embeddings, overrides and isolates: text after them is shown reordered
# ("Ann\u202egnp.exe" reads "Annexe.png"), on the page, in results and GPX files.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class Racer:
    id: str
    name: str
    kind: str = "runner"
    color: str | None = None
    bib: str | None = None  # the number they wear, when it is not their id
    category: str | None = None  # free text: "F40", "M", "Wheelchair"
    start: datetime | None = None  # their own start (a wave, a chip): else the race's


@dataclass(frozen=True)
class Checkpoint:
    """A named point of the course, at a distance from the start: a split."""

    name: str
    distance_m: float


@dataclass(frozen=True)
class Race:
    id: str
    title: str
    starts_at: datetime
    course: Path
    sink: str
    racers: tuple[Racer, ...]
    interval_s: int = 3
    ends_at: datetime | None = None
    tiles: str = DEFAULT_TILES
    tile_attribution: str = DEFAULT_ATTRIBUTION
    units: str = "km"
    # Fixes per immutable track chunk; 0: by the field's size (each chunk is
    # a PUT: a big field's fixes fill few, larger ones).
    chunk_points: int = 0
    stale_after_s: int = 60
    off_course_m: float = OFF_COURSE_M
    pace_window_s: int = 60
    max_accuracy_m: float = 50.0
    min_fix_spacing_s: float = 1.0  # closer fixes of one racer are dropped (too_frequent)
    max_kmh: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_KMH))
    template_dir: Path | None = None
    # The field shape (DESIGN.md): above `shard_above` racers, snapshot.json
    # carries the leaderboard head and every racer's live record is in a
    # shard object of columns, all rewritten every cycle.
    shard_above: int = 500
    shard_size: int = 1400  # racers per shard: as many as a 30 KB poll allows (bench)
    head_size: int = 25  # leaderboard rows in a large race's snapshot.json
    # The course GPX is one lap of a loop, run this many times.
    laps: int = 1
    # With timing mats: the pace a racer is placed at before their first split.
    default_pace_s_per_km: int = 360
    # Splits at these distances (and at the course GPX's named waypoints).
    checkpoints: tuple[Checkpoint, ...] = ()
    # Once the race is finished, `racepub run` keeps publishing this long
    # (late fixes still count), then exits 0.
    finished_grace_s: int = 600
    # A PMTiles archive cut for the course (`racepub tiles`): uploaded once,
    # the page's map drawn from it instead of `tiles`.
    basemap: Path | None = None

    def __post_init__(self) -> None:
        if self.chunk_points == 0:  # a dependent default, the same however a Race is made
            object.__setattr__(
                self, "chunk_points", LARGE_CHUNK_POINTS if self.field_shape else SMALL_CHUNK_POINTS
            )

    @property
    def field_shape(self) -> bool:
        """Whether the race is published in the field shape: a snapshot with
        the leaderboard head and a `field` block (shapes/field.py)."""
        return len(self.racers) > self.shard_above


@dataclass(frozen=True)
class Source:
    table: str = "live_points"
    racer: str = "user_id"
    time: str = "recorded_at"
    lat: str = "lat"
    lon: str = "lon"
    ingest: str | None = None
    accuracy: str | None = None
    valid: str | None = None  # a boolean column: false rows are not fixes (Traccar)
    # A timestamp column: when the row reached the database (Traccar's
    # servertime). Beside an integer ingest, a catch-up still finds phone clocks.
    arrival: str | None = None
    lookback_s: int = 30

    @property
    def table_parts(self) -> tuple[str, ...]:
        return tuple(self.table.split("."))


@dataclass(frozen=True)
class Detections:
    """Where a timing system's chip reads are: one row a read of a racer's
    chip at a mat (`checkpoint`: start, finish, or a checkpoint's name)."""

    table: str
    racer: str = "racer"
    checkpoint: str = "checkpoint"
    time: str = "read_at"
    ingest: str | None = None
    lookback_s: int = 30
    # Every racer is read at a start mat: nothing of a racer is published
    # before their start read (their fixes wait for it), or their first
    # read at any mat (the start mat missed them: their start is the gun).
    start_mat: bool = False

    @property
    def table_parts(self) -> tuple[str, ...]:
        return tuple(self.table.split("."))


@dataclass(frozen=True)
class S3:
    endpoint_url: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Event:
    """Several races of one event (a marathon, a half, a 10 km): one page
    at `sink` leads to each, every race published by its own publisher
    into a sink under it."""

    id: str
    title: str
    races: tuple[str, ...]
    sink: str


@dataclass(frozen=True)
class Config:
    path: Path
    dsn: str
    source: Source
    s3: S3
    races: Mapping[str, Race]
    events: Mapping[str, Event] = field(default_factory=dict)
    detections: Detections | None = None  # chip reads from timing mats, if any

    def event_of(self, race_id: str) -> Event | None:
        """The event a race is part of, if any."""
        return next((e for e in self.events.values() if race_id in e.races), None)

    def race(self, name: str) -> Race:
        if name not in self.races:
            have = ", ".join(sorted(self.races)) or "none"
            raise UsageError(f"{self.path}: races.{name}: no such race (configured: {have})")
        return self.races[name]


def config_path(given: str | None) -> Path:
    """--config, else $RACEPUB_CONFIG, else ./racepub.toml."""
    return Path(given or os.environ.get("RACEPUB_CONFIG") or DEFAULT_CONFIG)


def load(given: str | None = None) -> Config:
    path = config_path(given)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file (give --config PATH or set RACEPUB_CONFIG)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse(raw, path)


def parse(raw: Mapping[str, Any], path: Path) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    errors: list[str] = []
    top = _Table(raw, "", path, errors)

    env_dsn = os.environ.get("RACEPUB_DATABASE_URL")  # overrides database.dsn
    db = top.table("database", required=not env_dsn)
    dsn = db.get(
        "dsn",
        _text,
        "a PostgreSQL URL (or set RACEPUB_DATABASE_URL)",
        required=not env_dsn,
        secret=True,
    )
    db.done()
    if env_dsn:
        problem = _dsn_problem(env_dsn)
        if problem:
            errors.append(
                f"RACEPUB_DATABASE_URL (it overrides {path}: database.dsn) = (not shown: it "
                f"may hold a password): {problem}"
            )
    elif dsn is not None and (problem := _dsn_problem(dsn)):
        errors.append(f"{path}: database.dsn = (not shown: it may hold a password): {problem}")
    dsn = env_dsn or dsn

    src = top.table("source")
    source = Source(
        table=src.get(
            "table", _table_name, "a table name, optionally schema.table", default=Source.table
        ),
        racer=src.get("racer", _ident, "a column name", default=Source.racer),
        time=src.get("time", _ident, "a column name", default=Source.time),
        lat=src.get("lat", _ident, "a column name", default=Source.lat),
        lon=src.get("lon", _ident, "a column name", default=Source.lon),
        ingest=src.get("ingest", _ident, "a column name"),
        accuracy=src.get("accuracy", _ident, "a column name (horizontal accuracy in metres)"),
        valid=src.get("valid", _ident, "a column name (boolean: false rows are dropped)"),
        arrival=src.get("arrival", _ident, "a column name (when a row reached the database)"),
        lookback_s=src.get(
            "lookback_s", _int_range(0, 3600), "whole seconds 0..3600", default=Source.lookback_s
        ),
    )
    src.done()

    det = top.table("detections")
    detections = None
    if det.present:
        table = det.get(
            "table", _table_name, "a table name, optionally schema.table", required=True
        )
        detections = Detections(
            table=table or "",
            racer=det.get("racer", _ident, "a column name", default=Detections.racer),
            checkpoint=det.get(
                "checkpoint", _ident, "a column name", default=Detections.checkpoint
            ),
            time=det.get("time", _ident, "a column name", default=Detections.time),
            ingest=det.get("ingest", _ident, "a column name"),
            lookback_s=det.get(
                "lookback_s",
                _int_range(0, 3600),
                "whole seconds 0..3600",
                default=Detections.lookback_s,
            ),
            start_mat=det.get("start_mat", _flag, "true or false", default=False),
        )
    det.done()

    s3t = top.table("s3")
    s3 = S3(
        endpoint_url=s3t.get("endpoint_url", _url, "an http(s):// URL"),
        region=s3t.get("region", _text, "an AWS region name"),
    )
    s3t.done()

    races: dict[str, Race] = {}
    races_t = top.table("races", required=True)
    for name in list(races_t.raw):
        key = f"races.{name}"
        if not _NAME.match(name):
            errors.append(
                f"{path}: {key}: bad race name {name!r}: expected letters, digits, '-' or '_'"
            )
        r = races_t.table(name, required=True)
        race = _race(name, r, path, errors)
        r.done()
        if race is not None:
            races[name] = race
    if races_t.present and not races_t.raw:
        errors.append(f"{path}: races: no race configured: expected a [races.NAME] table")
    events = _events(top.table("events"), races, path, errors)
    top.done()

    if errors:
        raise ConfigError(errors)
    return Config(
        path=path,
        dsn=dsn,
        source=source,
        s3=s3,
        races=races,
        events=events,
        detections=detections,
    )


def _events(
    events_t: _Table, races: Mapping[str, Race], path: Path, errors: list[str]
) -> dict[str, Event]:
    """[events.NAME]: title, races (each a configured race, in one event at
    most), and sink, the place of the event's page: each race's sink is a
    place under it (so the page links to each race's)."""
    events: dict[str, Event] = {}
    seen: dict[str, str] = {}
    for name in list(events_t.raw):
        key = f"events.{name}"
        if not _NAME.match(name):
            errors.append(
                f"{path}: {key}: bad event name {name!r}: expected letters, digits, '-' or '_'"
            )
        et = events_t.table(name, required=True)
        title = et.get("title", _text, "a non-empty string", default=name)
        sink = et.get("sink", _sink, "s3://bucket/prefix or dir:PATH", required=True)
        members = et.get("races", _names, 'a list of race names, e.g. ["marathon", "half"]')
        et.done()
        if sink is not None and sink.startswith("dir:"):  # relative to the config file
            sink = f"dir:{path.parent / sink[4:]}"
        for race in members or []:
            if race not in races:
                errors.append(f"{path}: {key}.races: {race!r}: no such race [races.{race}]")
            elif race in seen:
                errors.append(f"{path}: {key}.races: {race!r} is in events.{seen[race]} already")
            elif sink is not None and not races[race].sink.startswith(sink.rstrip("/") + "/"):
                errors.append(
                    f"{path}: races.{race}.sink = {races[race].sink!r}: expected a place under "
                    f"{key}.sink ({sink}/...): the event's page links to each race's"
                )
            seen[race] = name
        if sink is not None and members:
            events[name] = Event(name, title, tuple(members), sink)
        elif members is not None and not members:
            errors.append(f"{path}: {key}.races: empty: expected the event's races")
    return events


def _race(name: str, r: _Table, path: Path, errors: list[str]) -> Race | None:
    base = path.parent
    n_before = len(errors)
    given: dict[str, Any] = {}
    for option in RACE_OPTIONS:
        value = r.get(option.key, option.check(base), option.expected, required=option.required)
        if value is not None:
            given[option.key] = value
    if "sink" in given and given["sink"].startswith("dir:"):  # relative to the config file
        given["sink"] = f"dir:{base / given['sink'][4:]}"
    for gone in ("shard_writes", "tail_points"):  # the round-robin large form's
        if gone in r.raw:
            r.used.add(gone)
            errors.append(
                f"{path}: {r.key}.{gone}: no longer used (every shard is written "
                "every cycle, trails are in packs): remove it"
            )
    max_kmh = dict(DEFAULT_MAX_KMH)
    speeds = r.table("max_kmh")
    for kind in KINDS:
        v = speeds.get(kind, _float_range(1, 1000), "km/h, a number 1..1000")
        if v is not None:
            max_kmh[kind] = v
    speeds.done()

    racers: list[Racer] = []
    for i, item in enumerate(r.array("racers")):
        rt = _Table(item, f"{r.key}.racers[{i}]", path, errors)
        racer_id = rt.get("id", _racer_id, EXPECTED_ID, required=True)
        racer = Racer(
            id=racer_id,
            name=rt.get("name", _racer_name, EXPECTED_NAME, required=True),
            kind=rt.get("kind", _choice(*KINDS), " or ".join(KINDS), default="runner"),
            color=rt.get("color", _color, "a colour like #e4572e"),
            bib=rt.get("bib", _bib, EXPECTED_BIB),
            category=rt.get("category", _category, EXPECTED_CATEGORY),
            start=rt.get("start", _datetime, EXPECTED_START),
        )
        rt.done()
        racers.append(racer)
    checkpoints: list[Checkpoint] = []
    for i, item in enumerate(r.array("checkpoints")):
        ct = _Table(item, f"{r.key}.checkpoints[{i}]", path, errors)
        cp_name = ct.get("name", _text, "a non-empty string", required=True)
        distance = ct.get(
            "distance_m",
            _float_range(0.001, 1_000_000),
            "metres from the start, 0..1000000",
            required=True,
        )
        ct.done()
        if cp_name is not None and distance is not None:
            checkpoints.append(Checkpoint(cp_name, distance))
    racers_file = r.get("racers_file", _file(base), "a CSV file (relative to the config file)")
    if racers_file is not None:
        racers.extend(_racers_csv(racers_file, errors))

    seen: set[str] = set()
    for racer in racers:
        if racer.id in seen:
            errors.append(
                f"{path}: {r.key}.racers: racer id {racer.id!r} appears twice: expected unique ids"
            )
        seen.add(racer.id)
    if not racers and len(errors) == n_before:
        errors.append(
            f"{path}: {r.key}.racers: no racers: expected [[{r.key}.racers]] entries or racers_file"
        )
    starts_at, ends_at = given.get("starts_at"), given.get("ends_at")
    if starts_at and ends_at and ends_at <= starts_at:
        errors.append(
            f"{path}: {r.key}.ends_at = {ends_at.isoformat()}: expected a time after starts_at"
        )
    if len(errors) > n_before:
        return None
    return Race(
        id=name,
        racers=tuple(racers),
        max_kmh=max_kmh,
        checkpoints=tuple(checkpoints),
        **{"title": name, **given},
    )


def _racers_csv(path: Path, errors: list[str]) -> list[Racer]:
    """Entrants as CSV: header id,name,kind[,color]; errors name file, line, column."""
    racers: list[Racer] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in ("id", "name", "kind") if c not in header]
            extra = [c for c in header if c not in ("id", "name", "kind", *OPTIONAL_COLUMNS)]
            if missing or extra:
                errors.append(
                    f"{path}:1: header {','.join(header)!r}: expected "
                    f"id,name,kind and optionally {','.join(OPTIONAL_COLUMNS)}"
                )
                return []
            for row in reader:
                line = reader.line_num
                bad = _csv_row_problem(row)
                if bad:
                    errors.append(f"{path}:{line}: {bad}")
                    continue
                racers.append(
                    Racer(
                        id=row["id"].strip(),
                        name=_racer_name(row["name"]),
                        kind=row["kind"].strip(),
                        color=(row.get("color") or "").strip() or None,
                        bib=(row.get("bib") or "").strip() or None,
                        category=_clean_name(row.get("category") or "") or None,
                        start=_datetime((row.get("start") or "").strip())
                        if (row.get("start") or "").strip()
                        else None,
                    )
                )
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        errors.append(f"{path}: cannot read entrants: {e}")
    return racers


def _csv_row_problem(row: dict[str, str | None]) -> str | None:
    if None in row:
        return f"too many fields: expected the header's {len(row) - 1}"
    for col in ("id", "name", "kind"):
        if not (row.get(col) or "").strip():
            return f"column {col} is empty: expected a value"
    racer_id = (row["id"] or "").strip()
    if _id_problem(racer_id):
        return f"column id = {_show(racer_id)}: expected {EXPECTED_ID}"
    name = row["name"] or ""
    if "\0" in name:
        return f"column name = {_show(name)} has a NUL character: expected {EXPECTED_NAME}"
    cleaned = _clean_name(name)
    if not cleaned:
        return "column name is empty: expected a value"
    if len(cleaned) > MAX_NAME_CHARS:
        return f"column name is {len(cleaned):,} characters long: expected {EXPECTED_NAME}"
    kind = (row["kind"] or "").strip()
    if kind not in KINDS:
        return f"column kind = {_show(kind)}: expected {' or '.join(KINDS)}"
    color = (row.get("color") or "").strip()
    if color and not _COLOR.match(color):
        return f"column color = {_show(color)}: expected a colour like #e4572e"
    bib = (row.get("bib") or "").strip()
    if bib and _id_problem(bib, MAX_BIB_CHARS):
        return f"column bib = {_show(bib)}: expected {EXPECTED_BIB}"
    category = row.get("category") or ""
    if category.strip():
        try:
            _category(category)
        except ValueError:
            return f"column category = {_show(category)}: expected {EXPECTED_CATEGORY}"
    start = (row.get("start") or "").strip()
    if start:
        try:
            _datetime(start)
        except ValueError:
            return f"column start = {_show(start)}: expected {EXPECTED_START}"
    return None


# -- the small validation kit ------------------------------------------------

_MISSING = object()


class _Table:
    """One TOML table being read: typed getters that record errors by key."""

    def __init__(self, raw: Any, key: str, path: Path, errors: list[str], present: bool = True):
        self.key, self.path, self.errors, self.present = key, path, errors, present
        if isinstance(raw, Mapping):
            self.raw: dict[str, Any] = dict(raw)
        else:
            self.raw = {}
            errors.append(f"{path}: {key} = {_show(raw)}: expected a table")
        self.used: set[str] = set()

    def _sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(
        self,
        name: str,
        conv: Callable[[Any], Any],
        expected: str,
        *,
        required: bool = False,
        default: Any = None,
        secret: bool = False,
    ) -> Any:
        self.used.add(name)
        value = self.raw.get(name, _MISSING)
        if value is _MISSING:
            if required:
                self.errors.append(f"{self.path}: {self._sub(name)}: missing: expected {expected}")
            return default
        try:
            return conv(value)
        except (TypeError, ValueError, OverflowError):
            shown = "(not shown: it may hold a password)" if secret else _show(value)
            self.errors.append(f"{self.path}: {self._sub(name)} = {shown}: expected {expected}")
            return default

    def table(self, name: str, required: bool = False) -> _Table:
        self.used.add(name)
        if name not in self.raw:
            if required:
                self.errors.append(
                    f"{self.path}: {self._sub(name)}: missing: expected a [{self._sub(name)}] table"
                )
            return _Table({}, self._sub(name), self.path, self.errors, present=False)
        return _Table(self.raw[name], self._sub(name), self.path, self.errors)

    def array(self, name: str) -> list[Any]:
        self.used.add(name)
        value = self.raw.get(name, [])
        if not isinstance(value, list):
            self.errors.append(
                f"{self.path}: {self._sub(name)} = {_show(value)}: "
                f"expected an array of tables [[{self._sub(name)}]]"
            )
            return []
        return value

    def done(self) -> None:
        for name in self.raw:
            if name not in self.used:
                self.errors.append(f"{self.path}: {self._sub(name)}: unknown key")


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, datetime | date | time) else value.isoformat()
    return text if len(text) <= 60 else text[:57] + "..."


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError
    return v


def _dsn_problem(dsn: str) -> str | None:
    """Why libpq would refuse a DSN, said without any of it (libpq's own
    message quotes the DSN, password and all); None if it parses. Checked
    at load: a DSN that cannot be parsed fails every cycle, and a restart
    cannot mend it (exit 2, not a service restarted every 2 s)."""
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    expected = (
        "expected a PostgreSQL URL (postgresql://user@host:port/database) or "
        "key=value pairs; percent-encode any @ : / [ ] % in the password"
    )
    try:
        info = conninfo_to_dict(dsn)
    except Error as e:
        reason = re.sub(r'"[^"]*"', "…", str(e).strip().splitlines()[0] if str(e).strip() else "")
        return f"{reason}: {expected}" if reason else expected
    host = str(info.get("host") or "")
    if "@" in host:  # a password with an unencoded @: the rest taken for the host
        return f"its host has an '@' in it: {expected}"
    for port in str(info.get("port") or "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            return f"its port is not a number 1..65535: {expected}"
    return None


def _ident(v: Any) -> str:
    if not isinstance(v, str) or not _IDENT.match(v):
        raise ValueError
    return v


def _table_name(v: Any) -> str:
    if not isinstance(v, str) or not all(_IDENT.match(p) for p in v.split(".")):
        raise ValueError
    if v.count(".") > 1:
        raise ValueError
    return v


EXPECTED_ID = (
    f"a non-empty string or integer of at most {MAX_ID_CHARS} characters, "
    "no control or bidi characters"
)
EXPECTED_BIB = (
    f"a string or integer of at most {MAX_BIB_CHARS} characters, no control or bidi characters"
)
EXPECTED_CATEGORY = f"a category of at most {MAX_CATEGORY_CHARS} characters, e.g. F40"
EXPECTED_START = (
    "the racer's own start, a date-time with a UTC offset, e.g. 2014-07-25T11:10:00-04:00"
)
EXPECTED_NAME = (
    f"a non-empty name of at most {MAX_NAME_CHARS} characters and no NUL "
    "(other control characters become spaces, bidi controls are removed)"
)


def _racer_id(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ValueError
    text = str(v)
    if _id_problem(text):
        raise ValueError
    return text


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError
    return v


def _id_problem(text: str, longest: int = MAX_ID_CHARS) -> bool:
    return (
        not text.strip()
        or len(text) > longest
        or any(_is_control(c) or c in BIDI_CONTROLS for c in text)
    )


def _category(v: Any) -> str:
    """Free text, cleaned as a name is (NUL refused, control and bidi
    characters out), at most MAX_CATEGORY_CHARS."""
    if not isinstance(v, str) or "\0" in v:
        raise ValueError
    text = _clean_name(v)
    if not text or len(text) > MAX_CATEGORY_CHARS:
        raise ValueError
    return text


def _bib(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ValueError
    text = str(v).strip()
    if _id_problem(text, MAX_BIB_CHARS):
        raise ValueError
    return text


def _racer_name(v: Any) -> str:
    """A registrant's name as published: control characters (tabs, line
    breaks, escapes) become spaces, bidi controls go, blanks are collapsed.
    NUL (a file in another encoding, or a probe) is refused, as is a name
    left empty or longer than MAX_NAME_CHARS."""
    if not isinstance(v, str) or "\0" in v:
        raise ValueError
    name = _clean_name(v)
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError
    return name


def _clean_name(text: str) -> str:
    kept = (" " if _is_control(c) else c for c in text if c not in BIDI_CONTROLS)
    return " ".join("".join(kept).split())


def _is_control(c: str) -> bool:
    """C0 and C1 controls, DEL, and the line and paragraph separators."""
    return unicodedata.category(c) in ("Cc", "Zl", "Zp")


def _names(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and _NAME.match(x) for x in v):
        raise ValueError
    return list(dict.fromkeys(v))


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError
        return v

    return conv


def _float_range(lo: float, hi: float) -> Callable[[Any], float]:
    def conv(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError
        return float(v)

    return conv


def _choice(*options: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if v not in options:
            raise ValueError
        return str(v)

    return conv


def _datetime(v: Any) -> datetime:
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if not isinstance(v, datetime) or v.tzinfo is None:
        raise ValueError
    # In UTC and within years 1970..9998: every time racepub derives from it
    # (an epoch second, the finish, a countdown) can then be represented.
    if not 1970 <= v.astimezone(UTC).year <= 9998:
        raise ValueError
    return v


def _file(base: Path) -> Callable[[Any], Path]:
    def conv(v: Any) -> Path:
        if not isinstance(v, str) or not v:
            raise ValueError
        p = base / v
        if not p.is_file():
            raise ValueError
        return p

    return conv


def _path(base: Path) -> Callable[[Any], Path]:
    """A file to be made (`racepub tiles` writes it): relative to the config."""

    def conv(v: Any) -> Path:
        if not isinstance(v, str) or not v or "\0" in v:
            raise ValueError
        return base / v

    return conv


def _dir(base: Path) -> Callable[[Any], Path]:
    def conv(v: Any) -> Path:
        if not isinstance(v, str) or not (base / v).is_dir():
            raise ValueError
        return base / v

    return conv


def _sink(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError
    if v.startswith("dir:") and len(v) > 4:
        return v
    m = re.match(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?$", v)
    if not m:
        raise ValueError
    return v


def _url(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^https?://[^\s/]+", v):
        raise ValueError
    return v


def _tiles(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith("https://") and not v.startswith("http://"):
        raise ValueError
    if not all(p in v for p in ("{z}", "{x}", "{y}")):
        raise ValueError
    return v


def _color(v: Any) -> str:
    if not isinstance(v, str) or not _COLOR.match(v):
        raise ValueError
    return v


# -- every race setting, declared once ------------------------------------------


@dataclass(frozen=True)
class Option:
    """A race setting, declared once: its key (the Race field of that name),
    how a value is checked (given the config file's directory, for paths),
    what is expected (said in every error about it) and one line of help.
    Its default is the Race field's."""

    key: str
    check: Callable[[Path], Callable[[Any], Any]]
    expected: str
    help: str
    required: bool = False


def _plain(conv: Callable[[Any], Any]) -> Callable[[Path], Callable[[Any], Any]]:
    return lambda base: conv


def _ints(key: str, lo: int, hi: int, unit: str, help: str) -> Option:
    return Option(key, _plain(_int_range(lo, hi)), f"{unit} {lo}..{hi}", help)


def _floats(key: str, lo: float, hi: float, unit: str, help: str) -> Option:
    return Option(key, _plain(_float_range(lo, hi)), f"{unit} {lo:g}..{hi:g}", help)


RACE_OPTIONS: tuple[Option, ...] = (
    Option("title", _plain(_text), "a non-empty string", "the race's name on the page"),
    Option(
        "starts_at",
        _plain(_datetime),
        "a date-time with a UTC offset between 1970 and 9998, e.g. 2014-07-25T11:00:00-04:00",
        "nothing before it is published",
        required=True,
    ),
    Option(
        "ends_at",
        _plain(_datetime),
        "a date-time with a UTC offset between 1970 and 9998",
        "optional cut-off: the race is finished then",
    ),
    Option(
        "course",
        _file,
        "a GPX file (relative to the config file)",
        "the course: a GPX track or route",
        required=True,
    ),
    _ints("interval_s", 1, 3600, "whole seconds", "how often the race is published"),
    Option(
        "sink",
        _plain(_sink),
        "s3://bucket/prefix or dir:PATH",
        "where the race is published",
        required=True,
    ),
    Option("units", _plain(_choice("km", "mi")), "km or mi", "the page's default units"),
    Option(
        "tiles",
        _plain(_tiles),
        "a tile URL template with {z}, {x} and {y}",
        "the map's tile server",
    ),
    Option("tile_attribution", _plain(_text), "a string", "credit for the tiles"),
    Option(
        "basemap",
        _path,
        "a PMTiles file made by racepub tiles (relative to the config file)",
        "the race's own map, drawn instead of tiles",
    ),
    _ints("laps", 1, 1000, "a whole number", "the course GPX is one lap, run this many times"),
    _ints(
        "default_pace_s_per_km",
        60,
        3600,
        "seconds a km",
        "with timing mats: a racer's pace before their first split",
    ),
    _ints("chunk_points", 2, 10000, "a whole number", "fixes per immutable track chunk"),
    _ints("stale_after_s", 1, 86400, "whole seconds", "no fix for this long: stale"),
    _floats("off_course_m", 10, 10000, "metres,", "further from the course: off_course"),
    _ints("pace_window_s", 10, 3600, "whole seconds", "pace from progress over this window"),
    _floats("max_accuracy_m", 1, 10000, "metres,", "less accurate fixes are dropped"),
    _floats("min_fix_spacing_s", 0, 60, "seconds,", "a racer's closer fixes are dropped"),
    Option(
        "template_dir",
        _dir,
        "a directory (relative to the config)",
        "your own index.html.j2, tried first",
    ),
    _ints(
        "finished_grace_s",
        0,
        7 * 86400,
        "whole seconds",
        "publish this long after the finish, then exit",
    ),
    _ints("shard_above", 0, 10_000_000, "a whole number", "more racers: the large form"),
    _ints("shard_size", 1, 100_000, "a whole number", "large races: racers per live shard"),
    _ints("head_size", 1, 1000, "a whole number", "large races: leaderboard rows"),
)
# Race keys read otherwise: tables and arrays of tables, and a file of racers.
RACE_TABLES = ("max_kmh", "racers", "checkpoints", "racers_file")
