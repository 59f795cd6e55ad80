"""The race's own basemap (tiles.py): the course's area cut out of a larger
archive (PMTiles or MBTiles) built here with the pmtiles package from
generated tiles, uploaded by the publisher, and drawn by the page in
Chromium from the page's own origin, with no request anywhere else.
Hostile archives, built here byte by byte, are refused in one line (exit
2) in bounded memory."""

from __future__ import annotations

import functools
import gzip
import io
import json
import sqlite3
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mapbox_vector_tile
import numpy as np
import pytest
from PIL import Image
from pmtiles.reader import MmapSource, Reader
from pmtiles.tile import (
    Compression,
    Entry,
    TileType,
    serialize_directory,
    serialize_header,
    zxy_to_tileid,
)
from pmtiles.writer import Writer

from racepub.cli import main
from racepub.commands.tiles import HEADER_LEN, bbox, cut, load_basemap, tile_range
from racepub.errors import UsageError
from racepub.model.course import Course
from tests.helpers import STOPS, RaceSetup, Ran, run_measured, write_race
from tests.test_page import ARTIFACTS, LiveRace, publish_live

COLOUR = (200, 30, 160)  # no real map has it: map pixels of it are the basemap's
FAR_AWAY = (10, 300, 380)  # a z10 tile over Europe: never in a Boston cut


def png(rgb: tuple[int, int, int], size: int = 256) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(out, "PNG")
    return out.getvalue()


def share_of_colour(png_bytes: bytes, rgb: tuple[int, int, int], tolerance: int = 12) -> float:
    """How much of an image is (about) one colour."""
    pixels = np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"), dtype=np.int16)
    near = (np.abs(pixels - np.array(rgb, dtype=np.int16)) <= tolerance).all(axis=2)
    return float(near.mean())


def tiles_over_boston(zooms: range) -> list[tuple[int, int, int]]:
    """Every tile of a box 10 km around the course, and one far away."""
    west, south, east, north = bbox(Course(STOPS), 10_000)
    out = [FAR_AWAY]
    for z in zooms:
        xs, ys = tile_range(west, south, east, north, z)
        out += [(z, x, y) for x in xs for y in ys]
    return out


def tile_body(z: int, x: int, y: int) -> bytes:
    """Each tile its own bytes (identical ones would be shared): which tile it is."""
    return png(COLOUR, 16) + struct.pack(">III", z, x, y)


def write_source_pmtiles(path: Path, zooms: range) -> list[tuple[int, int, int]]:
    tiles = sorted(tiles_over_boston(zooms), key=lambda t: zxy_to_tileid(*t))
    with open(path, "wb") as f:
        writer = Writer(f)
        for z, x, y in tiles:
            writer.write_tile(zxy_to_tileid(z, x, y), png(COLOUR))
        writer.finalize(
            {
                "tile_type": TileType.PNG,
                "tile_compression": Compression.NONE,
                "min_lon_e7": -1800000000,
                "min_lat_e7": -850000000,
                "max_lon_e7": 1800000000,
                "max_lat_e7": 850000000,
                "center_zoom": 10,
                "center_lon_e7": 0,
                "center_lat_e7": 0,
            },
            {"attribution": "Generated tiles", "name": "test area"},
        )
    return tiles


def read(path: Path) -> tuple[dict[str, Any], dict[tuple[int, int, int], bytes]]:
    from pmtiles.reader import all_tiles

    with open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        header = reader.header()
        return header, {zxy: bytes(data) for zxy, data in all_tiles(MmapSource(f))}


