"""deploy/cloudformation/racepub.yaml makes what racepub's freshness, cost
and privacy depend on (cfn-lint checks the rest, in `make lint`); its IAM
policy allows exactly the S3 calls the publisher makes, as recorded while
it publishes, restarts and checks a race against moto."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from racepub import config
from racepub.commands.check import check
from racepub.commands.status import status
from racepub.config import DEFAULT_TILES
from racepub.publisher.cycle import Publisher
from racepub.shapes.page import csp
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


def test_response_headers_match_the_page(template: dict[str, Any]) -> None:
    headers = of_type(template, "AWS::CloudFront::ResponseHeadersPolicy")
    security = headers["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert security["ContentTypeOptions"]["Override"] is True
    # The header's default is the CSP the page itself sets for the default tiles.
    assert template["Parameters"]["ContentSecurityPolicy"]["Default"] == csp(DEFAULT_TILES)


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
