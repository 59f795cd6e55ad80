"""The spectator page in a real browser, loaded over HTTP from moto's S3 server."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from racepub.cli import main
from tests.helpers import create_points_table, insert_points, now_utc, write_race

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"page-{os.getpid()}-{len(s3.list_buckets()['Buckets'])}"
    s3.create_bucket(Bucket=name)
    # Spectators read anonymously, as through a public bucket or CloudFront.
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{name}/*"}]}))
    return name


def publish_race(tmp_path: Path, dsn: str, moto_server: str, bucket: str) -> str:
    create_points_table(dsn, "CREATE TABLE live_points (user_id text, recorded_at timestamptz, "
                             "lat float8, lon float8)")
    racers = """
        [[races.t.racers]]
        id = "1001"
        name = "<img src=x onerror=alert(1)>Mallory"

        [[races.t.racers]]
        id = "1002"
        name = "Sarah"

        [[races.t.racers]]
        id = "2001"
        name = "The T"
        kind = "vehicle"

        [[races.t.racers]]
        id = "1004"
        name = "Kim"
    """
    setup = write_race(tmp_path, dsn, racers=racers, sink=f"s3://{bucket}/live",
                       starts_at=now_utc() - timedelta(minutes=3),
                       extra='tiles = "http://127.0.0.1:9/{z}/{x}/{y}.png"\nchunk_points = 20')
    setup.path.write_text(setup.path.read_text().replace(
        "[source]", f'[s3]\nendpoint_url = "{moto_server}"\nregion = "us-east-1"\n\n[source]'))
    rows = []
    for racer, speed in (("1001", 3.4), ("1002", 3.1), ("2001", 2.0)):
        for i in range(1, 85):
            lat, lon = setup.course.at(speed * 2 * i)
            rows.append((racer, setup.starts_at + timedelta(seconds=2 * i), lat, lon))
    insert_points(dsn, "live_points", ("user_id", "recorded_at", "lat", "lon"), rows)
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    return f"{moto_server}/{bucket}/live/index.html"


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800},
                                      {"width": 360, "height": 740}], ids=["desktop", "phone"])
def test_page_shows_race_from_s3(tmp_path: Path, dsn: str, moto_server: str, s3_env: str,
                                 browser: Any, viewport: dict[str, int]) -> None:
    url = publish_race(tmp_path, dsn, moto_server, s3_env)
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    # First paint, before any script: the leaderboard is in the HTML.
    rows = page.locator("#board tbody tr")
    page.wait_for_function("document.querySelectorAll('#board tbody tr')[0]"
                           "?.cells[3]?.textContent.includes('/')")
    names = [rows.nth(i).locator("th").inner_text() for i in range(rows.count())]
    assert names == ["<img src=x onerror=alert(1)>Mallory", "Sarah", "The T", "Kim"]
    assert page.locator("#board tbody tr").nth(3).inner_text().count("waiting") == 1
    # Course, start, finish, three racers (Kim has no fix yet): Leaflet paths.
    page.wait_for_function("document.querySelectorAll('path.leaflet-interactive').length >= 6")
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{viewport['width']}.png"))
    assert errors == [] and dialogs == []
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    polled = [u for u in requests if "snapshot.json" in u]
    assert polled and all("?" not in u for u in polled)
    assert any("/tracks/1001/0.json" in u for u in requests)  # the trail's chunks
    page.close()
