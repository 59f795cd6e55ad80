"""Spectators cost nothing upstream, measured.

A 1,000-racer race 10 minutes in, fed a fix per racer every 5 s, published by
`racepub run` (the real loop) to moto's S3 server. nginx stands in for the
CDN: `proxy_cache` honouring Cache-Control, `proxy_cache_lock on`. wrk then
polls snapshot.json through it with a few hundred connections for 20 s, and
the same load goes to a naive dynamic endpoint: a small WSGI app that queries
PostgreSQL per request (DISTINCT ON, standard json), as the original app
stack did. Counted at the source, not inferred: origin GETs from moto's
request log, database statements from PostgreSQL's statement log, by
application_name.

    python bench/spectators.py          # prints a JSON result (bench/run.py tabulates it)

Needs nginx and wrk (Debian packages); installs them when run as root.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import boto3
import psycopg

from bench.marathon import BUCKET, FIX_EVERY_S, INTERVAL_S, generate, write_race
from racepub.commands.localdb import LocalPostgres, free_port

RACERS = 1000
AGE_S = 600
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "256"))
DURATION_S = int(os.environ.get("BENCH_LOAD_S", "20"))
NAIVE_POOL = 16  # database connections of the naive app, as an app server's pool
NGINX = "/usr/sbin/nginx"

NGINX_CONF = """
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    proxy_cache_path {work}/cache levels=1:2 keys_zone=cdn:10m max_size=1g inactive=10m
                     use_temp_path=off;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:{origin};
            proxy_cache cdn;               # freshness from the origin's Cache-Control
            proxy_cache_lock on;           # one origin fetch per object, the rest wait
            proxy_cache_use_stale updating error timeout;
            proxy_cache_background_update on;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""


def tools_missing() -> list[str]:
    def missing() -> list[str]:
        return [
            t
            for t, path in (("nginx", NGINX), ("wrk", "wrk"))
            if not (Path(path).exists() or shutil.which(path))
        ]

    if missing() and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing nginx and wrk (apt-get)", file=sys.stderr, flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update"], capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "nginx", "wrk"], capture_output=True, env=env)
    return missing()


# -- the naive endpoint -----------------------------------------------------------


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_naive(dsn: str, port: int, racers: int) -> None:
    """The original app stack's way: every request queries the database."""
    ids = [str(i) for i in range(racers)]
    pool: queue.Queue[psycopg.Connection[Any]] = queue.Queue()
    for _ in range(NAIVE_POOL):
        pool.put(psycopg.connect(dsn, autocommit=True, application_name="naive"))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        conn = pool.get()
        try:
            rows = conn.execute(
                "SELECT DISTINCT ON (user_id) user_id, recorded_at, lat, lon FROM live_points "
                "WHERE user_id = ANY(%s) ORDER BY user_id, recorded_at DESC",
                (ids,),
            ).fetchall()
        finally:
            pool.put(conn)
        body = json.dumps(
            {
                "schema": 1,
                "racers": [
                    {"id": r, "position": {"lat": lat, "lon": lon, "at": at.isoformat()}}
                    for r, at, lat, lon in rows
                ],
            }
        ).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    make_server(
        "127.0.0.1", port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    ).serve_forever()


# -- measuring ----------------------------------------------------------------------


def wrk(url: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{DURATION_S}s",
            "--latency",
            "--timeout",
            "10s",
            "-H",
            "Accept-Encoding: gzip",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": total,
        "rps": total / DURATION_S,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
        "raw": out,
    }


class Counter:
    """Lines a log gained between start() and stop()."""

    def __init__(self, path: Path):
        self.path, self.at = path, 0

    def start(self) -> None:
        self.at = self.path.stat().st_size if self.path.exists() else 0

    def lines(self) -> list[str]:
        with self.path.open("rb") as f:
            f.seek(self.at)
            return f.read().decode(errors="replace").splitlines()


def statements(lines: list[str]) -> dict[str, int]:
    """Statements by application_name (log_line_prefix = '%a:')."""
    counts: dict[str, int] = {}
    for line in lines:
        # Simple queries log as "statement:", parameterised ones as "execute <name>:".
        m = re.match(r"^(\w*):\s*LOG:\s+(?:statement|execute [^:]*):", line)
        if m:
            counts[m.group(1) or "?"] = counts.get(m.group(1) or "?", 0) + 1
    return counts


