"""`racepub check --cdn URL`: does the CDN in front of the bucket do what
racepub needs? Asked from outside, as a spectator's phone asks, while
`racepub run` publishes: the snapshot is cached no longer than interval_s,
Content-Encoding: gzip arrives intact, query strings are not in the cache
key, static assets are cached, and the CDN's copy is not behind the
publisher. A FAIL line means spectators would see a stale or broken race.
"""

from __future__ import annotations

import gzip
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .. import objects
from ..config import Race
from ..errors import RacepubError

# What CDNs and caching proxies call their cache status header.
CACHE_STATUS = ("x-cache", "x-cache-status", "cf-cache-status", "x-proxy-cache", "cache-status")
TIMEOUT_S = 10.0


@dataclass
class Fetched:
    url: str
    status: int
    headers: dict[str, str]  # lower-case names
    raw: bytes  # as it came over the wire

    def body(self) -> bytes:
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.raw)
        return self.raw

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


def fetch(url: str) -> Fetched:
    request = urllib.request.Request(
        url, headers={"Accept-Encoding": "gzip", "User-Agent": "racepub-check"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return Fetched(
                url,
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as e:
        return Fetched(url, e.code, {k.lower(): v for k, v in e.headers.items()}, b"")


def lifetime_s(cache_control: str) -> float | None:
    """How long a shared cache may keep it: s-maxage, else max-age."""
    found = dict(re.findall(r"(s-maxage|max-age)\s*=\s*(\d+)", cache_control.lower()))
    value = found.get("s-maxage", found.get("max-age"))
    return None if value is None else float(value)


def check_cdn(
    race: Race,
    url: str,
    sink_get: Callable[[str], bytes | None] | None,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> bool:
    ok = True

    def report(level: str, what: str, detail: str) -> None:
        nonlocal ok
        ok = ok and level != "FAIL"
        out(f"{level:<4}  cdn {what}: {detail}")

    base = url if url.endswith("/") else url + "/"
    snapshot_url = base + objects.SNAPSHOT
    try:
        first = fetch(snapshot_url)
    except (OSError, ValueError) as e:
        report("FAIL", "reach", f"{snapshot_url}: {e}")
        return False
    if first.status != 200:
        report(
            "FAIL",
            "reach",
            f"{snapshot_url}: HTTP {first.status} (is racepub publishing "
            "there, and the CDN allowed to read the bucket?)",
        )
        return False
    snap = _encoding(first, report)
    if snap is None:
        return False
    if snap.get("race", {}).get("id") != race.id:
        report(
            "FAIL",
            "race",
            f"{snapshot_url} publishes race {snap.get('race', {}).get('id')!r}, not {race.id!r}",
        )
        return False
    _lifetime(first, race.interval_s, report)
    second = _behind(race, snapshot_url, first, snap, sink_get, report, sleep, clock)
    _query_strings(snapshot_url, second, report)
    _static(base, report)
    return ok


def _encoding(got: Fetched, report: Callable[[str, str, str], None]) -> dict[str, Any] | None:
    """Stored gzipped, served as stored: anything else costs bytes or breaks."""
    name = got.url.rsplit("/", 1)[-1]
    encoding = got.headers.get("content-encoding")
    try:
        body = got.body()
    except (OSError, EOFError):
        report(
            "FAIL",
            "gzip",
            f"{name} says Content-Encoding: gzip but is not gzip: the CDN altered the stored bytes",
        )
        return None
    if encoding is None and got.raw[:2] == b"\x1f\x8b":
        report(
            "FAIL",
            "gzip",
            f"{name} arrives gzipped without Content-Encoding: gzip "
            "(the CDN drops the header): browsers cannot read it",
        )
        return None
    if encoding == "gzip":
        report(
            "ok",
            "gzip",
            f"{name} arrives as stored, Content-Encoding: gzip "
            f"({len(got.raw):,} bytes for {len(body):,})",
        )
    elif encoding is None:
        report(
            "warn",
            "gzip",
            f"{name} arrives uncompressed ({len(body):,} bytes): the CDN "
            "decompresses what is stored gzipped; every poll costs more. Turn its "
            "compression handling off",
        )
    else:
        report(
            "warn",
            "gzip",
            f"{name} arrives as Content-Encoding: {encoding}: the CDN "
            "compresses again what is stored gzipped; turn its compression off",
        )
    if not name.endswith(".json"):
        return {}
    try:
        doc: dict[str, Any] = orjson.loads(body)
    except orjson.JSONDecodeError:
        report("FAIL", "gzip", f"{name} is not the JSON racepub wrote")
        return None
    return doc


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


def _behind(
    race: Race,
    url: str,
    first: Fetched,
    snap: dict[str, Any],
    sink_get: Callable[[str], bytes | None] | None,
    report: Callable[[str, str, str], None],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Fetched:
    """How far the CDN's snapshot is behind the bucket's, three times, an
    interval and a second apart. Kept no longer than its s-maxage (interval_s
    - 1), the CDN's copy must change within that span while the publisher
    publishes; one that stays while the bucket moves on two seqs is kept too
    long. Without access to the sink: how old it is by this machine's clock."""
    allowed = 2 * race.interval_s + 1.0
    samples: list[tuple[dict[str, Any], dict[str, Any] | None, float]] = []
    got, doc = first, snap
    for k in range(3):
        if k:
            sleep(race.interval_s + 1.0)
            got = fetch(url)
            doc = orjson.loads(got.body()) if got.status == 200 else {}
        source = None
        if sink_get is not None:
            try:
                body = sink_get(objects.SNAPSHOT)
                source = orjson.loads(body) if body else None
            except (RacepubError, orjson.JSONDecodeError):  # no access: use the clock
                sink_get, source = None, None
        samples.append((doc, source, clock()))
    if any("generated_at" not in d for d, _, _ in samples):
        report("FAIL", "behind", f"{url} stopped answering with a snapshot")
        return got
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
        return got
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
    return got


def _query_strings(
    url: str, just_fetched: Fetched, report: Callable[[str, str, str], None]
) -> None:
    """Right after a request, the same URL with a query string nobody asked
    for before: from the same cached copy, unless the query is in the key."""
    again = fetch(url)
    probe = fetch(f"{url}?racepub-check={secrets.token_hex(4)}")
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


def _static(base: str, report: Callable[[str, str, str], None]) -> None:
    page = fetch(base)
    if page.status != 200:
        report("FAIL", "page", f"{base}: HTTP {page.status} (default root object index.html?)")
        return
    try:
        html = page.body().decode("utf-8", "replace")
    except (OSError, EOFError):
        report("FAIL", "page", f"{base} is not the page racepub wrote")
        return
    found = re.search(r"(static/[0-9a-f]+/app\.js)", html)
    if found is None:
        report("FAIL", "page", f"{base} is not racepub's race page")
        return
    url = base + found.group(1)
    fetch(url)
    got = fetch(url)
    if got.status != 200:
        report("FAIL", "static", f"{url}: HTTP {got.status}")
        return
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