def test_cut_keeps_the_course_area_and_nothing_else(tmp_path: Path) -> None:
    source = tmp_path / "area.pmtiles"
    write_source_pmtiles(source, range(10, 16))
    course = Course(STOPS)
    out = tmp_path / "t.pmtiles"
    done = cut(source, out, course, (12, 17), margin_m=500)
    header, tiles = read(out)
    assert done.zooms == (12, 15)  # the source has nothing deeper
    assert header["min_zoom"] == 12 and header["max_zoom"] == 15
    assert header["tile_type"] == TileType.PNG and done.tile_type == "png"
    west, south, east, north = bbox(course, 500)
    expected = set()
    for z in range(12, 16):
        xs, ys = tile_range(west, south, east, north, z)
        expected |= {(z, x, y) for x in xs for y in ys}
    assert set(tiles) == expected and done.tiles == len(expected)
    assert FAR_AWAY not in tiles
    assert all(body == png(COLOUR) for body in tiles.values())  # copied as they are
    # The course is inside the archive's bounds.
    for lat, lon in STOPS:
        assert header["min_lat_e7"] / 1e7 < lat < header["max_lat_e7"] / 1e7
        assert header["min_lon_e7"] / 1e7 < lon < header["max_lon_e7"] / 1e7


def test_cut_from_mbtiles_flips_rows(tmp_path: Path) -> None:
    """MBTiles number rows from the south (TMS): the cut has them from the north."""
    source = tmp_path / "area.mbtiles"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE metadata (name text, value text)")
    conn.execute(
        "CREATE TABLE tiles (zoom_level integer, tile_column integer, "
        "tile_row integer, tile_data blob)"
    )
    conn.executemany(
        "INSERT INTO metadata VALUES (?, ?)",
        [
            ("format", "png"),
            ("minzoom", "13"),
            ("maxzoom", "16"),
            ("attribution", "Generated tiles"),
        ],
    )
    tiles = [t for t in tiles_over_boston(range(13, 17)) if t != FAR_AWAY]
    conn.executemany(
        "INSERT INTO tiles VALUES (?, ?, ?, ?)",
        [(z, x, (1 << z) - 1 - y, tile_body(z, x, y)) for z, x, y in tiles],
    )
    conn.commit()
    conn.close()
    out = tmp_path / "t.pmtiles"
    done = cut(source, out, Course(STOPS), (13, 16), margin_m=200)
    _, got = read(out)
    assert done.tiles == len(got) > 10
    for (z, x, y), body in got.items():
        assert body == tile_body(z, x, y)


def test_what_cannot_be_cut_says_why(tmp_path: Path) -> None:
    course = Course(STOPS)
    not_tiles = tmp_path / "notes.txt"
    not_tiles.write_text("hello")
    with pytest.raises(UsageError, match="neither a PMTiles archive nor an MBTiles file"):
        cut(not_tiles, tmp_path / "x.pmtiles", course)
    elsewhere = tmp_path / "elsewhere.pmtiles"
    with open(elsewhere, "wb") as f:
        writer = Writer(f)
        writer.write_tile(zxy_to_tileid(*FAR_AWAY), png(COLOUR))
        writer.finalize(
            {
                "tile_type": TileType.PNG,
                "tile_compression": Compression.NONE,
                "min_lon_e7": 0,
                "min_lat_e7": 0,
                "max_lon_e7": 0,
                "max_lat_e7": 0,
                "center_zoom": 10,
                "center_lon_e7": 0,
                "center_lat_e7": 0,
            },
            {},
        )
    with pytest.raises(UsageError, match="has no tiles over the course"):
        cut(elsewhere, tmp_path / "x.pmtiles", course, (10, 10))
    assert not (tmp_path / "x.pmtiles").exists() and not list(tmp_path.glob(".x*"))


def elsewhere(page: Any, url: str) -> list[str]:
    """What the page asked of any origin but its own (data: and blob: are its own)."""
    origin = urlsplit(url)[:2]
    return [
        u
        for u in page.requests
        if not u.startswith(("data:", "blob:")) and urlsplit(u)[:2] != origin
    ]


def race_on_basemap(
    tmp_path: Path, dsn: str, moto_server: str, make: Callable[[RaceSetup], object]
) -> Iterator[LiveRace]:
    """A one-racer race published with the basemap `make` writes as t.pmtiles."""
    racers = '\n[[races.t.racers]]\nid = "1001"\nname = "Michael"\n'
    yield from publish_live(
        tmp_path, dsn, moto_server, racers, 'basemap = "t.pmtiles"', {"1001": 3.0}, before=make
    )


