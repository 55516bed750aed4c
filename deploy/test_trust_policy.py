#!/usr/bin/env python3
"""Checks the AWS half as applied: reads the role and bucket back from the AWS
endpoint (moto in the test rig) and compares them with the contract (SPEC §7, §8).

Environment:
  TF_OUTPUTS_FILE            `terraform output -json` of deploy/moto (required)
  RIG_MOTO_ENDPOINT          endpoint URL, e.g. http://127.0.0.1:5599 (required)
  RIG_ADMIN_ACCESS_KEY_ID    keys that may read IAM and S3 (default "test")
  RIG_ADMIN_SECRET_ACCESS_KEY
  AWS_REGION                 default: the "region" output, else us-east-1

Prints one line per check and closes with "N passed, M failed".
"""
import json
import os
import sys
import urllib.parse

import boto3

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))


def as_list(v):
    return v if isinstance(v, list) else [v]


def main():
    outputs = {k: v["value"] for k, v in json.load(open(os.environ["TF_OUTPUTS_FILE"])).items()}
    endpoint = os.environ["RIG_MOTO_ENDPOINT"]
    region = os.environ.get("AWS_REGION") or outputs.get("region") or "us-east-1"
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("RIG_ADMIN_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("RIG_ADMIN_SECRET_ACCESS_KEY", "test"),
        region_name=region,
    )
    iam = session.client("iam", endpoint_url=endpoint)
    s3 = session.client("s3", endpoint_url=endpoint)

    unique_id = outputs["google_service_account_unique_id"]
    audience = outputs["target_audience"]
    bucket = outputs["bucket_name"]
    prefix = outputs["s3_prefix"]

    role = iam.get_role(RoleName=outputs["role_name"])["Role"]
    check("role ARN matches the role_arn output", role["Arn"] == outputs["role_arn"], role["Arn"])

    doc = role["AssumeRolePolicyDocument"]
    if isinstance(doc, str):  # some endpoints return the URL-encoded JSON text
        doc = json.loads(urllib.parse.unquote(doc))
    statements = as_list(doc["Statement"])
    check("trust policy has exactly one statement", len(statements) == 1, statements)
    st = statements[0]
    check("statement allows", st.get("Effect") == "Allow", st.get("Effect"))
    check(
        "principal is Federated accounts.google.com",
        st.get("Principal") == {"Federated": "accounts.google.com"},
        st.get("Principal"),
    )
    check(
        "action is sts:AssumeRoleWithWebIdentity",
        as_list(st.get("Action")) == ["sts:AssumeRoleWithWebIdentity"],
        st.get("Action"),
    )
    cond = st.get("Condition", {})
    check("only StringEquals conditions", list(cond) == ["StringEquals"], list(cond))
    eq = cond.get("StringEquals", {})
    expected = {
        "accounts.google.com:aud": unique_id,
        "accounts.google.com:oaud": audience,
        "accounts.google.com:sub": unique_id,
    }
    check("StringEquals has exactly the aud, oaud and sub keys", sorted(eq) == sorted(expected), sorted(eq))
    for key, want in expected.items():
        got = as_list(eq.get(key))
        check(f"{key} = {want}", got == [want], got)
    check("aud is the numeric unique id, not an email", unique_id.isdigit() and "@" not in str(eq), eq)

    check(
        "MaxSessionDuration is AWS_ROLE_DURATION_SECONDS, at least IAM's 3600",
        role["MaxSessionDuration"]
        == max(3600, outputs["role_duration_seconds"])
        == outputs["role_max_session_duration"],
        (role["MaxSessionDuration"], outputs["role_duration_seconds"]),
    )

    # Least-privilege inline policy.
    names = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    check("role has one inline policy", len(names) == 1, names)
    policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=names[0])["PolicyDocument"]
    if isinstance(policy, str):
        policy = json.loads(urllib.parse.unquote(policy))
    by_sid = {s["Sid"]: s for s in as_list(policy["Statement"])}
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects = by_sid.get("ObjectsUnderPrefix", {})
    check(
        "object actions are confined to bucket/prefix*",
        as_list(objects.get("Resource")) == [f"{bucket_arn}/{prefix}*"],
        objects.get("Resource"),
    )
    listing = by_sid.get("ListPrefix", {})
    want_cond = {"StringLike": {"s3:prefix": f"{prefix}*"}} if prefix else None
    got_cond = listing.get("Condition")
    if got_cond and isinstance(got_cond["StringLike"]["s3:prefix"], list):
        got_cond = {"StringLike": {"s3:prefix": got_cond["StringLike"]["s3:prefix"][0]}}
    check("s3:ListBucket is conditioned on s3:prefix", got_cond == want_cond, got_cond)
    check(
        "the listing statement allows s3:ListBucket and s3:ListBucketVersions (same s3:prefix condition)",
        sorted(as_list(listing.get("Action"))) == ["s3:ListBucket", "s3:ListBucketVersions"],
        listing.get("Action"),
    )
    versioned = {"s3:GetObjectVersion", "s3:DeleteObjectVersion"}
    check(
        "object actions include s3:GetObjectVersion and s3:DeleteObjectVersion",
        versioned <= set(as_list(objects.get("Action"))),
        objects.get("Action"),
    )
    wildcard = [
        s["Sid"]
        for s in by_sid.values()
        if any(a in ("*", "s3:*") for a in as_list(s["Action"]))
    ]
    check("no wildcard actions", not wildcard, wildcard)

    # Bucket hardening.
    versioning = s3.get_bucket_versioning(Bucket=bucket)
    check("bucket versioning is Enabled", versioning.get("Status") == "Enabled", versioning.get("Status"))
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    check("bucket default encryption is set", algo in ("AES256", "aws:kms"), algo)
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    check(
        "public access is blocked (all four settings)",
        all(pab.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")),
        pab,
    )
    # The service's bookkeeping under the reserved prefix expires after 7 days.
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    reserved = f"{prefix}.gcp-aws-bridge/"

    def rule_prefix(rule):
        return (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix"))

    expiring = [
        r
        for r in lifecycle
        if r.get("Status") == "Enabled"
        and rule_prefix(r) == reserved
        and (r.get("Expiration") or {}).get("Days") == 7
    ]
    check(
        f"lifecycle rule expires {reserved} after 7 days, and its noncurrent versions",
        len(expiring) == 1 and "NoncurrentDays" in (expiring[0].get("NoncurrentVersionExpiration") or {}),
        lifecycle,
    )
    check(
        "lifecycle rule aborts incomplete multipart uploads",
        any("AbortIncompleteMultipartUpload" in r for r in lifecycle),
        lifecycle,
    )
    bucket_policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    tls = [s for s in as_list(bucket_policy["Statement"]) if s.get("Sid") == "DenyInsecureTransport"]
    check("bucket policy denies plain HTTP", len(tls) == 1 and tls[0]["Effect"] == "Deny", bucket_policy)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # a crash is a failure, with its reason
        check("checks ran to the end", False, repr(exc))
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not results else 0)
