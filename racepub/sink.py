"""Where objects go: an S3 bucket/prefix or a local directory, behind one small interface."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import botocore.config
import botocore.exceptions

from .config import S3
from .errors import SinkError
from .objects import Object

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Sink(Protocol):
    def put(self, obj: Object) -> int:
        """Store the object; return the bytes sent."""

    def get(self, key: str) -> bytes | None:
        """The stored body (uncompressed), or None if there is none."""

    def get_range(self, key: str, at: int, length: int) -> bytes:
        """Bytes at..at+length-1 of an object stored as it is (a pack)."""

    def fingerprint(self, key: str) -> str | None:
        """sha256 of the stored body, or None if unknown or missing."""

    def delete(self, key: str) -> None: ...

    def describe(self) -> str:
        """Where this sink writes, fit for a log line."""


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def open_sink(url: str, s3: S3 | None = None, interval_s: float = 5.0) -> Sink:
    if url.startswith("dir:"):
        return DirSink(Path(url[4:]))
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        return S3Sink(s3_client(s3 or S3(), interval_s), bucket, prefix)
    raise SinkError(f"unknown sink {url!r}: expected s3://bucket/prefix or dir:PATH")


def s3_client(cfg: S3, interval_s: float = 5.0) -> S3Client:
    """The one place a boto3 client is made. Timeouts sized from the publish
    interval keep a hung request from holding the loop past a couple of
    intervals (the publisher also gives each cycle's writes a deadline);
    standard retries back off on 5xx and throttling, which answer at once."""
    config = botocore.config.Config(
        connect_timeout=max(1.0, interval_s / 2),
        read_timeout=max(2.0, float(interval_s)),
        max_pool_connections=32,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    client: S3Client = boto3.client(
        "s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region, config=config
    )
    return client


class DirSink:
    """A directory: uncompressed objects, each written atomically (temp file + rename)."""

    compresses = False

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise SinkError(f"object key {key!r} escapes the sink directory")
        return path

    def put(self, obj: Object) -> int:
        path = self._path(obj.key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(obj.body)
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            raise SinkError(f"cannot write {path}: {e.strerror}") from None
        return len(obj.body)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SinkError(f"cannot read {self._path(key)}: {e.strerror}") from None

    def get_range(self, key: str, at: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(at)
                return f.read(length)
        except OSError as e:
            raise SinkError(f"cannot read {self._path(key)}: {e.strerror}") from None

    def fingerprint(self, key: str) -> str | None:
        body = self.get(key)
        return digest(body) if body is not None else None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise SinkError(f"cannot remove {self._path(key)}: {e.strerror}") from None

    def describe(self) -> str:
        return f"dir:{self.root}"


class S3Sink:
    """An S3 bucket/prefix. Text objects are stored gzip-compressed with
    Content-Encoding: gzip (CloudFront serves them as they are); each object
    carries the sha256 of its uncompressed body so unchanged ones are skipped."""

    def __init__(self, client: S3Client, bucket: str, prefix: str):
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # When S3 last answered anything, an error included (time.monotonic):
        # a store throttling every request is answering, not hung; botocore's
        # retries end each request, and the error says what S3 said.
        self.heard_at = -math.inf
        client.meta.events.register("needs-retry.s3", self._heard)

    def _heard(self, response: Any = None, **_: Any) -> None:
        if response is not None:  # (None: no answer at all, a timeout or reset)
            self.heard_at = time.monotonic()

    compresses = True  # stores Object.gzipped: the publisher compresses ahead, in parallel

    def put(self, obj: Object) -> int:
        body = obj.gzipped if obj.compressible else obj.body
        extra: dict[str, Any] = {"ContentEncoding": "gzip"} if obj.compressible else {}
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + obj.key,
                Body=body,
                ContentType=obj.content_type,
                CacheControl=obj.cache_control,
                Metadata={"sha256": obj.sha256},
                **extra,
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise SinkError(
                f"cannot upload {obj.key} to s3://{self.bucket}: {_reason(e)}"
            ) from None
        return len(body)

    def get(self, key: str) -> bytes | None:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body = got["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise SinkError(f"cannot read {key} from s3://{self.bucket}: {_reason(e)}") from None
        if got.get("ContentEncoding") == "gzip":
            body = gzip.decompress(body)
        return bytes(body)

    def get_range(self, key: str, at: int, length: int) -> bytes:
        try:
            got = self.client.get_object(
                Bucket=self.bucket, Key=self.prefix + key, Range=f"bytes={at}-{at + length - 1}"
            )
            return bytes(got["Body"].read())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise SinkError(f"cannot read {key} from s3://{self.bucket}: {_reason(e)}") from None

    def fingerprint(self, key: str) -> str | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise SinkError(f"cannot check {key} in s3://{self.bucket}: {_reason(e)}") from None
        except botocore.exceptions.BotoCoreError as e:
            raise SinkError(f"cannot check {key} in s3://{self.bucket}: {_reason(e)}") from None
        sha: str | None = head.get("Metadata", {}).get("sha256")
        return sha

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise SinkError(f"cannot delete {key} from s3://{self.bucket}: {_reason(e)}") from None

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def _reason(e: Exception) -> str:
    """What S3 said, and what to set so that it works (the line is all an
    organizer sees, in `racepub check` and the publisher's log)."""
    keys = (
        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run "
        "with an instance role; an S3-compatible store (MinIO, R2...) takes its own keys "
        "and [s3] endpoint_url"
    )
    if isinstance(e, botocore.exceptions.ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", "?"))
        said = f"{code}: {err.get('Message', '')}".strip(": ")
        fixes = {
            "InvalidAccessKeyId": f"the store knows no such access key: {keys}",
            "SignatureDoesNotMatch": (
                "the secret key does not match the access key: set AWS_SECRET_ACCESS_KEY "
                "(or the profile's) to the key's secret; an S3-compatible store may also "
                "need [s3] region"
            ),
            "InvalidToken": f"the session token is wrong: refresh AWS_SESSION_TOKEN, or {keys}",
            "ExpiredToken": f"the session token expired: refresh AWS_SESSION_TOKEN, or {keys}",
            "RequestTimeTooSkewed": "this machine's clock is off: synchronise it (NTP)",
            "AccessDenied": (
                "these credentials may not do this: give them the publisher's policy, "
                "s3:PutObject, s3:GetObject and s3:DeleteObject on the sink's prefix and "
                "s3:ListBucket on its bucket (CloudFormation: PublisherPolicyArn; README, "
                '"Running it for real")'
            ),
            "NoSuchBucket": (
                "no such bucket at this endpoint: create it, or fix the sink's bucket "
                "or [s3] endpoint_url"
            ),
            "PermanentRedirect": "the bucket is in another region: set [s3] region to it",
            "AuthorizationHeaderMalformed": (
                "the bucket is in another region: set [s3] region to it"
            ),
        }
        fixes["403"] = fixes["AccessDenied"]  # HEAD has no body to name it
        fixes["AllAccessDisabled"] = fixes["AccessDenied"]
        fixes["301"] = fixes["PermanentRedirect"]
        fix = fixes.get(code)
        return f"{said} ({fix})" if fix else said
    if isinstance(
        e, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)
    ):
        return f"{e}: {keys}"
    if isinstance(e, botocore.exceptions.EndpointConnectionError):
        return f"{e} (is [s3] endpoint_url right, and the store up?)"
    return str(e)
