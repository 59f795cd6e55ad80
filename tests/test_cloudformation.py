"""deploy/cloudformation/racepub.yaml makes what racepub's freshness, cost
and privacy depend on (cfn-lint checks the rest, in `make lint`); its IAM
policy allows exactly the S3 calls the publisher makes, as recorded while
it publishes, restarts and checks a race against moto; its bucket keeps
versions and expires nothing a page refers to; its CSP header lets
results.html keep its style (in Chromium) and keeps other sites from
framing the page."""

from __future__ import annotations

import http.server
import json
import re
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from racepub import config
from racepub.commands.check import cdn_csp, check, inline_style_hashes
from racepub.commands.status import status
from racepub.config import DEFAULT_TILES
from racepub.publisher.cycle import Publisher
from racepub.shapes.page import csp, environment
from racepub.shapes.results import Results, html_bytes
from tests.helpers import (
    COLS,
    create_points_table,
    fixes,
    insert_points,
    write_race,
)
from tests.test_large import large_race

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "cloudformation" / "racepub.yaml"
# Each S3 operation the publisher may call, and the IAM action it needs.
IAM_ACTION = {
    "PutObject": "s3:PutObject",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
}


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, !GetAtt...) read
    as their long forms."""


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_Loader)
    return doc


def of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]
    assert len(found) == 1, kind
    props: dict[str, Any] = found[0]
    return props


def test_cdn_honours_racepubs_cache_control_and_serves_objects_as_stored(
    template: dict[str, Any],
) -> None:
    policy = of_type(template, "AWS::CloudFront::CachePolicy")["CachePolicyConfig"]
    assert policy["MinTTL"] == 0  # a snapshot is cached interval_s - 1, never longer
    assert policy["DefaultTTL"] <= 1
    key = policy["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["QueryStringsConfig"]["QueryStringBehavior"] == "none"
    assert key["CookiesConfig"]["CookieBehavior"] == "none"
    assert key["HeadersConfig"]["HeaderBehavior"] == "none"
    assert key["EnableAcceptEncodingGzip"] is False and key["EnableAcceptEncodingBrotli"] is False

    dist = of_type(template, "AWS::CloudFront::Distribution")["DistributionConfig"]
    behaviour = dist["DefaultCacheBehavior"]
    assert behaviour["Compress"] is False  # objects are stored gzipped
    assert behaviour["CachePolicyId"] == {"Ref": "CachePolicy"}
    assert behaviour["ViewerProtocolPolicy"] == "redirect-to-https"
    assert set(behaviour["AllowedMethods"]) == {"GET", "HEAD"}
    assert dist["HttpVersion"] == "http2and3" and dist["DefaultRootObject"] == "index.html"
    origin = dist["Origins"][0]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["OriginAccessControl", "Id"]}
    assert origin["OriginPath"] == {"Fn::Sub": "/${RacePrefix}"}
    assert all(e["ErrorCachingMinTTL"] <= 1 for e in dist["CustomErrorResponses"])


def test_bucket_is_private_and_tls_only(template: dict[str, Any]) -> None:
    bucket = of_type(template, "AWS::S3::Bucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    statements = of_type(template, "AWS::S3::BucketPolicy")["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    allow = [s for s in statements if s["Effect"] == "Allow"]
    # Only CloudFront, only this distribution, only reading the race.
    assert [s["Principal"] for s in allow] == [{"Service": "cloudfront.amazonaws.com"}]
    assert allow[0]["Action"] == "s3:GetObject"
    assert "AWS:SourceArn" in allow[0]["Condition"]["StringEquals"]


def test_bucket_keeps_versions_and_expires_only_what_no_page_refers_to(
    template: dict[str, Any],
) -> None:
    """Expiring objects N days after they were written broke a live page:
    static/, roster/, names/, basemap/ and the first packs and chunks are
    written once at the start and referred to for as long as the page is up.
    Old versions (each snapshot rewrite leaves one) are what may go."""
    bucket = of_type(template, "AWS::S3::Bucket")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    old = next(r for r in rules if isinstance(r, dict) and "NoncurrentVersionExpiration" in r)
    assert old["Status"] == "Enabled" and old["Prefix"] == {"Fn::Sub": "${RacePrefix}/"}
    assert old["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "OldVersionsDays"}}
    assert old["ExpiredObjectDeleteMarker"] is True
    assert template["Parameters"]["OldVersionsDays"]["MinValue"] >= 1
    for rule in _rules(rules):
        # No current object by its age; the whole race only on a date.
        assert "ExpirationInDays" not in rule and "Transitions" not in rule, rule
        if "ExpirationDate" in rule:
            assert rule["Id"] == "take-down"
            assert rule["ExpirationDate"] == {"Fn::Sub": "${TakeDownOn}T00:00:00Z"}
    assert "ExpireAfterDays" not in template["Parameters"]
    take_down = next(r for r in rules if not isinstance(r, dict) or "Fn::If" in r)
    assert take_down["Fn::If"][0] == "TakesDown"
    assert take_down["Fn::If"][2] == {"Ref": "AWS::NoValue"}


def _rules(rules: list[Any]) -> Iterator[dict[str, Any]]:
    """The lifecycle rules, both ways of each condition."""
    for rule in rules:
        if "Fn::If" in rule:
            yield from (r for r in rule["Fn::If"][1:] if r != {"Ref": "AWS::NoValue"})
        else:
            yield rule


def test_response_headers_match_the_page(template: dict[str, Any]) -> None:
    headers = of_type(template, "AWS::CloudFront::ResponseHeadersPolicy")
    security = headers["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert security["ContentTypeOptions"]["Override"] is True
    assert security["ContentSecurityPolicy"]["ContentSecurityPolicy"] == {
        "Ref": "ContentSecurityPolicy"
    }
    # The header's default: the CSP the page itself sets for the default
    # tiles, results.html's <style> by its hash, and no framing.
    policy = template["Parameters"]["ContentSecurityPolicy"]["Default"]
    assert policy == cdn_csp(DEFAULT_TILES)
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    page = dict(d.split(" ", 1) for d in csp(DEFAULT_TILES).split("; "))
    assert {k: v for k, v in directives.items() if k != "style-src"} == {
        **{k: v for k, v in page.items() if k != "style-src"},
        "frame-ancestors": "'none'",
    }
    assert directives["style-src"] == "'self' " + " ".join(f"'{h}'" for h in inline_style_hashes())
    assert len(inline_style_hashes()) == 1  # results.html's one <style>


@pytest.fixture
def results_html(tmp_path: Path, template: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """results.html as the publisher renders it, served with the template's
    Content-Security-Policy header as CloudFront adds it; and a page of
    another origin that frames it. (their URLs)"""
    res = Results(
        False,
        {
            "race": {"title": "Test race", "starts_at": "2014-07-25T11:00:00-04:00"}
            | {"course_length_m": 6600.0},
            "generated_at": "2014-07-25T15:30:00Z",
            "racers": [],
        },
    )
    body = html_bytes(res, environment(None))
    policy = template["Parameters"]["ContentSecurityPolicy"]["Default"]

    class Race(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", policy)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    race = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Race)
    threading.Thread(target=race.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{race.server_address[1]}/results.html"
    framing = f'<!doctype html><iframe src="{url}"></iframe>'.encode()

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(framing)

        def log_message(self, *args: Any) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    yield url, f"http://127.0.0.1:{other.server_address[1]}/"
    for server in (race, other):
        server.shutdown()
        server.server_close()


def test_results_page_keeps_its_style_under_the_cdns_header_and_is_not_framed(
    results_html: tuple[str, str], open_page: Any
) -> None:
    """In Chromium: the header's style-src allows results.html's inline
    <style> (without its hash the page lost all of it), and frame-ancestors
    keeps another site from framing the page."""
    url, elsewhere = results_html
    page = open_page(url)
    style = page.evaluate(
        "() => getComputedStyle(document.querySelector('.provisional')).backgroundColor"
    )
    assert style == "rgb(255, 243, 205)"  # .provisional { background: #fff3cd }
    framer = open_page(elsewhere)
    framer.wait_for_timeout(500)
    frame = next(f for f in framer.frames if f != framer.main_frame)
    assert frame.url != url and "Test race" not in frame.content(), frame.url  # refused


def test_sink_line_output_pastes_into_the_config(template: dict[str, Any]) -> None:
    line = template["Outputs"]["SinkLine"]["Value"]["Fn::Sub"]
    pasted = line.replace("${Bucket}", "racepub-site-bucket").replace("${RacePrefix}", "race")
    assert tomllib.loads(pasted) == {"sink": "s3://racepub-site-bucket/race"}


@pytest.fixture
def s3_calls(aws: None) -> Iterator[list[str]]:
    """Every S3 operation any boto3 client makes meanwhile."""
    calls: list[str] = []
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    boto3.DEFAULT_SESSION.events.register("before-call.s3", record)
    yield calls
    boto3.DEFAULT_SESSION = None


def test_iam_policy_allows_exactly_what_the_publisher_calls(
    template: dict[str, Any], tmp_path: Path, dsn: str, bucket: str, s3_calls: list[str]
) -> None:
    s3_calls.clear()  # (the bucket's own setup)
    # A small race: published, restarted (reads back the snapshot), checked, watched.
    create_points_table(dsn)
    small = write_race(tmp_path, dsn, sink=f"s3://{bucket}/race")
    insert_points(dsn, "live_points", COLS, fixes(small, "1001", 3.0, 120))
    cfg = config.load(str(small.path))
    for _ in range(2):
        pub = Publisher(cfg, cfg.race("t"))
        pub.cycle()
        pub.cycle()
        pub.close()
    assert check(cfg, cfg.race("t"), out=lambda _: None)
    assert status(cfg, cfg.race("t"), out=lambda _: None)
    # A large race, restarted: shards and trail groups read back.
    (tmp_path / "large").mkdir()
    setup, rows = large_race(
        tmp_path / "large", dsn, bucket, lambda i: 2.5, 60, tram=False, create_table=False
    )
    insert_points(dsn, "live_points", COLS, rows)
    large = config.load(str(setup.path))
    for _ in range(2):
        pub = Publisher(large, large.race("t"))
        pub.cycle()
        pub.close()

    unknown = set(s3_calls) - set(IAM_ACTION)
    assert not unknown, f"the publisher calls {unknown}: add it to IAM_ACTION and the policy"
    needed = {IAM_ACTION[op] for op in s3_calls}
    statements = of_type(template, "AWS::IAM::ManagedPolicy")["PolicyDocument"]["Statement"]
    on_objects = next(
        s for s in statements if s["Resource"] == {"Fn::Sub": "${Bucket.Arn}/${RacePrefix}/*"}
    )
    assert set(on_objects["Action"]) == needed  # no more, no less
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${RacePrefix}/*"}}}


def readme_documents() -> dict[str, Any]:
    """The JSON documents README gives for a bucket made by hand, by file name."""
    readme = (TEMPLATE.parents[2] / "README.md").read_text()
    section = readme[readme.index("### The bucket without CloudFormation") :]
    found = re.findall(r"`(\S+\.json)`:.*?```json\n(.*?)```", section, re.S)
    return {name: json.loads(body) for name, body in found}


def test_readme_bucket_by_hand_is_the_templates(template: dict[str, Any], aws: None) -> None:
    """README's policies and lifecycle, for a bucket made without
    CloudFormation, grant and expire what the template does; S3 (moto)
    takes them as they are written."""
    docs = readme_documents()
    assert set(docs) == {"lifecycle.json", "publisher-policy.json", "bucket-policy.json"}

    def on_race(value: Any) -> Any:
        """The template's bucket and prefix as README's race."""
        text = json.dumps(value).replace("${Bucket.Arn}", "arn:aws:s3:::outrunthet-live")
        text = text.replace("${RacePrefix}", "outrunthet")

        def resolved(d: dict[str, Any]) -> Any:
            if d == {"Fn::GetAtt": ["Bucket", "Arn"]}:
                return "arn:aws:s3:::outrunthet-live"
            return d.get("Fn::Sub", d)

        return json.loads(text, object_hook=resolved)

    publisher = of_type(template, "AWS::IAM::ManagedPolicy")["PolicyDocument"]["Statement"]
    expected = on_race(publisher)
    assert docs["publisher-policy.json"]["Statement"] == expected

    rule = docs["lifecycle.json"]["Rules"][0]
    mine = next(
        r
        for r in _rules(of_type(template, "AWS::S3::Bucket")["LifecycleConfiguration"]["Rules"])
        if r["Id"] == "old-versions"
    )
    assert (
        rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        == template["Parameters"]["OldVersionsDays"]["Default"]
    )
    assert rule["Expiration"] == {"ExpiredObjectDeleteMarker": mine["ExpiredObjectDeleteMarker"]}
    assert rule["AbortIncompleteMultipartUpload"] == mine["AbortIncompleteMultipartUpload"]
    assert [k for k in rule if k not in ("ID", "Status", "Filter")] == [
        "NoncurrentVersionExpiration",
        "Expiration",
        "AbortIncompleteMultipartUpload",
    ]  # nothing current expires

    statements = docs["bucket-policy.json"]["Statement"]
    tls = of_type(template, "AWS::S3::BucketPolicy")["PolicyDocument"]["Statement"][0]
    assert statements[0]["Sid"] == tls["Sid"] == "TLSOnly"
    assert statements[0]["Condition"] == tls["Condition"] and statements[0]["Action"] == "s3:*"
    read = statements[1]
    assert read["Action"] == "s3:GetObject"  # reading, the race only
    assert read["Resource"] == "arn:aws:s3:::outrunthet-live/outrunthet/*"
    assert "aws:SourceIp" in read["Condition"]["IpAddress"]

    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(
        Bucket="outrunthet-live", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    s3.put_bucket_versioning(
        Bucket="outrunthet-live", VersioningConfiguration={"Status": "Enabled"}
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket="outrunthet-live", LifecycleConfiguration=docs["lifecycle.json"]
    )
    s3.put_bucket_policy(Bucket="outrunthet-live", Policy=json.dumps(docs["bucket-policy.json"]))
    got = s3.get_bucket_lifecycle_configuration(Bucket="outrunthet-live")["Rules"][0]
    assert got["NoncurrentVersionExpiration"]["NoncurrentDays"] == 3
    iam = boto3.client("iam", region_name="eu-west-1")
    iam.create_policy(
        PolicyName="racepub-outrunthet", PolicyDocument=json.dumps(docs["publisher-policy.json"])
    )
