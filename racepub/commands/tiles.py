"""A basemap from the race's own bucket: the course's area cut out of a larger
tile archive into one PMTiles file, which the publisher uploads once and the
page reads with HTTP range requests (the pmtiles library, vendored), so a
spectator's browser asks no third party for tiles, and no tile server's usage
policy limits a popular race.

`racepub tiles --race NAME --from SOURCE`: SOURCE is a PMTiles (v3) archive
or an MBTiles file, raster or vector. Tiles are copied as they are (no
re-encoding), in tile-id order (a clustered archive).
"""

from __future__ import annotations

import gzip
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pmtiles.convert import mbtiles_to_header_json
from pmtiles.reader import MmapSource, Reader
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from ..errors import UsageError
from ..model.course import Course

DEFAULT_ZOOMS = (10, 17)
DEFAULT_MARGIN_M = 1500.0
MAX_TILES = 200_000  # a cut this big is not a race's area: a mistake in zooms or margin


class Archive(Protocol):
    tile_type: TileType
    compression: Compression
    max_zoom: int
    metadata: dict[str, Any]

    def get(self, z: int, x: int, y: int) -> bytes | None: ...


@dataclass
class _PMTiles:
    reader: Reader
    tile_type: TileType
    compression: Compression
    max_zoom: int
    metadata: dict[str, Any]

    def get(self, z: int, x: int, y: int) -> bytes | None:
        data = self.reader.get(z, x, y)
        return None if data is None else bytes(data)


@dataclass
class _MBTiles:
    conn: sqlite3.Connection
    tile_type: TileType
    compression: Compression
    max_zoom: int
    metadata: dict[str, Any]

    def get(self, z: int, x: int, y: int) -> bytes | None:
        row = self.conn.execute(
            "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            (z, x, (1 << z) - 1 - y),
        ).fetchone()  # rows count from the south
        if row is None:
            return None
        data = bytes(row[0])
        if self.tile_type == TileType.MVT and not data.startswith(b"\x1f\x8b"):
            data = gzip.compress(data, mtime=0)  # vector tiles: stored gzipped, as declared
        return data


@contextmanager
def open_archive(path: Path) -> Iterator[Archive]:
    try:
        with open(path, "rb") as f:
            magic = f.read(16)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if magic.startswith(b"PMTiles") and len(magic) > 7:
        if magic[7] != 3:
            raise UsageError(
                f"{path} is a PMTiles archive of version {magic[7]}: convert it "
                "to version 3 (pmtiles convert)"
            )
        with open(path, "rb") as f:
            reader = Reader(MmapSource(f))
            header = reader.header()
            yield _PMTiles(
                reader,
                header["tile_type"],
                header["tile_compression"],
                header["max_zoom"],
                reader.metadata(),
            )
        return
    if not magic.startswith(b"SQLite format 3\0"):
        raise UsageError(f"{path} is neither a PMTiles archive nor an MBTiles file")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            meta = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
            low, max_zoom = conn.execute(
                "SELECT min(zoom_level), max(zoom_level) FROM tiles"
            ).fetchone()
            meta.setdefault("minzoom", low or 0)
            meta.setdefault("maxzoom", max_zoom or 0)
            if meta.get("format") == "jpg":  # the MBTiles spec's name for it
                meta["format"] = "jpeg"
            header, metadata = mbtiles_to_header_json(meta)
        except (sqlite3.Error, KeyError, ValueError) as e:
            raise UsageError(
                f"{path} is not an MBTiles file racepub can read: {type(e).__name__}: {e}"
            ) from None
        yield _MBTiles(
            conn, header["tile_type"], header["tile_compression"], int(max_zoom or 0), metadata
        )
    finally:
        conn.close()


def bbox(course: Course, margin_m: float) -> tuple[float, float, float, float]:
    """The course's extent and a margin: (west, south, east, north) in degrees."""
    lats = [p[0] for p in course.points]
    lons = [p[1] for p in course.points]
    dlat = margin_m / 111_320.0
    dlon = margin_m / (111_320.0 * math.cos(math.radians((min(lats) + max(lats)) / 2)))
    return min(lons) - dlon, min(lats) - dlat, max(lons) + dlon, max(lats) + dlat


