"""`racepub check --cdn URL` against a real caching proxy: nginx in front of
moto's S3 server while `racepub run` publishes. Configured as racepub needs
(honouring the origin's Cache-Control) it passes; with a forced long TTL,
what spectators would see is stale, and it says so and exits 1. Against
hostile servers on loopback (a gzip bomb, a huge body, answers dripped a
byte at a time, bodies that are not racepub's) it ends with one FAIL line,
in bounded memory and time."""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from racepub import config
from racepub.cli import main
from racepub.commands.cdncheck import Limits, check_cdn
from racepub.commands.localdb import free_port
from tests.faults import Publisher
from tests.helpers import (
    COLS,
    Ran,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    public_bucket,
    run_measured,
    wait_for,
    write_race,
)

NGINX = "/usr/sbin/nginx"
CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    proxy_cache_path {work}/cache levels=1:2 keys_zone=cdn:1m inactive=10m use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location = / {{ rewrite ^ /index.html last; }}  # a default root object
        location / {{
            proxy_pass {origin}/{bucket}/race/;
            proxy_cache cdn;
            {key}
            proxy_cache_lock on;
            {extra}
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""
# What racepub needs, as the CloudFormation template's cache policy says it:
# the path alone is the key.
PATH_KEY = "proxy_cache_key $scheme$proxy_host$uri;"


def readme_location() -> str:
    """The directives of README's nginx `location /`, but those that fetch
    from S3 (here: the test's origin) and those the test's config has."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```nginx\n(.*?)```", readme, re.S)
    assert block, "README has no nginx block"
    location = re.search(r"location / \{\n(.*?)\n    \}", block.group(1), re.S)
    assert location, block.group(1)
    theirs = re.compile(
        r"\s*(proxy_pass|proxy_ssl_server_name|proxy_set_header Host|proxy_cache race;"
        r"|proxy_cache_lock|add_header X-Cache)"
    )
    return "\n".join(line for line in location.group(1).splitlines() if not theirs.match(line))


# What an organizer may get wrong.
SETUPS = {
    "well configured": (PATH_KEY, ""),
    # What README tells an organizer to run (its cache key is the path).
    "as README configures nginx": ("", readme_location()),
    # nginx's default key: the query string too (costly, not stale).
    "query strings in the key": ("", ""),
    # A CDN told to keep everything ten minutes (stale).
    "forced long TTL": (
        PATH_KEY,
        "proxy_ignore_headers Cache-Control Expires; proxy_cache_valid 200 10m;",
    ),
}


@pytest.fixture
def nginx() -> Iterator[object]:
    if not os.path.exists(NGINX):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{NGINX} is missing: .ci/run installs Debian's nginx")
        pytest.skip("nginx not installed (apt-get install nginx)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(work: Path, origin: str, bucket: str, key: str, extra: str) -> str:
        port = free_port()
        (work / "cache").mkdir(parents=True)
        user = "user root;" if os.geteuid() == 0 else ""
        (work / "nginx.conf").write_text(
            CONF.format(
                work=work, port=port, origin=origin, bucket=bucket, key=key, extra=extra, user=user
            )
        )
        procs.append(
            subprocess.Popen(
                [NGINX, "-c", str(work / "nginx.conf"), "-p", str(work)], stderr=subprocess.DEVNULL
            )
        )
        url = f"http://127.0.0.1:{port}/"

        def answers() -> bool:
            try:
                return bool(urllib.request.urlopen(url + "snapshot.json", timeout=2).status == 200)
            except OSError:
                return False

        wait_for(answers)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("cdn", list(SETUPS))
def test_check_cdn(
    tmp_path: Path, dsn: str, moto_server: str, fake_aws_env: None, nginx: object, cdn: str
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    # The proxy reads the bucket unsigned (as CloudFront reads it through its OAC).
    bucket = public_bucket(s3, f"cdn-check-{cdn.split()[0]}")
    create_points_table(dsn)
    setup = write_race(
        tmp_path,
        dsn,
        sink=f"s3://{bucket}/race",
        interval_s=3,
        starts_at=now_utc() - timedelta(minutes=5),
        s3_endpoint=moto_server,
    )
    insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 200))
    publisher = Publisher(setup.path)
    try:
        wait_for(lambda: " seq=2 " in publisher.log, timeout=60)
        url = nginx(
            tmp_path / "nginx",
            moto_server,
            bucket,  # type: ignore[operator]
            *SETUPS[cdn],
        )
        time.sleep(1)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "racepub",
                "check",
                "--race",
                "t",
                "--config",
                str(setup.path),
                "--cdn",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        publisher.kill()
    report = done.stdout
    assert "ok    cdn gzip: snapshot.json arrives as stored" in report, report
    assert "ok    cdn static: static/" in report, report
    if cdn == "forced long TTL":
        assert done.returncode == 1, report + done.stderr
        assert "FAIL  cdn behind: the CDN's snapshot " in report, report
        assert "spectators see a stale race" in report
        return
    assert done.returncode == 0, report + done.stderr
    assert "FAIL" not in report
    assert "ok    cdn behind" in report and "ok    cdn cache" in report
    if cdn in ("well configured", "as README configures nginx"):
        assert "ok    cdn query: query strings are not in the cache key" in report, report
    else:
        assert "warn  cdn query: query strings are in the cache key" in report, report


# A CDN that is not one: what answers at the URL is a stranger, and the check
# must get through whatever it sends with bounded memory and time, saying
# FAIL in one line.

SNAPSHOT_PATH = "/snapshot.json"
Answer = Callable[[str, int, socket.socket], None]


def send(sock: socket.socket, body: bytes, *headers: str, status: str = "200 OK") -> None:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def snapshot_body(race: str = "t", seq: int = 1) -> bytes:
    return json.dumps(
        {
            "schema": 1,
            "race": {"id": race, "title": "T", "state": "live"},
            "generated_at": now_utc().isoformat(),
            "seq": seq,
            "racers": [],
        }
    ).encode()


SNAPSHOT_HEADERS = ("Content-Type: application/json", "Cache-Control: public, max-age=1")


@contextlib.contextmanager
def hostile_cdn(answer: Answer) -> Iterator[str]:
    """A server on loopback; answer(path, n, socket) writes the raw HTTP
    answer to the n-th request (0-based), however it likes."""
    count = itertools.count()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            request = b""
            while b"\r\n\r\n" not in request:
                got = self.request.recv(4096)
                if not got:
                    return
                request += got
            path = request.split(b" ", 2)[1].decode()
            try:
                answer(path, next(count), self.request)
            except OSError:
                pass  # the client hung up: what it should do to a stranger

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@functools.cache
def gzip_bomb(inflated_mb: int) -> bytes:
    """inflated_mb MB of zeros, gzipped (about a thousandth of that)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(inflated_mb)]
    return b"".join(parts) + packer.flush()


def bomb(path: str, n: int, sock: socket.socket) -> None:
    """A 300 KB snapshot.json that inflates to 300 MB."""
    send(sock, gzip_bomb(300), *SNAPSHOT_HEADERS, "Content-Encoding: gzip")


def huge(path: str, n: int, sock: socket.socket) -> None:
    """A 300 MB snapshot.json, uncompressed, streamed."""
    size, block = 300 << 20, b" " * (1 << 20)
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n"
    sock.sendall((head + "\r\n".join(SNAPSHOT_HEADERS) + "\r\n\r\n").encode())
    for _ in range(size // len(block)):
        sock.sendall(block)


def drip_body(path: str, n: int, sock: socket.socket) -> None:
    """Headers at once, then a byte of the 100 announced every 2 s (the
    old check waited 10 s for each read: never long enough to give up)."""
    head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
    sock.sendall(head.encode())
    for _ in range(100):
        time.sleep(2)
        sock.sendall(b" ")


def drip_headers(path: str, n: int, sock: socket.socket) -> None:
    """A status line, then headers a byte every 2 s, without end."""
    sock.sendall(b"HTTP/1.1 200 OK\r\n")
    while True:
        time.sleep(2)
        sock.sendall(b"X")


def check_cli(config: Path, url: str) -> Ran:
    return run_measured(
        [
            sys.executable,
            "-m",
            "racepub",
            "check",
            "--race",
            "t",
            "--config",
            str(config),
            "--cdn",
            url,
        ],
        timeout=120,
    )


def fail_line(out: str) -> str:
    """The one FAIL line of a report."""
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1, out
    return fails[0]


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (bomb, "FAIL  cdn size: "),
        (huge, "FAIL  cdn size: "),
        (drip_body, "FAIL  cdn time: "),
        (drip_headers, "FAIL  cdn time: "),
    ],
    ids=["gzip bomb", "300 MB body", "body a byte at a time", "headers a byte at a time"],
)
def test_check_cdn_spends_bounded_memory_and_time_on_a_hostile_cdn(
    tmp_path: Path, answer: Answer, said: str
) -> None:
    setup = write_race(tmp_path, "postgresql://racepub@127.0.0.1:1/app", interval_s=1)
    with hostile_cdn(answer) as url:
        ran = check_cli(setup.path, url)
    print(f"{answer.__name__}: {ran.seconds:.1f} s, {ran.max_rss_mb:.0f} MB")
    assert ran.returncode == 1, ran
    assert said in fail_line(ran.stdout) and "Traceback" not in ran.stderr, ran
    # The old check: 680 MB for the bomb, 300 MB read whole; drips held it
    # 200 s and without end.
    assert ran.max_rss_mb < 200, ran.max_rss_mb
    assert ran.seconds < 3 * Limits.fetch_s, ran.seconds


