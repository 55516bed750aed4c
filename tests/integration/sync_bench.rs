//! Sync and part-task throughput on the rig, beside `rclone copy` between
//! the same fake-gcs-server and moto. Ignored in the test suite: run by
//! `bench/sync.sh` (which sets `BENCH_BRIDGE_BIN` to a release build and
//! installs rclone), one figure per line on stdout as `BENCH name value`.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::deployment::{bytes, Deployment, Push, PUSH_CONCURRENCY};
use common::gcs::Gcs;
use common::*;
use futures_util::StreamExt;
use serde_json::json;

const MIB: usize = 1024 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn figure(name: &str, value: f64, unit: &str) {
    println!("BENCH {name} {value:.1} {unit}");
}

async fn wait_for_replicas(d: &Deployment, n: usize, limit: Duration) {
    objects_landed(&d.w.bucket, &d.w.prefix, n, limit, || {
        format!("replicas missing:\n{}", d.log_text())
    })
    .await;
}

/// `rclone copy` from `gs://bucket` to `s3://RIG_BUCKET/prefix` with its
/// settings for many small files or for one large one; seconds taken.
fn rclone(
    rig: &std::collections::HashMap<String, String>,
    bucket: &str,
    prefix: &str,
    large: bool,
) -> f64 {
    let gcs = Gcs::new(rig);
    let mut cmd = Command::new("rclone");
    // rclone's S3 client refuses a CA bundle with its own HTTP transport,
    // and moto is plain http.
    cmd.env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_SRC_TYPE", "google cloud storage")
        .env("RCLONE_CONFIG_SRC_ANONYMOUS", "true")
        .env(
            "RCLONE_CONFIG_SRC_ENDPOINT",
            format!("{}/storage/v1/", gcs.base),
        )
        .env("RCLONE_CONFIG_DST_TYPE", "s3")
        .env("RCLONE_CONFIG_DST_PROVIDER", "Other")
        .env("RCLONE_CONFIG_DST_ENDPOINT", &rig["RIG_MOTO_ENDPOINT"])
        .env(
            "RCLONE_CONFIG_DST_ACCESS_KEY_ID",
            &rig["RIG_ADMIN_ACCESS_KEY_ID"],
        )
        .env(
            "RCLONE_CONFIG_DST_SECRET_ACCESS_KEY",
            &rig["RIG_ADMIN_SECRET_ACCESS_KEY"],
        )
        .env("RCLONE_CONFIG_DST_REGION", "us-east-1")
        .env("RCLONE_CONFIG_DST_FORCE_PATH_STYLE", "true")
        .arg("copy")
        .arg(format!("src:{bucket}"))
        .arg(format!("dst:{}/{prefix}", rig["RIG_BUCKET"]))
        .args([
            "--config",
            "/dev/null",
            "--s3-no-check-bucket",
            "--stats",
            "0",
        ]);
    if large {
        cmd.args([
            "--transfers",
            "4",
            "--multi-thread-streams",
            "8",
            "--s3-chunk-size",
            "64M",
            "--s3-upload-concurrency",
            "8",
        ]);
    } else {
        cmd.args(["--transfers", "64", "--checkers", "64", "--fast-list"]);
    }
    let t = Instant::now();
    let out = cmd.output().expect("rclone (bench/sync.sh installs it)");
    assert!(
        out.status.success(),
        "rclone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: bench/sync.sh"]
async fn bench_sync_small_objects() {
    let objects = env_usize("BENCH_OBJECTS", 10_000);
    let size = env_usize("BENCH_OBJECT_BYTES", 1024);
    let rig = rig();
    let gcs = Gcs::new(&rig);
    let bucket = gcs.bucket("bench-small").await;
    futures_util::stream::iter(0..objects)
        .for_each_concurrent(32, |i| {
            let (gcs, bucket) = (&gcs, &bucket);
            async move {
                let name = format!("d{}/e{}/obj-{i:05}", i % 10, i % 7);
                gcs.upload(bucket, &name, &bytes(size, i as u64), json!({}))
                    .await;
            }
        })
        .await;
    // The emulator's own push loop (one delivery at a time), then pushes
    // PUSH_CONCURRENCY at a time as Pub/Sub does, over 1, 2 and 4 instances.
    let runs = [
        ("emulator_push", 1, Push::Emulator),
        ("concurrent_push", 1, Push::Concurrent(PUSH_CONCURRENCY)),
        ("concurrent_push", 2, Push::Concurrent(PUSH_CONCURRENCY)),
        ("concurrent_push", 4, Push::Concurrent(PUSH_CONCURRENCY)),
    ];
    for (push_name, instances, push) in runs {
        let d = Deployment::start_pushing(
            &format!("bench{instances}"),
            instances,
            &[("RUST_LOG", "info")],
            Some(&bucket),
            push,
        )
        .await;
        let t = Instant::now();
        d.post_sync(json!({ "bucket": bucket })).await;
        wait_for_replicas(&d, objects, Duration::from_secs(1200)).await;
        let secs = t.elapsed().as_secs_f64();
        let name = format!("sync_{objects}_objects_{instances}_instances_{push_name}");
        figure(
            &format!("{name}_objects_per_s"),
            objects as f64 / secs,
            "objects/s",
        );
        // Where the time goes: deliveries in flight at once, and how long
        // the service took to answer one replicate command.
        figure(
            &format!("{name}_peak_requests_in_flight"),
            d.front.peak_in_flight() as f64,
            "requests",
        );
        let latencies: Vec<f64> = d
            .log_lines()
            .iter()
            .filter(|v| v["httpRequest"]["requestUrl"].as_str() == Some("/tasks"))
            .filter_map(|v| {
                v["httpRequest"]["latency"]
                    .as_str()?
                    .strip_suffix('s')?
                    .parse()
                    .ok()
            })
            .collect();
        let mean_ms = 1000.0 * latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
        figure(&format!("{name}_service_ms_per_command"), mean_ms, "ms");
        // Time inside the service over wall time: the mean number of
        // commands being handled; at 1 the deliveries leave it no idle gap.
        figure(
            &format!("{name}_mean_requests_in_service"),
            latencies.iter().sum::<f64>() / secs,
            "requests",
        );
    }
    let prefix = unique_prefix("rclone-small");
    let secs = rclone(&rig, &bucket, &prefix, false);
    figure(
        &format!("rclone_copy_{objects}_objects_objects_per_s"),
        objects as f64 / secs,
        "objects/s",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: bench/sync.sh"]
async fn bench_large_object_part_tasks() {
    let size = env_usize("BENCH_LARGE_MIB", 2048) * MIB;
    let rig = rig();
    let gcs = Gcs::new(&rig);
    let bucket = gcs.bucket("bench-large").await;
    gcs.upload(&bucket, "large.bin", &bytes(size, 2), json!({}))
        .await;
    let mb = size as f64 / 1e6;

    // Part tasks over two instances.
    let d = Deployment::start_on(
        "benchparts",
        2,
        &[
            ("RUST_LOG", "warn"),
            ("PART_TASK_BYTES", &(64 * MIB).to_string()),
        ],
        Some(&bucket),
    )
    .await;
    let cmd = json!({"op": "replicate", "bucket": bucket, "name": "large.bin"});
    let t = Instant::now();
    d.topic
        .publish(&[json!({ "data": STANDARD.encode(cmd.to_string()) })])
        .await;
    wait_for_replicas(&d, 1, Duration::from_secs(1200)).await;
    figure(
        "part_tasks_2_instances_MB_per_s",
        mb / t.elapsed().as_secs_f64(),
        "MB/s",
    );
    drop(d);

    // One stream: the same object in one request on one instance.
    let d = Deployment::start_on(
        "benchstream",
        1,
        &[
            ("RUST_LOG", "warn"),
            ("PART_TASK_BYTES", &(16 * 1024 * MIB).to_string()),
            ("REQUEST_TIMEOUT_SECONDS", "3600"),
        ],
        Some(&bucket),
    )
    .await;
    let envelope = json!({
        "message": { "data": STANDARD.encode(cmd.to_string()), "messageId": "bench-1" },
        "subscription": "projects/bridge-test/subscriptions/bench",
    });
    let t = Instant::now();
    let r = reqwest::Client::new()
        // The replicate as a task of a sync page, through the tasks push.
        .post(format!("{}/tasks", d.push.url()))
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    figure(
        "one_stream_1_instance_MB_per_s",
        mb / t.elapsed().as_secs_f64(),
        "MB/s",
    );
    drop(d);

    let prefix = unique_prefix("rclone-large");
    let secs = rclone(&rig, &bucket, &prefix, true);
    figure("rclone_copy_large_MB_per_s", mb / secs, "MB/s");
}
