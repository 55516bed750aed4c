#!/usr/bin/env python3
"""moto's server (STS, IAM, S3) for the local test rig, bound to 127.0.0.1.

Runs the same server as `moto_server`, after patching moto 5.2 defects that an
AWS SDK for Rust client (or any client that behaves like real AWS) trips over.
Each patch names the defect it works around. None of them changes what moto
stores; they make authentication and response framing behave like AWS:

  a. an unsigned AssumeRoleWithWebIdentity is let through the auth check;
  b. header SigV4 is verified against the query string as it was sent;
  c. presigned (query-signed) requests are verified for real;
  d. S3 answers carry the XML root element AWS uses;
  e. x-amz-checksum-crc32c is verified on PutObject / UploadPart;
  f. a multipart upload's full-object CRC32C / CRC32 is computed part by part;
  g. CompleteMultipartUpload honours If-Match (412 PreconditionFailed);
  h. ListObjectsV2 answers 400 InvalidArgument to a continuation token it
     never gave out (moto answers 500);
  i. UploadPart to an upload that is gone (completed or aborted) answers 404
     NoSuchUpload (moto answers 500).

Usage: python rig/moto_server.py --port 5000
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as _dt
import hashlib
import hmac
import inspect
import re
import sys
import threading
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import moto.server
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import _RESTError
from moto.core.responses import BaseResponse
from moto.iam import access_control
from moto.s3 import models as s3_models
from moto.s3 import responses as s3_responses
from moto.s3.exceptions import (
    InvalidContinuationToken,
    MissingKey,
    NoSuchUpload,
    PreconditionFailed,
    S3AccessDeniedError,
    S3ClientError,
)
from werkzeug.datastructures import ImmutableMultiDict

# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------

_orig_setup_class = BaseResponse.setup_class


def _setup_class_keeping_environ(self: Any, request: Any, *args: Any, **kwargs: Any) -> None:
    # moto keeps only the decoded URL of a request; the WSGI environ still has
    # the path and query exactly as the client sent them, which SigV4 needs.
    self._rig_environ = getattr(request, "environ", None) or {}
    if (
        isinstance(self, s3_responses.S3Response)
        and request.method == "PUT"
        and hasattr(request, "get_data")
    ):
        # werkzeug parses a body sent as application/x-www-form-urlencoded or
        # multipart/form-data into request.form and leaves request.data empty,
        # so moto stores an empty object for e.g. `curl --data-binary` or
        # urllib PUTs to a presigned URL. S3 takes a PUT body as bytes whatever
        # its Content-Type: read it raw and hide the form parsing.
        request.get_data(cache=True, parse_form_data=False)
        request.__dict__["form"] = ImmutableMultiDict()
        request.__dict__["files"] = ImmutableMultiDict()
    _orig_setup_class(self, request, *args, **kwargs)


BaseResponse.setup_class = _setup_class_keeping_environ


def _raw_path_and_query(resp: Any) -> tuple[str, str]:
    """The request's path and query string as they came over the wire."""
    env = getattr(resp, "_rig_environ", {}) or {}
    raw_uri = env.get("RAW_URI") or env.get("REQUEST_URI")
    if raw_uri:
        parts = urlsplit(raw_uri)
        path = parts.path or "/"
        query = parts.query
    else:
        parsed = urlsplit(resp.uri)
        path, query = parsed.path or "/", parsed.query
    if "QUERY_STRING" in env:
        query = env["QUERY_STRING"]
    return path, query


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Split a raw query string into decoded (key, value) pairs.

    '+' stays a literal plus (AWS SDKs send a space as %20), unlike
    application/x-www-form-urlencoded parsing.
    """
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def _aws_quote(text: str) -> str:
    return quote(text, safe="-_.~")


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    """SigV4 canonical query string: each key and value URI-encoded, sorted."""
    encoded = sorted((_aws_quote(k), _aws_quote(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _is_s3(iam_request_cls: type) -> bool:
    return issubclass(iam_request_cls, access_control.S3IAMRequest)


class MissingAuthenticationToken(_RESTError):
    code = 403

    def __init__(self) -> None:
        super().__init__(
            "MissingAuthenticationToken", "Request is missing Authentication Token"
        )


class S3RequestExpired(S3ClientError):
    def __init__(self) -> None:
        super().__init__("AccessDenied", "Request has expired")


class S3AuthorizationQueryParametersError(S3ClientError):
    def __init__(self, message: str) -> None:
        super().__init__("AuthorizationQueryParametersError", message)


# AWS STS operations that are called without AWS credentials.
_UNSIGNED_STS_ACTIONS = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}

_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


# --------------------------------------------------------------------------
# a / b / c: the authentication check
# --------------------------------------------------------------------------


def _authenticate_and_authorize_action(
    self: Any, iam_request_cls: type, resource: str = "*"
) -> None:
    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        ActionAuthenticatorMixin.request_count += 1
        return
    if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return

    raw_path, raw_query = _raw_path_and_query(self)
    pairs = _query_pairs(raw_query)

    if "Authorization" not in self.headers:
        # (a) AssumeRoleWithWebIdentity is unsigned in AWS: the web identity
        # token is the credential. moto 5.2 assumes an Authorization header on
        # every request once auth is on and answers 500 (KeyError). Only this
        # action, and only when the request carries no Authorization header,
        # skips the check; the global no-auth counter is left alone.
        action = self._get_action()
        action = action[0] if isinstance(action, list) else action
        if action in _UNSIGNED_STS_ACTIONS:
            return
        query = dict(pairs)
        if "X-Amz-Signature" in query or "X-Amz-Algorithm" in query:
            # (c) presigned URL: moto 5.2 answers 500 (KeyError on the
            # missing Authorization header). Verify it as S3 does.
            _check_presigned(self, iam_request_cls, resource, raw_path, pairs)
            return
        # moto 5.2 answers 500 here too; AWS answers 403.
        if _is_s3(iam_request_cls):
            raise S3AccessDeniedError()
        raise MissingAuthenticationToken()

    # (b) moto 5.2 verifies SigV4 against the decoded URL (werkzeug's
    # request.url), so a query with an encoded character (ListObjectsV2
    # prefix=a%2F, continuation-token, start-after) gets SignatureDoesNotMatch
    # though AWS accepts it. botocore's SigV4Auth uses the query of the URL it
    # is given verbatim (split on '&', sorted, no re-encoding), so hand it the
    # canonical form: the query as sent, decoded once and URI-encoded per the
    # SigV4 rules. S3's canonical URI is the path exactly as sent (S3SigV4Auth
    # does not normalise or re-encode it); other services re-encode the
    # decoded path themselves.
    if _is_s3(iam_request_cls):
        path = raw_path
    else:
        path = urlsplit(self.uri).path or "/"
    if pairs:
        path += "?" + _canonical_query(pairs)
    iam_request = iam_request_cls(
        account_id=self.current_account,
        method=self.method,
        path=path,
        data=self.data,
        body=self.raw_body,
        headers=self.headers,
        action=self._get_action(),
    )
    iam_request.check_signature()
    iam_request.check_action_permitted(resource)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _check_presigned(
    self: Any,
    iam_request_cls: type,
    resource: str,
    raw_path: str,
    pairs: list[tuple[str, str]],
) -> None:
    """(c) Verify a SigV4 query-signed request the way S3 does."""
    s3 = _is_s3(iam_request_cls)
    query = dict(pairs)
    missing = [p for p in _PRESIGN_PARAMS if p not in query]
    if missing or query["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        msg = (
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
        if s3:
            raise S3AuthorizationQueryParametersError(msg)
        raise MissingAuthenticationToken()

    credential = query["X-Amz-Credential"]
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        if s3:
            raise S3AuthorizationQueryParametersError(
                "Error parsing the X-Amz-Credential parameter"
            )
        raise MissingAuthenticationToken()
    access_key_id, day, region, service, _ = scope
    amz_date = query["X-Amz-Date"]
    signed_headers = query["X-Amz-SignedHeaders"]
    token = query.get("X-Amz-Security-Token")

    # Let moto find the key (IAM user key or assumed-role session key) and,
    # later, evaluate its policies exactly as for a header-signed request, by
    # presenting the query credentials the way a signed request carries them.
    auth_headers: dict[str, str] = {
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={credential}, "
            f"SignedHeaders={signed_headers}, Signature={query['X-Amz-Signature']}"
        ),
        "X-Amz-Date": amz_date,
    }
    if token is not None:
        auth_headers["X-Amz-Security-Token"] = token
    iam_request = iam_request_cls(
        account_id=self.current_account,
        method=self.method,
        path=raw_path,
        data=self.data,
        body=self.raw_body,
        headers=auth_headers,
        action=self._get_action(),
    )

    try:
        signed_at = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=_dt.timezone.utc
        )
        expires = int(query["X-Amz-Expires"])
    except ValueError:
        if s3:
            raise S3AuthorizationQueryParametersError(
                "X-Amz-Date and X-Amz-Expires must be a timestamp and a number"
            )
        raise MissingAuthenticationToken()
    if expires < 1 or expires > 604800:
        if s3:
            raise S3AuthorizationQueryParametersError(
                "X-Amz-Expires must be less than a week (in seconds) that is 604800"
            )
        raise MissingAuthenticationToken()
    if _dt.datetime.now(_dt.timezone.utc) > signed_at + _dt.timedelta(seconds=expires):
        if s3:
            raise S3RequestExpired()
        iam_request._raise_access_denied()

    # Canonical request, with the payload left unsigned as for any presigned URL.
    header_names = signed_headers.split(";")
    canonical_headers = "".join(
        f"{name}:{' '.join((self.headers.get(name) or '').split())}\n"
        for name in header_names
    )
    canonical_query = _canonical_query([(k, v) for k, v in pairs if k != "X-Amz-Signature"])
    canonical_uri = raw_path if s3 else quote(unquote(raw_path), safe="/~")
    canonical_request = "\n".join(
        [
            self.method,
            canonical_uri,
            canonical_query,
            canonical_headers,
            signed_headers,
            "UNSIGNED-PAYLOAD",
        ]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            f"{day}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    secret = iam_request._access_key.create_credentials().secret_key
    key = _hmac(("AWS4" + secret).encode("utf-8"), day)
    key = _hmac(key, region)
    key = _hmac(key, service)
    key = _hmac(key, "aws4_request")
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, query["X-Amz-Signature"]):
        iam_request._raise_signature_does_not_match()

    iam_request.check_action_permitted(resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action


# --------------------------------------------------------------------------
# d: XML root elements of S3 answers
# --------------------------------------------------------------------------

# moto 5.2 serialises some S3 outputs under "<Operation>Response" (or the
# output shape's name) instead of the element S3 uses. botocore does not look
# at the root element; the AWS SDK for Rust does and rejects the answer
# ("invalid root, expected CompleteMultipartUploadResult"), so a Rust
# multipart upload fails against plain moto.
_S3_ROOT_FIXES = {
    "CompleteMultipartUploadResponse": "CompleteMultipartUploadResult",
    "CompleteMultipartUploadOutput": "CompleteMultipartUploadResult",
    "CreateMultipartUploadResponse": "InitiateMultipartUploadResult",
    "DeleteObjectsResponse": "DeleteResult",
    "DeleteObjectsOutput": "DeleteResult",
    "ListPartsResponse": "ListPartsResult",
    "ListPartsOutput": "ListPartsResult",
    "ListMultipartUploadsResponse": "ListMultipartUploadsResult",
    "ListMultipartUploadsOutput": "ListMultipartUploadsResult",
    "ListObjectsV2Response": "ListBucketResult",
    "ListObjectsResponse": "ListBucketResult",
    "ListObjectVersionsResponse": "ListVersionsResult",
    "ListBucketsResponse": "ListAllMyBucketsResult",
    "GetObjectAttributesOutput": "GetObjectAttributesResponse",
    "GetBucketVersioningResponse": "VersioningConfiguration",
    "GetObjectTaggingResponse": "Tagging",
    "GetBucketTaggingResponse": "Tagging",
}
_ROOT_RE = re.compile(rb"^(\s*(?:<\?xml[^>]*\?>\s*)?)<([A-Za-z0-9]+)([\s>/])")


def _fix_s3_root(body: Any) -> Any:
    if not isinstance(body, (bytes, str)):
        return body
    as_str = isinstance(body, str)
    data = body.encode("utf-8") if as_str else body
    match = _ROOT_RE.match(data)
    if match:
        wrong = match.group(2).decode()
        right = _S3_ROOT_FIXES.get(wrong)
        if right:
            head = match.group(1) + b"<" + right.encode() + match.group(3)
            data = head + data[match.end() :]
            closing = f"</{wrong}>".encode()
            idx = data.rfind(closing)
            if idx != -1:
                data = data[:idx] + f"</{right}>".encode() + data[idx + len(closing) :]
    return data.decode("utf-8") if as_str else data


_orig_send_response = s3_responses.S3Response._send_response.__func__


def _send_response_fixing_root(cls: Any, response: Any) -> Any:
    status, headers, body = _orig_send_response(cls, response)
    return status, headers, _fix_s3_root(body)


s3_responses.S3Response._send_response = classmethod(_send_response_fixing_root)


# --------------------------------------------------------------------------
# e: x-amz-checksum-crc32c on PutObject / UploadPart
# --------------------------------------------------------------------------


def _make_crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def _crc32c_py(data: bytes, crc: int = 0) -> int:
    """CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven;
    `crc` is the CRC32C of the bytes before `data`."""
    crc ^= 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # a compiled implementation, when one happens to be installed
    import google_crc32c as _gcrc

    def crc32c(data: bytes, crc: int = 0) -> int:
        return int(_gcrc.extend(crc, bytes(data)))

except ImportError:  # pragma: no cover - depends on the machine
    try:
        import crc32c as _crc32c_mod

        def crc32c(data: bytes, crc: int = 0) -> int:
            return int(_crc32c_mod.crc32c(bytes(data), crc))

    except ImportError:
        crc32c = _crc32c_py


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode("ascii")


class S3BadDigest(S3ClientError):
    def __init__(self) -> None:
        super().__init__(
            "BadDigest", "The CRC32C you specified did not match the calculated checksum."
        )


def _trailer_checksum(raw_body: Any, name: str) -> str | None:
    """The value of a trailing checksum (aws-chunked body with x-amz-trailer)."""
    if not isinstance(raw_body, (bytes, bytearray)):
        return None
    match = re.search(
        rb"\r\n" + re.escape(name.encode()) + rb":\s*([A-Za-z0-9+/=]+)\s*(\r\n|$)",
        bytes(raw_body),
        re.IGNORECASE,
    )
    return match.group(1).decode() if match else None


_orig_key_response_put = s3_responses.S3Response._key_response_put


def _key_response_put_checking_crc32c(self: Any, query: dict[str, Any], key_name: str) -> Any:
    # moto 5.2 stores x-amz-checksum-crc32c as given without checking it; S3
    # answers 400 BadDigest when it does not match the body. Applies to
    # PutObject and UploadPart (not UploadPartCopy, which has no body).
    if "x-amz-copy-source" not in self.headers:
        claimed = self.headers.get("x-amz-checksum-crc32c")
        if claimed is None and "x-amz-checksum-crc32c" in (
            self.headers.get("x-amz-trailer") or ""
        ).lower():
            claimed = _trailer_checksum(self.raw_body, "x-amz-checksum-crc32c")
        if claimed is not None:
            body = self.body or b""
            if isinstance(body, str):
                body = body.encode("utf-8")
            if crc32c_b64(body) != claimed.strip():
                raise S3BadDigest()
    return _orig_key_response_put(self, query, key_name)


s3_responses.S3Response._key_response_put = _key_response_put_checking_crc32c


# --------------------------------------------------------------------------
# f: full-object checksum of a multipart upload, part by part
# --------------------------------------------------------------------------
# For ChecksumType FULL_OBJECT, moto 5.2 copies every part into a second
# buffer and checksums the whole object when the upload completes: three
# copies of the object in memory and seconds of CPU per GiB, where S3 combines
# the part checksums. The CRC is carried from part to part instead; the value
# stored is the same.

_orig_add_part = s3_models.MultipartChecksumBuilder.addPart
_orig_build = s3_models.MultipartChecksumBuilder.build
_RUNNING_CRCS = {"CRC32C": crc32c, "CRC32": lambda data, crc=0: binascii.crc32(data, crc)}


def _add_part_running(self: Any, part: bytes) -> None:
    running = _RUNNING_CRCS.get(self.checksum_algorithm)
    if self.checksum_type != "FULL_OBJECT" or running is None:
        _orig_add_part(self, part)
        return
    self._rig_crc = running(part, getattr(self, "_rig_crc", 0))
    self.part_count += 1


def _build_running(self: Any) -> tuple[str, str, int] | None:
    if not hasattr(self, "_rig_crc"):
        return _orig_build(self)
    value = base64.b64encode(self._rig_crc.to_bytes(4, "big")).decode("ascii")
    return (self.checksum_type, value, 1)


s3_models.MultipartChecksumBuilder.addPart = _add_part_running
s3_models.MultipartChecksumBuilder.build = _build_running


# --------------------------------------------------------------------------
# g: If-Match on CompleteMultipartUpload
# --------------------------------------------------------------------------
# moto 5.2 checks If-None-Match: * on CompleteMultipartUpload but ignores
# If-Match, which S3 honours since 2024: the upload completes only over the
# object with that ETag (412 PreconditionFailed otherwise, 404 NoSuchKey when
# there is none), and the upload stays until it is aborted. The header is
# handed from the request handler to the backend, after moto's own auth check.

_complete_if_match = threading.local()
_orig_key_response_post = s3_responses.S3Response._key_response_post
_orig_complete_multipart_upload = s3_models.S3Backend.complete_multipart_upload


def _key_response_post_keeping_if_match(
    self: Any, request: Any, body: bytes, bucket_name: str, query: dict[str, Any], key_name: str
) -> Any:
    _complete_if_match.value = (
        request.headers.get("If-Match") if query.get("uploadId") else None
    )
    try:
        return _orig_key_response_post(self, request, body, bucket_name, query, key_name)
    finally:
        _complete_if_match.value = None


def _complete_multipart_upload_if_match(
    self: Any, bucket_name: str, multipart_id: str, body: Any
) -> Any:
    if_match = getattr(_complete_if_match, "value", None)
    if if_match:
        multipart = self.get_bucket(bucket_name).multiparts.get(multipart_id)
        if multipart is not None:
            existing = self.get_object(bucket_name, multipart.key_name)
            if existing is None:
                raise MissingKey(key=multipart.key_name)
            if if_match.replace('"', "") != existing.etag.replace('"', ""):
                raise PreconditionFailed("If-Match")
    return _orig_complete_multipart_upload(self, bucket_name, multipart_id, body)


s3_responses.S3Response._key_response_post = _key_response_post_keeping_if_match
s3_models.S3Backend.complete_multipart_upload = _complete_multipart_upload_if_match


# --------------------------------------------------------------------------
# h: unknown ListObjectsV2 continuation tokens
# --------------------------------------------------------------------------
# moto 5.2 looks a continuation token up in the tokens it gave out and, for
# one it does not know, compares keys with None: a TypeError and a 500. S3
# answers 400 InvalidArgument ("The continuation token provided is incorrect").

_orig_list_objects_v2 = s3_models.S3Backend.list_objects_v2
_list_v2_signature = inspect.signature(_orig_list_objects_v2)


def _list_objects_v2_checking_token(self: Any, *args: Any, **kwargs: Any) -> Any:
    bound = _list_v2_signature.bind(self, *args, **kwargs)
    token = bound.arguments.get("continuation_token")
    if token and token not in self._pagination_tokens:
        raise InvalidContinuationToken()
    return _orig_list_objects_v2(self, *args, **kwargs)


s3_models.S3Backend.list_objects_v2 = _list_objects_v2_checking_token


# --------------------------------------------------------------------------
# i: UploadPart to an upload that is gone
# --------------------------------------------------------------------------
# moto 5.2 looks the upload up with a plain dict index: a KeyError and a 500
# for an upload that was completed or aborted. S3 answers 404 NoSuchUpload,
# which a part delivered again after its upload completed relies on.

_orig_upload_part = s3_models.S3Backend.upload_part


def _upload_part_of_a_known_upload(
    self: Any, bucket_name: str, multipart_id: str, part_id: int, value: bytes
) -> Any:
    if multipart_id not in self.get_bucket(bucket_name).multiparts:
        raise NoSuchUpload(upload_id=multipart_id)
    return _orig_upload_part(self, bucket_name, multipart_id, part_id, value)


s3_models.S3Backend.upload_part = _upload_part_of_a_known_upload


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    moto.server.main(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    sys.exit(main())
