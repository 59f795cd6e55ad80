"""Spectators cost nothing upstream, measured beside what a user would build instead.

A 1,000-racer race 10 minutes in, fed a fix per racer every 5 s, published by
`racepub run` (the real loop) to moto's S3 server. wrk polls, in turn and with
the same load, three ways of serving every racer's newest position:

- racepub: snapshot.json through nginx standing in for the CDN (`proxy_cache`
  honouring Cache-Control, `proxy_cache_lock on`) in front of moto;
- the app direct: a competent app stack. APP_WORKERS processes (one per core,
  sharing the port with SO_REUSEPORT), each a threaded HTTP/1.1 server with its
  own pool of APP_POOL connections, one indexed query per request (LATEST),
  JSON by orjson, gzipped when asked;
- the app behind a 1 s nginx micro-cache, the common real-world fix.

Counted at the source, not inferred: origin requests from moto's and the app's
request logs, database statements from PostgreSQL's statement log by
application_name. How stale a spectator's view is: the response's generated_at
against the clock, sampled during the load.

    python -m bench.spectators          # prints a JSON result (bench/run.py tabulates it)

Needs nginx and wrk (Debian packages); installs them when run as root.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import orjson
import psycopg

from bench.marathon import BUCKET, FIX_EVERY_S, INTERVAL_S, ROOT, generate, write_race
from racepub.commands.localdb import LocalPostgres, free_port

RACERS = 1000
AGE_S = 600
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "256"))
DURATION_S = int(os.environ.get("BENCH_LOAD_S", "20"))
APP_WORKERS = os.cpu_count() or 2
APP_POOL = 4  # connections per worker: a few per core keeps PostgreSQL's cores busy
SAMPLE_EVERY_S = 0.2  # how often one more client reads the view's age during the load
NGINX = "/usr/sbin/nginx"

# Each racer's newest fix: one index descent per racer on (user_id, recorded_at DESC).
LATEST = (
    "SELECT r.id, p.recorded_at, p.lat, p.lon FROM unnest(%s::text[]) AS r(id) "
    "CROSS JOIN LATERAL (SELECT recorded_at, lat, lon FROM live_points "
    "WHERE user_id = r.id ORDER BY recorded_at DESC LIMIT 1) p"
)

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
    proxy_cache_path {work}/micro keys_zone=micro:10m max_size=1g inactive=10m
                     use_temp_path=off;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 16; }}
    upstream app {{ server 127.0.0.1:{app}; keepalive 16; }}
    server {{  # the CDN stand-in in front of the bucket
        listen 127.0.0.1:{cdn};
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
    server {{  # the app's micro-cache: it sends no Cache-Control, so every 200 is kept 1 s
        listen 127.0.0.1:{micro};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache micro;
            proxy_cache_valid 200 1s;
            proxy_cache_lock on;
            proxy_cache_use_stale updating;
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


# -- the competent app --------------------------------------------------------------


class SharedPortServer(ThreadingHTTPServer):
    allow_reuse_port = True  # every worker binds the port; the kernel spreads connections
    request_queue_size = 1024  # wrk opens its connections at once


def serve_app(dsn: str, port: int) -> None:
    """One worker: its own pool, one indexed query per request, orjson, gzip
    when asked. Logs a line per request on stderr (the app's request log)."""
    ids = [str(i) for i in range(RACERS)]
    pool: queue.Queue[psycopg.Connection[Any]] = queue.Queue()
    for _ in range(APP_POOL):
        pool.put(psycopg.connect(dsn, autocommit=True, application_name="app"))

    def positions() -> bytes:
        conn = pool.get()
        try:
            at = datetime.now(UTC)  # the view is as of the query
            rows = conn.execute(LATEST, (ids,)).fetchall()
        finally:
            pool.put(conn)
        racers = [
            {"id": r, "position": {"lat": lat, "lon": lon, "at": t}} for r, t, lat, lon in rows
        ]
        return orjson.dumps({"generated_at": at, "racers": racers})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as wrk and nginx's upstream use it
        disable_nagle_algorithm = True  # headers and body go out as written

        def do_GET(self) -> None:
            body = positions()
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            if gzipped:
                body = gzip.compress(body, 1)  # nginx's gzip level by default
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Vary", "Accept-Encoding")
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = SharedPortServer(("127.0.0.1", port), Handler)
    print("ready", file=sys.stderr, flush=True)
    server.serve_forever()


# -- measuring ----------------------------------------------------------------------


def wrk(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
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
        stdout=subprocess.PIPE,
        text=True,
    )


def wrk_figures(out: str) -> dict[str, Any]:
    """Requests, p99, errors and bytes per response from wrk's report."""
    total = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", out)
    assert total, out
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
    to_ms = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    to_bytes = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(total.group(1))
    return {
        "requests": requests,
        "rps": requests / DURATION_S,
        "p99_ms": float(p99.group(1)) * to_ms[p99.group(2)] if p99 else None,
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
        "bytes": float(total.group(2)) * to_bytes[total.group(3)] / max(1, requests),
    }


def view_ages(url: str, until: float) -> list[float]:
    """How old the view a spectator gets is (now - its generated_at), sampled
    until `until` by one more client."""
    ages = []
    while time.time() < until:
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        try:
            with urllib.request.urlopen(request, timeout=10) as got:
                body = got.read()
                if got.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
            generated = datetime.fromisoformat(orjson.loads(body)["generated_at"])
            ages.append(time.time() - generated.timestamp())
        except OSError:  # a sample lost to the load; wrk counts the errors
            pass
        time.sleep(SAMPLE_EVERY_S)
    return ages


def quiet(log: Path, most_s: int = 10) -> None:
    """Until log has not grown for a second (most_s at most)."""
    for _ in range(most_s):
        size = log.stat().st_size
        time.sleep(1)
        if log.stat().st_size == size:
            return


class Counter:
    """Lines a log gained since start()."""

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


def load(url: str, origin_log: Counter, origin_get: str, pg_log: Counter) -> dict[str, Any]:
    """wrk on url for DURATION_S, the view's age sampled meanwhile; what
    reached the origin (lines with origin_get) and the database, by
    application_name, per second."""
    quiet(origin_log.path)  # what the last load left queued is not this one's
    origin_log.start()
    pg_log.start()
    running = wrk(url)
    ages = view_ages(url, time.time() + DURATION_S)
    figures = wrk_figures(running.communicate()[0])
    origin = sum(1 for line in origin_log.lines() if origin_get in line)
    by_app = statements(pg_log.lines())
    return {
        **figures,
        "origin_per_s": origin / DURATION_S,
        "db_per_s": {name: n / DURATION_S for name, n in by_app.items()},
        "age_s": [statistics.median(ages), max(ages)] if ages else None,
        "age_samples": len(ages),
    }


# -- the parts ----------------------------------------------------------------------


def start(procs: list[subprocess.Popen[bytes]], args: list[str], log: Path) -> None:
    procs.append(subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("ab")))


