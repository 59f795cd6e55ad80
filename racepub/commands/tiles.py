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

import bisect
import gzip
import json
import math
import mmap
import sqlite3
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pmtiles.convert import mbtiles_to_header_json
from pmtiles.tile import Compression, HeaderDict, TileType, deserialize_header, zxy_to_tileid
from pmtiles.writer import Writer

from ..errors import UsageError
from ..inflate import TooLarge, inflate
from ..model.course import Course

DEFAULT_ZOOMS = (10, 17)
DEFAULT_MARGIN_M = 1500.0
MAX_TILES = 200_000  # a cut this big is not a race's area: a mistake in zooms or margin
# An archive is a stranger's file: what it holds is read with limits. Real
# directories and metadata are KBs inflated (a directory entry is a few
# bytes), and real tiles well under a MB.
MAX_INFLATED = 8 << 20  # a directory, or the metadata
MAX_TILE = 16 << 20
HEADER_LEN = 127
RASTER = (TileType.PNG, TileType.JPEG, TileType.WEBP, TileType.AVIF)


class Archive(Protocol):
    tile_type: TileType
    compression: Compression
    max_zoom: int
    metadata: dict[str, Any]

    def get(self, z: int, x: int, y: int) -> bytes | None: ...


@dataclass(frozen=True)
class _Directory:
    """A PMTiles directory as four columns (no Python object per entry)."""

    tile_ids: array[int]
    run_lengths: array[int]
    lengths: array[int]
    offsets: array[int]

    def find(self, tile_id: int) -> int | None:
        """The entry holding tile_id (or the leaf that may), as the spec finds it."""
        n = bisect.bisect_right(self.tile_ids, tile_id) - 1
        if n < 0:
            return None
        if self.tile_ids[n] == tile_id or self.run_lengths[n] == 0:
            return n
        return n if tile_id - self.tile_ids[n] < self.run_lengths[n] else None