def test_check_cdn_gives_the_whole_check_a_deadline(tmp_path: Path) -> None:
    """Each answer within its own limit but each slow: the check as a whole
    still ends on time (its two waits and check_s)."""

    def slow(path: str, n: int, sock: socket.socket) -> None:
        body = snapshot_body() if path.startswith(SNAPSHOT_PATH) else b"<html></html>"
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        sock.sendall((head + "\r\n".join(SNAPSHOT_HEADERS) + "\r\n\r\n").encode())
        for k in range(len(body)):
            if n:  # the first answer at once, then 2.9 s each
                time.sleep(2.9 / len(body))
            sock.sendall(body[k : k + 1])

    setup = write_race(tmp_path, "postgresql://racepub@127.0.0.1:1/app", interval_s=1)
    race = config.load(str(setup.path)).race("t")
    said: list[str] = []
    limits = Limits(fetch_s=3.0, check_s=4.0)
    start = time.monotonic()
    with hostile_cdn(slow) as url:
        ok = check_cdn(race, url, None, out=said.append, limits=limits)
    took = time.monotonic() - start
    allowed = 2 * (race.interval_s + 1) + limits.check_s  # 8 s; unbounded, 24 s
    assert not ok and "FAIL  cdn time: " in fail_line("\n".join(said)), said
    assert "the check ran out of time" in fail_line("\n".join(said))
    assert took < 1.5 * allowed, took


