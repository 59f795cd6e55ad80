"""`racepub check --cdn URL`: does the CDN in front of the bucket do what
racepub needs? Asked from outside, as a spectator's phone asks, while
`racepub run` publishes: the snapshot is cached no longer than interval_s,
Content-Encoding: gzip arrives intact, query strings are not in the cache
key, static assets are cached, and the CDN's copy is not behind the
publisher. A FAIL line means spectators would see a stale or broken race.

Whatever answers at URL is a stranger: each answer is read within a time
limit and up to a size, inflated up to a size, and anything that is not
what racepub wrote ends the check with a FAIL line, never a traceback.
"""

from __future__ import annotations

import http.client
import re
import secrets
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson

from .. import objects
from ..config import Race
from ..errors import RacepubError
from ..inflate import TooLarge, inflate

# What CDNs and caching proxies call their cache status header.
CACHE_STATUS = ("x-cache", "x-cache-status", "cf-cache-status", "x-proxy-cache", "cache-status")
REDIRECTS = 3  # http -> https, a trailing slash


@dataclass(frozen=True)
class Limits:
    """How much of a stranger's time and memory the check spends. A CDN
    answers racepub's objects in well under a second, and the largest
    (a small race's snapshot, the page) are a few MB inflated."""

    fetch_s: float = 10.0  # one answer, whole: connect, headers, body
    check_s: float = 60.0  # every answer of the check together, besides its two waits
    wire_bytes: int = 16 << 20  # read of one answer
    body_bytes: int = 64 << 20  # one answer inflated


class Unfit(Exception):
    """An answer the check cannot go on with: the FAIL line's subject and detail."""

    def __init__(self, what: str, detail: str):
        super().__init__(detail)
        self.what, self.detail = what, detail


@dataclass
class Fetched:
    url: str
    status: int
    headers: dict[str, str]  # lower-case names
    raw: bytes | bytearray  # as it came over the wire
    limit: int = Limits.body_bytes
    _body: bytes | bytearray | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1] or self.url

    def body(self) -> bytes | bytearray:
        """The body as stored: inflated (at most `limit` bytes) if it says gzip."""
        if self._body is None:
            if self.headers.get("content-encoding") == "gzip":
                try:
                    self._body = inflate(self.raw, self.limit)
                except TooLarge as e:
                    raise Unfit("size", f"{self.url} {e}: not what racepub wrote") from None
                except zlib.error:
                    raise Unfit(
                        "gzip",
                        f"{self.name} says Content-Encoding: gzip but is not gzip: "
                        "the CDN altered the stored bytes",
                    ) from None
            else:
                self._body = self.raw
        return self._body

    def cache_status(self) -> str | None:
        for name in CACHE_STATUS:
            if name in self.headers:
                return f"{name}: {self.headers[name]}"
        return None

    def hit(self) -> bool | None:
        """Served from the CDN's cache? None: it does not say."""
        for name in CACHE_STATUS:
            value = self.headers.get(name, "").lower()
            if value:
                return "hit" in value and "miss" not in value
        if "age" in self.headers:
            return True
        return None


class Asker:
    """GETs as a phone sends them, each within `fetch_s` and all of them by
    `end` (time.monotonic()): a watchdog shuts the socket when time is up,
    so a server that drips a byte at a time cannot hold the check."""

    def __init__(self, limits: Limits, end: float):
        self.limits, self.end = limits, end

    def fetch(self, url: str) -> Fetched:
        for _ in range(REDIRECTS + 1):
            got = self._get(url)
            location = got.headers.get("location")
            if got.status not in (301, 302, 303, 307, 308) or not location:
                return got
            to = urljoin(url, location)
            if urlsplit(url).scheme == "https" and urlsplit(to).scheme != "https":
                raise Unfit("reach", f"{url}: redirected to {to}: not https any more")
            url = to
        raise Unfit("reach", f"{url}: more than {REDIRECTS} redirects")

    def _get(self, url: str) -> Fetched:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unfit("reach", f"{url}: not an http:// or https:// URL")
        now = time.monotonic()
        deadline = min(now + self.limits.fetch_s, self.end)
        if deadline <= now:
            raise self._late(url, True)
        whole_check = deadline == self.end
        kind: type[http.client.HTTPConnection] = http.client.HTTPConnection
        if parts.scheme == "https":
            kind = http.client.HTTPSConnection
        try:
            conn = kind(parts.hostname, parts.port, timeout=deadline - now)
        except (ValueError, http.client.HTTPException) as e:  # a bad port
            raise Unfit("reach", f"{url}: {e}") from None
        watchdog = _Watchdog(deadline - now)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        response: http.client.HTTPResponse | None = None
        try:
            conn.connect()  # within the socket's timeout, the time left
            watchdog.watch(conn.sock)
            conn.request(
                "GET", path, headers={"Accept-Encoding": "gzip", "User-Agent": "racepub-check"}
            )
            response = conn.getresponse()
            raw = bytearray()
            while chunk := response.read1(1 << 16):
                raw += chunk
                if len(raw) > self.limits.wire_bytes:
                    raise Unfit(
                        "size",
                        f"{url}: the answer is larger than {self.limits.wire_bytes:,} "
                        "bytes: not what racepub wrote",
                    )
            if response.length:  # fewer bytes than Content-Length
                raise http.client.IncompleteRead(bytes(raw), response.length)
        except (OSError, ValueError, http.client.HTTPException) as e:
            if watchdog.fired.is_set() or time.monotonic() >= deadline:
                raise self._late(url, whole_check) from None
            raise Unfit("reach", f"{url}: {_said(e)}") from None
        finally:
            watchdog.cancel()
            if response is not None:
                response.close()
            conn.close()
        if watchdog.fired.is_set():
            raise self._late(url, whole_check)
        return Fetched(
            url,
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            raw,
            self.limits.body_bytes,
        )

    def _late(self, url: str, whole_check: bool) -> Unfit:
        if whole_check:
            return Unfit(
                "time",
                f"{url}: the check ran out of time ({self.limits.check_s:.0f} s for "
                "all its requests): the CDN answers too slowly",
            )
        return Unfit(
            "time",
            f"{url}: no whole answer within {self.limits.fetch_s:.0f} s "
            "(a phone would give up on it too)",
        )