@pytest.fixture
def race_with_basemap(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None
) -> Iterator[LiveRace]:
    """`racepub tiles` as an organizer runs it, then the race published with it."""
    source = tmp_path / "area.pmtiles"
    write_source_pmtiles(source, range(10, 16))
    yield from race_on_basemap(
        tmp_path, dsn, moto_server, lambda setup: _tiles_cli(setup.path, source)
    )


def _tiles_cli(config: Path, source: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "racepub",
            "tiles",
            "--race",
            "t",
            "--config",
            str(config),
            "--from",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "png tiles, zooms 10-15" in done.stdout
    assert (config.parent / "t.pmtiles").exists()


def write_vector_pmtiles(path: Path, zooms: range) -> None:
    """Vector tiles in the Protomaps basemap schema: land everywhere, water
    over each tile's western half (so the drawn map is two colours)."""
    tiles = sorted(tiles_over_boston(zooms), key=lambda t: zxy_to_tileid(*t))
    body = gzip.compress(
        mapbox_vector_tile.encode(
            [
                {
                    "name": "earth",
                    "features": [
                        {
                            "geometry": "POLYGON ((0 0, 4096 0, 4096 4096, 0 4096, 0 0))",
                            "properties": {},
                        }
                    ],
                },
                {
                    "name": "water",
                    "features": [
                        {
                            "geometry": "POLYGON ((0 0, 2048 0, 2048 4096, 0 4096, 0 0))",
                            "properties": {"kind": "water"},
                        }
                    ],
                },
            ],
            default_options={"y_coord_down": True},
        ),
        mtime=0,
    )
    with open(path, "wb") as f:
        writer = Writer(f)
        for z, x, y in tiles:
            writer.write_tile(zxy_to_tileid(z, x, y), body)
        writer.finalize(
            {
                "tile_type": TileType.MVT,
                "tile_compression": Compression.GZIP,
                "min_lon_e7": -1800000000,
                "min_lat_e7": -850000000,
                "max_lon_e7": 1800000000,
                "max_lat_e7": 850000000,
                "center_zoom": 10,
                "center_lon_e7": 0,
                "center_lat_e7": 0,
            },
            {
                "attribution": "Generated tiles",
                "vector_layers": [{"id": "earth", "fields": {}}, {"id": "water", "fields": {}}],
            },
        )


@pytest.fixture
def race_with_vector_basemap(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None
) -> Iterator[LiveRace]:
    source = tmp_path / "area.pmtiles"
    write_vector_pmtiles(source, range(12, 16))
    yield from race_on_basemap(
        tmp_path,
        dsn,
        moto_server,
        lambda setup: cut(source, setup.path.parent / "t.pmtiles", setup.course, (12, 15)),
    )


def test_page_draws_a_vector_basemap_from_its_own_origin(
    race_with_vector_basemap: LiveRace, open_page: Any
) -> None:
    page = open_page(race_with_vector_basemap.url)
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    page.wait_for_timeout(500)
    others = elsewhere(page, race_with_vector_basemap.url)
    assert others == []
    assert page.locator("canvas.leaflet-tile").count() >= 4  # drawn here, from vectors
    # Land and water, each over a good part of the map (and not the page's grey).
    pixels = np.asarray(
        Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB"), dtype=np.int16
    )
    blue = (pixels[:, :, 2] > pixels[:, :, 0] + 15).mean()
    assert 0.2 < blue < 0.8, blue


@pytest.mark.slow
def test_page_draws_the_races_own_basemap_from_its_own_origin(
    race_with_basemap: LiveRace, open_page: Any
) -> None:
    page = open_page(race_with_basemap.url)
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    page.wait_for_timeout(300)
    others = elsewhere(page, race_with_basemap.url)
    assert others == []  # not a single request to anyone but the page's origin
    assert any("/basemap/" in u and u.endswith(".pmtiles") for u in page.requests)
    # The map under the course is the basemap's colour, not blank.
    shot = page.locator("#map").screenshot()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "page-own-basemap.png").write_bytes(shot)
    assert share_of_colour(shot, COLOUR) > 0.3
    csp = page.locator("meta[http-equiv='Content-Security-Policy']").get_attribute("content")
    assert "http" not in csp  # 'self' (and data:, blob:) everywhere


