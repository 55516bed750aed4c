"""A stock boto3 program for the credential-server tests (tests/integration/sdk_clients.rs).

It names no credentials: boto3's default chain finds them through
AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE).
The endpoint comes from AWS_ENDPOINT_URL, the region from AWS_REGION.

    python boto3_client.py BUCKET PREFIX MIN_SECONDS MIN_ROUNDS

Each round is one STS GetCallerIdentity and one S3 PutObject under PREFIX,
without retries, so that a call made with expired credentials is a failure.
Rounds go on until both MIN_SECONDS and MIN_ROUNDS are reached. Prints one
JSON line: {"rounds","failures","arn","method"}; exits 1 when a call failed.
"""

import json
import sys
import time

import boto3
from botocore.config import Config


def main() -> int:
    bucket, prefix = sys.argv[1], sys.argv[2]
    min_seconds, min_rounds = float(sys.argv[3]), int(sys.argv[4])
    session = boto3.session.Session()
    config = Config(retries={"mode": "standard", "max_attempts": 1})
    sts = session.client("sts", config=config)
    s3 = session.client("s3", config=config)
    failures, arn, rounds = [], None, 0
    start = time.monotonic()
    while rounds < min_rounds or time.monotonic() - start < min_seconds:
        try:
            arn = sts.get_caller_identity()["Arn"]
            s3.put_object(Bucket=bucket, Key=f"{prefix}boto3/{rounds}", Body=b"boto3")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures.append(f"round {rounds}: {type(e).__name__}: {e}")
        rounds += 1
        if min_seconds:
            time.sleep(0.2)
    creds = session.get_credentials()
    print(json.dumps({
        "rounds": rounds,
        "failures": failures,
        "arn": arn,
        "method": creds.method if creds else None,
    }))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
