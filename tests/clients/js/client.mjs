// A stock AWS SDK for JavaScript v3 program for the credential-server tests
// (tests/sdk_clients.rs). It names no credentials: the SDK's default chain
// finds them through AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE). Endpoint: AWS_ENDPOINT_URL;
// region: AWS_REGION.
//
//   node client.mjs BUCKET PREFIX MIN_SECONDS MIN_ROUNDS
//
// Each round is one STS GetCallerIdentity and one S3 PutObject under PREFIX,
// without retries, so that a call made with expired credentials is a
// failure. Rounds go on until both MIN_SECONDS and MIN_ROUNDS are reached.
// Prints one JSON line {"rounds","failures","arn"}; exits 1 when a call failed.

import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { S3Client, PutObjectCommand } from "@aws-sdk/client-s3";

const [bucket, prefix, minSeconds, minRounds] = process.argv.slice(2);
const endpoint = process.env.AWS_ENDPOINT_URL;
const sts = new STSClient({ endpoint, maxAttempts: 1 });
const s3 = new S3Client({ endpoint, forcePathStyle: true, maxAttempts: 1 });

const failures = [];
let arn = null;
let rounds = 0;
const start = Date.now();
while (rounds < Number(minRounds) || Date.now() - start < Number(minSeconds) * 1000) {
  try {
    arn = (await sts.send(new GetCallerIdentityCommand({}))).Arn;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}js/${rounds}`, Body: "js" }));
  } catch (e) {
    failures.push(`round ${rounds}: ${e.name}: ${e.message}`);
  }
  rounds += 1;
  if (Number(minSeconds) > 0) await new Promise((r) => setTimeout(r, 200));
}
console.log(JSON.stringify({ rounds, failures, arn }));
process.exit(failures.length ? 1 : 0);
