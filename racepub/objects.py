"""What each published object is: its Content-Type and Cache-Control, in one place.

Used by the publisher for S3 and by `racepub serve` for a directory sink, so a
preview sends the same headers the CDN would.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cached_property

from isal import igzip

SNAPSHOT = "snapshot.json"
PAGE = "index.html"
SUMMARY = "summary.json"  # what an event's page says of the race (shapes/event.py)
# The trails' packs (shapes/trails.py) never change; a large race's live
# shards and trail groups do, its rosters and name indexes never do (their
# names say what they hold: shapes/field.py).
SHARDS = "racers/"
TRAILS = "trails/"
PACKS = "packs/"
ROSTER = "roster/"
NAMES = "names/"
BASEMAP = "basemap/"
IMMUTABLE = "public, max-age=31536000, immutable"
PAGE_CACHE = "public, max-age=60"
# Compressing these pays off; images are compressed already.
COMPRESSIBLE = (
    "application/json",
    "text/html",
    "text/css",
    "text/javascript",
    "text/csv",
    "image/svg+xml",
)

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/json", ".json")
mimetypes.add_type("application/octet-stream", ".bin")


@dataclass(frozen=True)
class Object:
    key: str
    body: bytes
    content_type: str
    cache_control: str

    @cached_property
    def sha256(self) -> str:
        """Of the uncompressed body; computed once per object (the static
        files are made once per process and checked every cycle)."""
        return hashlib.sha256(self.body).hexdigest()

    @cached_property
    def gzipped(self) -> bytes:
        """The body gzip-compressed, once per object (static files: once per process)."""
        return gzip_bytes(self.body)

    @property
    def compressible(self) -> bool:
        return self.content_type.split(";")[0] in COMPRESSIBLE


# ISA-L's level 3 (its best): several times zlib's speed for a few per cent
# more bytes (DESIGN.md, Memory); a mass race compresses its shards every cycle.
GZIP_LEVEL = 3


def gzip_bytes(body: bytes) -> bytes:
    # mtime=0: the same body always compresses to the same bytes.
    return igzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def content_type(key: str) -> str:
    guessed = mimetypes.guess_type(key)[0] or "application/octet-stream"
    if guessed.startswith("text/"):
        return guessed + "; charset=utf-8"
    return guessed


def cache_control(key: str, interval_s: int) -> str:
    if key in (SNAPSHOT, SUMMARY) or key.startswith((SHARDS, TRAILS)):
        # Fresh for one interval; for CDNs (s-maxage) a second less, so the
        # copy a CDN fetched just after one publish has expired when the
        # spectators ask just after the next (DESIGN.md, "Freshness through
        # a CDN"); a CDN collapses their requests into one origin fetch. No
        # stale-while-revalidate: the first poll after expiry, the page's,
        # would get the old copy. Served stale for a day if the origin errors
        # (the page then says how old it is).
        cdn = max(1, interval_s - 1)
        return f"public, max-age={interval_s}, s-maxage={cdn}, stale-if-error=86400"
    if key.startswith(("static/", PACKS, ROSTER, NAMES, BASEMAP)):
        return IMMUTABLE
    return PAGE_CACHE


# -- object keys: every template in one place -------------------------------------


def shard_key(n: int | str) -> str:
    return f"{SHARDS}{n}.json"


def trail_key(n: int | str) -> str:
    return f"{TRAILS}{n}.json"


def pack_key(seq: int, token: str) -> str:
    return f"{PACKS}{seq}-{token}.bin"


def roster_key(digest: str, n: str) -> str:
    return f"{ROSTER}{digest}/{n}.json"


def names_key(digest: str, key: str) -> str:
    return f"{NAMES}{digest}/{key}.json"


def basemap_key(digest: str) -> str:
    """The cut basemap (tiles.py), read by range requests: stored as is."""
    return f"{BASEMAP}{digest}.pmtiles"


RESULTS_FINAL = "public, max-age=86400"
RESULTS_PROVISIONAL = "public, max-age=60"


def make_results(key: str, body: bytes, final: bool) -> Object:
    """results.*: kept a day once final; a minute while provisional."""
    return Object(key, body, content_type(key), RESULTS_FINAL if final else RESULTS_PROVISIONAL)


def make(key: str, body: bytes, interval_s: int) -> Object:
    return Object(key, body, content_type(key), cache_control(key, interval_s))