# Hostile archives. An archive is a stranger's file (a download, a colleague's
# extract): whatever it holds, `racepub tiles` and the publisher's
# load_basemap say what is wrong in one line and exit 2, in bounded memory.

CONFIG_DSN = "postgresql://racepub@127.0.0.1:1/app"  # never connected to


def archive_bytes(
    *, metadata: bytes | None = None, root: bytes | None = None, **header: Any
) -> bytearray:
    """A small PMTiles v3 archive of Boston at z12-13, put together by hand
    so that any part of it can be what no writer would write."""
    tile = png(COLOUR, 16)
    ids = sorted(zxy_to_tileid(*t) for t in tiles_over_boston(range(12, 14)) if t != FAR_AWAY)
    root = serialize_directory([Entry(i, 0, len(tile), 1) for i in ids]) if root is None else root
    if metadata is None:
        metadata = gzip.compress(json.dumps({"attribution": "Generated tiles"}).encode())
    after = HEADER_LEN + len(root) + len(metadata)
    fields: dict[str, Any] = {
        "tile_type": TileType.PNG,
        "tile_compression": Compression.NONE,
        "internal_compression": Compression.GZIP,
        "clustered": True,
        "root_offset": HEADER_LEN,
        "root_length": len(root),
        "metadata_offset": HEADER_LEN + len(root),
        "metadata_length": len(metadata),
        "leaf_directory_offset": after,
        "leaf_directory_length": 0,
        "tile_data_offset": after,
        "tile_data_length": len(tile),
        "min_zoom": 12,
        "max_zoom": 13,
        "min_lon_e7": -1800000000,
        "min_lat_e7": -850000000,
        "max_lon_e7": 1800000000,
        "max_lat_e7": 850000000,
        "center_zoom": 12,
        "center_lon_e7": 0,
        "center_lat_e7": 0,
        **header,
    }
    return bytearray(serialize_header(fields)) + root + metadata + tile  # type: ignore[arg-type]


def patched(at: int, value: int) -> bytearray:
    data = archive_bytes()
    data[at] = value
    return data


@functools.cache
def gzip_of_json_string(inflated_mb: int) -> bytes:
    """{"attribution": "aaaa…"}: inflated_mb MB of JSON, gzipped (~1/1000)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"a" * (1 << 20)
    parts = [packer.compress(b'{"attribution": "')]
    parts += [packer.compress(block) for _ in range(inflated_mb)]
    return b"".join(parts) + packer.compress(b'"}') + packer.flush()


@functools.cache
def gzip_of_zeros(inflated_mb: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(inflated_mb)) + packer.flush()


def mbtiles_with(tile_data: object) -> Callable[[Path], None]:
    """An MBTiles file over Boston whose tiles hold tile_data."""

    def write(path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE metadata (name text, value text)")
        conn.execute(
            "CREATE TABLE tiles (zoom_level integer, tile_column integer, "
            "tile_row integer, tile_data blob)"
        )
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", [("format", "png")])
        tiles = [t for t in tiles_over_boston(range(13, 14)) if t != FAR_AWAY]
        conn.executemany(
            "INSERT INTO tiles VALUES (?, ?, ?, ?)",
            [(z, x, (1 << z) - 1 - y, tile_data) for z, x, y in tiles],
        )
        conn.commit()
        conn.close()

    return write


def mbtiles_without_end(path: Path) -> None:
    """An MBTiles file whose `tiles` is a view that never ends."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE metadata (name text, value text)")
    conn.execute("INSERT INTO metadata VALUES ('format', 'png')")
    conn.execute(
        "CREATE VIEW tiles AS WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n) "
        "SELECT 13 AS zoom_level, i AS tile_column, i AS tile_row, x'00' AS tile_data FROM n"
    )
    conn.commit()
    conn.close()


