//! Sync and part-task throughput on the rig, beside `rclone copy` between
//! the same fake-gcs-server and moto. Ignored in the test suite: run by
//! `bench/sync.sh` (which sets `BENCH_BRIDGE_BIN` to a release build and
//! installs rclone), one figure per line on stdout as `BENCH name value`.

use crate::common;
use crate::common::require_rig;

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
    eventually(
        limit,
        || format!("replicas missing:\n{}", d.log_text()),
        || async {
            // The run's own bookkeeping (`.gcp-aws-bridge/`) is no replica.
            (d.replicas().await.len() >= n).then_some(())
        },
    )
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
    let mut cmd = crate::common::rclone(rig, "copy", bucket, prefix);
    cmd.arg("--s3-no-check-bucket");
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
    require_rig!();
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
    require_rig!();
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

/// Figures per operation: the requests a stand-in answered during a run,
/// per object synced.
fn per_object(
    name: &str,
    service: &str,
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    objects: usize,
) {
    for (op, n) in after {
        let d = n - before.get(op).copied().unwrap_or(0);
        if d > 0 {
            println!(
                "BENCH {name}_{service}_{op}_per_object {:.3} requests",
                d as f64 / objects as f64
            );
        }
    }
}

/// Sync against in-memory S3 and Cloud Storage stand-ins that answer every
/// request after `BENCH_LATENCY_MS` (20 ms by default) and are never the
/// limit themselves (the test kit's `latency` module): how sync scales with
/// instances when each request costs a round trip, not the stand-ins' own
/// work. Tasks reach the instances through the Pub/Sub emulator, pulled and
/// pushed `PUSH_CONCURRENCY` at a time; STS is moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: bench/sync.sh"]
async fn bench_sync_fixed_latency() {
    require_rig!();
    use bridge_testkit::latency::{latency_from_env, LatencyGcs, LatencyS3};

    let objects = env_usize("BENCH_OBJECTS", 10_000);
    let size = env_usize("BENCH_OBJECT_BYTES", 1024);
    let latency = latency_from_env();
    let ms = latency.as_millis();
    let s3 = LatencyS3::start(latency).await;
    let gcs = LatencyGcs::start(latency).await;
    let bucket = "bench-latency";
    for i in 0..objects {
        let name = format!("d{}/e{}/obj-{i:05}", i % 10, i % 7);
        gcs.insert(
            bucket,
            &name,
            bytes(size, i as u64).into(),
            "application/octet-stream",
        );
    }
    figure("sync_fixed_latency_ms", ms as f64, "ms");
    for instances in [1, 2, 4] {
        let d = Deployment::start_pushing(
            &format!("latency{instances}"),
            instances,
            &[
                ("RUST_LOG", "info"),
                ("AWS_ENDPOINT_URL_S3", &s3.url()),
                ("S3_FORCE_PATH_STYLE", "true"),
                ("STORAGE_EMULATOR_HOST", &gcs.url()),
            ],
            Some(bucket),
            Push::Concurrent(PUSH_CONCURRENCY),
        )
        .await;
        let (s3_before, gcs_before) = (s3.counts(), gcs.counts());
        let t = Instant::now();
        let r = reqwest::Client::new()
            .post(format!("{}/v1/sync", d.front.url()))
            .bearer_auth(d.w.caller_token())
            .json(&json!({ "bucket": bucket }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            202,
            "{text}\nS3 stand-in: {:?}\n{}",
            s3.counts(),
            d.log_text()
        );
        let deadline = t + Duration::from_secs(1200);
        let replicas = || {
            s3.keys(&d.w.bucket, &d.w.prefix)
                .iter()
                .filter(|k| !k[d.w.prefix.len()..].starts_with(".gcp-aws-bridge/"))
                .count()
        };
        while replicas() < objects {
            assert!(
                Instant::now() < deadline,
                "{} of {objects} replicas after 1200 s:\n{}",
                replicas(),
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let (s3_after, gcs_after) = (s3.counts(), gcs.counts());
        let name = format!("sync_fixed_latency_{ms}ms_{objects}_objects_{instances}_instances");
        figure(
            &format!("{name}_objects_per_s"),
            objects as f64 / secs,
            "objects/s",
        );
        figure(
            &format!("{name}_peak_requests_in_flight"),
            d.front.peak_in_flight() as f64,
            "requests",
        );
        per_object(&name, "s3", &s3_before, &s3_after, objects);
        per_object(&name, "gcs", &gcs_before, &gcs_after, objects);
        assert_eq!(s3_after.get("Unsupported"), None, "{s3_after:?}");
        assert_eq!(gcs_after.get("unsupported"), None, "{gcs_after:?}");
        // Every replica holds its source's bytes.
        let k = format!("{}d3/e3/obj-00003", d.w.prefix);
        if objects > 3 {
            assert_eq!(
                s3.get(&d.w.bucket, &k).as_deref(),
                Some(&bytes(size, 3)[..]),
                "{k}"
            );
        }
    }
}