class PMTilesReader:
    """A PMTiles v3 archive in a buffer (a file's mmap, or its bytes), every
    offset and length checked against the buffer, directories and metadata
    inflated with a limit. Anything that does not hold is a UsageError
    naming the file: one line, whatever the archive holds."""

    def __init__(self, buf: bytes | mmap.mmap, name: str):
        self.buf, self.name = buf, name
        self.header = self._header()
        self._root = self._directory(self.header["root_offset"], self.header["root_length"])
        self._leaves: dict[tuple[int, int], _Directory] = {}

    def damaged(self, why: str) -> UsageError:
        return UsageError(f"{self.name} is not a PMTiles archive racepub can read: {why}")

    def _header(self) -> HeaderDict:
        raw = bytes(self.buf[:HEADER_LEN])
        if len(raw) < HEADER_LEN:
            raise self.damaged(f"{len(raw)} bytes, shorter than a header ({HEADER_LEN})")
        for at, what in ((97, "directory compression"), (98, "tile compression")):
            if raw[at] not in {c.value for c in Compression}:
                raise self.damaged(f"unknown {what} {raw[at]}")
        if raw[99] not in {t.value for t in TileType}:
            raise self.damaged(f"unknown tile type {raw[99]}")
        header = deserialize_header(raw)
        if header["internal_compression"] not in (Compression.NONE, Compression.GZIP):
            raise self.damaged(
                f"directories compressed with {header['internal_compression'].name.lower()}; "
                "racepub reads gzip or none (pmtiles convert)"
            )
        if header["tile_type"] not in (*RASTER, TileType.MVT):
            raise self.damaged(
                f"{header['tile_type'].name.lower()} tiles; the page draws PNG, JPEG, "
                "WebP, AVIF or MVT"
            )
        for what, offset, length in (
            ("root directory", header["root_offset"], header["root_length"]),
            ("metadata", header["metadata_offset"], header["metadata_length"]),
            ("leaf directories", header["leaf_directory_offset"], header["leaf_directory_length"]),
            ("tile data", header["tile_data_offset"], header["tile_data_length"]),
        ):
            if offset + length > len(self.buf):
                raise self.damaged(
                    f"its {what} ({length:,} bytes at {offset:,}) would end past the "
                    f"end of the file ({len(self.buf):,} bytes): cut short or damaged"
                )
        if header["min_zoom"] > header["max_zoom"] or header["max_zoom"] > 31:
            raise self.damaged(f"zooms {header['min_zoom']}-{header['max_zoom']}")
        return header

    def _section(self, offset: int, length: int, what: str) -> bytes | bytearray:
        """A directory or the metadata, inflated (at most MAX_INFLATED bytes)."""
        if offset + length > len(self.buf):
            raise self.damaged(f"a {what} past the end of the file")
        data = self.buf[offset : offset + length]
        if self.header["internal_compression"] == Compression.NONE:
            if len(data) > MAX_INFLATED:
                raise self.damaged(f"a {what} of more than {MAX_INFLATED:,} bytes")
            return data
        try:
            return inflate(data, MAX_INFLATED)
        except TooLarge:
            raise self.damaged(
                f"a {what} that inflates to more than {MAX_INFLATED:,} bytes"
            ) from None
        except zlib.error:
            raise self.damaged(f"a {what} that is not gzip") from None

    def _directory(self, offset: int, length: int) -> _Directory:
        data = self._section(offset, length, "directory")
        columns = _varints(data)
        if columns is None:
            raise self.damaged("a directory that does not decode")
        ids, runs, lengths, offsets = columns
        for i in range(len(ids)):
            if i and ids[i] <= ids[i - 1] or lengths[i] == 0:
                raise self.damaged("a directory whose entries are out of order or empty")
        return _Directory(ids, runs, lengths, offsets)

    def metadata(self) -> dict[str, Any]:
        data = self._section(
            self.header["metadata_offset"], self.header["metadata_length"], "metadata"
        )
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise self.damaged("its metadata is not JSON") from None
        if not isinstance(doc, dict):
            raise self.damaged(f"its metadata is a JSON {type(doc).__name__}, not an object")
        return doc

    def get(self, z: int, x: int, y: int) -> bytes | None:
        tile_id = zxy_to_tileid(z, x, y)
        directory = self._root
        for _ in range(4):  # the spec's deepest
            n = directory.find(tile_id)
            if n is None:
                return None
            offset, length = directory.offsets[n], directory.lengths[n]
            if directory.run_lengths[n]:
                start = self.header["tile_data_offset"] + offset
                if length > MAX_TILE or offset + length > self.header["tile_data_length"]:
                    raise self.damaged(f"tile {z}/{x}/{y} of {length:,} bytes at {offset:,}")
                return bytes(self.buf[start : start + length])
            key = (offset, length)
            if key not in self._leaves:
                if offset + length > self.header["leaf_directory_length"]:
                    raise self.damaged(f"a leaf directory of {length:,} bytes at {offset:,}")
                if len(self._leaves) >= 64:
                    self._leaves.clear()
                self._leaves[key] = self._directory(
                    self.header["leaf_directory_offset"] + offset, length
                )
            directory = self._leaves[key]
        raise self.damaged("directories nested deeper than four")


def _varints(
    data: bytes | bytearray,
) -> tuple[array[int], array[int], array[int], array[int]] | None:
    """A directory's entries (the spec: a count, then tile-id deltas, run
    lengths, lengths and offsets, each a column of varints). None if it
    does not decode."""
    pos, end = 0, len(data)

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise IndexError
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    try:
        count = varint()
        if count > (end - pos) // 4:  # each entry takes four bytes at least
            return None
        ids, runs, lengths, offsets = (array("Q") for _ in range(4))
        last = 0
        for _ in range(count):
            last += varint()
            ids.append(last)
        for _ in range(count):
            runs.append(varint())
        for _ in range(count):
            lengths.append(varint())
        for i in range(count):
            value = varint()
            if value:
                offsets.append(value - 1)
            elif i:
                offsets.append(offsets[i - 1] + lengths[i - 1])
            else:
                return None
    except (IndexError, OverflowError):
        return None
    return ids, runs, lengths, offsets