def wait_for(ready: Callable[[], object], what: str, log: Path) -> None:
    """Until ready() is true (60 s at most)."""
    for _ in range(600):
        try:
            if ready():
                return
        except Exception:  # still starting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} never started: " + log.read_text()[-2000:])


def public_bucket(s3: Any) -> None:
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


def positions_key(s3: Any) -> str:
    """The published object holding every racer's position, as the app's
    response does: snapshot.json, or in the large form (above shard_above)
    the field's shard, one at this size."""
    body = s3.get_object(Bucket=BUCKET, Key="race/snapshot.json")["Body"].read()
    snapshot = orjson.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
    field = snapshot.get("field")
    if field is None:
        return "race/snapshot.json"
    assert field["shards"] == 1, f"{RACERS} racers in {field['shards']} shards"
    return "race/" + str(field["shard_url"]).format(shard=0)


def race_table(dsn: str, start_at: datetime) -> None:
    """live_points with the race's first AGE_S, and the index the app's query needs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE live_points (id bigserial PRIMARY KEY, user_id text, "
            "recorded_at timestamptz, lat float8, lon float8)"
        )
        generate(conn, RACERS, start_at, 0, AGE_S, FIX_EVERY_S)
        conn.execute("CREATE INDEX ON live_points (user_id, recorded_at DESC)")
        conn.execute("ANALYZE live_points")


def feed(dsn: str, start_at: datetime, stop: threading.Event) -> None:
    """The app keeps writing fixes, as phones send them."""
    t = float(AGE_S)
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.wait(INTERVAL_S):
            generate(conn, RACERS, start_at, t, t + INTERVAL_S, FIX_EVERY_S)
            t += INTERVAL_S


def start_origin(work: Path, procs: list[subprocess.Popen[bytes]]) -> tuple[Any, int]:
    """moto's S3 server with the bench's public bucket: its client and port."""
    port = free_port()
    start(
        procs,
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        work / "moto.log",
    )
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    wait_for(lambda: s3.create_bucket(Bucket=BUCKET), "moto", work / "moto.log")
    public_bucket(s3)
    return s3, port


def start_race(
    work: Path, dsn: str, moto: int, procs: list[subprocess.Popen[bytes]], stop: threading.Event
) -> None:
    """The race 10 minutes in, fixes written until stop, `racepub run` publishing it."""
    start_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=AGE_S)
    race_table(dsn + "?application_name=feeder", start_at)
    feeding = (dsn + "?application_name=feeder", start_at, stop)
    threading.Thread(target=feed, args=feeding, daemon=True).start()
    config = write_race(
        work, RACERS, dsn + "?application_name=racepub", f"http://127.0.0.1:{moto}", start_at
    )
    run = ["run", "--race", "b", "--config", str(config), "--state-dir", str(work / "state")]
    start(procs, [sys.executable, "-m", "racepub", *run], work / "publisher.log")


def start_app(dsn: str, port: int, log: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    for _ in range(APP_WORKERS):
        start(procs, [sys.executable, "-m", "bench.spectators", "--app", dsn, str(port)], log)
    wait_for(lambda: log.read_text().count("ready") == APP_WORKERS, "the app", log)


def start_nginx(work: Path, procs: list[subprocess.Popen[bytes]], **ports: int) -> None:
    """The CDN stand-in (port cdn) and the micro-cache (port micro)."""
    (work / "cache").mkdir()
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, user=user, **ports))
    start(procs, [NGINX, "-c", str(work / "nginx.conf"), "-p", str(work)], work / "nginx.log")


def serve(
    s3: Any, work: Path, pg_log: Path, cdn: int, app: int, micro: int
) -> list[dict[str, Any]]:
    """The same load on each way of serving every racer's position, in turn.
    db_by: the application_name whose statements serve the row's spectators."""
    pg = Counter(pg_log)
    key = positions_key(s3)
    from_s3 = Counter(work / "moto.log"), f'"GET /{BUCKET}/{key}'
    from_app = Counter(work / "app.log"), '"GET /positions.json'
    pools = f"{APP_WORKERS} × {APP_POOL}"
    return [
        {
            "name": "racepub via the CDN stand-in",
            "object": key,
            "processes": "1 publisher × 2 (read, lock)",
            "db_by": "racepub",
            "stale_by": f"the interval ({INTERVAL_S} s) + a cycle + the CDN's copy "
            f"(s-maxage {INTERVAL_S - 1} s)",
            **load(f"http://127.0.0.1:{cdn}/{BUCKET}/{key}", *from_s3, pg),
        },
        {
            "name": "app, direct",
            "processes": pools,
            "db_by": "app",
            "stale_by": "the query",
            **load(f"http://127.0.0.1:{app}/positions.json", *from_app, pg),
        },
        {
            "name": "app behind a 1 s micro-cache",
            "processes": pools,
            "db_by": "app",
            "stale_by": "the cache's copy (1 s) + the query",
            **load(f"http://127.0.0.1:{micro}/positions.json", *from_app, pg),
        },
    ]