def bad_gzip(path: str, n: int, sock: socket.socket) -> None:
    """gzip's header, then bytes that do not inflate."""
    send(
        sock,
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 40,
        *SNAPSHOT_HEADERS,
        "Content-Encoding: gzip",
    )


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            lambda path, n, sock: send(sock, b"[1,2]", *SNAPSHOT_HEADERS),
            "FAIL  cdn snapshot: {url}snapshot.json is not a racepub snapshot "
            "(a JSON list, not an object)",
        ),
        (
            lambda path, n, sock: send(
                sock, snapshot_body() if n == 0 else b"\x00garbage", *SNAPSHOT_HEADERS
            ),
            "FAIL  cdn snapshot: {url}snapshot.json is not JSON",
        ),
        (bad_gzip, "FAIL  cdn gzip: snapshot.json says Content-Encoding: gzip but is not gzip"),
        (
            lambda path, n, sock: send(
                sock,
                gzip.compress(snapshot_body())[:30],
                *SNAPSHOT_HEADERS,
                "Content-Encoding: gzip",
            ),
            "FAIL  cdn gzip: snapshot.json says Content-Encoding: gzip but is not gzip",
        ),
    ],
    ids=["a JSON list", "garbage the second time", "bad gzip", "truncated gzip"],
)
def test_check_cdn_fails_in_one_line_on_what_racepub_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: Answer, said: str
) -> None:
    setup = write_race(tmp_path, "postgresql://racepub@127.0.0.1:1/app", interval_s=1)
    with hostile_cdn(answer) as url:
        code = main(["check", "--race", "t", "--config", str(setup.path), "--cdn", url])
    out = capsys.readouterr()
    assert code == 1, out
    assert fail_line(out.out).startswith(said.format(url=url)), out.out
    assert out.err == ""


def test_check_cdn_prints_no_escape_sequence_a_server_sends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Header values are printed to the operator's terminal: a CDN's escape
    sequences (clear the screen, ring the bell) are shown, not obeyed."""

    def escapes(path: str, n: int, sock: socket.socket) -> None:
        body = snapshot_body() if path.startswith(SNAPSHOT_PATH) else b"<html></html>"
        send(sock, body, *SNAPSHOT_HEADERS, "Content-Encoding: \x1b[2J\x07br")

    setup = write_race(tmp_path, "postgresql://racepub@127.0.0.1:1/app", interval_s=1)
    with hostile_cdn(escapes) as url:
        main(["check", "--race", "t", "--config", str(setup.path), "--cdn", url])
    out = capsys.readouterr().out
    assert "Content-Encoding: \\x1b[2J\\x07br" in out, out
    assert "\x1b" not in out and "\x07" not in out