@dataclass
class _PMTiles:
    reader: PMTilesReader
    tile_type: TileType
    compression: Compression
    max_zoom: int
    metadata: dict[str, Any]

    def get(self, z: int, x: int, y: int) -> bytes | None:
        return self.reader.get(z, x, y)


# One statement of an MBTiles file at most this long, and all of them
# together: its `tiles` or `metadata` may be a view of the file's making,
# one without end, or slow on purpose. (An indexed tile takes a millisecond.)
QUERY_S = 5.0
ARCHIVE_S = 600.0


def _watch(conn: sqlite3.Connection) -> Callable[[], None]:
    """Bound each statement on conn to QUERY_S, and all to ARCHIVE_S; call
    the result before each. No value the file hands over is larger than a
    tile may be (a view of zeroblob(1e9) would be a GB)."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_TILE + 1)
    end = time.monotonic() + ARCHIVE_S
    deadline = [0.0]
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline[0]), 10_000)

    def restart() -> None:
        deadline[0] = min(time.monotonic() + QUERY_S, end)

    return restart


def _said(e: sqlite3.Error) -> str:
    if str(e) == "interrupted":
        return (
            f"a query of it ran past {QUERY_S:.0f} s, or all of them past "
            f"{ARCHIVE_S:.0f} s (a view without end?)"
        )
    return f"{type(e).__name__}: {e}"


@dataclass
class _MBTiles:
    path: Path
    conn: sqlite3.Connection
    tile_type: TileType
    compression: Compression
    max_zoom: int
    metadata: dict[str, Any]
    restart: Callable[[], None]

    def get(self, z: int, x: int, y: int) -> bytes | None:
        self.restart()
        try:
            row = self.conn.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? "
                "AND tile_row = ?",
                (z, x, (1 << z) - 1 - y),
            ).fetchone()  # rows count from the south
        except sqlite3.Error as e:
            raise UsageError(f"{self.path}: cannot read tile {z}/{x}/{y}: {_said(e)}") from None
        if row is None:
            return None
        data = row[0]
        if not isinstance(data, bytes):  # NULL, text, a number: not a tile
            kind = "NULL" if data is None else type(data).__name__
            raise UsageError(
                f"{self.path} is not an MBTiles file racepub can read: tile {z}/{x}/{y} "
                f"is {kind}, not a blob"
            )
        if len(data) > MAX_TILE:
            raise UsageError(f"{self.path}: tile {z}/{x}/{y} is {len(data):,} bytes")
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
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            reader = PMTilesReader(buf, str(path))
            yield _PMTiles(
                reader,
                reader.header["tile_type"],
                reader.header["tile_compression"],
                reader.header["max_zoom"],
                reader.metadata(),
            )
        return
    if not magic.startswith(b"SQLite format 3\0"):
        raise UsageError(f"{path} is neither a PMTiles archive nor an MBTiles file")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    # Views and triggers in the file call no SQL function with side effects.
    conn.execute("PRAGMA trusted_schema = OFF")
    restart = _watch(conn)
    try:
        try:
            restart()
            meta = dict(conn.execute("SELECT name, value FROM metadata").fetchmany(10_000))
            restart()
            low, high = conn.execute(
                "SELECT min(zoom_level), max(zoom_level) FROM tiles"
            ).fetchone()
            meta.setdefault("minzoom", low or 0)
            meta.setdefault("maxzoom", high or 0)
            if meta.get("format") == "jpg":  # the MBTiles spec's name for it
                meta["format"] = "jpeg"
            header, metadata = mbtiles_to_header_json(meta)
            max_zoom = int(high or 0)
        except (sqlite3.Error, KeyError, ValueError, TypeError, AttributeError) as e:
            said = _said(e) if isinstance(e, sqlite3.Error) else f"{type(e).__name__}: {e}"
            raise UsageError(f"{path} is not an MBTiles file racepub can read: {said}") from None
        if header["tile_type"] not in (*RASTER, TileType.MVT):
            raise UsageError(
                f"{path} is not an MBTiles file racepub can read: format "
                f"{meta.get('format')!r}; the page draws png, jpeg, webp, avif or pbf"
            )
        yield _MBTiles(
            path,
            conn,
            header["tile_type"],
            header["tile_compression"],
            max_zoom,
            metadata,
            restart,
        )
    finally:
        conn.close()


def bbox(course: Course, margin_m: float) -> tuple[float, float, float, float]:
    """The course's extent and a margin: (west, south, east, north) in degrees."""
    lats = [p[0] for p in course.points]
    lons = [p[1] for p in course.points]
    dlat = min(180.0, margin_m / 111_320.0)
    middle = math.cos(math.radians((min(lats) + max(lats)) / 2))
    dlon = min(360.0, margin_m / (111_320.0 * max(1e-9, middle)))
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