def tile_range(west: float, south: float, east: float, north: float, z: int) -> tuple[range, range]:
    """The x and y of the tiles (web mercator, y from the north) covering a box."""
    n = 1 << z

    def x_of(lon: float) -> int:
        return min(n - 1, max(0, int((lon + 180.0) / 360.0 * n)))

    def y_of(lat: float) -> int:
        r = math.radians(max(-85.0511, min(85.0511, lat)))
        return min(n - 1, max(0, int((1 - math.asinh(math.tan(r)) / math.pi) / 2 * n)))

    return range(x_of(west), x_of(east) + 1), range(y_of(north), y_of(south) + 1)


@dataclass
class Cut:
    tiles: int  # written
    missing: int  # in the area, not in the source (sea, or beyond its zooms)
    bytes: int
    zooms: tuple[int, int]
    tile_type: str


def cut(
    source: Path,
    out: Path,
    course: Course,
    zooms: tuple[int, int] = DEFAULT_ZOOMS,
    margin_m: float = DEFAULT_MARGIN_M,
) -> Cut:
    west, south, east, north = bbox(course, margin_m)
    with open_archive(source) as archive:
        top = min(zooms[1], archive.max_zoom)
        if top < zooms[0]:
            raise UsageError(
                f"{source} has no zoom from {zooms[0]} (its deepest is {archive.max_zoom})"
            )
        wanted = []
        for z in range(zooms[0], top + 1):
            xs, ys = tile_range(west, south, east, north, z)
            wanted += [(zxy_to_tileid(z, x, y), z, x, y) for x in xs for y in ys]
        if len(wanted) > MAX_TILES:
            raise UsageError(
                f"the course's area at zooms {zooms[0]}-{top} is {len(wanted):,} "
                f"tiles (more than {MAX_TILES:,}): fewer zooms or less margin"
            )
        wanted.sort()
        tmp = out.with_name(f".{out.name}.part")
        written = missing = 0
        with open(tmp, "wb") as f:
            writer = Writer(f)
            for tile_id, z, x, y in wanted:
                data = archive.get(z, x, y)
                if data is None:
                    missing += 1
                    continue
                writer.write_tile(tile_id, data)
                written += 1
            if not written:
                f.close()
                tmp.unlink()
                raise UsageError(
                    f"{source} has no tiles over the course (west {west:.4f}, "
                    f"south {south:.4f}, east {east:.4f}, north {north:.4f}, "
                    f"zooms {zooms[0]}-{top})"
                )
            lat, lon = course.at(course.length_m / 2)
            header = {
                "tile_type": archive.tile_type,
                "tile_compression": archive.compression,
                "min_lon_e7": int(west * 1e7),
                "min_lat_e7": int(south * 1e7),
                "max_lon_e7": int(east * 1e7),
                "max_lat_e7": int(north * 1e7),
                "center_zoom": min(top, max(zooms[0], 14)),
                "center_lon_e7": int(lon * 1e7),
                "center_lat_e7": int(lat * 1e7),
            }
            metadata = {
                k: v
                for k, v in archive.metadata.items()
                if k in ("name", "attribution", "description", "version", "vector_layers", "type")
            }
            metadata["racepub"] = {"source": source.name, "margin_m": margin_m}
            writer.finalize(header, metadata)
        tmp.replace(out)
        return Cut(
            written, missing, out.stat().st_size, (zooms[0], top), archive.tile_type.name.lower()
        )


@dataclass(frozen=True)
class Basemap:
    """What the page needs to draw a cut basemap."""

    body: bytes
    tile_type: str  # png, jpeg, webp, avif, mvt
    min_zoom: int
    max_zoom: int
    bounds: tuple[float, float, float, float]  # west, south, east, north
    attribution: str | None

    @property
    def raster(self) -> bool:
        return self.tile_type != "mvt"


def load_basemap(path: Path) -> Basemap:
    """A cut archive, as the publisher uploads it."""
    try:
        body = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the basemap {path}: {e.strerror}") from None
    if not (body.startswith(b"PMTiles") and len(body) > 127 and body[7] == 3):
        raise UsageError(f"{path} is not a PMTiles (v3) archive: make it with racepub tiles")
    from pmtiles.reader import MemorySource

    reader = Reader(MemorySource(body))
    header = reader.header()
    metadata = reader.metadata()
    return Basemap(
        body,
        TileType(header["tile_type"]).name.lower(),
        header["min_zoom"],
        header["max_zoom"],
        (
            header["min_lon_e7"] / 1e7,
            header["min_lat_e7"] / 1e7,
            header["max_lon_e7"] / 1e7,
            header["max_lat_e7"] / 1e7,
        ),
        metadata.get("attribution"),
    )
