"""`racepub check --cdn URL` against a real caching proxy: nginx in front of
moto's S3 server while `racepub run` publishes. Configured as racepub needs
(honouring the origin's Cache-Control) it passes; with a forced long TTL,
what spectators would see is stale, and it says so and exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from racepub.commands.localdb import free_port
from tests.faults import Publisher
from tests.helpers import (
    COLS,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    public_bucket,
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
# What an organizer may get wrong.
SETUPS = {
    "well configured": (PATH_KEY, ""),
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
    if cdn == "well configured":
        assert "ok    cdn query: query strings are not in the cache key" in report, report
    else:
        assert "warn  cdn query: query strings are in the cache key" in report, report