class _Watchdog:
    """Shuts the socket it watches when time is up: a read blocked on it
    returns at once, however the server drips (the socket's own timeout
    is per read)."""

    def __init__(self, seconds: float):
        self.fired = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            if self.fired.is_set():
                raise TimeoutError
            self._sock = sock

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            self.fired.set()
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _said(e: BaseException) -> str:
    if isinstance(e, http.client.IncompleteRead):
        return f"the answer ended early ({len(e.partial):,} bytes, {e.expected:,} more announced)"
    return str(e) or type(e).__name__


def lifetime_s(cache_control: str) -> float | None:
    """How long a shared cache may keep it: s-maxage, else max-age."""
    found = dict(re.findall(r"(s-maxage|max-age)\s*=\s*(\d+)", cache_control.lower()))
    value = found.get("s-maxage", found.get("max-age"))
    return None if value is None else float(value)


# Control and bidirectional characters: a server's header values and URLs
# are printed to the operator's terminal, never its escape sequences.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def check_cdn(
    race: Race,
    url: str,
    sink_get: Callable[[str], bytes | None] | None,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    limits: Limits = Limits(),
) -> bool:
    ok = True

    def report(level: str, what: str, detail: str) -> None:
        nonlocal ok
        ok = ok and level != "FAIL"
        out(f"{level:<4}  cdn {what}: {_printable(detail)}")

    # Two waits of an interval and a second, and the requests' own time.
    end = time.monotonic() + 2 * (race.interval_s + 1.0) + limits.check_s
    asker = Asker(limits, end)
    try:
        _check(race, url, sink_get, asker, report, sleep, clock)
    except Unfit as e:
        report("FAIL", e.what, e.detail)
    return ok


