"""Fixtures chain: a throwaway PostgreSQL -> a fresh database -> a loaded race;
moto -> a bucket. Tests assert what ends up in the database, directory or bucket."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from racepub.commands.localdb import LocalPostgres


@pytest.fixture(autouse=True)
def state_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """`racepub run` saves its race state here, not in the user's home."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("RACEPUB_STATE_DIR", str(path))
    yield path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    server = LocalPostgres()
    server.start()
    yield server
    server.destroy()


_db_names = itertools.count()


@pytest.fixture
def dsn(pg_server: LocalPostgres) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"t{os.getpid()}_{next(_db_names)}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.dsn.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that can only ever reach moto."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws(fake_aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def bucket(aws: None) -> str:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="race-live")
    # Versioning lets a test count how often each key was written.
    s3.put_bucket_versioning(Bucket="race-live", VersioningConfiguration={"Status": "Enabled"})
    return "race-live"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 over real HTTP on loopback (the browser needs an endpoint)."""
    from moto.server import ThreadedMotoServer

    from racepub.commands.localdb import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's headless Chromium via Playwright. In CI it must be there."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """Opens pages that record JavaScript errors and dialogs; asserts none at the end."""
    pages: list[tuple[Any, list[str]]] = []

    def opener(
        url: str, viewport: dict[str, int] = DESKTOP, init_script: str | None = None, **context: Any
    ) -> Any:
        ctx = browser.new_context(viewport=viewport, **context)
        page = ctx.new_page()
        if init_script:
            page.add_init_script(init_script)
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"error: {e}"))

        def on_dialog(d: Any) -> None:
            problems.append(f"dialog: {d.message}")
            d.dismiss()

        page.on("dialog", on_dialog)
        page.requests = []
        page.ranges = []  # (url, Range header) of every request that asked for one
        page.on("request", lambda r: page.requests.append(r.url))
        page.on(
            "request",
            lambda r: (
                page.ranges.append((r.url, r.headers["range"])) if "range" in r.headers else None
            ),
        )
        page.goto(url)
        pages.append((page, problems))
        return page

    yield opener
    for page, problems in pages:
        assert problems == []  # no JavaScript errors, no script from data
        page.context.close()