def tile_count(box: tuple[float, float, float, float], zooms: tuple[int, int]) -> int:
    """How many tiles cover the box at these zooms, without listing them."""
    total = 0
    for z in range(zooms[0], zooms[1] + 1):
        xs, ys = tile_range(*box, z)
        total += len(xs) * len(ys)
    return total


def writable(out: Path) -> None:
    """A file can be written at out (checked before any work is done)."""
    if out.is_dir():
        raise UsageError(f"{out} is a folder: name the file to write, e.g. {out / 'race.pmtiles'}")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: there is no folder {out.parent}")


# What the cut keeps of the source's metadata, and the JSON type each must be.
KEPT_METADATA = {
    "name": str,
    "attribution": str,
    "description": str,
    "version": str,
    "type": str,
    "vector_layers": list,
}


def cut(
    source: Path,
    out: Path,
    course: Course,
    zooms: tuple[int, int] = DEFAULT_ZOOMS,
    margin_m: float = DEFAULT_MARGIN_M,
) -> Cut:
    box = west, south, east, north = bbox(course, margin_m)
    writable(out)
    with open_archive(source) as archive:
        top = min(zooms[1], archive.max_zoom)
        if top < zooms[0]:
            raise UsageError(
                f"{source} has no zoom from {zooms[0]} (its deepest is {archive.max_zoom})"
            )
        count = tile_count(box, (zooms[0], top))
        if count > MAX_TILES:
            raise UsageError(
                f"the course's area at zooms {zooms[0]}-{top} is {count:,} "
                f"tiles (more than {MAX_TILES:,}): fewer zooms or less margin"
            )
        wanted = []
        for z in range(zooms[0], top + 1):
            xs, ys = tile_range(*box, z)
            wanted += [(zxy_to_tileid(z, x, y), z, x, y) for x in xs for y in ys]
        wanted.sort()
        tmp = out.with_name(f".{out.name}.part")
        written = missing = 0
        try:
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
                metadata: dict[str, Any] = {
                    k: v
                    for k, v in archive.metadata.items()
                    if k in KEPT_METADATA and isinstance(v, KEPT_METADATA[k])
                }
                metadata["racepub"] = {"source": source.name, "margin_m": margin_m}
                writer.finalize(header, metadata)
            tmp.replace(out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
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
    """A cut archive, as the publisher uploads it: read with the same
    limits as any archive (UsageError, one line, for anything else)."""
    try:
        body = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the basemap {path}: {e.strerror}") from None
    if not (body.startswith(b"PMTiles") and len(body) > 7 and body[7] == 3):
        raise UsageError(f"{path} is not a PMTiles (v3) archive: make it with racepub tiles")
    reader = PMTilesReader(body, f"the basemap {path}")
    header = reader.header
    attribution = reader.metadata().get("attribution")
    return Basemap(
        body,
        header["tile_type"].name.lower(),
        header["min_zoom"],
        header["max_zoom"],
        (
            header["min_lon_e7"] / 1e7,
            header["min_lat_e7"] / 1e7,
            header["max_lon_e7"] / 1e7,
            header["max_lat_e7"] / 1e7,
        ),
        attribution if isinstance(attribution, str) else None,
    )