def _check(
    race: Race,
    url: str,
    sink_get: Callable[[str], bytes | None] | None,
    asker: Asker,
    report: Callable[[str, str, str], None],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    base = url if url.endswith("/") else url + "/"
    snapshot_url = base + objects.SNAPSHOT
    first = asker.fetch(snapshot_url)
    if first.status != 200:
        raise Unfit(
            "reach",
            f"{snapshot_url}: HTTP {first.status} (is racepub publishing "
            "there, and the CDN allowed to read the bucket?)",
        )
    _encoding(first, report)
    snap = _snapshot(first)
    if snap["race"]["id"] != race.id:
        raise Unfit(
            "race", f"{snapshot_url} publishes race {snap['race']['id']!r}, not {race.id!r}"
        )
    _lifetime(first, race.interval_s, report)
    _behind(race, snapshot_url, snap, sink_get, asker, report, sleep, clock)
    _query_strings(snapshot_url, asker, report)
    _static(base, asker, report)


def _encoding(got: Fetched, report: Callable[[str, str, str], None]) -> None:
    """Stored gzipped, served as stored: anything else costs bytes or breaks."""
    encoding = got.headers.get("content-encoding")
    body = got.body()
    if encoding is None and got.raw[:2] == b"\x1f\x8b":
        raise Unfit(
            "gzip",
            f"{got.name} arrives gzipped without Content-Encoding: gzip "
            "(the CDN drops the header): browsers cannot read it",
        )
    if encoding == "gzip":
        report(
            "ok",
            "gzip",
            f"{got.name} arrives as stored, Content-Encoding: gzip "
            f"({len(got.raw):,} bytes for {len(body):,})",
        )
    elif encoding is None:
        report(
            "warn",
            "gzip",
            f"{got.name} arrives uncompressed ({len(body):,} bytes): the CDN "
            "decompresses what is stored gzipped; every poll costs more. Turn its "
            "compression handling off",
        )
    else:
        report(
            "warn",
            "gzip",
            f"{got.name} arrives as Content-Encoding: {encoding}: the CDN "
            "compresses again what is stored gzipped; turn its compression off",
        )


def _snapshot(got: Fetched) -> dict[str, Any]:
    """The snapshot racepub wrote, or Unfit: what the check reads of it
    (race.id, generated_at, seq) is there and of its type."""
    try:
        doc = orjson.loads(got.body())
    except orjson.JSONDecodeError:
        raise Unfit("snapshot", f"{got.url} is not JSON: not the snapshot racepub wrote") from None
    why = _not_a_snapshot(doc)
    if why:
        raise Unfit("snapshot", f"{got.url} is not a racepub snapshot ({why})")
    snapshot: dict[str, Any] = doc
    return snapshot


def _not_a_snapshot(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    race = doc.get("race")
    if not isinstance(race, dict) or not isinstance(race.get("id"), str):
        return "no race.id"
    if not isinstance(doc.get("seq"), int) or isinstance(doc.get("seq"), bool):
        return "no integer seq"
    try:
        datetime.fromisoformat(doc["generated_at"])
    except (KeyError, TypeError, ValueError):
        return "no generated_at time"
    return None


def _lifetime(got: Fetched, interval_s: int, report: Callable[[str, str, str], None]) -> None:
    cache_control = got.headers.get("cache-control", "")
    life = lifetime_s(cache_control)
    age = got.headers.get("age")
    seen = (
        f"Cache-Control {cache_control!r}, Age {age if age is not None else '-'}, "
        f"{got.cache_status() or 'no cache status header'}"
    )
    if life is None:
        report(
            "FAIL",
            "cache",
            f"snapshot.json arrives without a max-age ({seen}): "
            "browsers and caches guess how long to keep it",
        )
    elif life > interval_s:
        report(
            "FAIL",
            "cache",
            f"snapshot.json may be kept {life:.0f} s, longer than "
            f"interval_s ({interval_s} s): {seen}",
        )
    elif age is not None and age.isdigit() and int(age) > interval_s:
        report(
            "FAIL",
            "cache",
            f"a copy of snapshot.json {age} s old was served, longer "
            f"than interval_s ({interval_s} s): the CDN keeps it longer than its "
            f"Cache-Control says (a minimum TTL?): {seen}",
        )
    else:
        report("ok", "cache", f"snapshot.json cached at most {life:.0f} s: {seen}")


def _generated(doc: dict[str, Any]) -> float:
    return datetime.fromisoformat(doc["generated_at"]).timestamp()


def _bucket_copy(sink_get: Callable[[str], bytes | None]) -> dict[str, Any] | None:
    """The sink's snapshot, or None when there is none."""
    body = sink_get(objects.SNAPSHOT)
    if not body:
        return None
    doc = orjson.loads(body)
    if _not_a_snapshot(doc):
        raise RacepubError("the sink's snapshot.json is not a racepub snapshot")
    copy: dict[str, Any] = doc
    return copy


def _behind(
    race: Race,
    url: str,
    snap: dict[str, Any],
    sink_get: Callable[[str], bytes | None] | None,
    asker: Asker,
    report: Callable[[str, str, str], None],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    """How far the CDN's snapshot is behind the bucket's, three times, an
    interval and a second apart. Kept no longer than its s-maxage (interval_s
    - 1), the CDN's copy must change within that span while the publisher
    publishes; one that stays while the bucket moves on two seqs is kept too
    long. Without access to the sink: how old it is by this machine's clock."""
    allowed = 2 * race.interval_s + 1.0
    samples: list[tuple[dict[str, Any], dict[str, Any] | None, float]] = []
    doc = snap
    for k in range(3):
        if k:
            sleep(race.interval_s + 1.0)
            got = asker.fetch(url)
            if got.status != 200:
                raise Unfit(
                    "behind", f"{url} stopped answering with a snapshot (HTTP {got.status})"
                )
            doc = _snapshot(got)
        source = None
        if sink_get is not None:
            try:
                source = _bucket_copy(sink_get)
            except (RacepubError, orjson.JSONDecodeError, OSError, EOFError, zlib.error):
                sink_get, source = None, None  # no access, or damaged: use the clock
        samples.append((doc, source, clock()))
    if all(s is not None for _, s, _ in samples):
        pairs = [(d, s) for d, s, _ in samples if s is not None]
        lags = [max(0.0, _generated(s) - _generated(d)) for d, s in pairs]
        (cdn0, bucket0), (cdn1, bucket1) = pairs[0], pairs[-1]
        moved = bucket1["seq"] != bucket0["seq"]
        seqs = f"seq {cdn1['seq']} at the CDN, {bucket1['seq']} in the bucket"
        worst = max(lags)
        held = cdn1["seq"] == cdn0["seq"] and bucket1["seq"] >= bucket0["seq"] + 2
        if worst > allowed or held:
            span = samples[-1][2] - samples[0][2]
            how = (
                f"was {worst:.0f} s behind the publisher"
                if worst > allowed
                else f"stayed at seq {cdn0['seq']} for {span:.0f} s while the publisher "
                f"published {bucket1['seq'] - bucket0['seq']} more"
            )
            report(
                "FAIL",
                "behind",
                f"the CDN's snapshot {how} ({seqs}): spectators see a "
                "stale race. The CDN keeps snapshot.json longer than its Cache-Control "
                "(a minimum or forced TTL?)",
            )
        elif not moved:
            report(
                "warn",
                "behind",
                f"the publisher did not publish meanwhile ({seqs}): "
                "run this while `racepub run` is publishing to measure it",
            )
        else:
            report(
                "ok",
                "behind",
                f"the CDN's snapshot at most {worst:.0f} s behind the publisher ({seqs})",
            )
        return
    ages = [now - _generated(d) for d, _, now in samples]
    worst = min(ages)  # the fresher of the two: a publisher may have stopped meanwhile
    if worst > allowed + 5.0:
        report(
            "FAIL",
            "behind",
            f"the CDN's snapshot is {worst:.0f} s old by this machine's "
            "clock (no access to the sink to compare): is the publisher running, and "
            "does the CDN keep snapshot.json longer than its Cache-Control?",
        )
    else:
        report(
            "ok",
            "behind",
            f"the CDN's snapshot is {worst:.0f} s old by this machine's "
            "clock (no access to the sink to compare)",
        )


def _query_strings(url: str, asker: Asker, report: Callable[[str, str, str], None]) -> None:
    """Right after a request, the same URL with a query string nobody asked
    for before: from the same cached copy, unless the query is in the key."""
    again = asker.fetch(url)
    probe = asker.fetch(f"{url}?racepub-check={secrets.token_hex(4)}")
    if again.hit() is None:
        report(
            "warn",
            "query",
            "the CDN says nothing of its cache (no cache status header, "
            "no Age): cannot tell whether query strings are in the cache key",
        )
    elif not again.hit():
        report(
            "warn",
            "query",
            "snapshot.json was not served from the cache even right "
            "after a request: cannot tell whether query strings are in the cache key",
        )
    elif probe.hit():
        report(
            "ok",
            "query",
            "query strings are not in the cache key (snapshot.json?… came from the cached copy)",
        )
    else:
        report(
            "warn",
            "query",
            "query strings are in the cache key: every snapshot.json?… "
            "reaches the bucket (cost, and origin load if someone floods it). Leave "
            "them out of the cache policy",
        )


def _static(base: str, asker: Asker, report: Callable[[str, str, str], None]) -> None:
    page = asker.fetch(base)
    if page.status != 200:
        raise Unfit("page", f"{base}: HTTP {page.status} (default root object index.html?)")
    html = page.body().decode("utf-8", "replace")
    found = re.search(r"(static/[0-9a-f]+/app\.js)", html)
    if found is None:
        raise Unfit("page", f"{base} is not racepub's race page")
    url = base + found.group(1)
    asker.fetch(url)
    got = asker.fetch(url)
    if got.status != 200:
        raise Unfit("static", f"{url}: HTTP {got.status}")
    _encoding(got, report)
    life = lifetime_s(got.headers.get("cache-control", "")) or 0
    if life < 86400:
        report(
            "warn",
            "static",
            f"{found.group(1)} may be kept only {life:.0f} s "
            f"(Cache-Control {got.headers.get('cache-control')!r}): it never changes "
            "under its name; keep it long",
        )
    elif got.hit() is False:
        report(
            "warn",
            "static",
            f"{found.group(1)} was not served from the cache on a "
            f"second request ({got.cache_status()})",
        )
    else:
        report(
            "ok",
            "static",
            f"{found.group(1)}: Cache-Control "
            f"{got.headers.get('cache-control')!r}, "
            f"{got.cache_status() or 'no cache status header'}",
        )
