//! Inline copies of a sync page (SPEC §10): objects under
//! `SYNC_INLINE_BYTES` copied by the page itself from what the two listings
//! say, one Cloud Storage read and one S3 write each, within the buffer
//! budget. Requests are counted at the fault proxies in front of
//! fake-gcs-server and moto (tests/integration/common/deployment.rs).

use crate::common;
use crate::common::require_rig;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::deployment::{bytes, gzip_stored, Deployment};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

/// The S3 requests that concern one object: everything but listings, the
/// credentials and the page claims (which are counted apart).
const PER_OBJECT_S3: [&str; 6] = [
    "PutObject",
    "HeadObject",
    "GetObject",
    "CopyObject",
    "DeleteObject",
    "CreateMultipartUpload",
];

fn generation_of(obj: &Value) -> String {
    match &obj["generation"] {
        Value::String(g) => g.clone(),
        g => g.to_string(),
    }
}

/// A process's peak resident set (VmHWM), in bytes.
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// Uploads `objects` to the deployment's bucket, 32 at once; returns the
/// object resources Cloud Storage answered, by name.
async fn upload_all(
    d: &Deployment,
    objects: Vec<(String, Vec<u8>, Value)>,
) -> HashMap<String, (Vec<u8>, Value)> {
    futures_util::stream::iter(objects)
        .map(|(name, data, resource)| async move {
            let obj = d.gcs.upload(&d.bucket, &name, &data, resource).await;
            (name, (data, obj))
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// Waits until every page of the sync started before `pages_before` pages
/// were logged is done, and the deployment is quiet.
async fn settle(d: &Deployment, pages_before: usize) -> Vec<Value> {
    let pages = d.sync_done(pages_before).await;
    d.quiet().await;
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_of_300_new_small_objects_reads_and_writes_each_once() {
    require_rig!();
    const N: usize = 300;
    let d = Deployment::start("inline300", 1, &[("TEST_SYNC_PAGE_SIZE", "100")]).await;
    let objects: Vec<(String, Vec<u8>, Value)> = (0..N)
        .map(|i| {
            let name = format!("d{}/obj-{i:03}", i % 4);
            let raw = bytes((i * 7919) % 6000, i as u64);
            match i % 3 {
                0 => (name, raw, json!({"contentType": "application/octet-stream"})),
                1 => (
                    name,
                    gzip_stored(&raw),
                    json!({"contentType": "text/plain", "contentEncoding": "gzip",
                           "cacheControl": "no-cache", "contentLanguage": "en",
                           "contentDisposition": "inline"}),
                ),
                _ => (
                    name,
                    raw,
                    json!({"contentType": "image/png", "metadata": {"team": "blue", "n": i.to_string()}}),
                ),
            }
        })
        .collect();
    let expected = upload_all(&d, objects).await;
    assert_eq!(expected.len(), N);

    let first = d.post_sync(json!({ "bucket": d.bucket })).await;
    assert_eq!(first["copied"], 100, "{first}");
    assert_eq!(first["replicate"], 0, "{first}");
    let pages = settle(&d, 0).await;
    let copied: u64 = pages.iter().filter_map(|p| p["copied"].as_u64()).sum();
    assert_eq!(copied, N as u64, "{pages:?}");
    assert!(pages.iter().all(|p| p["replicate"] == 0), "{pages:?}");

    // Per object: one media read at Cloud Storage, one PutObject at S3; no
    // metadata read, no HEAD, no replicate task. The only other PutObjects
    // are the claims of the pages (started, done).
    let gcs = d.gcs_proxy.counts();
    assert_eq!(gcs.get("GcsGetMedia").copied().unwrap_or(0), N, "{gcs:?}");
    assert_eq!(gcs.get("GcsGetObject").copied().unwrap_or(0), 0, "{gcs:?}");
    let s3 = d.w.proxy.counts();
    let claims = 2 * pages.len();
    let per_object: usize = PER_OBJECT_S3
        .iter()
        .map(|op| s3.get(*op).copied().unwrap_or(0))
        .sum::<usize>()
        - claims;
    assert_eq!(per_object, N, "S3 calls: {s3:?}");
    assert_eq!(s3.get("HeadObject").copied().unwrap_or(0), 0, "{s3:?}");
    assert!(d.logged("replicated").len() >= N);

    // Every replica is exact: bytes, content headers, custom metadata, the
    // replication metadata and the CRC32C S3 was given.
    let s3c = admin_s3();
    futures_util::stream::iter(&expected)
        .for_each_concurrent(16, |(name, (data, obj))| {
            let (s3c, d) = (&s3c, &d);
            async move {
                let key = d.w.full(name);
                let got = s3c
                    .get_object()
                    .bucket(&d.w.bucket)
                    .key(&key)
                    .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(got.content_type(), obj["contentType"].as_str(), "{name}");
                assert_eq!(
                    got.content_encoding(),
                    obj["contentEncoding"].as_str(),
                    "{name}"
                );
                assert_eq!(got.cache_control(), obj["cacheControl"].as_str(), "{name}");
                assert_eq!(
                    got.content_language(),
                    obj["contentLanguage"].as_str(),
                    "{name}"
                );
                assert_eq!(
                    got.content_disposition(),
                    obj["contentDisposition"].as_str(),
                    "{name}"
                );
                assert_eq!(got.checksum_crc32_c(), obj["crc32c"].as_str(), "{name}");
                let mut want: HashMap<String, String> = obj["metadata"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                want.insert("goog-generation".into(), generation_of(obj));
                want.insert("goog-bucket".into(), d.bucket.clone());
                want.insert(
                    "goog-metageneration".into(),
                    obj["metageneration"].as_str().unwrap_or("1").to_owned(),
                );
                assert_eq!(got.metadata().cloned().unwrap_or_default(), want, "{name}");
                let body = got.body.collect().await.unwrap().into_bytes();
                assert!(&body[..] == data.as_slice(), "{name}: bytes differ");
            }
        })
        .await;

    // A second sync finds it all in sync: list calls and claims only.
    d.w.proxy.reset_counts();
    d.gcs_proxy.reset_counts();
    let before = d.logged("sync page").len();
    d.post_sync(json!({ "bucket": d.bucket })).await;
    let pages = settle(&d, before).await;
    assert!(pages.iter().all(|p| p["copied"] == 0), "{pages:?}");
    let gcs = d.gcs_proxy.counts();
    assert_eq!(
        d.gcs_proxy.total(),
        gcs.get("GcsListObjects").copied().unwrap_or(0),
        "{gcs:?}"
    );
    let s3 = d.w.proxy.counts();
    assert_eq!(
        s3.get("PutObject").copied().unwrap_or(0),
        2 * pages.len(),
        "{s3:?}"
    );
    assert_eq!(s3.get("HeadObject").copied().unwrap_or(0), 0, "{s3:?}");
    assert!(d.task_statuses().iter().all(|s| *s < 300));
}

/// A Cloud Storage CloudEvent through the front end.
async fn finalized(d: &Deployment, obj: &Value) -> (u16, Value) {
    let r = storage_event(
        reqwest::Client::new()
            .post(format!("{}/events", d.front.url()))
            .bearer_auth(d.w.caller_token()),
        &format!("{}-finalized", generation_of(obj)),
        "finalized",
        obj,
    )
    .send()
    .await
    .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inline_copy_that_loses_its_condition_leaves_the_newer_replica() {
    require_rig!();
    let d = Deployment::start("inlinerace", 1, &[]).await;
    let name = "race/object.txt";
    let one = d
        .gcs
        .upload(&d.bucket, name, b"generation one", json!({}))
        .await;

    // The page's claim goes through; its copy of generation one is held
    // at S3 while generation two is written and its event replicates it.
    let claim = d.w.proxy.hold_next("PutObject");
    let mut copy = d.w.proxy.hold_next("PutObject");
    claim.release();
    let first = {
        let (url, token, bucket) = (d.front.url(), d.w.caller_token(), d.bucket.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/sync"))
                .bearer_auth(token)
                .json(&json!({ "bucket": bucket }))
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::timeout(Duration::from_secs(60), copy.arrived())
        .await
        .unwrap_or_else(|_| panic!("no inline copy:\n{}", d.log_text()));
    let two = d
        .gcs
        .upload(&d.bucket, name, b"generation two, newer", json!({}))
        .await;
    assert!(generation_of(&two) > generation_of(&one));
    let (status, body) = finalized(&d, &two).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "replicated", "{body}");
    copy.release();

    // The copy's condition (nothing at the key) no longer holds: the page
    // leaves the object to a replicate task, which finds the newer replica.
    let answer = first.await.unwrap();
    assert_eq!(answer.status(), 202);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["copied"], 0, "{answer}");
    assert_eq!(answer["replicate"], 1, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while d
        .logged("replica already holds this generation or a newer one")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "no task decided:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = d.logged("inline copy left to a replicate task");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["reason"], "replica_changed", "{left:?}");
    d.quiet().await;
    assert_eq!(
        admin_get(&d.w.bucket, &d.w.full(name)).await.as_deref(),
        Some(&b"generation two, newer"[..])
    );
    let head = admin_s3()
        .head_object()
        .bucket(&d.w.bucket)
        .key(d.w.full(name))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().and_then(|m| m.get("goog-generation")),
        Some(&generation_of(&two))
    );
    assert!(d.task_statuses().iter().all(|s| *s < 300));
}

/// `objects` objects of 4 MiB synced by one instance under a 32 MiB
/// budget: every one is copied inline (none waits out the budget), and the
/// instance's peak RSS stays within the budget plus what the process holds
/// anyway, far from the 128 MiB that 32 copies in flight would hold
/// without the budget.
async fn inline_copies_within(objects: usize, budget: usize) {
    let d = Deployment::start(
        &format!("inlinebudget{objects}"),
        1,
        &[("BUFFER_BUDGET_BYTES", &budget.to_string())],
    )
    .await;
    let idle = peak_rss(d.front.instance_pids()[0].1);
    futures_util::stream::iter(0..objects)
        .for_each_concurrent(8, |i| {
            let d = &d;
            async move {
                let data = bytes(4 * MIB, i as u64);
                d.gcs
                    .upload(&d.bucket, &format!("big/{i:04}"), &data, json!({}))
                    .await;
            }
        })
        .await;
    let t = Instant::now();
    d.post_sync(json!({ "bucket": d.bucket })).await;
    let pages = settle(&d, 0).await;
    let secs = t.elapsed().as_secs_f64();
    let copied: u64 = pages.iter().filter_map(|p| p["copied"].as_u64()).sum();
    assert_eq!(copied, objects as u64, "{pages:?}");
    assert!(pages.iter().all(|p| p["replicate"] == 0), "{pages:?}");
    assert_eq!(d.replicas().await.len(), objects);
    let pid = d.front.instance_pids()[0].1;
    let peak = peak_rss(pid);
    eprintln!(
        "{objects} objects of 4 MiB inline under a {} MiB budget: {secs:.1} s, {:.1} MB/s, peak RSS {} MiB (idle {} MiB)",
        budget / MIB,
        (objects * 4 * MIB) as f64 / secs / 1e6,
        peak / MIB,
        idle / MIB
    );
    assert!(
        peak < budget + 64 * MIB,
        "peak RSS {} MiB, over the budget of {} MiB plus 64 MiB",
        peak / MIB,
        budget / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inline_copies_stay_within_the_buffer_budget() {
    require_rig!();
    inline_copies_within(48, 32 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: 1,000 objects of 4 MiB (INLINE_BUDGET_OBJECTS) under a 64 MiB budget"]
async fn bench_a_page_of_4_mib_objects_within_the_buffer_budget() {
    require_rig!();
    let objects = std::env::var("INLINE_BUDGET_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    inline_copies_within(objects, 64 * MIB).await;
}
