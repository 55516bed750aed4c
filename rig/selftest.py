#!/usr/bin/env python3
"""Check the running rig (scripts/rig-up.sh) end to end.

Against the auth-on moto it proves each fix in rig/moto_server.py with boto3
and plain HTTP, then publishes to a Pub/Sub emulator topic and reads an object
back from fake-gcs-server. Reads the endpoints from $RIG_DIR/rig.env (default
<repo>/.run/rig.env), or from the environment when rig.env is absent.
Exits non-zero when any check fails.

Usage: python rig/selftest.py [-k SUBSTRING]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import pathlib
import re
import sys
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

import boto3
import botocore.auth
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUN = uuid.uuid4().hex[:8]
# A JWT-shaped web identity token; moto does not read it.
FAKE_ID_TOKEN = ".".join(
    base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
    for part in (
        {"alg": "RS256", "typ": "JWT"},
        {"iss": "https://accounts.google.com", "aud": "rig", "sub": "1234567890"},
    )
) + ".c2lnbmF0dXJl"


def load_env() -> dict[str, str]:
    env = dict(os.environ)
    rig_env = pathlib.Path(os.environ.get("RIG_DIR", ROOT / ".run")) / "rig.env"
    if rig_env.exists():
        for line in rig_env.read_text().splitlines():
            line = line.strip()
            if line.startswith("export "):
                line = line[len("export ") :]
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value
    return env


ENV = load_env()


# --------------------------------------------------------------------------


def s3_client(key: str, secret: str, token: str | None = None, **config):
    return boto3.client(
        "s3",
        endpoint_url=ENV["RIG_MOTO_ENDPOINT"],
        region_name=ENV.get("RIG_AWS_REGION", "us-east-1"),
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config
        ),
    )


def admin_s3():
    return s3_client(ENV["RIG_ADMIN_ACCESS_KEY_ID"], ENV["RIG_ADMIN_SECRET_ACCESS_KEY"])


_role_creds: dict[str, str] = {}


def role_creds() -> dict[str, str]:
    if not _role_creds:
        sts = boto3.client(
            "sts",
            endpoint_url=ENV["RIG_MOTO_ENDPOINT"],
            region_name=ENV.get("RIG_AWS_REGION", "us-east-1"),
            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
        )
        out = sts.assume_role_with_web_identity(
            RoleArn=ENV["RIG_ROLE_ARN"],
            RoleSessionName="rig-selftest",
            WebIdentityToken=FAKE_ID_TOKEN,
            DurationSeconds=900,
        )
        _role_creds.update(out["Credentials"])
    return _role_creds


def presigner(s3):
    """The same credentials, presigning with SigV4 as the AWS SDK for Rust does
    (boto3 presigns S3 URLs with SigV2 unless told otherwise)."""
    return s3_client(
        s3._request_signer._credentials.access_key,
        s3._request_signer._credentials.secret_key,
        s3._request_signer._credentials.token,
        signature_version="s3v4",
    )


def role_s3(**config):
    c = role_creds()
    return s3_client(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], **config)


def allowed(name: str) -> str:
    return f"{ENV['RIG_ALLOWED_PREFIX']}selftest-{RUN}/{name}"


def error_code(exc: ClientError) -> tuple[int, str]:
    return (
        exc.response["ResponseMetadata"]["HTTPStatusCode"],
        exc.response["Error"]["Code"],
    )


def expect_client_error(fn, status: int, code: str) -> None:
    try:
        fn()
    except ClientError as exc:
        got = error_code(exc)
        assert got == (status, code), f"expected {status} {code}, got {got}"
    else:
        raise AssertionError(f"expected {status} {code}, the call succeeded")


def http(method: str, url: str, body: bytes | None = None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def xml_code(body: bytes) -> str:
    m = re.search(rb"<Code>([^<]+)</Code>", body)
    return m.group(1).decode() if m else body[:200].decode(errors="replace")


class RootRecorder:
    """Records the XML root element of each answer a boto3 client parses."""

    def __init__(self, client) -> None:
        self.roots: dict[str, str] = {}
        client.meta.events.register("before-parse.s3.*", self._hook)

    def _hook(self, response_dict, operation_model, **_):
        body = response_dict.get("body")
        if isinstance(body, bytes):
            m = re.match(rb"\s*(?:<\?xml[^>]*\?>\s*)?<([A-Za-z0-9]+)", body)
            if m:
                self.roots[operation_model.name] = m.group(1).decode()


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

CHECKS = []
NEEDS = {
    "moto": ["RIG_MOTO_ENDPOINT", "RIG_ADMIN_ACCESS_KEY_ID", "RIG_ROLE_ARN", "RIG_BUCKET"],
    "pubsub": ["PUBSUB_EMULATOR_HOST", "RIG_PUBSUB_PROJECT"],
    "gcs": ["STORAGE_EMULATOR_HOST"],
}


def check(fn=None, *, needs="moto"):
    def register(fn):
        fn.needs = needs
        CHECKS.append(fn)
        return fn

    return register(fn) if fn else register


@check
def admin_put_object():
    s3 = admin_s3()
    s3.put_object(Bucket=ENV["RIG_BUCKET"], Key=f"admin/{RUN}.txt", Body=b"admin")
    got = s3.get_object(Bucket=ENV["RIG_BUCKET"], Key=f"admin/{RUN}.txt")["Body"].read()
    assert got == b"admin", got


@check
def auth_is_on():
    bad = s3_client(ENV["RIG_ADMIN_ACCESS_KEY_ID"], "not-the-secret")
    expect_client_error(
        lambda: bad.list_objects_v2(Bucket=ENV["RIG_BUCKET"]), 403, "SignatureDoesNotMatch"
    )
    unknown = s3_client("NOT-A-KEY-OF-THIS-RIG", "x")
    expect_client_error(
        lambda: unknown.list_objects_v2(Bucket=ENV["RIG_BUCKET"]), 403, "InvalidAccessKeyId"
    )
    status, _, body = http("GET", f"{ENV['RIG_MOTO_ENDPOINT']}/{ENV['RIG_BUCKET']}")
    assert status == 403, (status, body[:200])


@check
def unsigned_assume_role_with_web_identity():
    # Plain HTTP, so no SDK could slip in an Authorization header.
    form = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": ENV["RIG_ROLE_ARN"],
            "RoleSessionName": "rig-selftest-raw",
            "WebIdentityToken": FAKE_ID_TOKEN,
            "DurationSeconds": "3600",
        }
    ).encode()
    status, _, body = http(
        "POST",
        ENV["RIG_MOTO_ENDPOINT"] + "/",
        form,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, (status, body[:300])
    assert b"<AccessKeyId>ASIA" in body and b"<SessionToken>" in body, body[:300]
    c = role_creds()
    assert c["AccessKeyId"].startswith("ASIA"), c["AccessKeyId"]
    # Other unsigned STS calls are still refused.
    status, _, body = http(
        "POST",
        ENV["RIG_MOTO_ENDPOINT"] + "/",
        b"Action=GetCallerIdentity&Version=2011-06-15",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 403, (status, body[:300])


@check
def role_policy_allows_and_denies():
    s3 = role_s3()
    s3.put_object(Bucket=ENV["RIG_BUCKET"], Key=allowed("a.txt"), Body=b"hello")
    assert s3.get_object(Bucket=ENV["RIG_BUCKET"], Key=allowed("a.txt"))["Body"].read() == b"hello"
    expect_client_error(
        lambda: s3.put_object(Bucket=ENV["RIG_BUCKET"], Key=f"denied/{RUN}.txt", Body=b"x"),
        403,
        "AccessDenied",
    )
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert ENV["RIG_BUCKET"] in names, names


@check
def role_lists_with_encoded_query():
    s3 = role_s3()
    bucket = ENV["RIG_BUCKET"]
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=allowed(f"x/{i}.txt"), Body=b"x")
    prefix = allowed("x/")
    out = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert [o["Key"] for o in out["Contents"]] == [prefix + f"{i}.txt" for i in range(3)], out
    # continuation-token and start-after carry encoded characters as well.
    first = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    assert first["IsTruncated"], first
    rest = s3.list_objects_v2(
        Bucket=bucket, Prefix=prefix, ContinuationToken=first["NextContinuationToken"]
    )
    assert len(rest["Contents"]) == 2, rest
    after = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, StartAfter=prefix + "0.txt")
    assert [o["Key"] for o in after["Contents"]] == [prefix + "1.txt", prefix + "2.txt"]
    # A key whose path needs percent-encoding.
    odd = allowed("odd/a b+c=d&e;f,g@h$.txt")
    s3.put_object(Bucket=bucket, Key=odd, Body=b"odd")
    assert s3.get_object(Bucket=bucket, Key=odd)["Body"].read() == b"odd"


@check
def presigned_put_and_get():
    s3 = presigner(role_s3())
    bucket, key = ENV["RIG_BUCKET"], allowed("presigned.bin")
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    assert "X-Amz-Security-Token=" in put_url, put_url
    status, _, body = http("PUT", put_url, b"presigned body")
    assert status == 200, (status, body[:300])
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    status, _, body = http("GET", get_url)
    assert (status, body) == (200, b"presigned body"), (status, body[:300])

    # Admin (IAM user key) presigned GET of the same object.
    admin_url = presigner(admin_s3()).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    status, _, body = http("GET", admin_url)
    assert (status, body) == (200, b"presigned body"), (status, body[:300])


@check
def presigned_tampered_is_refused():
    s3 = presigner(role_s3())
    bucket, key = ENV["RIG_BUCKET"], allowed("presigned.bin")
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    sig = re.search(r"X-Amz-Signature=([0-9a-f]+)", url).group(1)
    forged = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    status, _, body = http("GET", forged)
    assert (status, xml_code(body)) == (403, "SignatureDoesNotMatch"), (status, body[:300])
    # Same signature, another key.
    other = url.replace("presigned.bin", "presigned.bim")
    status, _, body = http("GET", other)
    assert (status, xml_code(body)) == (403, "SignatureDoesNotMatch"), (status, body[:300])
    # A presigned URL is still bound by the role's policy.
    s3_admin = admin_s3()
    s3_admin.put_object(Bucket=bucket, Key=f"denied/{RUN}.txt", Body=b"x")
    denied = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": f"denied/{RUN}.txt"}, ExpiresIn=300
    )
    status, _, body = http("GET", denied)
    assert (status, xml_code(body)) == (403, "AccessDenied"), (status, body[:300])


@check
def presigned_expired_is_refused():
    s3 = presigner(role_s3())
    bucket, key = ENV["RIG_BUCKET"], allowed("presigned.bin")
    signed_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=2)
    real_clock = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: signed_at
    try:
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
    finally:
        botocore.auth.get_current_datetime = real_clock
    status, _, body = http("GET", url)
    assert status == 403 and xml_code(body) == "AccessDenied", (status, body[:300])
    assert b"Request has expired" in body, body[:300]


@check
def multipart_upload_roots():
    s3 = role_s3()
    roots = RootRecorder(s3)
    bucket, key = ENV["RIG_BUCKET"], allowed("multipart.bin")
    part1, part2 = os.urandom(5 * 1024 * 1024), b"!"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=part1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=part2)["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2], parts
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=allowed(""))["Uploads"]
    assert upload_id in [u["UploadId"] for u in uploads], uploads
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"ETag": e1, "PartNumber": 1}, {"ETag": e2, "PartNumber": 2}]},
    )
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(part1) + 1, head
    s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=["ObjectSize"])

    admin = admin_s3()
    admin_roots = RootRecorder(admin)
    admin.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}]})
    roots.roots.update(admin_roots.roots)
    expected = {
        "CreateMultipartUpload": "InitiateMultipartUploadResult",
        "ListParts": "ListPartsResult",
        "ListMultipartUploads": "ListMultipartUploadsResult",
        "CompleteMultipartUpload": "CompleteMultipartUploadResult",
        "GetObjectAttributes": "GetObjectAttributesResponse",
        "DeleteObjects": "DeleteResult",
    }
    got = {op: roots.roots.get(op) for op in expected}
    assert got == expected, got


@check
def crc32c_is_verified():
    s3 = role_s3()
    bucket = ENV["RIG_BUCKET"]
    good = base64.b64encode((0xE3069283).to_bytes(4, "big")).decode()  # CRC32C("123456789")
    s3.put_object(Bucket=bucket, Key=allowed("crc-ok"), Body=b"123456789", ChecksumCRC32C=good)
    expect_client_error(
        lambda: s3.put_object(
            Bucket=bucket, Key=allowed("crc-bad"), Body=b"123456789", ChecksumCRC32C="AAAAAA=="
        ),
        400,
        "BadDigest",
    )
    expect_client_error(
        lambda: s3.head_object(Bucket=bucket, Key=allowed("crc-bad")), 404, "404"
    )
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=allowed("crc-mpu"), ChecksumAlgorithm="CRC32C"
    )["UploadId"]
    expect_client_error(
        lambda: s3.upload_part(
            Bucket=bucket,
            Key=allowed("crc-mpu"),
            UploadId=upload_id,
            PartNumber=1,
            Body=b"123456789",
            ChecksumCRC32C="AAAAAA==",
        ),
        400,
        "BadDigest",
    )
    s3.abort_multipart_upload(Bucket=bucket, Key=allowed("crc-mpu"), UploadId=upload_id)


def put_aws_chunked(key: str, payload: bytes, trailer: str) -> tuple[int, bytes]:
    """PutObject framed as the AWS SDK for Rust sends it: an aws-chunked body
    whose CRC32C travels in a trailer, signed by the role's credentials."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    c = role_creds()
    body = b"%x\r\n%s\r\n0\r\nx-amz-checksum-crc32c:%s\r\n\r\n" % (
        len(payload),
        payload,
        trailer.encode(),
    )
    url = f"{ENV['RIG_MOTO_ENDPOINT']}/{ENV['RIG_BUCKET']}/{urllib.parse.quote(key)}"
    req = AWSRequest(
        method="PUT",
        url=url,
        data=body,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(payload)),
            "x-amz-trailer": "x-amz-checksum-crc32c",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "Content-Length": str(len(body)),
        },
    )

    class StreamingAuth(S3SigV4Auth):
        # The payload is declared, not hashed: STREAMING-UNSIGNED-PAYLOAD-TRAILER.
        def payload(self, request):
            return "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    creds = Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    StreamingAuth(creds, "s3", ENV.get("RIG_AWS_REGION", "us-east-1")).add_auth(req)
    status, _, answer = http("PUT", url, body, dict(req.headers.items()))
    return status, answer


