#!/usr/bin/env python3
"""Seed a fresh moto server for the test suite, then turn IAM auth on.

While moto's no-auth allowance lasts (unlimited until reset-auth is called),
this creates:
  - IAM user rig-admin with an inline Allow * on * and an access key;
  - bucket bridge-test (us-east-1), and bucket bridge-test-versioned with
    versioning on (the Terraform's default), for the tests of removals on a
    versioned bucket;
  - IAM role bridge-test-role (MaxSessionDuration 43200) trusting
    accounts.google.com for sts:AssumeRoleWithWebIdentity, with an inline
    policy limited to the two buckets and the allowed/ prefix;
  - IAM role bridge-test-reader, with the same trust policy and a policy that
    may only read and list under allowed/ (a second role for the credential
    server's named roles);
then POSTs 0 to /moto-api/reset-auth so every later request is authenticated.

Prints the rig.env lines for moto (KEY=VALUE) on stdout.

Usage: bootstrap_moto.py http://127.0.0.1:PORT
"""

from __future__ import annotations

import json
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"
BUCKET = "bridge-test"
VERSIONED_BUCKET = "bridge-test-versioned"
ROLE = "bridge-test-role"
ALLOWED_PREFIX = "allowed/"
ADMIN = "rig-admin"

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": "accounts.google.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
        }
    ],
}

ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Objects",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                # Versioned buckets: a replica's removal reads and deletes the
                # version it checked and the older replica versions, as the
                # Terraform's policy allows.
                "s3:GetObjectVersion",
                "s3:DeleteObjectVersion",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
                "s3:GetObjectAttributes",
                # Terraform's aws_s3_object reads an object's tags
                # (tests/integration/sdk_clients.rs).
                "s3:GetObjectTagging",
                # Removals on a versioned bucket: a checked version, and the
                # older replica versions (as the Terraform grants).
                "s3:GetObjectVersion",
                "s3:DeleteObjectVersion",
            ],
            "Resource": [
                f"arn:aws:s3:::{BUCKET}/{ALLOWED_PREFIX}*",
                f"arn:aws:s3:::{VERSIONED_BUCKET}/{ALLOWED_PREFIX}*",
            ],
        },
        {
            "Sid": "Bucket",
            "Effect": "Allow",
            "Action": [
                "s3:ListBucket",
                "s3:ListBucketMultipartUploads",
                "s3:ListBucketVersions",
            ],
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{VERSIONED_BUCKET}"],
        },
        {
            "Sid": "Buckets",
            "Effect": "Allow",
            "Action": "s3:ListAllMyBuckets",
            "Resource": "*",
        },
    ],
}

READER_ROLE = "bridge-test-reader"

READER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Read",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": f"arn:aws:s3:::{BUCKET}/{ALLOWED_PREFIX}*",
        },
        {
            "Sid": "List",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{BUCKET}",
        },
    ],
}

ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def client(service: str, endpoint: str, key: str = "bootstrap", secret: str = "bootstrap"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def main(endpoint: str) -> None:
    iam = client("iam", endpoint)
    iam.create_user(UserName=ADMIN)
    iam.put_user_policy(
        UserName=ADMIN, PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    key = iam.create_access_key(UserName=ADMIN)["AccessKey"]

    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=VERSIONED_BUCKET)
    s3.put_bucket_versioning(
        Bucket=VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )

    role = iam.create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
        MaxSessionDuration=43200,
    )["Role"]
    iam.put_role_policy(
        RoleName=ROLE, PolicyName="bridge-test", PolicyDocument=json.dumps(ROLE_POLICY)
    )

    reader = iam.create_role(
        RoleName=READER_ROLE,
        AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
        MaxSessionDuration=43200,
    )["Role"]
    iam.put_role_policy(
        RoleName=READER_ROLE, PolicyName="reader", PolicyDocument=json.dumps(READER_POLICY)
    )

    # Auth on: from here every request must be signed by a known key.
    req = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()

    # Check it took: the admin key works, an unknown key does not.
    admin_s3 = client("s3", endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    admin_s3.head_bucket(Bucket=BUCKET)
    try:
        client("s3", endpoint).head_bucket(Bucket=BUCKET)
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        if status != 403:
            raise SystemExit(f"moto answered {status} to an unknown access key, not 403")
    else:
        raise SystemExit("moto accepted an unknown access key: auth did not turn on")

    env = {
        "RIG_MOTO_ENDPOINT": endpoint,
        "RIG_AWS_REGION": REGION,
        "RIG_ADMIN_ACCESS_KEY_ID": key["AccessKeyId"],
        "RIG_ADMIN_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "RIG_BUCKET": BUCKET,
        "RIG_VERSIONED_BUCKET": VERSIONED_BUCKET,
        "RIG_ROLE_ARN": role["Arn"],
        "RIG_READER_ROLE_ARN": reader["Arn"],
        "RIG_ALLOWED_PREFIX": ALLOWED_PREFIX,
    }
    for name, value in env.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1].rstrip("/"))
