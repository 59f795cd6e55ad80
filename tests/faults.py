"""Tools for causing faults: an S3 proxy that fails on demand, a publisher
process to kill, and a spectator's-eye check of what is published."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error.</Message></Error>"
)


class FaultProxy:
    """Forwards to an S3 endpoint; `fail` decides per (method, path) whether
    to answer 503 SlowDown or 500 InternalError instead, `hang` whether to
    hold the request, unanswered, until `release` is set, `delay` how many
    seconds to take over an answer."""

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.fail: Callable[[str, str], int | None] = lambda method, path: None
        self.hang: Callable[[str, str], bool] = lambda method, path: False
        self.delay: Callable[[str, str], float] = lambda method, path: 0.0
        self.release = threading.Event()
        self.failed = 0
        self.hung = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.hang(self.command, self.path):
                    proxy.hung += 1
                    proxy.release.wait(60)
                time.sleep(proxy.delay(self.command, self.path))
                code = proxy.fail(self.command, self.path)
                if code:
                    proxy.failed += 1
                    payload = SLOWDOWN if code == 503 else INTERNAL
                    self.send_response(code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                conn.request(self.command, self.path, body=body, headers=headers)
                res = conn.getresponse()
                data = res.read()
                self.send_response(res.status)
                for k, v in res.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _any_quietly(self) -> None:
                try:
                    self._any()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a request held too long: as it should

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any_quietly

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


class Publisher:
    """`racepub run` in a process of its own, its log collected as it comes."""

    def __init__(self, config: Path, *extra: str):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "racepub",
                "run",
                "--race",
                "t",
                "--config",
                str(config),
                *extra,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def spectator_view(get: Callable[[str], bytes | None]) -> dict[str, Any] | None:
    """What a spectator loading the race now gets; asserts it is whole: the
    snapshot parses and every pack its trails point into is there."""
    body = get("snapshot.json")
    if body is None:
        return None
    snap: dict[str, Any] = json.loads(body)
    for racer in snap["racers"]:
        for url in racer["track"]:
            key = url.split("#")[0]
            assert get(key) is not None, f"snapshot seq {snap['seq']} points at missing {key}"
    return snap


def dir_getter(root: Path) -> Callable[[str], bytes | None]:
    def get(key: str) -> bytes | None:
        try:
            return (root / key).read_bytes()
        except FileNotFoundError:
            return None

    return get


class Watcher:
    """A spectator polling all the time in the background: every snapshot it
    ever sees must be whole, and seq must never go back."""

    def __init__(self, get: Callable[[str], bytes | None]):
        self.get = get
        self.seen: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                snap = spectator_view(self.get)
                if snap is not None:
                    if self.seen and snap["seq"] < self.seen[-1]:
                        self.errors.append(f"seq went back: {self.seen[-1]} -> {snap['seq']}")
                    self.seen.append(snap["seq"])
            except (AssertionError, ValueError) as e:
                self.errors.append(str(e))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        assert self.errors == [], self.errors[:5]