@check
def crc32c_trailer_is_verified():
    good = base64.b64encode((0xE3069283).to_bytes(4, "big")).decode()
    status, body = put_aws_chunked(allowed("crc-trailer-ok"), b"123456789", good)
    assert status == 200, (status, body[:300])
    got = role_s3().get_object(Bucket=ENV["RIG_BUCKET"], Key=allowed("crc-trailer-ok"))
    assert got["Body"].read() == b"123456789"
    status, body = put_aws_chunked(allowed("crc-trailer-bad"), b"123456789", "AAAAAA==")
    assert (status, xml_code(body)) == (400, "BadDigest"), (status, body[:300])


@check(needs="pubsub")
def pubsub_publish_and_pull():
    host, project = ENV["PUBSUB_EMULATOR_HOST"], ENV["RIG_PUBSUB_PROJECT"]
    base = f"http://{host}/v1/projects/{project}"
    topic, sub = f"selftest-{RUN}", f"selftest-{RUN}-pull"
    js = {"Content-Type": "application/json"}
    status, _, body = http("PUT", f"{base}/topics/{topic}", b"{}", js)
    assert status == 200, (status, body)
    status, _, body = http(
        "PUT",
        f"{base}/subscriptions/{sub}",
        json.dumps({"topic": f"projects/{project}/topics/{topic}"}).encode(),
        js,
    )
    assert status == 200, (status, body)
    data = base64.b64encode(b'{"op":"delete","key":"a"}').decode()
    status, _, body = http(
        "POST",
        f"{base}/topics/{topic}:publish",
        json.dumps({"messages": [{"data": data, "attributes": {"k": "v"}}]}).encode(),
        js,
    )
    assert status == 200, (status, body)
    message_id = json.loads(body)["messageIds"][0]
    status, _, body = http(
        "POST",
        f"{base}/subscriptions/{sub}:pull",
        json.dumps({"maxMessages": 1, "returnImmediately": False}).encode(),
        js,
    )
    assert status == 200, (status, body)
    received = json.loads(body)["receivedMessages"][0]
    assert received["message"]["messageId"] == message_id, received
    assert received["message"]["data"] == data, received
    http(
        "POST",
        f"{base}/subscriptions/{sub}:acknowledge",
        json.dumps({"ackIds": [received["ackId"]]}).encode(),
        js,
    )
    http("DELETE", f"{base}/subscriptions/{sub}")
    http("DELETE", f"{base}/topics/{topic}")


