//! Sync and part tasks (SPEC §10) on the rig: fake-gcs-server behind a
//! counting proxy, the Pub/Sub emulator pushing the commands topic to the
//! service through a round-robin front end (tests/common/front.rs, standing
//! in for Cloud Run's), moto behind the fault proxy.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::{FaultPlan, FaultProxy, ProxyFault};
use common::front::Front;
use common::gcs::Gcs;
use common::pubsub::{pubsub_statuses, pull_all, pull_topic, PushTopic};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Deterministic, incompressible test bytes.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// CRC-32 (IEEE), for the gzip trailer.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip member holding `data` in stored (uncompressed) deflate
/// blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// One test's deployment: `n` service instances behind the front end, the
/// commands topic pushing to it, Cloud Storage behind a counting proxy.
struct Deployment {
    w: World,
    gcs: Gcs,
    gcs_proxy: FaultProxy,
    bucket: String,
    front: Front,
    topic: PushTopic,
    servers: Vec<Server>,
}

impl Deployment {
    async fn start(name: &str, instances: usize, env: &[(&str, &str)]) -> Deployment {
        let mut w = World::new(name).await;
        // The emulator pushes without an Authorization header.
        w.set("AUTH_MODE", "none");
        let gcs = Gcs::new(&w.rig);
        let gcs_proxy = FaultProxy::start(&gcs.base).await;
        w.set("STORAGE_EMULATOR_HOST", &gcs_proxy.url());
        let bucket = gcs.bucket(name).await;
        w.set("GCS_SOURCE_BUCKETS", &bucket);
        let front = Front::start().await;
        // Part commands move 64 MiB each: a deadline like the Terraform's
        // rather than the helper's 10 s.
        let topic =
            PushTopic::create_with_deadline(&w, name, &format!("{}/pubsub", front.url), 60).await;
        w.set("PUBSUB_TOPIC", &topic.topic);
        let host = w.rig["PUBSUB_EMULATOR_HOST"].clone();
        w.set("PUBSUB_EMULATOR_HOST", &host);
        for (k, v) in env {
            w.set(k, v);
        }
        let mut servers = Vec::new();
        for _ in 0..instances {
            servers.push(Server::start(&w.env).await);
        }
        front.set_upstreams(servers.iter().map(|s| s.url.clone()).collect());
        Deployment {
            w,
            gcs,
            gcs_proxy,
            bucket,
            front,
            topic,
            servers,
        }
    }

    async fn post_sync(&self, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/sync", self.front.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 202, "{v}");
        v
    }