def measure() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="racepub-spectators-"))
    os.chmod(work, 0o755)
    db = LocalPostgres(work / "pg", settings={"log_statement": "all", "log_line_prefix": "%a:"})
    dsn = db.start()
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        moto_port, nginx_port, naive_port = free_port(), free_port(), free_port()
        moto_log = work / "moto.log"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=subprocess.DEVNULL,
                stderr=moto_log.open("wb"),
            )
        )
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1"
        )
        for _ in range(300):
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # still starting
                time.sleep(0.1)
        s3.put_bucket_policy(
            Bucket=BUCKET,
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{BUCKET}/*",
                        }
                    ],
                }
            ),
        )

        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=AGE_S)
        feeder_dsn = dsn + "?application_name=feeder"
        with psycopg.connect(feeder_dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
                "recorded_at timestamptz, lat float8, lon float8)"
            )
            generate(conn, RACERS, start, 0, AGE_S, FIX_EVERY_S)
            conn.execute("CREATE INDEX ON live_points (id)")
            conn.execute("ANALYZE live_points")

        def feed() -> None:  # the app keeps writing fixes, as phones send them
            t = float(AGE_S)
            with psycopg.connect(feeder_dsn, autocommit=True) as conn:
                while not stop.wait(INTERVAL_S):
                    generate(conn, RACERS, start, t, t + INTERVAL_S, FIX_EVERY_S)
                    t += INTERVAL_S

        threading.Thread(target=feed, daemon=True).start()

        config = write_race(
            work, RACERS, dsn + "?application_name=racepub", f"http://127.0.0.1:{moto_port}", start
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "racepub",
                    "run",
                    "--race",
                    "b",
                    "--config",
                    str(config),
                    "--state-dir",
                    str(work / "state"),
                ],  # nothing saved outside the work dir
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(work / "publisher.log").open("wb"),
            )
        )
        for _ in range(600):  # the first cycle catches up on 10 minutes
            try:
                s3.head_object(Bucket=BUCKET, Key="race/snapshot.json")
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise RuntimeError(
                "the publisher never published: " + (work / "publisher.log").read_text()[-2000:]
            )

        (work / "cache").mkdir()
        user = "user root;" if os.geteuid() == 0 else ""
        (work / "nginx.conf").write_text(
            NGINX_CONF.format(work=work, port=nginx_port, origin=moto_port, user=user)
        )
        procs.append(
            subprocess.Popen(
                [NGINX, "-c", str(work / "nginx.conf"), "-p", str(work)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--naive", dsn, str(naive_port), str(RACERS)]
            )
        )
        time.sleep(1.5)

        pg_log = Counter(db.root / "postgres.log")
        origin_log = Counter(moto_log)
        results = {}
        for name, url in (
            ("racepub", f"http://127.0.0.1:{nginx_port}/{BUCKET}/race/snapshot.json"),
            ("naive", f"http://127.0.0.1:{naive_port}/snapshot.json"),
        ):
            pg_log.start()
            origin_log.start()
            load = wrk(url)
            by_app = statements(pg_log.lines())
            origin_gets = sum(
                1 for line in origin_log.lines() if f'"GET /{BUCKET}/race/snapshot.json' in line
            )
            from_spectators = by_app.get("naive", 0) + by_app.get("?", 0)
            results[name] = {
                "rps": load["rps"],
                "p99_ms": load["p99_ms"],
                "requests": load["requests"],
                "errors": load["errors"],
                "origin_gets_per_s": origin_gets / DURATION_S if name == "racepub" else None,
                "db_per_s": from_spectators / DURATION_S,
                "publisher_db_per_s": by_app.get("racepub", 0) / DURATION_S,
                "db_per_1000": 1000 * from_spectators / max(1, load["requests"]),
            }
        return {
            "racers": RACERS,
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "interval_s": INTERVAL_S,
            "results": results,
        }
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        db.destroy()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--naive":
        serve_naive(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    missing = tools_missing()
    if missing:
        print(json.dumps({"skipped": f"needs {' and '.join(missing)} (Debian packages)"}))
        return
    print(json.dumps(measure()))


if __name__ == "__main__":
    main()
