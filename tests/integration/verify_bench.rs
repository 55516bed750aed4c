//! `verify` throughput on the rig beside `rclone check` of the same
//! fake-gcs-server bucket and moto prefix. Ignored in the test suite: run by
//! `bench/verify.sh`, one figure per line on stdout as `BENCH name value
//! unit`.

use crate::common;
use crate::common::require_rig;

use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use common::deployment::bytes;
use common::gcs::Gcs;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn figure(name: &str, value: f64, unit: &str) {
    println!("BENCH {name} {value:.1} {unit}");
}

/// `rclone check` of `gs://bucket` against `s3://RIG_BUCKET/prefix`
/// (sizes and MD5 hashes from both listings); seconds taken.
fn rclone_check(
    rig: &std::collections::HashMap<String, String>,
    bucket: &str,
    prefix: &str,
) -> f64 {
    let mut cmd = crate::common::rclone(rig, "check", bucket, prefix);
    cmd.args(["--checkers", "64", "--fast-list"]);
    let t = Instant::now();
    let out = cmd.output().expect("rclone (bench/verify.sh installs it)");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "rclone check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: bench/verify.sh"]
async fn bench_verify_against_rclone_check() {
    require_rig!();
    let objects = env_usize("BENCH_OBJECTS", 10_000);
    let size = env_usize("BENCH_OBJECT_BYTES", 1024);
    let w = World::new("bench-verify").await;
    let gcs = Gcs::new(&w.rig);
    let bucket = gcs.bucket("bench-verify").await;
    // The objects, and their replicas as replication writes them (CRC32C
    // checksum, replication metadata), written directly.
    let t = Instant::now();
    let s3 = admin_s3();
    futures_util::stream::iter(0..objects)
        .for_each_concurrent(32, |i| {
            let (gcs, bucket, s3, w) = (&gcs, &bucket, &s3, &w);
            async move {
                let name = format!("d{}/e{}/obj-{i:05}", i % 10, i % 7);
                let data = bytes(size, i as u64);
                let obj: Value = gcs.upload(bucket, &name, &data, json!({})).await;
                s3.put_object()
                    .bucket(&w.bucket)
                    .key(w.full(&name))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                    .metadata("goog-bucket", bucket.as_str())
                    .metadata("goog-generation", obj["generation"].as_str().unwrap())
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    eprintln!(
        "{objects} objects and replicas written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // BENCH_BRIDGE_BIN: a release build, when bench/verify.sh made one.
    let bin = std::env::var("BENCH_BRIDGE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gcp-aws-bridge").to_owned());
    let verify = |env: Vec<(String, String)>| {
        let (bin, bucket) = (bin.clone(), bucket.clone());
        async move {
            let t = Instant::now();
            let out = tokio::process::Command::new(&bin)
                .args(["verify", &format!("gs://{bucket}")])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env)
                .output()
                .await
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let totals: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            assert_eq!(totals["totals"]["in_sync"]["count"], objects, "{totals}");
            secs
        }
    };
    // Straight to moto, as rclone goes.
    let mut direct = w.env.clone();
    direct.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    direct.push((
        "AWS_ENDPOINT_URL".into(),
        w.rig["RIG_MOTO_ENDPOINT"].clone(),
    ));
    let secs = verify(direct).await;
    figure(
        &format!("verify_{objects}_objects_per_s"),
        objects as f64 / secs,
        "objects/s",
    );
    // Through the counting proxy: what it asks of S3.
    w.proxy.reset_counts();
    verify(w.env.clone()).await;
    figure(
        "verify_head_requests",
        w.proxy.count("HeadObject") as f64,
        "requests",
    );
    figure(
        "verify_list_requests",
        w.proxy.count("ListObjectsV2") as f64,
        "requests",
    );
    figure(
        "verify_get_requests",
        w.proxy.count("GetObject") as f64,
        "requests",
    );
    // The stand-in's own ceiling: HEADs of one replica from the admin
    // client, as many at once as verify sends.
    let n = 3000;
    let key = w.full("d0/e0/obj-00000");
    let t = Instant::now();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(32, |_| {
            let (s3, bucket, key) = (&s3, &w.bucket, &key);
            async move {
                s3.head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    figure(
        "moto_head_requests_per_s",
        n as f64 / t.elapsed().as_secs_f64(),
        "requests/s",
    );

    let secs = rclone_check(&w.rig, &bucket, &w.prefix);
    figure(
        &format!("rclone_check_{objects}_objects_per_s"),
        objects as f64 / secs,
        "objects/s",
    );
}