    /// The JSON log lines of every instance with this message.
    fn logged(&self, message: &str) -> Vec<Value> {
        self.servers
            .iter()
            .flat_map(|s| s.stdout.all())
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    fn log_text(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.stdout.text())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until neither proxy has seen a request for a while: the
    /// commands in flight are done.
    async fn quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = (usize::MAX, usize::MAX);
        let mut since = Instant::now();
        loop {
            let now = (self.w.proxy.total(), self.gcs_proxy.total());
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > Duration::from_millis(2500) {
                return;
            }
            assert!(Instant::now() < deadline, "the deployment never went quiet");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the sync pages logged number `pages` with the last one
    /// saying there is no next page.
    async fn sync_done(&self, pages_before: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pages = self.logged("sync page");
            let new: Vec<Value> = pages.into_iter().skip(pages_before).collect();
            if new.iter().any(|p| p["next_page"] == false) {
                return new;
            }
            assert!(
                Instant::now() < deadline,
                "the sync did not reach its last page:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn replicas(&self) -> BTreeSet<String> {
        admin_list(&self.w.bucket, &self.w.prefix)
            .await
            .into_iter()
            .map(|k| k[self.w.prefix.len()..].to_owned())
            .collect()
    }
}

/// The sync command line, as the binary, with the deployment's environment.
fn cli(d: &Deployment, args: &[&str], topic: &str) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gcp-aws-bridge"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(d.w.env.iter().cloned())
        .env("PUBSUB_TOPIC", topic)
        .arg("sync")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const OBJECTS: usize = 2000;
const MIB: usize = 1024 * 1024;

fn object_name(i: usize) -> String {
    match i % 5 {
        0 => format!("root-{i:04}"),
        1 => format!("a/{}/obj-{i:04}.bin", i % 7),
        2 => format!("a/{}/b/{}/obj-{i:04}", i % 7, i % 3),
        3 => format!("logs/2026/{:02}/{i:04}.log", i % 12),
        _ => format!("z/deep/er/and/deeper/{i:04}"),
    }
}

/// 0 B to 3 MiB, mostly small: 10 objects of 3 MiB, 90 of 64–300 KiB.
fn object_size(i: usize) -> usize {
    if i == 1 {
        0
    } else if i % 200 == 3 {
        3 * MIB
    } else if i % 20 == 7 {
        64 * 1024 + i * 113
    } else {
        (i * 7919) % 4096
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_copies_two_thousand_objects_then_costs_list_calls_only_and_deletes_orphans() {
    let d = Deployment::start("sync2000", 1, &[]).await;

    // 2,000 objects in nested prefixes, some gzip-encoded.
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let uploads = futures_util::stream::iter((0..OBJECTS).map(|i| {
        let name = object_name(i);
        let raw = bytes(object_size(i), i as u64);
        let (data, resource) = if i % 25 == 4 {
            (
                gzip_stored(&raw),
                json!({"contentType": "text/plain", "contentEncoding": "gzip"}),
            )
        } else {
            (raw, json!({"contentType": "application/octet-stream"}))
        };
        let gcs = &d.gcs;
        let bucket = &d.bucket;
        async move {
            gcs.upload(bucket, &name, &data, resource).await;
            (name, data)
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    expected.extend(uploads);
    assert_eq!(expected.len(), OBJECTS);

    // The dry run plans every object and publishes nothing.
    let (dry_topic, dry_sub) = pull_topic(&d.w, "dry").await;
    let (ok, out, err) = cli(
        &d,
        &[&format!("gs://{}", d.bucket), "--dry-run"],
        &dry_topic,
    );
    assert!(ok, "{out}\n{err}");
    let copies = out.lines().filter(|l| l.starts_with("copy gs://")).count();
    assert_eq!(copies, OBJECTS, "{err}");
    let totals: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(totals["copy"], OBJECTS);
    assert_eq!(totals["published"], 0);
    assert_eq!(
        totals["copy_bytes"],
        expected.values().map(Vec::len).sum::<usize>()
    );
    assert!(pull_all(&d.w, &dry_sub).await.is_empty());
    assert!(d.replicas().await.is_empty());

    // One command syncs it all.
    let first = d.post_sync(json!({ "bucket": d.bucket })).await;
    assert_eq!(first["page"], 1);
    assert_eq!(first["next_page"], true);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = d.replicas().await.len();
        if n == OBJECTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {OBJECTS} replicas:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pages = d.sync_done(0).await;
    d.quiet().await;
    let page_numbers: BTreeSet<u64> = pages.iter().filter_map(|p| p["page"].as_u64()).collect();
    assert!(
        page_numbers.len() <= OBJECTS.div_ceil(1000) + 1,
        "{page_numbers:?}"
    );
    for (name, data) in &expected {
        let got = admin_get(&d.w.bucket, &d.w.full(name)).await;
        assert_eq!(got.as_deref(), Some(data.as_slice()), "{name}");
    }
    // One log line per completed object.
    assert!(d.logged("replicated").len() >= OBJECTS);

    // A bucket in sync costs list calls only.
    d.w.proxy.reset_counts();
    d.gcs_proxy.reset_counts();
    let pages_before = d.logged("sync page").len();
    let again = d.post_sync(json!({ "bucket": d.bucket })).await;
    assert_eq!(again["replicate"], 0, "{again}");
    let pages = d.sync_done(pages_before).await;
    d.quiet().await;
    assert!(pages.iter().all(|p| p["replicate"] == 0), "{pages:?}");
    let s3 = d.w.proxy.counts();
    let s3_object_calls: usize = s3
        .iter()
        .filter(|(op, _)| !op.starts_with("S3:") && *op != "ListObjectsV2")
        .filter(|(op, _)| !op.contains("Role") && *op != "GetCallerIdentity")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(s3_object_calls, 0, "S3 calls: {s3:?}");
    assert!(s3.get("ListObjectsV2").copied().unwrap_or(0) >= 1, "{s3:?}");
    let gcs = d.gcs_proxy.counts();
    assert_eq!(
        d.gcs_proxy.total(),
        gcs.get("GcsListObjects").copied().unwrap_or(0),
        "Cloud Storage calls: {gcs:?}"
    );

    // 100 objects deleted in Cloud Storage: a delete sync removes exactly
    // their replicas.
    let deleted: BTreeSet<String> = expected.keys().step_by(20).cloned().collect();
    assert_eq!(deleted.len(), 100);
    futures_util::stream::iter(deleted.iter())
        .for_each_concurrent(16, |n| d.gcs.delete(&d.bucket, n))
        .await;
    let (ok, out, err) = cli(
        &d,
        &[&format!("gs://{}", d.bucket), "--delete", "--dry-run"],
        &dry_topic,
    );
    assert!(ok, "{out}\n{err}");
    let planned: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("delete s3://"))
        .map(|k| k[d.w.bucket.len() + 1 + d.w.prefix.len()..].to_owned())
        .collect();
    assert_eq!(planned, deleted);
    assert!(pull_all(&d.w, &dry_sub).await.is_empty());

    let pages_before = d.logged("sync page").len();
    d.post_sync(json!({ "bucket": d.bucket, "delete": true }))
        .await;
    let pages = d.sync_done(pages_before).await;
    let deletes: u64 = pages
        .iter()
        .filter_map(|p| p["delete_replicas"].as_u64())
        .sum();
    assert!(deletes >= 100, "{pages:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = d.replicas().await;
        if left.len() == OBJECTS - 100 {
            let want: BTreeSet<String> = expected
                .keys()
                .filter(|k| !deleted.contains(*k))
                .cloned()
                .collect();
            assert_eq!(left, want);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} replicas left:\n{}",
            left.len(),
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Without --dry-run the command line publishes the first page's command.
    let (ok, out, err) = cli(
        &d,
        &[&format!("gs://{}/a/", d.bucket), "--delete"],
        &dry_topic,
    );
    assert!(ok, "{out}\n{err}");
    let published = pull_all(&d.w, &dry_sub).await;
    assert_eq!(
        published,
        vec![json!({"op": "sync", "bucket": d.bucket, "prefix": "a/", "delete": true})]
    );
    assert!(pubsub_statuses(&d.servers[0]).iter().all(|s| *s < 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_buckets_outside_the_allow_list_and_bad_tokens() {
    let d = Deployment::start("syncrefuse", 1, &[]).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/sync", d.front.url))
        .json(&json!({ "bucket": "not-allowed-bucket" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "source_bucket_not_allowed");
    for (body, code) in [
        (json!({ "bucket": "Bad_Bucket!" }), "invalid_bucket"),
        (
            json!({ "bucket": d.bucket, "page_token": "garbage" }),
            "invalid_page_token",
        ),
        (
            json!({ "bucket": d.bucket, "prefix": "../x" }),
            "invalid_key",
        ),
        (json!({ "bucket": d.bucket, "extra": 1 }), "invalid_json"),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/sync", d.front.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    // Nothing was listed for a refused request.
    assert_eq!(d.gcs_proxy.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_640_mib_object_in_part_tasks_over_two_instances_with_faults_and_a_kill() {
    let mut d = Deployment::start(
        "parts640",
        2,
        &[("PART_TASK_BYTES", &(64 * MIB).to_string())],
    )
    .await;
    let size = 640 * MIB;
    let data = bytes(size, 640);
    let obj = d
        .gcs
        .upload(
            &d.bucket,
            "big/object.bin",
            &data,
            json!({"contentType": "application/octet-stream", "metadata": {"team": "data"}}),
        )
        .await;
    let gcs_crc = obj["crc32c"].as_str().unwrap().to_owned();

    // 20 % of ranged reads and of UploadPart calls fail.
    d.gcs_proxy.set_faults(FaultPlan {
        ops: Some(vec!["GcsRangedRead".into()]),
        rate: 0.2,
        kinds: vec![ProxyFault::Status(503)],
        seed: 15,
        ..FaultPlan::default()
    });
    d.w.proxy.set_faults(FaultPlan {
        ops: Some(vec!["UploadPart".into()]),
        rate: 0.2,
        kinds: vec![ProxyFault::Status(503)],
        seed: 16,
        ..FaultPlan::default()
    });
    let cmd = json!({"op": "replicate", "bucket": d.bucket, "name": "big/object.bin"});
    d.topic
        .publish(&[json!({ "data": STANDARD.encode(cmd.to_string()) })])
        .await;

    // One instance is killed once parts are under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.w.proxy.count("UploadPart") < 3 {
        assert!(Instant::now() < deadline, "no parts:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dispatched_before_kill = d.front.dispatched();
    d.servers[1].child.kill().unwrap();
    d.servers[1].child.wait().unwrap();

    let key = d.w.full("big/object.bin");
    let deadline = Instant::now() + Duration::from_secs(300);
    let head = loop {
        match admin_s3()
            .head_object()
            .bucket(&d.w.bucket)
            .key(&key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(h) => break h,
            Err(_) => {
                assert!(Instant::now() < deadline, "no replica:\n{}", d.log_text());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(head.content_length(), Some(size as i64));
    assert_eq!(head.checksum_crc32_c(), Some(gcs_crc.as_str()));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("team"))
            .map(String::as_str),
        Some("data")
    );
    let got = admin_get(&d.w.bucket, &key).await.unwrap();
    use sha2::Digest;
    assert_eq!(
        sha2::Sha256::digest(&got),
        sha2::Sha256::digest(&data),
        "replica differs"
    );
    drop(got);

    // Both instances handled commands, and faults were injected on both sides.
    assert!(
        dispatched_before_kill.iter().all(|n| *n > 0),
        "{dispatched_before_kill:?}"
    );
    assert!(d.w.proxy.faults_injected() > 0);
    assert!(d.gcs_proxy.faults_injected() > 0);

    // No upload is left behind.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let uploads = admin_s3()
            .list_multipart_uploads()
            .bucket(&d.w.bucket)
            .prefix(&d.w.prefix)
            .send()
            .await
            .unwrap();
        if uploads.uploads().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads left: {:?}",
            uploads.uploads()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