def measure() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="racepub-spectators-"))
    os.chmod(work, 0o755)
    # Parameters unlogged: the app's 1,000 ids would be most of the log's writing.
    logged = {"log_statement": "all", "log_line_prefix": "%a:", "log_parameter_max_length": "0"}
    db = LocalPostgres(work / "pg", settings=logged)
    dsn = db.start()
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    try:
        s3, moto = start_origin(work, procs)
        start_race(work, dsn, moto, procs, stop)
        cdn, app, micro = free_port(), free_port(), free_port()
        start_app(dsn, app, work / "app.log", procs)
        start_nginx(work, procs, origin=moto, cdn=cdn, app=app, micro=micro)
        # The publisher's first cycle catches up on 10 minutes.
        published = "race/snapshot.json"
        wait_for(
            lambda: s3.head_object(Bucket=BUCKET, Key=published),
            "the publisher",
            work / "publisher.log",
        )
        time.sleep(1.5)
        results = serve(s3, work, db.root / "postgres.log", cdn, app, micro)
        return {
            "racers": RACERS,
            "object": results[0]["object"],
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "interval_s": INTERVAL_S,
            "app_workers": APP_WORKERS,
            "app_pool": APP_POOL,
            "sample_every_s": SAMPLE_EVERY_S,
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
    if len(sys.argv) == 4 and sys.argv[1] == "--app":
        serve_app(sys.argv[2], int(sys.argv[3]))
        return
    missing = tools_missing()
    if missing:
        print(json.dumps({"skipped": f"needs {' and '.join(missing)} (Debian packages)"}))
        return
    print(json.dumps(measure()))


if __name__ == "__main__":
    main()