def mbtiles_of_a_gigabyte(path: Path) -> None:
    """An MBTiles file whose every tile is a view's gigabyte of zeros."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE metadata (name text, value text)")
    conn.execute("INSERT INTO metadata VALUES ('format', 'png')")
    conn.execute("CREATE TABLE cells (zoom_level integer, tile_column integer, tile_row integer)")
    conn.executemany(
        "INSERT INTO cells VALUES (?, ?, ?)",
        [(z, x, (1 << z) - 1 - y) for z, x, y in tiles_over_boston(range(13, 14))],
    )
    conn.execute("CREATE VIEW tiles AS SELECT *, zeroblob(1000000000) AS tile_data FROM cells")
    conn.commit()
    conn.close()


def pmtiles_of(make: Callable[[], bytes | bytearray]) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(make())


# name: (writes the archive, what the one line says, load_basemap refuses it too)
HOSTILE: dict[str, tuple[Callable[[Path], object], str, bool]] = {
    "header cut short": (
        pmtiles_of(lambda: archive_bytes()[:60]),
        "60 bytes, shorter than a header",
        True,
    ),
    "unknown tile type": (pmtiles_of(lambda: patched(99, 77)), "unknown tile type 77", True),
    "unknown tile compression": (
        pmtiles_of(lambda: patched(98, 9)),
        "unknown tile compression 9",
        True,
    ),
    "unknown directory compression": (
        pmtiles_of(lambda: patched(97, 9)),
        "unknown directory compression 9",
        True,
    ),
    "directories in zstd": (
        pmtiles_of(lambda: archive_bytes(internal_compression=Compression.ZSTD)),
        "directories compressed with zstd",
        True,
    ),
    "tile type unknown (0)": (
        pmtiles_of(lambda: archive_bytes(tile_type=TileType.UNKNOWN)),
        "unknown tiles; the page draws",
        True,
    ),
    "2^63 offsets": (
        pmtiles_of(lambda: archive_bytes(root_offset=2**63, metadata_offset=2**63)),
        "would end past the end of the file",
        True,
    ),
    "metadata a JSON list": (
        pmtiles_of(lambda: archive_bytes(metadata=gzip.compress(b"[1, 2]"))),
        "its metadata is a JSON list, not an object",
        True,
    ),
    "metadata not JSON": (
        pmtiles_of(lambda: archive_bytes(metadata=gzip.compress(b"\xff\xfe{"))),
        "its metadata is not JSON",
        True,
    ),
    "metadata nested too deep": (
        pmtiles_of(lambda: archive_bytes(metadata=gzip.compress(b"[" * 200_000))),
        "its metadata is not JSON",
        True,
    ),
    "metadata not gzip": (
        pmtiles_of(lambda: archive_bytes(metadata=b'{"name": "x"}')),
        "a metadata that is not gzip",
        True,
    ),
    "root directory not gzip": (
        pmtiles_of(lambda: archive_bytes(root=b"\x00" * 40)),
        "a directory that is not gzip",
        True,
    ),
    "root directory that does not decode": (
        pmtiles_of(lambda: archive_bytes(root=gzip.compress(b"\xff" * 40))),
        "a directory that does not decode",
        True,
    ),
    "a tile past the end": (
        pmtiles_of(
            lambda: archive_bytes(
                root=serialize_directory(
                    [
                        Entry(zxy_to_tileid(*t), 2**40, 100, 1)
                        for t in sorted(
                            tiles_over_boston(range(12, 14)), key=lambda t: zxy_to_tileid(*t)
                        )
                        if t != FAR_AWAY
                    ]
                )
            )
        ),
        "of 100 bytes at 1,099,511,627,776",
        False,  # the publisher reads no tile of it: the page asks for them
    ),
    "MBTiles: NULL tile_data": (mbtiles_with(None), "is NULL, not a blob", False),
    "MBTiles: text tile_data": (mbtiles_with("a tile"), "is str, not a blob", False),
    # bytes(10**9) would have been a GB of zeros
    "MBTiles: a number as tile_data": (mbtiles_with(10**9), "is int, not a blob", False),
    # once: racepub tiles ran without end
    "MBTiles: a view without end": (mbtiles_without_end, "ran past 5 s", False),
    "MBTiles: a gigabyte a tile": (mbtiles_of_a_gigabyte, "string or blob too big", False),
}


def tiles_main(config: Path, source: Path, *more: str) -> int:
    return main(["tiles", "--race", "t", "--config", str(config), "--from", str(source), *more])


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_tiles_refuses_a_hostile_archive_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    write, said, basemap_too = HOSTILE[name]
    setup = write_race(tmp_path, CONFIG_DSN)
    source = tmp_path / ("area.mbtiles" if name.startswith("MBTiles") else "area.pmtiles")
    write(source)
    assert tiles_main(setup.path, source) == 2
    line = one_line(capsys.readouterr().err)
    assert str(source) in line and said in line, line
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "t.pmtiles").exists()
    if basemap_too:
        with pytest.raises(UsageError) as refused:
            load_basemap(source)
        assert len(refused.value.problems) == 1 and said in str(refused.value)


def test_a_hand_made_archive_cuts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The hostile archives above are this one with one thing wrong."""
    setup = write_race(tmp_path, CONFIG_DSN)
    source = tmp_path / "area.pmtiles"
    source.write_bytes(archive_bytes())
    assert tiles_main(setup.path, source, "--zooms", "12-13") == 0, capsys.readouterr().err
    header, tiles = read(tmp_path / "t.pmtiles")
    assert len(tiles) > 4 and set(tiles.values()) == {png(COLOUR, 16)}
    assert load_basemap(tmp_path / "t.pmtiles").attribution == "Generated tiles"


