"""racepub check, simulate and serve against real parts."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from racepub import config
from racepub.cli import main
from racepub.commands import simulate as sim
from racepub.commands.localdb import free_port
from racepub.commands.serve import make_server, serve_in_thread
from racepub.commands.simulate import create_table, simulate, truths
from racepub.timefmt import ts
from tests.helpers import (
    COLS,
    POINTS_DDL,
    create_points_table,
    fixes,
    insert_points,
    now_utc,
    wait_for,
    write_race,
)


def test_check_all_good(tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn)
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    out = capsys.readouterr().out
    for line in ("ok    config", "ok    course", "ok    database", "ok    sink"):
        assert line in out
    assert "FAIL" not in out
    assert not any(p.name.startswith(".racepub-check") for p in setup.sink_dir.iterdir())
    # No index on the cursor column: a warning with the statement to run.
    assert (
        "warn  database: no index serves the incremental read (it would scan the table); "
        'add: CREATE INDEX CONCURRENTLY ON "live_points" ("recorded_at");'
    ) in out
    # Without an insert-order column, late uploads are lost: check says so.
    assert "warn  source: no ingest column" in out and "add an identity column" in out
    # The OSM tile servers are not for race crowds: check says what to do instead.
    assert "warn  tiles: the page's map comes from tile.openstreetmap.org" in out
    assert "racepub tiles --race t --from" in out
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX ON live_points (recorded_at)")
        conn.execute("ALTER TABLE live_points ADD COLUMN id bigserial")
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    out = capsys.readouterr().out
    assert "no index serves" not in out
    assert 'this table has one; add to [source]:  ingest = "id"' in out
    text = setup.path.read_text()
    setup.path.write_text(
        text.replace('lon = "lon"', 'lon = "lon"\ningest = "id"').replace(
            "[races.t]", '[races.t]\ntiles = "https://maps.example.org/{z}/{x}/{y}.png"'
        )
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX ON live_points (id)")
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    out = capsys.readouterr().out
    assert "warn" not in out and "cursor 'id' (insert order)" in out
    assert 'ContentSecurityPolicy="default-src' in out and "https://maps.example.org" in out
    # A basemap named but not made yet: a failure that says how to make it.
    text = setup.path.read_text()
    setup.path.write_text(text.replace("[races.t]", '[races.t]\nbasemap = "t.pmtiles"'))
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  basemap: cannot read the basemap" in out
    assert "racepub tiles --race t --from SOURCE" in out


def test_check_reports_each_failure(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create_points_table(
        dsn, "CREATE TABLE live_points (user_id text, recorded_at timestamptz, lat float8)"
    )
    (tmp_path / "public").write_text("a file where the sink directory should be")
    setup = write_race(tmp_path, dsn)
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  database: table 'live_points' has no column 'lon'" in out
    assert "FAIL  sink: cannot write" in out
    assert dsn not in out  # the DSN may hold a password


def test_check_needs_only_select(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create_points_table(
        dsn,
        POINTS_DDL + "; CREATE ROLE racepub_ro LOGIN; GRANT SELECT ON live_points TO racepub_ro",
    )
    ro = dsn.replace("postgres@", "racepub_ro@")
    setup = write_race(tmp_path, ro)
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("REVOKE SELECT ON live_points FROM racepub_ro")
    capsys.readouterr()
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 1
    assert "FAIL  database: permission denied" in capsys.readouterr().out


def test_simulated_race_is_realistic(tmp_path: Path, dsn: str) -> None:
    setup = write_race(tmp_path, dsn, starts_at=now_utc())
    cfg = config.load(str(setup.path))
    race = cfg.race("t")
    by_racer: dict[str, list[tuple[float, float, float]]] = {}
    start = ts(race.starts_at)
    for racer_id, t, lat, lon in sim.fixes(race, setup.course, start, start + 3600):
        by_racer.setdefault(racer_id, []).append((t, lat, lon))
    assert set(by_racer) == {"1001", "1002", "2001"}
    for pts in by_racer.values():
        gaps = [b[0] - a[0] for a, b in zip(pts, pts[1:], strict=False)]
        assert 1.5 < min(gaps) and max(gaps) < 2.5  # a fix every ~2 s
        assert all(start <= p[0] for p in pts)
    finish = {t.racer.id: t.finish_s for t in truths(race, setup.course)}
    # The founding result: runners at 24:08 and 24:10, the trolley at 24:49.
    assert finish == {"1001": 1448, "1002": 1450, "2001": 1489}


def test_simulate_writes_points_the_publisher_reads(tmp_path: Path, dsn: str) -> None:
    setup = write_race(tmp_path, dsn, starts_at=now_utc() - timedelta(minutes=3))
    cfg = config.load(str(setup.path))
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_table(conn, cfg)

    class Once:  # stop after the backfill
        def is_set(self) -> bool:
            return False

        def wait(self, _: float) -> bool:
            raise StopIteration

    with pytest.raises(StopIteration):
        simulate(cfg, cfg.race("t"), stop=Once())  # type: ignore[arg-type]
    with psycopg.connect(dsn) as conn:
        n = conn.execute("SELECT count(*) FROM live_points").fetchone()
    assert n is not None and 3 * 80 < n[0] < 3 * 100  # ~90 fixes per racer in 3 min
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 0
    snap = setup.snapshot()
    assert all(r["status"] == "racing" for r in snap["racers"])
    truth = {t.racer.id: t.distance for t in truths(cfg.race("t"), setup.course)}
    for r in snap["racers"]:
        at = datetime.fromisoformat(r["position"]["at"]).timestamp()
        # Progress from noisy fixes stays within GPS noise of the truth.
        assert r["distance_m"] == pytest.approx(truth[r["id"]](at - ts(setup.starts_at)), abs=15)


def test_serve_sends_cdn_headers(tmp_path: Path) -> None:
    root = tmp_path / "public"
    (root / "static" / "0123456789ab").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>x</title>")
    (root / "snapshot.json").write_text('{"schema": 1}')
    (root / "static" / "0123456789ab" / "app.js").write_text("export {};")
    (tmp_path / "secret.txt").write_text("outside the sink")
    server = make_server(root, interval_s=3, port=0)
    serve_in_thread(server)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/") as r:
            assert r.headers["Content-Type"] == "text/html; charset=utf-8"
            assert r.headers["Cache-Control"] == "public, max-age=60"
        req = urllib.request.Request(base + "/snapshot.json", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req) as r:
            assert r.headers["Content-Type"] == "application/json"
            assert r.headers["Cache-Control"].startswith("public, max-age=3,")
            assert r.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(r.read()) == b'{"schema": 1}'
        with urllib.request.urlopen(base + "/static/0123456789ab/app.js") as r:
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
        # The trails' packs are read by byte range, as from S3 and CDNs.
        (root / "packs").mkdir()
        (root / "packs" / "1-ab.bin").write_bytes(bytes(range(100)))
        for asked, status, got, span in (
            ("bytes=10-19", 206, bytes(range(10, 20)), "10-19"),
            ("bytes=95-", 206, bytes(range(95, 100)), "95-99"),
            ("bytes=-3", 206, bytes(range(97, 100)), "97-99"),
            ("bytes=200-300", 200, bytes(range(100)), None),
        ):
            req = urllib.request.Request(base + "/packs/1-ab.bin", headers={"Range": asked})
            with urllib.request.urlopen(req) as r:
                assert (r.status, r.read()) == (status, got), asked
                assert r.headers["Content-Range"] == (span and f"bytes {span}/100")
                assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/nope.json"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path)
            assert e.value.code == 404
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "bad_dsn",
    [
        "postgresql://racepub:S3cr%zzet@127.0.0.1:1/app",  # a % that is no percent-encoding
        "postgresql://racepub:S3cr@dor@127.0.0.1:1/app",  # an @ left in the password
        "host=127.0.0.1 port=1 dbname=app password=S3cr3t secretword",  # a word without =
        "postgresql://racepub:S3cr3t@127.0.0.1:1/app",  # well formed; nobody listening
    ],
    ids=["percent", "at-sign", "keyword", "refused"],
)
def test_no_secret_of_the_dsn_in_any_error(
    tmp_path: Path,
    bad_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup = write_race(tmp_path, "postgresql://racepub@127.0.0.1:1/app")
    monkeypatch.setenv("RACEPUB_DATABASE_URL", bad_dsn)
    # A DSN that does not parse is a config error (exit 2: a restart cannot
    # mend it); a server that does not answer, a failed cycle (exit 1).
    malformed = not bad_dsn.endswith("S3cr3t@127.0.0.1:1/app")
    code = 2 if malformed else 1
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == code
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == code
    out = capsys.readouterr()
    said = out.out + out.err + caplog.text
    if malformed:
        assert "RACEPUB_DATABASE_URL (it overrides" in said and "(not shown" in said
    else:
        assert "cannot connect to the database 127.0.0.1:1/app" in said  # where, at least
    for secret in ("S3cr", "zzet", "dor@", "secretword"):
        assert secret not in said, (secret, said)


def test_ports_out_of_range_and_busy_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_race(tmp_path, "postgresql://racepub@127.0.0.1:1/app")
    for argv in (
        ["serve", "--race", "t", "--port", "70000"],
        ["run", "--race", "t", "--metrics-port", "70000"],
        ["demo", "--port", "0"],
    ):
        assert (
            main([*argv[:3], "--config", str(setup.path), *argv[3:]] if argv[0] != "demo" else argv)
            == 2
        )
        err = capsys.readouterr().err
        assert "expected a port number 1..65535" in err and "Traceback" not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--race", "t", "--config", str(setup.path), "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert err.strip() == f"racepub: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_cli_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """Every option of every command says what it does; `run --help` names
    the environment and the exit codes; -v works after the command too."""
    import argparse

    from racepub.cli import parser

    p = parser()
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            assert action.help, (name, action.option_strings)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for said in (
        "RACEPUB_DATABASE_URL",
        "RACEPUB_CONFIG",
        "AWS_PROFILE",
        "exit codes",
        "2  bad usage or config",
    ):
        assert said in text
    assert p.parse_args(["status", "--race", "t", "-v"]).verbose is True
    assert p.parse_args(["-v", "status", "--race", "t"]).verbose is True
    assert p.parse_args(["status", "--race", "t"]).verbose is False
    assert p.parse_args(["run", "--race", "t", "--log-format", "json"]).log_format == "json"


def test_json_logs_carry_the_cycle_as_keys(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn)
    insert_points(dsn, "live_points", COLS, fixes(setup, "1001", 3.0, 60))
    assert (
        main(["run", "--once", "--race", "t", "--config", str(setup.path), "--log-format", "json"])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    cycle = next(line for line in lines if "seq" in line)
    assert cycle["level"] == "info" and cycle["message"].startswith("seq=1 ")
    assert cycle["seq"] == 1 and cycle["new"] == 30 and cycle["total_ms"] > 0
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_check_renders_a_race_own_template(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A race's own page naming what the page context does not have passed
    check and then failed every cycle of run: check renders it, with the
    racers, before, during and after the race, and fails with its line."""
    create_points_table(dsn)
    page = tmp_path / "page"
    page.mkdir()
    (page / "index.html.j2").write_text(
        "<!doctype html><h1>{{ title }}</h1>\n"
        "{% for row in rows %}<p>{{ row.name }} {{ row.bib_number }}</p>{% endfor %}\n"
    )
    setup = write_race(tmp_path, dsn, extra='template_dir = "page"')
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 1
    out = capsys.readouterr().out
    assert (
        f"FAIL  template: {page / 'index.html.j2'}:2: "
        "'racepub.shapes.page.BoardRow object' has no attribute 'bib_number'"
    ) in out
    assert "Traceback" not in out
    # run stops before its first cycle with the same line, exit 2 (systemd
    # does not restart it every 2 s), and writes nothing.
    assert main(["run", "--once", "--race", "t", "--config", str(setup.path)]) == 2
    err = capsys.readouterr().err
    assert f"race t's template: {page / 'index.html.j2'}:2: " in err and "Traceback" not in err
    assert not setup.sink_dir.exists() or not any(setup.sink_dir.iterdir())
    (page / "index.html.j2").write_text("<h1>{{ title }}</h1>{% if state == 'live' %}\n")
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 1
    assert f"FAIL  template: {page / 'index.html.j2'}:1: Unexpected end of template" in (
        capsys.readouterr().out
    )
    (page / "index.html.j2").write_text(
        "<h1>{{ title }}</h1>{% for r in rows %}{{ r.name }}{% endfor %}"
    )
    assert main(["check", "--race", "t", "--config", str(setup.path)]) == 0
    assert f"ok    template: the page and results render ({page} first)" in capsys.readouterr().out