@check(needs="gcs")
def gcs_object_round_trip():
    base = ENV["STORAGE_EMULATOR_HOST"].rstrip("/")
    if "://" not in base:
        base = "http://" + base
    bucket, name = f"selftest-{RUN}", "dir/obj.txt"
    status, _, body = http(
        "POST",
        f"{base}/storage/v1/b?project=rig",
        json.dumps({"name": bucket}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, (status, body)
    payload = b"123456789"
    status, _, body = http(
        "POST",
        f"{base}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={urllib.parse.quote(name, safe='')}",
        payload,
        {"Content-Type": "text/plain"},
    )
    assert status == 200, (status, body)
    meta = json.loads(body)
    assert meta["crc32c"] == "4waSgw==", meta  # CRC32C("123456789")
    status, headers, body = http(
        "GET",
        f"{base}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media",
    )
    assert (status, body) == (200, payload), (status, body)
    goog_hash = {k.lower(): v for k, v in headers.items()}.get("x-goog-hash", "")
    assert "crc32c=4waSgw==" in goog_hash, headers


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="Check the running local test rig.")
    parser.add_argument("-k", default="", help="run only checks whose name contains this")
    args = parser.parse_args()
    down = {c for c, keys in NEEDS.items() if any(k not in ENV for k in keys)}
    if down == set(NEEDS):
        print("selftest: no rig component is up: run scripts/rig-up.sh first", file=sys.stderr)
        return 2
    passed = failed = skipped = 0
    for fn in CHECKS:
        if args.k not in fn.__name__:
            continue
        if fn.needs in down:
            skipped += 1
            print(f"skip {fn.__name__}: {fn.needs} is not up")
            continue
        try:
            fn()
        except Exception as exc:  # report every failure, keep going
            failed += 1
            print(f"FAIL {fn.__name__}: {exc!r}")
            with contextlib.suppress(Exception):
                traceback.print_exc(limit=3, file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {fn.__name__}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
