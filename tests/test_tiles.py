"""The race's own basemap (tiles.py): the course's area cut out of a larger
archive (PMTiles or MBTiles) built here with the pmtiles package from
generated tiles, uploaded by the publisher, and drawn by the page in
Chromium from the page's own origin, with no request anywhere else."""

from __future__ import annotations

import gzip
import io
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mapbox_vector_tile
import numpy as np
import pytest
from PIL import Image
from pmtiles.reader import MmapSource, Reader
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from racepub.commands.tiles import bbox, cut, tile_range
from racepub.errors import UsageError
from racepub.model.course import Course
from tests.helpers import STOPS, RaceSetup
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