def one_line_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err.strip()


def test_a_file_as_state_dir_is_bad_usage(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--state-dir naming a file published, then failed at exit with a
    traceback (the last save could not make the directory)."""
    create_points_table(dsn)
    setup = write_race(tmp_path, dsn)
    run = ["run", "--once", "--race", "t", "--config", str(setup.path), "--state-dir"]
    err = one_line_exit_2([*run, "/etc/passwd"], capsys)
    assert err.startswith("racepub run: --state-dir /etc/passwd: not a directory: expected")
    err = one_line_exit_2([*run, "/etc/passwd/racepub"], capsys)
    assert "--state-dir /etc/passwd/racepub: not a directory (/etc/passwd is not)" in err
    assert not setup.sink_dir.exists()  # refused before anything was published
    assert main([*run, str(tmp_path / "new" / "state")]) == 0  # made when missing
    assert (tmp_path / "new" / "state" / "t.state").is_file()


def test_an_address_that_cannot_be_listened_on_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--metrics-host 999.1.1.1 ended `racepub run` with a traceback."""
    setup = write_race(tmp_path, "postgresql://db.invalid/x")
    run = ["run", "--race", "t", "--config", str(setup.path), "--metrics-port", "9"]
    err = one_line_exit_2([*run, "--metrics-host", "999.1.1.1"], capsys)
    assert err == (
        "racepub run: argument --metrics-host: '999.1.1.1': expected an IP address "
        "(127.0.0.1, 0.0.0.0, ::1) or a host name"
    )
    one_line_exit_2([*run, "--metrics-host", "bad host"], capsys)

    # A name that does not resolve: found when listening, before the race is read.
    def unknown(*args: object, **kw: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    err = one_line_exit_2([*run, "--metrics-host", "metrics.example.invalid"], capsys)
    assert err == (
        "racepub run: --metrics-host 'metrics.example.invalid': no such address to listen on "
        "(Name or service not known): expected an IP address of this machine or its name"
    )


@pytest.fixture
def strict_moto(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """moto's S3 server checking credentials as S3 does (after the three
    calls that set it up): (endpoint, bucket, the access key of a user
    with no policy at all)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    admin = {"AWS_ACCESS_KEY_ID": "admin", "AWS_SECRET_ACCESS_KEY": "admin"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **admin, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(answers)
        kw: dict[str, Any] = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "admin",
            "aws_secret_access_key": "admin",
        }
        boto3.client("s3", **kw).create_bucket(Bucket="race-strict")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="publisher")
        key = iam.create_access_key(UserName="publisher")["AccessKey"]
        yield (
            url,
            "race-strict",
            {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            },
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_check_says_what_to_set_when_the_sink_refuses(
    tmp_path: Path,
    strict_moto: tuple[str, str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No credentials, an unknown key, a wrong secret, a key without the
    policy: each sink FAIL line names what to set (it said "Unable to locate
    credentials" and no more; the variables were only in `run --help`)."""
    endpoint, bucket, publisher = strict_moto
    setup = write_race(
        tmp_path,
        "postgresql://racepub@127.0.0.1:1/app",
        sink=f"s3://{bucket}/race",
        s3_endpoint=endpoint,
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role here

    def sink_line(**env: str) -> str:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        # A fresh default session, as in a new process (a session keeps
        # the first credentials it found).
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        assert main(["check", "--race", "t", "--config", str(setup.path)]) == 1
        out = capsys.readouterr().out
        lines = [line for line in out.splitlines() if line.startswith("FAIL  sink: ")]
        assert len(lines) == 1, out
        return lines[0]

    line = sink_line()
    assert "Unable to locate credentials" in line
    for what in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "instance role"):
        assert what in line, line
    assert "[s3] endpoint_url" in line  # the S3-compatible stores' way

    line = sink_line(AWS_ACCESS_KEY_ID="AKIAUNKNOWN", AWS_SECRET_ACCESS_KEY="x")
    assert "InvalidAccessKeyId" in line and "no such access key" in line
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line, line

    line = sink_line(AWS_ACCESS_KEY_ID=publisher["AWS_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY="x")
    assert "SignatureDoesNotMatch" in line and "set AWS_SECRET_ACCESS_KEY" in line, line

    line = sink_line(**publisher)
    assert "AccessDenied" in line and "PublisherPolicyArn" in line, line
    assert (
        f"s3:PutObject, s3:GetObject, s3:DeleteObject on arn:aws:s3:::{bucket}/race/* "
        f"and s3:ListBucket on arn:aws:s3:::{bucket}"
    ) in line, line