def test_tiles_names_a_bad_place_to_write_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_race(tmp_path, CONFIG_DSN)
    source = tmp_path / "area.pmtiles"
    source.write_bytes(archive_bytes())
    for out, said in (
        (tmp_path, f"{tmp_path} is a folder: name the file to write"),
        (tmp_path / "nowhere" / "t.pmtiles", f"there is no folder {tmp_path / 'nowhere'}"),
    ):
        assert tiles_main(setup.path, source, "--out", str(out)) == 2
        assert said in one_line(capsys.readouterr().err)
    assert tiles_main(setup.path, tmp_path) == 2  # --from a folder
    assert f"cannot read {tmp_path}" in one_line(capsys.readouterr().err)


def tiles_cli(config: Path, source: Path, *more: str) -> Ran:
    return run_measured(
        [
            sys.executable,
            "-m",
            "racepub",
            "tiles",
            "--race",
            "t",
            "--config",
            str(config),
            "--from",
            str(source),
            *more,
        ],
        timeout=120,
    )


@pytest.mark.parametrize(
    ("make", "said"),
    [
        # 204 KB that inflate to 200 MB of JSON: the old read held 449 MB.
        (
            lambda: archive_bytes(metadata=gzip_of_json_string(200)),
            "a metadata that inflates to more than",
        ),
        (lambda: archive_bytes(root=gzip_of_zeros(300)), "a directory that inflates to more than"),
    ],
    ids=["metadata", "root directory"],
)
def test_tiles_inflates_a_gzip_bomb_only_so_far(
    tmp_path: Path, make: Callable[[], bytearray], said: str
) -> None:
    setup = write_race(tmp_path, CONFIG_DSN)
    source = tmp_path / "area.pmtiles"
    source.write_bytes(make())
    ran = tiles_cli(setup.path, source)
    print(f"{source.stat().st_size:,} bytes: {ran.seconds:.1f} s, {ran.max_rss_mb:.0f} MB")
    assert ran.returncode == 2 and said in one_line(ran.stderr), ran
    assert ran.max_rss_mb < 100, ran.max_rss_mb
    # The publisher's read of the same file (as `racepub run` loads its basemap).
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=said):
            load_basemap(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6, peak


def test_tiles_counts_the_area_before_listing_it(tmp_path: Path) -> None:
    """2,000 km of margin at zooms 10-17: billions of tiles, refused at
    once (the old cut listed them first: over 60 s and 1.9 GB)."""
    setup = write_race(tmp_path, CONFIG_DSN)
    source = tmp_path / "area.pmtiles"
    write_source_pmtiles(source, range(10, 18))
    ran = tiles_cli(setup.path, source, "--margin-m", "2000000")
    print(f"{ran.seconds:.1f} s, {ran.max_rss_mb:.0f} MB")
    assert ran.returncode == 2, ran
    assert "tiles (more than 200,000): fewer zooms or less margin" in one_line(ran.stderr)
    assert ran.seconds < 20 and ran.max_rss_mb < 100, ran
